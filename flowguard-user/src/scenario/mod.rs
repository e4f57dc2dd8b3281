//! Labelled scenarios: benign background plus injected attacks, as export packets and
//! ground truth.
