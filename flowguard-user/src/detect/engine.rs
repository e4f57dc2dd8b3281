//! Sharded detection: routing records to the shard of their internal host, and driving
//! each shard's detectors with an event-time watermark.
//!
//! A [`DetectShard`] owns one instance of every detector and is driven by one thread. Its
//! watermark is the latest flow end time it has seen minus the allowed lateness, advanced
//! in steps of [`WATERMARK_STEP_MS`]; windows therefore close on event time only, and the
//! same records in the same order give the same findings whether they come from a capture
//! file at full speed or from live collection.
//!
//! Offline (`flowguard analyze`), [`DetectEngine`] runs all shards on the calling thread.
//! Live (`flowguard run`), each shard runs on its own thread and workers send it batches
//! through bounded queues, one per (worker, shard) pair (`run.rs`).

use std::net::IpAddr;

use super::{DetectConfig, Detector, Finding, ShardId, Sides, config::Site};
use crate::decode::FlowRecord;

/// The watermark moves in steps of this much event time, so detectors are not asked to
/// close windows on every record.
pub const WATERMARK_STEP_MS: u64 = 1_000;

/// Records a shard collects before handing them to its detectors as one run
/// ([`Detector::observe_batch`]), unless the watermark moves first. 64 records of
/// [`Routed`] (about 7 KiB) stay in the first-level cache while four detectors read them
/// in turn, and give a detector room to load the state of records ahead.
pub const BATCH: usize = 64;

/// Builds one shard's detectors.
pub type DetectorFactory = fn(&DetectConfig, ShardId) -> Vec<Box<dyn Detector + Send>>;

/// Decides which shards see a record: those of both its endpoints (once, if the same),
/// or none when neither end is internal or an allow rule covers it. Each detector keeps
/// state only for the key hosts its shard owns (see `detect::standard_detectors`), so an
/// external scanner's probes to many internal hosts all meet in the scanner's shard.
///
/// Allow-listed records stop here, so the detectors behind a router never see them and
/// need not check again.
#[derive(Clone, Debug)]
pub struct Router {
    site: Site,
    num_shards: usize,
}

impl Router {
    /// Routes to `num_shards` shards (at least 1) by `config`'s site.
    #[must_use]
    pub fn new(config: &DetectConfig, num_shards: usize) -> Self {
        Self {
            site: Site::new(config),
            num_shards: num_shards.max(1),
        }
    }

    /// Where `record` goes, or `None` when no shard should see it.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "once per record, into the loops that route"
    )]
    #[must_use]
    pub fn route(&self, record: &FlowRecord) -> Option<Route> {
        let (src_internal, dst_internal) = self.site.classify(record)?;
        let (src_shard, dst_shard) = if self.num_shards <= 1 {
            (0, 0)
        } else {
            (
                host_shard(record.src_addr, self.num_shards),
                host_shard(record.dst_addr, self.num_shards),
            )
        };
        Some(Route {
            src_internal,
            dst_internal,
            src_shard,
            dst_shard,
        })
    }
}

/// Where a record goes: the shards of both its ends (once, if the same), and what each
/// of them is told about it ([`Sides`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    src_internal: bool,
    dst_internal: bool,
    src_shard: usize,
    dst_shard: usize,
}

impl Route {
    /// The shards that should see the record.
    #[inline]
    #[must_use]
    pub fn shards(&self) -> [Option<usize>; 2] {
        if self.src_shard == self.dst_shard {
            [Some(self.src_shard), None]
        } else {
            [Some(self.src_shard), Some(self.dst_shard)]
        }
    }

    /// What shard `shard` is told about the record.
    #[inline]
    #[must_use]
    pub fn sides(&self, shard: usize) -> Sides {
        Sides {
            src_internal: self.src_internal,
            dst_internal: self.dst_internal,
            src_owned: self.src_shard == shard,
            dst_owned: self.dst_shard == shard,
        }
    }
}

/// A record on its way to one shard, with what routing learned about it (the item of
/// the live queues from workers to shards).
#[derive(Clone, Copy, Debug)]
pub struct Routed {
    /// The record.
    pub record: FlowRecord,
    /// What the shard is told about it.
    pub sides: Sides,
}

/// The shard of a host: a stable hash of its address.
#[must_use]
pub fn host_shard(addr: IpAddr, num_shards: usize) -> usize {
    if num_shards <= 1 {
        return 0;
    }
    let words = flowguard_ebpf::exporter_words(&crate::capture::exporter_bytes(addr));
    let n = u32::try_from(num_shards).unwrap_or(u32::MAX);
    flowguard_ebpf::shard_of(flowguard_ebpf::shard_hash(words, 0x5eed), n) as usize
}

/// One shard's detectors and watermark.
///
/// Records fed one at a time ([`observe`](Self::observe)) wait in a run of at most
/// [`BATCH`] until the run is full or the watermark is about to move; the detectors then
/// take the run one detector after another. Detectors are independent of one another
/// and nothing is emitted between watermark steps, so this gives exactly the findings
/// of feeding every record to every detector at once.
pub struct DetectShard {
    detectors: Vec<Box<dyn Detector + Send>>,
    pending: Vec<Routed>,
    lateness_ms: u64,
    max_end_ms: u64,
    watermark_ms: u64,
    records: u64,
    late_records: u64,
}

impl std::fmt::Debug for DetectShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectShard")
            .field(
                "detectors",
                &self.detectors.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .field("watermark_ms", &self.watermark_ms)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

/// A shard's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    /// Records observed.
    pub records: u64,
    /// Records that ended before the watermark (still observed; detectors may ignore them).
    pub late_records: u64,
    /// Bytes of detector state.
    pub state_bytes: u64,
    /// Keys evicted by the state caps.
    pub evictions: u64,
    /// Current watermark, Unix ms.
    pub watermark_ms: u64,
}

impl DetectShard {
    /// Shard `shard` with the detectors `factory` builds.
    #[must_use]
    pub fn new(config: &DetectConfig, factory: DetectorFactory, shard: ShardId) -> Self {
        Self {
            detectors: factory(config, shard),
            pending: Vec::with_capacity(BATCH),
            lateness_ms: config.allowed_lateness_ms,
            max_end_ms: 0,
            watermark_ms: 0,
            records: 0,
            late_records: 0,
        }
    }

    /// Feeds one record, advancing the watermark (and pushing findings) when event time has
    /// moved on by a step.
    #[inline]
    pub fn observe(&mut self, record: &FlowRecord, sides: Sides, out: &mut Vec<Finding>) {
        self.records += 1;
        self.late_records += u64::from(record.end_ms < self.watermark_ms);
        self.pending.push(Routed {
            record: *record,
            sides,
        });
        if record.end_ms > self.max_end_ms {
            self.max_end_ms = record.end_ms;
            // Flushes the run first if the watermark moves.
            self.advance_to(self.max_end_ms.saturating_sub(self.lateness_ms), out);
        }
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Feeds a run of records without moving the watermark (the caller drives it with
    /// [`advance_to`](Self::advance_to), e.g. from several inputs).
    pub fn observe_batch(&mut self, batch: &[Routed]) {
        self.flush();
        self.records += batch.len() as u64;
        let watermark = self.watermark_ms;
        self.late_records += batch.iter().filter(|r| r.record.end_ms < watermark).count() as u64;
        for d in &mut self.detectors {
            d.observe_batch(batch);
        }
    }

    /// Hands the records waiting in the run to the detectors.
    #[inline(never)]
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        for d in &mut self.detectors {
            d.observe_batch(&self.pending);
        }
        self.pending.clear();
    }

    /// Moves the watermark to `target_ms` (rounded down to a step; never backwards) and lets
    /// the detectors close their windows.
    #[inline]
    pub fn advance_to(&mut self, target_ms: u64, out: &mut Vec<Finding>) {
        if target_ms >= self.watermark_ms + WATERMARK_STEP_MS {
            self.step_to(target_ms, out);
        }
    }

    /// [`advance_to`](Self::advance_to) once the watermark is known to move.
    #[inline(never)]
    fn step_to(&mut self, target_ms: u64, out: &mut Vec<Finding>) {
        // Records observed before this step are the detectors' before it closes anything.
        self.flush();
        self.watermark_ms = target_ms - target_ms % WATERMARK_STEP_MS;
        for d in &mut self.detectors {
            d.advance(self.watermark_ms, out);
        }
    }

    /// The allowed lateness this shard was configured with.
    #[must_use]
    pub fn lateness_ms(&self) -> u64 {
        self.lateness_ms
    }

    /// End of input.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        self.flush();
        for d in &mut self.detectors {
            d.finish(out);
        }
    }

    /// Counters. State bytes and evictions cover the records handed to the detectors
    /// (see [`flush`](Self::flush)); `records` counts every record observed.
    #[must_use]
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            records: self.records,
            late_records: self.late_records,
            state_bytes: self.detectors.iter().map(|d| d.state_bytes() as u64).sum(),
            evictions: self.detectors.iter().map(|d| d.evictions()).sum(),
            watermark_ms: self.watermark_ms,
        }
    }
}

/// All shards on one thread, for offline analysis.
#[derive(Debug)]
pub struct DetectEngine {
    router: Router,
    shards: Vec<DetectShard>,
    findings: Vec<Finding>,
    /// Records no shard took (external-only, or allow-listed).
    pub unrouted: u64,
}

impl DetectEngine {
    /// `num_shards` shards of `factory`'s detectors.
    #[must_use]
    pub fn new(config: &DetectConfig, num_shards: usize, factory: DetectorFactory) -> Self {
        let count = num_shards.max(1);
        let shards = (0..count)
            .map(|index| DetectShard::new(config, factory, ShardId { index, count }))
            .collect();
        Self {
            router: Router::new(config, count),
            shards,
            findings: Vec::new(),
            unrouted: 0,
        }
    }

    /// Routes and observes one record.
    pub fn observe(&mut self, record: &FlowRecord) {
        let Some(route) = self.router.route(record) else {
            self.unrouted += 1;
            return;
        };
        let (a, b) = (route.src_shard, route.dst_shard);
        self.shards[a].observe(record, route.sides(a), &mut self.findings);
        if b != a {
            self.shards[b].observe(record, route.sides(b), &mut self.findings);
        }
    }

    /// Every shard's counters so far, after handing the detectors every record observed.
    #[must_use]
    pub fn stats(&mut self) -> Vec<ShardStats> {
        for s in &mut self.shards {
            s.flush();
        }
        self.shards.iter().map(DetectShard::stats).collect()
    }

    /// Closes every window and returns all findings, in emission order.
    #[must_use]
    pub fn finish(mut self) -> (Vec<Finding>, Vec<ShardStats>) {
        for s in &mut self.shards {
            s.finish(&mut self.findings);
        }
        let stats = self.shards.iter().map(DetectShard::stats).collect();
        (self.findings, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts records per source and reports every source with ≥ 3 records at the watermark.
    #[derive(Default)]
    struct Counting {
        seen: std::collections::BTreeMap<IpAddr, (u64, u64)>,
        watermarks: Vec<u64>,
    }

    impl Detector for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn observe(&mut self, r: &FlowRecord) {
            let e = self.seen.entry(r.src_addr).or_default();
            e.0 += 1;
            e.1 = e.1.max(r.end_ms);
        }
        fn advance(&mut self, watermark_ms: u64, out: &mut Vec<Finding>) {
            self.watermarks.push(watermark_ms);
            let done: Vec<IpAddr> = self
                .seen
                .iter()
                .filter(|(_, (n, end))| *n >= 3 && *end < watermark_ms)
                .map(|(a, _)| *a)
                .collect();
            for a in done {
                self.seen.remove(&a);
                out.push(Finding {
                    category: super::super::Category::PortScan,
                    kind: "test".into(),
                    mitre: "T1046".into(),
                    score: 1.0,
                    severity: super::super::Severity::Critical,
                    entities: super::super::Entities {
                        src: Some(a),
                        ..Default::default()
                    },
                    first_seen_ms: 0,
                    last_seen_ms: watermark_ms,
                    evidence: std::collections::BTreeMap::new(),
                    sampled_lower_bound: false,
                    summary: String::new(),
                });
            }
        }
        fn finish(&mut self, out: &mut Vec<Finding>) {
            self.advance(u64::MAX, out);
        }
        fn state_bytes(&self) -> usize {
            self.seen.len() * 64
        }
        fn evictions(&self) -> u64 {
            0
        }
    }

    fn factory(_: &DetectConfig, _: ShardId) -> Vec<Box<dyn Detector + Send>> {
        vec![Box::new(Counting::default())]
    }

    fn rec(src: &str, dst: &str, end_ms: u64) -> FlowRecord {
        FlowRecord {
            src_addr: src.parse().unwrap(),
            dst_addr: dst.parse().unwrap(),
            start_ms: end_ms,
            end_ms,
            ..FlowRecord::default()
        }
    }

    #[test]
    fn routing_follows_internal_hosts_and_skips_external_only_flows() {
        let c = DetectConfig::default();
        let route = |r: &FlowRecord, n: usize| {
            Router::new(&c, n)
                .route(r)
                .map_or([None, None], |route| route.shards())
        };
        assert_eq!(route(&rec("8.8.8.8", "1.1.1.1", 0), 4), [None, None]);
        let shard = |a: &str| host_shard(a.parse().unwrap(), 4);
        let [a, b] = route(&rec("10.0.0.1", "8.8.8.8", 0), 4);
        assert_eq!(a, Some(shard("10.0.0.1")));
        assert_eq!(
            b.or(a),
            Some(shard("8.8.8.8"))
                .filter(|s| *s != shard("10.0.0.1"))
                .or(a)
        );
        let [a, _] = route(&rec("8.8.8.8", "10.0.0.2", 0), 4);
        assert_eq!(
            a,
            Some(shard("8.8.8.8")),
            "an inbound record reaches the external source's shard"
        );
        assert_eq!(route(&rec("8.8.8.8", "10.0.0.2", 0), 1), [Some(0), None]);
    }

    #[test]
    fn windows_close_on_event_time_not_on_arrival() {
        let config = DetectConfig {
            allowed_lateness_ms: 10_000,
            ..DetectConfig::default()
        };
        let mut e = DetectEngine::new(&config, 1, factory);
        let base = 1_000_000_000u64;
        for i in 0..3 {
            e.observe(&rec("10.0.0.1", "8.8.8.8", base + i * 1000));
        }
        // Nothing closes until event time passes the lateness allowance.
        e.observe(&rec("10.0.0.9", "8.8.8.8", base + 5_000));
        assert!(e.findings.is_empty());
        e.observe(&rec("10.0.0.9", "8.8.8.8", base + 30_000));
        let (findings, stats) = e.finish();
        assert_eq!(
            findings
                .iter()
                .filter(|f| f.entities.src == Some("10.0.0.1".parse().unwrap()))
                .count(),
            1
        );
        assert_eq!(stats.iter().map(|s| s.records).sum::<u64>(), 5);

        // The same records, replayed, give the same findings.
        let mut again = DetectEngine::new(&config, 1, factory);
        for i in 0..3 {
            again.observe(&rec("10.0.0.1", "8.8.8.8", base + i * 1000));
        }
        again.observe(&rec("10.0.0.9", "8.8.8.8", base + 5_000));
        again.observe(&rec("10.0.0.9", "8.8.8.8", base + 30_000));
        assert_eq!(again.finish().0, findings);
    }
}
