//! Detection: decoded flows in, findings out.
//!
//! Every detector implements [`Detector`]. It sees flow records of the hosts its shard owns
//! (state is sharded by the flow's internal host), in roughly event-time order, and is told
//! how far event time has certainly progressed with [`Detector::advance`] (the watermark).
//! Windows close on the watermark, never on the wall clock, so replaying a capture at any
//! speed gives the same findings as live collection.
//!
//! Findings carry their evidence in numbers and one plain sentence; `report` ranks them.

pub mod config;
pub mod engine;

use std::{collections::BTreeMap, net::IpAddr};

pub use config::DetectConfig;
use serde::{Deserialize, Serialize};

use crate::decode::FlowRecord;

/// What kind of activity a finding reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Horizontal or vertical port scan (MITRE ATT&CK T1046, Network Service Discovery).
    PortScan,
    /// Data exfiltration (T1041 over C2 channel, T1048 over alternative protocol).
    Exfiltration,
    /// Command-and-control beaconing (T1071 application layer protocol, T1573 encrypted
    /// channel).
    Beaconing,
    /// Volumetric flood (T1498 network denial of service, T1499 endpoint denial of service).
    Volumetric,
}

impl Category {
    /// The MITRE ATT&CK technique id reported for this category.
    #[must_use]
    pub const fn mitre(self) -> &'static str {
        match self {
            Category::PortScan => "T1046",
            Category::Exfiltration => "T1048",
            Category::Beaconing => "T1071",
            Category::Volumetric => "T1498",
        }
    }
}

/// Severity, from the score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Score below 0.4.
    Low,
    /// 0.4 to 0.7.
    Medium,
    /// 0.7 to 0.9.
    High,
    /// 0.9 and above.
    Critical,
}

impl Severity {
    /// The severity band of a score in [0, 1].
    #[must_use]
    pub fn from_score(score: f64) -> Self {
        match score {
            s if s >= 0.9 => Severity::Critical,
            s if s >= 0.7 => Severity::High,
            s if s >= 0.4 => Severity::Medium,
            _ => Severity::Low,
        }
    }
}

/// Who a finding is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entities {
    /// The acting host (scanner, exfiltrating host, beaconing host, flood source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    /// The target (scanned host, exfiltration/C2 destination, flood victim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    /// Ports involved (destination ports), sorted, at most a few dozen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// One detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Kind of activity.
    pub category: Category,
    /// Variant within the category, e.g. `horizontal`, `vertical`, `trw`, `slow`.
    pub kind: String,
    /// MITRE ATT&CK technique id.
    pub mitre: String,
    /// Detector score in [0, 1] (before report modifiers).
    pub score: f64,
    /// Severity band of the score.
    pub severity: Severity,
    /// Hosts and ports.
    pub entities: Entities,
    /// Event time of the first evidence, Unix ms.
    pub first_seen_ms: u64,
    /// Event time of the last evidence, Unix ms.
    pub last_seen_ms: u64,
    /// Evidence in numbers: observed values, baselines, statistics, counts.
    pub evidence: BTreeMap<String, serde_json::Value>,
    /// True when counts come from sampled exports and are lower bounds.
    pub sampled_lower_bound: bool,
    /// One plain sentence saying why.
    pub summary: String,
}

impl Finding {
    /// A stable key for "the same finding": alerts are emitted once per key and updated
    /// when the score escalates.
    #[must_use]
    pub fn key(&self) -> String {
        format!(
            "{:?}/{}/{}/{}",
            self.category,
            self.kind,
            self.entities.src.map(|a| a.to_string()).unwrap_or_default(),
            self.entities.dst.map(|a| a.to_string()).unwrap_or_default()
        )
    }
}

/// A detector over one shard's flows.
pub trait Detector {
    /// Short name for counters (`scan`, `exfil`, `beacon`, `volume`).
    fn name(&self) -> &'static str;
    /// Takes one flow record. Records arrive roughly in event-time order; a record older
    /// than the last watermark minus the configured lateness may be ignored (and counted).
    /// Records come through an [`engine::Router`], which has dropped those with no
    /// internal end and those an allow rule covers, so detectors do not check again.
    fn observe(&mut self, record: &FlowRecord);
    /// Takes one record with what routing already learned about it ([`Sides`]), so that
    /// the detector need not test home networks or hash hosts to shards again. Must give
    /// the same result as [`observe`](Self::observe); the default simply calls it.
    fn observe_routed(&mut self, record: &FlowRecord, sides: Sides) {
        let _ = sides;
        self.observe(record);
    }
    /// Takes a run of records, in order, between two watermark steps: the same result
    /// as [`observe_routed`](Self::observe_routed) on each in turn (the default). A
    /// shard hands its detectors whole runs, one detector after another, so that a
    /// detector can look ahead in the run and start loading the state of the records to
    /// come while it works on the current one: once per-key state outgrows the caches,
    /// waiting on those loads one record at a time is most of a detector's cost.
    fn observe_batch(&mut self, batch: &[engine::Routed]) {
        for r in batch {
            self.observe_routed(&r.record, r.sides);
        }
    }
    /// Event time is known to have reached `watermark_ms`: close windows that end before it
    /// and push the findings they produce.
    fn advance(&mut self, watermark_ms: u64, out: &mut Vec<Finding>);
    /// End of input: close everything and push the remaining findings.
    fn finish(&mut self, out: &mut Vec<Finding>);
    /// Approximate bytes of state held (for the memory cap and metrics).
    fn state_bytes(&self) -> usize;
    /// Keys evicted because of the state cap.
    fn evictions(&self) -> u64;
}

/// What routing learned about a record, for the shard it is handed to: which ends are
/// inside the home networks, and on which ends this shard keeps state (the hosts that
/// hash to it; both, with one shard). Computed once per record by the
/// [`engine::Router`] instead of once per detector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(clippy::struct_excessive_bools, reason = "four independent facts")]
pub struct Sides {
    /// The source is inside the home networks.
    pub src_internal: bool,
    /// The destination is inside the home networks.
    pub dst_internal: bool,
    /// This shard owns the source (keeps state keyed on it).
    pub src_owned: bool,
    /// This shard owns the destination.
    pub dst_owned: bool,
}

/// Which shard a detector instance serves: `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardId {
    /// This shard.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

/// The detectors every shard runs: port scan, exfiltration, beaconing and volumetric.
///
/// With several shards, each detector keeps state only for the hosts it keys on that hash
/// to its own shard (`engine::host_shard`); the engine hands every record to the shards of
/// both its endpoints, so each key host sees all of its records in exactly one shard —
/// including external scanners and flood sources.
#[must_use]
pub fn standard_detectors(config: &DetectConfig, shard: ShardId) -> Vec<Box<dyn Detector + Send>> {
    let mut scan = ScanDetector::new(config);
    let mut exfil = ExfilDetector::new(config);
    let mut beacon = BeaconDetector::new(config);
    let mut volume = VolumeDetector::new(config);
    if shard.count > 1 {
        let owns = move |h: IpAddr| engine::host_shard(h, shard.count) == shard.index;
        scan.set_host_filter(Box::new(owns));
        exfil.set_host_filter(Box::new(owns));
        beacon.set_host_filter(Box::new(owns));
        volume.set_host_filter(Box::new(owns));
    }
    vec![
        Box::new(scan),
        Box::new(exfil),
        Box::new(beacon),
        Box::new(volume),
    ]
}

pub mod beacon;
pub mod common;
pub mod exfil;
pub mod lru;
pub mod scan;
pub mod seasonal;
pub mod sketch;
pub mod stats;
pub mod volume;

pub use beacon::BeaconDetector;
pub use exfil::ExfilDetector;
pub use scan::ScanDetector;
pub use volume::VolumeDetector;

#[cfg(test)]
mod tests;
