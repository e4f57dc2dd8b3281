//! Output: flow records as text (and, with the detectors, findings and alerts).

pub mod findings;
pub mod flows;
