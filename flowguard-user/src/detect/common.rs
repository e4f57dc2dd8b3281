//! Pieces the four detectors share: the shard's host filter, prevalence of destinations,
//! finding construction and number formatting.

use std::{collections::BTreeMap, net::IpAddr};

use serde_json::Value;

use super::{Category, Entities, Finding, Severity, lru::BoundedMap, sketch};
use crate::decode::FlowRecord;

/// Decides whether this shard keys state on a host (see each detector's
/// `set_host_filter`). `None` (the default) accepts every host.
pub type HostFilter = Box<dyn Fn(IpAddr) -> bool + Send>;

/// Event time of a record: its end (records arrive ordered by it).
#[inline]
#[must_use]
pub fn event_ms(r: &FlowRecord) -> u64 {
    r.end_ms.max(r.start_ms)
}

/// Multicast, broadcast or unspecified: never a scan target, beacon peer or victim of
/// interest.
#[must_use]
pub fn is_group_or_unspecified(addr: IpAddr) -> bool {
    match addr.to_canonical() {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    }
}

/// An evidence number, rounded to 4 decimals so that findings compare and print cleanly.
#[must_use]
pub fn num(x: f64) -> Value {
    if x.is_finite() {
        let r = (x * 10_000.0).round() / 10_000.0;
        serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number)
    } else {
        Value::Null
    }
}

/// Human-readable bytes ("512.0 MB"), decimal units.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "display only")]
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// Human-readable duration ("4.2 h", "90 s").
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "display only")]
pub fn fmt_ms(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if s >= 7200.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// Builds a finding; the score is clamped to [0, 1] and the severity derived from it.
#[expect(
    clippy::too_many_arguments,
    reason = "a plain constructor of a plain struct"
)]
#[must_use]
pub fn finding(
    category: Category,
    kind: &str,
    score: f64,
    entities: Entities,
    first_seen_ms: u64,
    last_seen_ms: u64,
    evidence: BTreeMap<String, Value>,
    sampled_lower_bound: bool,
    summary: String,
) -> Finding {
    let score = (score.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
    Finding {
        category,
        kind: kind.to_owned(),
        mitre: category.mitre().to_owned(),
        score,
        severity: Severity::from_score(score),
        entities,
        first_seen_ms,
        last_seen_ms: last_seen_ms.max(first_seen_ms),
        evidence,
        sampled_lower_bound,
        summary,
    }
}

/// Score multiplier for findings built on sampled exports: their counts are lower
/// bounds and their shapes noisier, so confidence is lowered a little.
pub const SAMPLED_CONFIDENCE: f64 = 0.92;

/// Per-destination prevalence: how many distinct internal hosts talk to it, and when it
/// was first seen, as this shard sees it, plus what the pipeline fed in from all shards.
///
/// State is sharded by internal host, so a shard sees roughly 1/N of a destination's
/// clients. [`Prevalence::set_global`] lets the pipeline feed the merged count (the
/// maximum of fed and local is used). Byte cost per destination: about 90 bytes (slot
/// with a 17-byte address, 16-byte bitmap, first-seen time and fed count, plus index),
/// plus the fixed 128 KiB filter of recent pairs.
pub struct Prevalence {
    map: BoundedMap<IpAddr, PrevalenceEntry>,
    /// A direct-mapped filter of (host, destination) pairs counted lately: a pair's
    /// later records (most records) add nothing to the distinct count or to the first
    /// seen time (records arrive roughly in time order), so they skip the map lookup.
    /// 128 KiB, fixed; `RECENT_PAIRS` is a power of two, so a slot is a mask away. A
    /// busy site (2,000 workstations) keeps tens of thousands of pairs active at once,
    /// and going from 4,096 slots to 16,384 cut the instructions spent in the map by
    /// 30% (callgrind, busy bench dataset), with the same findings.
    recent: Box<[u64]>,
}

const RECENT_PAIRS: usize = 1 << 14;

#[derive(Clone, Copy, Debug, Default)]
struct PrevalenceEntry {
    first_seen_ms: u64,
    hosts: sketch::LinearCounter,
    fed: u32,
}

impl Prevalence {
    /// Tracks at most `cap` destinations.
    #[must_use]
    pub fn new(cap: usize) -> Self {
        Self {
            map: BoundedMap::new(cap),
            recent: vec![0; RECENT_PAIRS].into_boxed_slice(),
        }
    }

    /// Records that internal `host` talked to `dst` at `at_ms`.
    #[inline]
    pub fn observe(&mut self, dst: IpAddr, host: IpAddr, at_ms: u64) {
        self.observe_hashed(dst, sketch::addr_hash(dst), sketch::addr_hash(host), at_ms);
    }

    /// [`Prevalence::observe`] for a caller that already has both addresses' hashes:
    /// `dst_hash` and `host_hash` must be [`sketch::addr_hash`] of `dst` and of the host.
    #[inline]
    pub fn observe_hashed(&mut self, dst: IpAddr, dst_hash: u64, host_hash: u64, at_ms: u64) {
        let pair = sketch::mix64(dst_hash ^ host_hash.rotate_left(17)) | 1;
        #[expect(clippy::cast_possible_truncation, reason = "masked below RECENT_PAIRS")]
        let slot = &mut self.recent[pair as usize & (RECENT_PAIRS - 1)];
        if *slot == pair {
            return;
        }
        *slot = pair;
        self.count(dst, host_hash, at_ms);
    }

    /// The filter's miss path: counts the host for `dst` (kept out of line so that the
    /// common hit path inlines into the callers).
    #[inline(never)]
    fn count(&mut self, dst: IpAddr, host_hash: u64, at_ms: u64) {
        let e = self.map.get_or_insert_with(dst, || PrevalenceEntry {
            first_seen_ms: at_ms,
            ..PrevalenceEntry::default()
        });
        e.first_seen_ms = e.first_seen_ms.min(at_ms);
        e.hosts.insert_hash(host_hash);
    }

    /// Feeds the global count of internal hosts talking to `dst` (from all shards).
    pub fn set_global(&mut self, dst: IpAddr, hosts: usize) {
        let e = self.map.get_or_insert_with(dst, PrevalenceEntry::default);
        e.fed = u32::try_from(hosts).unwrap_or(u32::MAX);
    }

    /// Distinct internal hosts seen talking to `dst` (estimate; at least 1 once seen).
    #[must_use]
    pub fn hosts(&self, dst: IpAddr) -> f64 {
        self.map
            .get(&dst)
            .map_or(0.0, |e| e.hosts.count().round().max(f64::from(e.fed)))
    }

    /// When `dst` was first seen, if tracked.
    #[must_use]
    pub fn first_seen_ms(&self, dst: IpAddr) -> Option<u64> {
        self.map
            .get(&dst)
            .map(|e| e.first_seen_ms)
            .filter(|&t| t != 0)
    }

    /// This shard's local counts, for the pipeline to merge across shards.
    pub fn local_counts(&self) -> impl Iterator<Item = (IpAddr, f64)> + '_ {
        self.map.iter().map(|(k, e)| (*k, e.hosts.count().round()))
    }

    /// Bytes held.
    #[must_use]
    pub fn state_bytes(&self) -> usize {
        self.map.shallow_bytes() + self.recent.len() * size_of::<u64>()
    }

    /// Destinations evicted at the cap.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.map.evictions()
    }
}

/// The damping factor applied to beacon and exfiltration scores for a destination that
/// `hosts` internal hosts talk to: 1 for one host, falling linearly to 0.3 at
/// `prevalence_hosts` and beyond. Many hosts talking to one place in the same way is
/// what `SaaS` keepalives, NTP pools, CDNs and update services look like.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "small counts")]
pub fn prevalence_damping(hosts: f64, prevalence_hosts: usize) -> f64 {
    let p = prevalence_hosts.max(2) as f64;
    if hosts <= 1.0 {
        1.0
    } else if hosts >= p {
        0.3
    } else {
        1.0 - 0.7 * (hosts - 1.0) / (p - 1.0)
    }
}
