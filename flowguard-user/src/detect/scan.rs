//! Port scan detection (MITRE ATT&CK T1046).
//!
//! State is keyed by the scanning source (internal or external). Three tests run on it:
//!
//! - **Horizontal**: failed attempts to at least `horizontal_hosts` (Zeek: 25) distinct
//!   destinations on one port.
//! - **Vertical**: failed attempts to at least `vertical_ports` (Zeek: 15) distinct ports
//!   on one destination.
//!
//!   Both are counted over the sliding `window_ms` (5 min) and the slow window
//!   `slow_window_ms` (1 h, which catches one probe every 30 s). The window that crossed
//!   is in the evidence.
//! - **Threshold Random Walk** (Jung, Paxson, Berger, Balakrishnan, "Fast Portscan
//!   Detection Using Sequential Hypothesis Testing", IEEE S&P 2004): each first contact of
//!   a new destination moves a log-likelihood ratio by ln((1−θ1)/(1−θ0)) on failure and
//!   ln(θ1/θ0) on success; crossing ln(β/α) declares a scanner. With the defaults
//!   (θ0 = 0.8, θ1 = 0.2, α = 0.01, β = 0.99) that is 4 consecutive failures to distinct
//!   hosts. The walk is floored at ln((1−β)/(1−α)) (continuous monitoring) and restarts
//!   after `slow_window_ms` of silence.
//!
//! A *failed attempt* is a TCP flow with SYN and no ACK (`tcp_flags & 0x12 == 0x02`), a
//! tiny TCP flow without ACK (≤ 2 packets, ≤ 120 bytes: FIN/NULL/Xmas probes; bare RSTs
//! excluded), or an ICMP destination-unreachable (ICMP type 3, ICMPv6 type 1) sent back
//! to the source. Tiny UDP flows to non-ephemeral ports and ICMP echo requests also count
//! as probes for the horizontal/vertical counts (UDP and ping sweeps), but not for TRW,
//! which needs a clear failure. A success is a TCP flow with ACK.
//!
//! Only sources with at least one failed attempt get state, so ordinary clients cost
//! nothing. Per source the most recent [`EXACT_ATTEMPTS`] distinct (destination, port)
//! attempts are kept exactly with their times (for the window counts), and the episode's
//! distinct destinations and ports in [`DistinctCounter`]s (exact to 32, then
//! `HyperLogLog`). Byte cost per source: ~250 bytes fixed (slot, index, TRW filter,
//! counters) + 28 bytes per kept attempt (≤ 1.4 kB) + ≤ 2 × 256 bytes of sketch, so
//! ≤ ~2 kB for a heavy scanner and ~300 bytes for a host with one failure.
//!
//! Sampling: on sampled exports (interval N > 1) a scan probe of one packet is seen with
//! probability about 1/N, so observed distinct counts are lower bounds. The tests then
//! use observed × N as the estimate, but only once at least `sampled_min_distinct` targets
//! were actually observed; findings set `sampled_lower_bound` and score lower.
//!
//! Sharding: scans of internal hosts by an external source are spread over the shards
//! of the targets. Feed the scan detector by source (see [`ScanDetector::key_host`])
//! for exact counts; otherwise each shard sees a share of the targets.

#![allow(
    clippy::doc_markdown,
    reason = "protocol names (ICMPv6) are prose, not code"
)]
#![allow(
    clippy::too_many_lines,
    reason = "one scoring pass reads best in one piece"
)]
#![allow(
    clippy::struct_excessive_bools,
    reason = "per-kind flags, not a state machine"
)]
#![allow(
    clippy::needless_range_loop,
    reason = "kind indexes several parallel arrays"
)]
#![allow(
    clippy::similar_names,
    reason = "h_/v_ pairs mirror horizontal/vertical"
)]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "statistics over counts, times and bytes: f64/f32 precision is ample and every narrowing cast is of a clamped or rounded value"
)]

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use super::{
    Category, Detector, Entities, Finding, Sides,
    common::{self, HostFilter, SAMPLED_CONFIDENCE, num},
    config::{DetectConfig, ScanConfig},
    lru::{BoundedMap, SlotHints},
    sketch::{DistinctCounter, addr_hash, mix64},
};
use crate::decode::FlowRecord;

/// Distinct (destination, port) attempts kept exactly, with their times, per source.
pub const EXACT_ATTEMPTS: usize = 48;
const CONTACT_FILTER: usize = 8;
/// log2 of the bits of [`ScanDetector::stateful`].
const STATEFUL_BITS: u32 = 16;
/// Words of [`ScanDetector::stateful`] (64 bits each).
const STATEFUL_WORDS: usize = 1 << (STATEFUL_BITS - 6);
/// log2 of the buckets of [`ScanDetector::hints`].
const HINT_BITS: u32 = 13;

const HORIZONTAL: usize = 0;
const VERTICAL: usize = 1;
const TRW: usize = 2;
const KIND_NAMES: [&str; 3] = ["horizontal", "vertical", "trw"];

#[derive(Clone, Copy, Debug)]
struct Attempt {
    dst: IpAddr,
    /// Low half of [`addr_hash`] of `dst`: the scans over the kept attempts compare this
    /// first, and the address only when it matches.
    dst_tag: u32,
    port: u16,
    /// Event time, seconds since the epoch.
    t_s: u32,
}

#[derive(Debug, Default)]
struct Source {
    attempts: Vec<Attempt>,
    /// Low 32 bits of the hashes of the last few distinct destinations (TRW counts only
    /// first contacts).
    contacts: [u32; CONTACT_FILTER],
    contact_pos: u8,
    llr: f32,
    trw_failures: u32,
    failed: u32,
    probes: u32,
    first_ms: u64,
    last_ms: u64,
    max_interval: u32,
    dsts: DistinctCounter,
    ports: DistinctCounter,
    emitted: [f32; 3],
    crossed: [bool; 3],
    pending: bool,
    h_port: u16,
    h_window_ms: u64,
    v_dst: Option<IpAddr>,
    v_window_ms: u64,
    /// Whether anything a score reads changed since the last sweep scored this source
    /// (while false, the sweep's scores would equal the ones it last compared).
    rescore: bool,
}

impl Source {
    fn heap_bytes(&self) -> usize {
        self.attempts.capacity() * size_of::<Attempt>()
            + self.dsts.heap_bytes()
            + self.ports.heap_bytes()
    }

    /// A success to `dst` at `now_ms`: a first contact moves the walk down by
    /// `llr_success`, floored at `llr_lower` (where the failure run restarts).
    #[inline]
    fn success(&mut self, dst: IpAddr, now_ms: u64, llr_success: f64, llr_lower: f64) {
        if self.first_contact(addr_hash(dst)) {
            #[expect(clippy::cast_possible_truncation, reason = "f32 state")]
            let llr = (f64::from(self.llr) + llr_success).max(llr_lower) as f32;
            self.llr = llr;
            if f64::from(llr) <= llr_lower && self.trw_failures != 0 {
                self.trw_failures = 0;
                self.rescore = true;
            }
        }
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// First contact of the destination with address hash `dst_hash` ([`addr_hash`])
    /// within the filter; remembers it.
    fn first_contact(&mut self, dst_hash: u64) -> bool {
        #[expect(clippy::cast_possible_truncation, reason = "low half of a hash")]
        let h = dst_hash as u32 | 1;
        if self.contacts.contains(&h) {
            return false;
        }
        self.contacts[usize::from(self.contact_pos) % CONTACT_FILTER] = h;
        self.contact_pos = self.contact_pos.wrapping_add(1);
        true
    }
}

/// What one record says about a source.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A failed attempt (counts for TRW and the distinct counts).
    Failed,
    /// A probe of unknown outcome (UDP, ping): distinct counts only.
    Probe,
    /// An established TCP connection.
    Success,
}

/// The port scan detector; see the module docs.
pub struct ScanDetector {
    config: DetectConfig,
    sources: BoundedMap<IpAddr, Source>,
    /// Where each source was last found in `sources`, by [`source_hash`]: a source with
    /// state is then found with one key comparison instead of hashing its address again
    /// for the index. 32 KiB, fixed.
    hints: SlotHints,
    /// One bit per address-hash bucket ([`may_have_state`]), set for every source given
    /// state and rebuilt from the map at each sweep: a clear bit proves that a source has
    /// no state, so the successes of ordinary clients (most records) skip the map lookup.
    /// A bit left set by an eviction only costs a lookup. 8 KiB, fixed.
    stateful: Box<[u64]>,
    pending: Vec<IpAddr>,
    filter: Option<HostFilter>,
    llr_fail: f64,
    llr_success: f64,
    llr_upper: f64,
    llr_lower: f64,
    watermark_ms: u64,
    next_sweep_ms: u64,
    late: u64,
}

impl ScanDetector {
    /// A detector with `config`'s thresholds and caps.
    #[must_use]
    pub fn new(config: &DetectConfig) -> Self {
        let s = &config.scan;
        let theta0 = s.trw_theta0.clamp(1e-6, 1.0 - 1e-6);
        let theta1 = s.trw_theta1.clamp(1e-6, 1.0 - 1e-6);
        let alpha = s.trw_alpha.clamp(1e-9, 0.5);
        let beta = s.trw_beta.clamp(0.5, 1.0 - 1e-9);
        Self {
            config: config.clone(),
            sources: BoundedMap::new(config.max_keys_per_detector),
            hints: SlotHints::new(HINT_BITS),
            stateful: vec![0; STATEFUL_WORDS].into_boxed_slice(),
            pending: Vec::new(),
            filter: None,
            llr_fail: ((1.0 - theta1) / (1.0 - theta0)).ln(),
            llr_success: (theta1 / theta0).ln(),
            llr_upper: (beta / alpha).ln(),
            llr_lower: ((1.0 - beta) / (1.0 - alpha)).ln(),
            watermark_ms: 0,
            next_sweep_ms: 0,
            late: 0,
        }
    }

    /// Only sources for which `filter` returns true get state (for a shard that owns a
    /// subset of hosts). Default: every source.
    pub fn set_host_filter(&mut self, filter: HostFilter) {
        self.filter = Some(filter);
    }

    /// The host this detector keys a record on: the scanning source (for an ICMP
    /// unreachable, the destination it is sent back to).
    #[must_use]
    pub fn key_host(record: &FlowRecord) -> IpAddr {
        if is_unreachable(record) {
            record.dst_addr
        } else {
            record.src_addr
        }
    }

    /// Records ignored because they arrived later than the allowed lateness.
    #[must_use]
    pub fn late_records(&self) -> u64 {
        self.late
    }

    fn scan_config(&self) -> &ScanConfig {
        &self.config.scan
    }

    /// What `r` says, and about whom: `(reversed, outcome)`, where the source is
    /// `dst_addr` and the target `src_addr` when `reversed` (an ICMP unreachable sent back
    /// to the prober), else the other way round. The targeted port is `dst_port` for TCP
    /// and UDP, 0 for ICMP. Only two bytes come back, so the addresses are read where they
    /// are needed.
    #[inline(always)]
    #[expect(clippy::inline_always, reason = "once per record, into `observe_if`")]
    #[expect(
        clippy::needless_bitwise_bool,
        reason = "cheap tests made together, so that no branch depends on one"
    )]
    fn classify(r: &FlowRecord) -> Option<(bool, Outcome)> {
        match r.protocol {
            6 => {
                let f = r.tcp_flags;
                let tiny = r.raw_packets <= 2 && r.raw_bytes <= 120;
                let ack = f & 0x10 != 0;
                let bare_rst = f & 0x04 != 0 && f.trailing_zeros() >= 2;
                if f & 0x12 == 0x02 || (!ack && tiny && !bare_rst) {
                    Some((false, Outcome::Failed))
                } else if ack {
                    Some((false, Outcome::Success))
                } else {
                    None
                }
            }
            17 => {
                // A reply from a service port, or a symmetric exchange between two service
                // ports (NTP 123↔123, IKE 500↔500): a server answering, not probing.
                // The cheap tests all made, without a branch on each (which of them
                // fails varies from record to record).
                let response =
                    (r.src_port < 1024) & ((r.dst_port >= 1024) | (r.dst_port == r.src_port));
                ((r.raw_packets <= 2) & (r.raw_bytes <= 240) & !response & (r.dst_port < 32_768)
                    && !common::is_group_or_unspecified(r.dst_addr))
                .then_some((false, Outcome::Probe))
            }
            1 | 58 if is_unreachable(r) => Some((true, Outcome::Failed)),
            1 | 58 => {
                let echo = if r.protocol == 1 { 8 } else { 128 };
                (r.icmp_type_code >> 8 == echo && !common::is_group_or_unspecified(r.dst_addr))
                    .then_some((false, Outcome::Probe))
            }
            _ => None,
        }
    }

    /// Counts of kept attempts on `port` (when `horizontal`) and to `dst` (when
    /// `vertical`), within the fast and slow windows ending at `now_s`; zero for a test
    /// not asked for (one already crossed, whose counts nothing reads).
    fn window_counts(
        src: &Source,
        now_s: u32,
        fast_s: u32,
        (port, horizontal): (u16, bool),
        (dst, vertical): (IpAddr, bool),
    ) -> [u32; 4] {
        let fast_from = now_s.saturating_sub(fast_s);
        let mut c = [0u32; 4];
        if horizontal {
            for a in &src.attempts {
                if a.port == port {
                    c[0] += u32::from(a.t_s >= fast_from);
                    c[1] += 1;
                }
            }
        }
        if vertical {
            let dst_tag = tag(addr_hash(dst));
            for a in &src.attempts {
                if a.dst_tag == dst_tag && a.dst == dst {
                    c[2] += u32::from(a.t_s >= fast_from);
                    c[3] += 1;
                }
            }
        }
        c
    }

    fn estimate(&self, observed: u32, interval: u32) -> f64 {
        estimate(observed, interval, self.scan_config().sampled_min_distinct)
    }

    // Kept out of `observe`: most records are successes, whose path stays short.
    #[inline(never)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "seconds since the epoch fit u32 until 2106"
    )]
    fn record_attempt(
        &mut self,
        key: IpAddr,
        dst: IpAddr,
        port: u16,
        outcome: Outcome,
        r: &FlowRecord,
    ) {
        let now_ms = common::event_ms(r);
        let now_s = (now_ms / 1000) as u32;
        let cfg = &self.config.scan;
        let slow_s = (cfg.slow_window_ms / 1000).max(1) as u32;
        let fast_s = (cfg.window_ms / 1000).max(1) as u32;
        let (fast_ms, slow_ms) = (cfg.window_ms, cfg.slow_window_ms);
        let h_need = cfg.horizontal_hosts as f64;
        let v_need = cfg.vertical_ports as f64;
        let min_distinct = cfg.sampled_min_distinct;
        let (llr_fail, llr_upper, llr_lower) = (self.llr_fail, self.llr_upper, self.llr_lower);
        let mut created = false;
        // A new source is marked recently used, as an existing one is by the lookup.
        let hash = source_hash(key);
        let slot = match self.hints.get(hash) {
            Some(slot) if self.sources.holds(slot, &key) => slot,
            _ => {
                let (slot, _) = self.sources.get_or_insert_touched_slot(key, || {
                    created = true;
                    Source::default()
                });
                self.hints.set(hash, slot);
                slot
            }
        };
        if created {
            let (word, bit) = stateful_bit(hash);
            self.stateful[word] |= bit;
        }
        let src = self.sources.slot_mut(slot);
        if src.last_ms != 0 && now_ms > src.last_ms + slow_ms {
            // Silence for a whole slow window: a new episode.
            *src = Source::default();
        }
        src.rescore = true;
        if src.first_ms == 0 {
            src.first_ms = now_ms;
        }
        src.first_ms = src.first_ms.min(now_ms);
        src.last_ms = src.last_ms.max(now_ms);
        src.max_interval = src.max_interval.max(r.sampling_interval);
        src.probes += 1;
        let dst_hash = addr_hash(dst);
        let dst_tag = tag(dst_hash);
        src.dsts.insert_hash(dst_hash);
        src.ports.insert_hash(mix64(u64::from(port) | 0x1_0000));
        if let Some(a) = src
            .attempts
            .iter_mut()
            .find(|a| a.dst_tag == dst_tag && a.port == port && a.dst == dst)
        {
            a.t_s = a.t_s.max(now_s);
        } else {
            if src.attempts.len() >= EXACT_ATTEMPTS {
                // Attempts older than the slow window go; if none is, the oldest one (the
                // first of equally old ones). One pass finds both: there is an attempt to
                // drop exactly when the oldest is older than the window.
                let from = now_s.saturating_sub(slow_s);
                let (mut oldest, mut oldest_s) = (0, src.attempts[0].t_s);
                for (i, a) in src.attempts.iter().enumerate().skip(1) {
                    if a.t_s < oldest_s {
                        (oldest, oldest_s) = (i, a.t_s);
                    }
                }
                if oldest_s < from {
                    src.attempts.retain(|a| a.t_s >= from);
                } else {
                    src.attempts.swap_remove(oldest);
                }
            }
            src.attempts.push(Attempt {
                dst,
                dst_tag,
                port,
                t_s: now_s,
            });
        }
        let mut newly = false;
        if outcome == Outcome::Failed {
            src.failed += 1;
            if src.first_contact(dst_hash) {
                src.trw_failures += 1;
                src.llr = (f64::from(src.llr) + llr_fail) as f32;
                if f64::from(src.llr) >= llr_upper && !src.crossed[TRW] {
                    src.crossed[TRW] = true;
                    newly = true;
                }
                src.llr = (f64::from(src.llr).clamp(llr_lower, llr_upper + 20.0)) as f32;
            }
        }
        let crossed = src.crossed;
        let interval = src.max_interval;
        // No count can exceed the attempts kept, so a source with too few of them for a
        // test to cross (most sources: a workstation's DNS and NTP) skips its count.
        let reach = estimate(src.attempts.len() as u32, interval, min_distinct);
        let c = Self::window_counts(
            src,
            now_s,
            fast_s,
            (port, !crossed[HORIZONTAL] && reach >= h_need),
            (dst, !crossed[VERTICAL] && reach >= v_need),
        );
        let (h_fast, h_slow, v_fast, v_slow) = (c[0], c[1], c[2], c[3]);
        let h_fast_hit = estimate(h_fast, interval, min_distinct) >= h_need;
        let v_fast_hit = estimate(v_fast, interval, min_distinct) >= v_need;
        let h_hit = !crossed[HORIZONTAL]
            && (h_fast_hit || estimate(h_slow, interval, min_distinct) >= h_need);
        let v_hit = !crossed[VERTICAL]
            && (v_fast_hit || estimate(v_slow, interval, min_distinct) >= v_need);
        if h_hit {
            src.crossed[HORIZONTAL] = true;
            src.h_port = port;
            src.h_window_ms = if h_fast_hit { fast_ms } else { slow_ms };
            newly = true;
        }
        if v_hit {
            src.crossed[VERTICAL] = true;
            src.v_dst = Some(dst);
            src.v_window_ms = if v_fast_hit { fast_ms } else { slow_ms };
            newly = true;
        }
        if newly && !src.pending {
            src.pending = true;
            self.pending.push(key);
        }
    }

    /// A success of source `key` whose bit in [`ScanDetector::stateful`] is set. Out of
    /// line, like [`Self::record_attempt`], so that `observe` stays small for the records
    /// that stop at the filter.
    #[inline(never)]
    fn record_success(&mut self, key: IpAddr, hash: u64, dst: IpAddr, now_ms: u64) {
        let slot = match self.hints.get(hash) {
            Some(slot) if self.sources.holds(slot, &key) => slot,
            _ => {
                let Some((slot, _)) = self.sources.get_mut_slot(&key) else {
                    return;
                };
                self.hints.set(hash, slot);
                slot
            }
        };
        let (llr_success, llr_lower) = (self.llr_success, self.llr_lower);
        self.sources
            .slot_mut(slot)
            .success(dst, now_ms, llr_success, llr_lower);
    }

    /// The score of `kind` for `src` as its state stands.
    fn score(&self, src: &Source, kind: usize) -> f64 {
        let cfg = self.scan_config();
        let base = match kind {
            HORIZONTAL | VERTICAL => {
                let (n, need) = self.kind_count(src, kind);
                0.45 + 0.45 * (1.0 - need / n.max(need))
            }
            _ => 0.45 + 0.05 * f64::from(src.trw_failures.saturating_sub(4).min(5)),
        };
        let volume = 0.1 * (f64::from(src.failed) / 100.0).min(1.0);
        let _ = cfg;
        let s = base + volume;
        if src.max_interval > 1 {
            s * SAMPLED_CONFIDENCE
        } else {
            s
        }
    }

    /// (estimated distinct count, threshold) for a horizontal or vertical finding.
    fn kind_count(&self, src: &Source, kind: usize) -> (f64, f64) {
        let cfg = self.scan_config();
        if kind == HORIZONTAL {
            let observed =
                u32::try_from(src.attempts.iter().filter(|a| a.port == src.h_port).count())
                    .unwrap_or(u32::MAX);
            let mut n = self.estimate(observed, src.max_interval);
            if src.ports.count() <= 1.5 {
                // One port only: every distinct destination of the episode is on it.
                n = n.max(self.estimate_f(src.dsts.count(), src.max_interval));
            }
            (n, cfg.horizontal_hosts as f64)
        } else {
            let observed = u32::try_from(
                src.attempts
                    .iter()
                    .filter(|a| Some(a.dst) == src.v_dst)
                    .count(),
            )
            .unwrap_or(u32::MAX);
            let mut n = self.estimate(observed, src.max_interval);
            if src.dsts.count() <= 1.5 {
                n = n.max(self.estimate_f(src.ports.count(), src.max_interval));
            }
            (n, cfg.vertical_ports as f64)
        }
    }

    fn estimate_f(&self, observed: f64, interval: u32) -> f64 {
        if interval > 1 && observed >= self.scan_config().sampled_min_distinct as f64 {
            observed * f64::from(interval)
        } else {
            observed
        }
    }

    fn build(&self, key: IpAddr, src: &Source, kind: usize, score: f64) -> Finding {
        let sampled = src.max_interval > 1;
        let mut ev = BTreeMap::new();
        ev.insert("failed_attempts".into(), num(f64::from(src.failed)));
        ev.insert("probes".into(), num(f64::from(src.probes)));
        ev.insert(
            "distinct_dsts_observed".into(),
            num(src.dsts.count().round()),
        );
        ev.insert(
            "distinct_ports_observed".into(),
            num(src.ports.count().round()),
        );
        ev.insert(
            "distinct_counts_exact".into(),
            (src.dsts.is_exact() && src.ports.is_exact()).into(),
        );
        ev.insert("trw_log_likelihood_ratio".into(), num(f64::from(src.llr)));
        ev.insert("trw_threshold".into(), num(self.llr_upper));
        ev.insert(
            "trw_consecutive_failures".into(),
            num(f64::from(src.trw_failures)),
        );
        ev.insert("sampling_interval".into(), num(f64::from(src.max_interval)));
        let at_least = if sampled { "at least " } else { "" };
        let mut entities = Entities {
            src: Some(key),
            dst: None,
            ports: Vec::new(),
        };
        let summary;
        match kind {
            HORIZONTAL => {
                let observed = src.attempts.iter().filter(|a| a.port == src.h_port).count();
                let (est, need) = self.kind_count(src, kind);
                entities.ports = vec![src.h_port];
                ev.insert("port".into(), src.h_port.into());
                ev.insert("distinct_dsts_in_window".into(), num(observed as f64));
                ev.insert("estimated_distinct_dsts".into(), num(est.round()));
                ev.insert("threshold".into(), num(need));
                ev.insert("window_ms".into(), src.h_window_ms.into());
                let mut s = format!(
                    "{key} made failed connection attempts to {at_least}{} distinct hosts on port {} within {}",
                    (est.round() as u64).max(observed as u64),
                    src.h_port,
                    common::fmt_ms(src.h_window_ms),
                );
                if sampled {
                    let _ = write!(
                        s,
                        " ({observed} observed at 1:{} sampling)",
                        src.max_interval
                    );
                }
                s.push_str(", a horizontal port scan.");
                summary = s;
            }
            VERTICAL => {
                let dst = src.v_dst;
                let mut ports: Vec<u16> = src
                    .attempts
                    .iter()
                    .filter(|a| Some(a.dst) == dst)
                    .map(|a| a.port)
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                let observed = ports.len();
                let (est, need) = self.kind_count(src, kind);
                entities.dst = dst;
                entities.ports = ports;
                ev.insert("distinct_ports_in_window".into(), num(observed as f64));
                ev.insert("estimated_distinct_ports".into(), num(est.round()));
                ev.insert("threshold".into(), num(need));
                ev.insert("window_ms".into(), src.v_window_ms.into());
                let mut s = format!(
                    "{key} probed {at_least}{} distinct ports on {} within {}",
                    (est.round() as u64).max(observed as u64),
                    dst.map(|d| d.to_string()).unwrap_or_default(),
                    common::fmt_ms(src.v_window_ms),
                );
                if sampled {
                    let _ = write!(
                        s,
                        " ({observed} observed at 1:{} sampling)",
                        src.max_interval
                    );
                }
                s.push_str(", a vertical port scan.");
                summary = s;
            }
            _ => {
                let mut ports: Vec<u16> = src.attempts.iter().map(|a| a.port).collect();
                ports.sort_unstable();
                ports.dedup();
                ports.truncate(32);
                entities.ports = ports;
                summary = format!(
                    "{key} failed to connect to {at_least}{} distinct hosts in a row, which the threshold random walk test attributes to a scanner (likelihood ratio {:.0} against a threshold of {:.0}).",
                    src.trw_failures,
                    f64::from(src.llr).exp(),
                    self.llr_upper.exp()
                );
            }
        }
        common::finding(
            Category::PortScan,
            KIND_NAMES[kind],
            score,
            entities,
            src.first_ms,
            src.last_ms,
            ev,
            sampled,
            summary,
        )
    }

    fn emit_pending(&mut self, out: &mut Vec<Finding>) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_unstable();
        pending.dedup();
        for key in &pending {
            let Some(src) = self.sources.get(key) else {
                continue;
            };
            let mut emitted = src.emitted;
            for kind in 0..3 {
                if src.crossed[kind] && emitted[kind] == 0.0 {
                    let score = self.score(src, kind);
                    out.push(self.build(*key, src, kind, score));
                    #[expect(clippy::cast_possible_truncation, reason = "f32 state")]
                    {
                        emitted[kind] = score.max(1e-3) as f32;
                    }
                }
            }
            if let Some(src) = self.sources.get_mut(key) {
                src.emitted = emitted;
                src.pending = false;
            }
        }
        pending.clear();
        self.pending = pending;
    }

    /// Re-emits escalated findings; ends quiet episodes (with a last update when they
    /// escalated) when `all` or when silent for the slow window.
    fn sweep(&mut self, now_ms: u64, all: bool, out: &mut Vec<Finding>) {
        let slow = self.scan_config().slow_window_ms;
        let mut keys: Vec<IpAddr> = Vec::new();
        let mut ended: Vec<IpAddr> = Vec::new();
        for (k, s) in self.sources.iter() {
            let over = all || s.last_ms + slow < now_ms;
            if over {
                ended.push(*k);
            }
            // A source whose state did not change since the last sweep scores as it
            // did then, and nothing it emitted can escalate.
            if s.rescore && s.emitted.iter().any(|&e| e > 0.0) {
                keys.push(*k);
            }
        }
        keys.sort_unstable();
        for key in keys {
            let Some(src) = self.sources.get(&key) else {
                continue;
            };
            let mut emitted = src.emitted;
            for kind in 0..3 {
                if emitted[kind] > 0.0 {
                    let score = self.score(src, kind);
                    if score >= f64::from(emitted[kind]) + 0.1 {
                        out.push(self.build(key, src, kind, score));
                        #[expect(clippy::cast_possible_truncation, reason = "f32 state")]
                        {
                            emitted[kind] = score as f32;
                        }
                    }
                }
            }
            if let Some(src) = self.sources.get_mut(&key) {
                src.emitted = emitted;
                src.rescore = false;
            }
        }
        if !ended.is_empty() {
            for k in ended {
                self.sources.remove(&k);
            }
            self.stateful.fill(0);
            for (k, _) in self.sources.iter() {
                let (word, bit) = may_have_state(*k);
                self.stateful[word] |= bit;
            }
        }
    }
}

/// The distinct count behind `observed` targets at sampling `interval`: observed × interval
/// once at least `sampled_min_distinct` were observed on a sampled export, else observed.
fn estimate(observed: u32, interval: u32, sampled_min_distinct: usize) -> f64 {
    if interval > 1 {
        if (observed as usize) < sampled_min_distinct {
            f64::from(observed)
        } else {
            f64::from(observed) * f64::from(interval)
        }
    } else {
        f64::from(observed)
    }
}

/// The hash of source `key` for [`ScanDetector::stateful`] and [`ScanDetector::hints`]:
/// Fibonacci hashing (Knuth, TAOCP vol. 3, 6.4) of the address bits, one multiply, which
/// spreads the consecutive addresses of a subnet over the tables (each takes its bits
/// from the top of the product).
#[inline]
fn source_hash(key: IpAddr) -> u64 {
    let bits = match key {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            #[expect(clippy::cast_possible_truncation, reason = "folding the halves")]
            let folded = (b >> 64) as u64 ^ b as u64;
            folded
        }
    };
    bits.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The word and bit of [`ScanDetector::stateful`] for a [`source_hash`].
#[inline]
fn stateful_bit(hash: u64) -> (usize, u64) {
    let h = (hash >> (64 - STATEFUL_BITS)) as usize;
    (h >> 6, 1 << (h & 63))
}

/// The word and bit of [`ScanDetector::stateful`] for source `key`.
#[inline]
fn may_have_state(key: IpAddr) -> (usize, u64) {
    stateful_bit(source_hash(key))
}

/// [`Attempt::dst_tag`] of an address hash.
#[inline]
fn tag(dst_hash: u64) -> u32 {
    dst_hash as u32
}

/// ICMP destination unreachable (ICMP type 3, ICMPv6 type 1).
fn is_unreachable(r: &FlowRecord) -> bool {
    let ty = r.icmp_type_code >> 8;
    (r.protocol == 1 && ty == 3) || (r.protocol == 58 && ty == 1)
}

impl ScanDetector {
    /// Takes a record if `owned(key host, reversed)` says this shard keeps the key
    /// host's state.
    #[inline]
    fn observe_if(&mut self, record: &FlowRecord, owned: impl Fn(IpAddr, bool) -> bool) {
        let now_ms = common::event_ms(record);
        if now_ms + self.config.allowed_lateness_ms < self.watermark_ms {
            self.late += 1;
            return;
        }
        let Some((reversed, outcome)) = Self::classify(record) else {
            return;
        };
        let (key, dst) = if reversed {
            (record.dst_addr, record.src_addr)
        } else {
            (record.src_addr, record.dst_addr)
        };
        if !owned(key, reversed) {
            return;
        }
        // A success only moves the walk of a source that already has state (one lookup,
        // in `record_success`, when the filter does not rule it out).
        match outcome {
            Outcome::Success => {
                let hash = source_hash(key);
                let (word, bit) = stateful_bit(hash);
                if self.stateful[word] & bit != 0 {
                    self.record_success(key, hash, dst, now_ms);
                }
            }
            Outcome::Failed | Outcome::Probe => {
                let port = if matches!(record.protocol, 6 | 17) {
                    record.dst_port
                } else {
                    0
                };
                self.record_attempt(key, dst, port, outcome, record);
            }
        }
    }
}

impl Detector for ScanDetector {
    fn name(&self) -> &'static str {
        "scan"
    }

    fn observe(&mut self, record: &FlowRecord) {
        let filter = self.filter.take();
        self.observe_if(record, |key, _| filter.as_ref().is_none_or(|f| f(key)));
        self.filter = filter;
    }

    fn observe_routed(&mut self, record: &FlowRecord, sides: Sides) {
        self.observe_if(record, |_, reversed| {
            if reversed {
                sides.dst_owned
            } else {
                sides.src_owned
            }
        });
    }

    fn advance(&mut self, watermark_ms: u64, out: &mut Vec<Finding>) {
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        self.emit_pending(out);
        if self.watermark_ms >= self.next_sweep_ms {
            let step = (self.scan_config().window_ms / 5).max(1000);
            self.next_sweep_ms = self.watermark_ms - self.watermark_ms % step + step;
            let now = self
                .watermark_ms
                .saturating_sub(self.config.allowed_lateness_ms);
            self.sweep(now, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        self.emit_pending(out);
        self.sweep(u64::MAX, true, out);
    }

    fn state_bytes(&self) -> usize {
        self.sources.shallow_bytes()
            + self
                .sources
                .iter()
                .map(|(_, s)| s.heap_bytes())
                .sum::<usize>()
            + self.pending.capacity() * size_of::<IpAddr>()
            + self.hints.bytes()
            + self.stateful.len() * size_of::<u64>()
    }

    fn evictions(&self) -> u64 {
        self.sources.evictions()
    }
}
