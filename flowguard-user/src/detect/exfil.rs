//! Data exfiltration detection (MITRE ATT&CK T1041 / T1048).
//!
//! Keyed by (internal host, external peer). Records in either direction between them
//! are summed per tumbling window (`window_ms`, 1 h): outbound bytes (internal → external)
//! and inbound bytes. When a window closes (watermark past its end plus the allowed
//! lateness, or a newer record of the pair arrives) the pair is scored:
//!
//! - **volume**: outbound bytes against `min_bytes` (nothing below it is reported);
//! - **host baseline**: robust z of log10(outbound bytes) against the median/MAD of the
//!   host's own total outbound bytes over its last 24 active windows before the scored
//!   one (neutral until three such windows exist);
//! - **byte asymmetry**: PCR = (out − in)/(out + in) (Carter Bullard's producer/consumer
//!   ratio): +1 is pure upload;
//! - **destination rarity**: how many internal hosts send to the peer (this shard's
//!   count, or the global count fed with [`ExfilDetector::set_prevalence`]) and whether
//!   it was first seen in the last 24 h;
//! - **long connections**: records of one 5-tuple in either direction closer than
//!   `stitch_gap_ms` (60 s) are stitched back into the connection that the exporter's
//!   active/inactive timeouts split, and a connection lasting `long_connection_ms` scores.
//!   A connection is kept for one `active_timeout_ms` (30 min) past its last record (plus
//!   the gap and the allowed lateness), so its next record finds it across window ends.
//!
//! score = 0.30·volume + 0.25·baseline + 0.20·PCR + 0.15·rarity + 0.10·long, halved for
//! prevalent destinations, ×0.92 on sampled exports; reported at `score_threshold`.
//! That is kind `bulk`.
//!
//! Kind `slow`: a transfer kept under `min_bytes` per window still accumulates per pair
//! over consecutive active windows (one idle window tolerated, restarted after
//! `slow_horizon_ms`); at `slow_min_bytes` over at least `slow_min_windows` windows it is
//! scored the same way, with persistence in place of the long-connection term.
//!
//! **Daily habits.** The host baseline is dominated by a host's quiet hours. So a
//! recurring job that is not allow-listed, such as a nightly upload to off-site storage,
//! would be reported every night. A host that sends at least `min_bytes` /
//! 10^`periodic_tolerance_log10` (≈ 52 MB by default) in a window therefore also gets
//! a daily profile ([`super::seasonal`]). It has one bin per UTC hour of the day (the
//! window's start hour). Each bin holds a robust EWMA of log10 of the host's outbound
//! bytes in that hour on active days, and a net count of recent active days. The count
//! gains 1 for each day with at least that volume in the hour and loses 1 for each day
//! without, and is capped at `periodic_min_days` + 4. The profile learns from every
//! closed host window, and an hour of a day with no window counts as quiet. A quiet day counts against the habit, so a one-off upload never
//! becomes normal, and a job that stops is forgotten after 5 quiet days. A window is
//! compared only with the days before its own day.
//!
//! A window is a habit when two things hold. Its hour has at least `periodic_min_days`
//! (3) net active days. And its outbound bytes are at most the learned level +
//! `periodic_tolerance_log10` (0.3, i.e. 2×). For a habit window the baseline term counts
//! as normal (0), and the score is multiplied by `periodic_damping` (0.5), which keeps it
//! under the default threshold. So a daily job can be reported on its first 3 days, and
//! is not reported after that. The same volume at another hour is scored as before, and
//! so is more than 2× the usual volume at that hour. A slow run is damped the same way
//! when the bytes of its windows outside the habit would not reach `slow_min_bytes` by
//! themselves.
//!
//! The profile is per host, not per pair, so an upload at the habit's hour and volume to
//! another destination is damped too. Allow rules are the per-pair tool. For a host with
//! a profile, the evidence carries `periodic_hour_utc`, `periodic_days`,
//! `periodic_baseline_bytes` and `periodic_damped` (a slow finding also carries
//! `slow_unexplained_out_bytes`). A finding that was not damped therefore shows the habit
//! it went beyond.
//!
//! **Admission.** A pair gets state only once it has moved 1/64 of `min_bytes` (both
//! directions, at least 64 kB) within a window, as estimated by a fixed-size count-min
//! sketch (never an underestimate; 2 rows of `max_keys_per_detector`/4 counters, at most
//! 2 MB, cleared every window, lazily line by line), so the millions of small pairs of an
//! edge share a fixed table instead of a map entry each. A bitmap of the held pairs'
//! hashes answers "no state" for those records before the pair map is asked. Every
//! report needs `min_bytes` outbound, so no reportable pair is kept out; its sums leave
//! out what it moved before admission (under 1/64 of the threshold). Stitched connections
//! are kept for admitted pairs only, and a second bitmap answers "no stitched
//! connection" for most records of an admitted pair.
//!
//! A pair is reported once per episode (its first kind sticks) and updated when the
//! score rises by 0.1. Byte costs: pair ≈ 245 bytes plus 2–4 bytes of bitmap, host
//! baseline ≈ 188 bytes, plus a daily profile of 264 bytes (heap) for the hosts that have
//! one, stitched connection 64 bytes of slot plus 16–32 of index and 2–4 of bitmap (only
//! kept for records of ≥ 64 kB), prevalence entry ≈ 90 bytes; each map is capped at
//! `max_keys_per_detector`; and two fixed 16 KB tables of where pairs and hosts sit in
//! their maps, which spare the busiest of them the hashing.

#![allow(
    clippy::too_many_lines,
    reason = "one scoring pass reads best in one piece"
)]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "statistics over counts, times and bytes: f64/f32 precision is ample and every narrowing cast is of a clamped or rounded value"
)]

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    Category, Detector, Entities, Finding, Sides,
    common::{self, HostFilter, Prevalence, SAMPLED_CONFIDENCE, num},
    config::{DetectConfig, ExfilConfig},
    engine::Routed,
    lru::{BoundedMap, SlotHints, Table},
    seasonal::{self, BinView, HourProfile, Learn},
    sketch::{CountMin, HomeNets, addr_hash, mix64},
    stats,
};
use crate::decode::FlowRecord;

/// Host baseline depth (windows).
const HISTORY: usize = 24;
/// Records at least this large open a stitched connection.
const CONN_MIN_BYTES: u64 = 64 * 1024;
/// "Recently first seen" horizon for destination rarity.
const FIRST_SEEN_RECENT_MS: u64 = 24 * 3_600_000;
/// The daily profile's bin width.
const HOUR_MS: u64 = 3_600_000;
/// Buckets (log2) of the pair and host [`SlotHints`]: 16 KB each, enough for the hosts
/// and the busy pairs of a few-thousand-host site; beyond that some lookups fall back to
/// hashing.
const HINT_BITS: u32 = 12;
/// How far the net active-day count of a daily-profile bin may rise above
/// `periodic_min_days`: a job that stops is no longer a habit after this + 1 quiet days.
const PERIODIC_DAYS_SLACK: u8 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ConnKey {
    host: IpAddr,
    peer: IpAddr,
    host_port: u16,
    peer_port: u16,
    protocol: u8,
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    first_ms: u64,
    last_ms: u64,
}

/// One window's sums for a pair (`repr(C)`: the fields each record adds to, in the first
/// 56 bytes of the pair's value, after its key and `window`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct WindowSums {
    out: u64,
    inn: u64,
    records: u32,
    conns: u32,
    first_ms: u64,
    last_ms: u64,
    long_ms: u64,
    sampled: bool,
    port: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slow {
    out: u64,
    inn: u64,
    first_ms: u64,
    last_ms: u64,
    first_window: u64,
    last_window: u64,
    windows: u32,
    conns: u32,
    records: u32,
    long_ms: u64,
    sampled: bool,
    /// Outbound bytes of the run's windows that its host's daily profile does not cover.
    unexplained: u64,
}

/// A held pair's state. `repr(C)`: `window` and `cur`, which every record of the pair
/// reads or adds to, follow the slot's key (see `lru`): a record touches the first 104
/// bytes of the 200-byte slot, not the key at its end as well. Callgrind, busy bench
/// dataset (0.25 h): exfiltration's first-level misses −26%.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Pair {
    window: u64,
    cur: WindowSums,
    slow: Slow,
    reported: f32,
    /// 0: none yet, 1: bulk, 2: slow.
    kind: u8,
    episode_first_ms: u64,
}

/// A host's outbound baseline. `repr(C)`: `window` and `out`, which each outbound record
/// reads and adds to, lie in the first 40 bytes of the slot, with the key.
#[repr(C)]
#[derive(Clone, Debug, Default)]
struct HostBase {
    window: u64,
    out: u64,
    hist: [f32; HISTORY],
    /// The window of the newest `hist` entry. A host rolls into its next window with its
    /// first record there, which can come (within the allowed lateness) before the
    /// window it leaves is closed and scored: that window must not be its own baseline.
    hist_window: u64,
    n: u8,
    pos: u8,
    /// The host's daily profile, made with its first window of `Periodic::alloc_bytes`
    /// (most hosts never send that much in an hour and never get one).
    daily: Option<Box<HourProfile>>,
}

impl HostBase {
    /// Closes the host's window before `w` (the caller checks `self.window < w`: a
    /// host moves to a new window once per window, not per record).
    #[cold]
    fn roll(&mut self, w: u64, periodic: &Periodic) {
        if self.window < w {
            if self.out > 0 {
                let v = seasonal::log10p(self.out);
                self.hist[usize::from(self.pos) % HISTORY] = v;
                self.hist_window = self.window;
                self.pos = self.pos.wrapping_add(1) % (HISTORY as u8);
                self.n = self.n.saturating_add(1).min(HISTORY as u8);
                if self.daily.is_none() && periodic.min_days > 0 && self.out >= periodic.alloc_bytes
                {
                    self.daily = Some(Box::default());
                }
                if let Some(daily) = &mut self.daily {
                    let start = self.window.saturating_mul(periodic.window_ms);
                    daily.record(start, self.out, &periodic.learn);
                }
            }
            self.out = 0;
            self.window = w;
        }
    }
}

/// A bitmap of the held keys' hashes, asked before a map: the pairs' ([`pair_hash`])
/// before the pair map, the stitched connections' ([`conn_hash`]) before the connection
/// map. Nearly every record belongs to a pair without state (one that has not moved
/// enough to be admitted), and most records of a held pair to no stitched connection
/// (only records of 64 kB open one); a clear bit answers "not held" for one load instead
/// of hashing and probing the map with two addresses. A set bit may be a collision or a
/// key evicted since: the map decides then. Every held key's bit is set (set on
/// insertion, and the maps only lose keys by eviction or in bulk, in
/// [`ExfilDetector::close_windows_before`] and [`Detector::advance`], which rebuild the
/// bitmap), so a clear bit is never wrong, and a lookup it skips would have missed.
///
/// At least 16 bits per held key when rebuilt (1/16 of keys collide on a bit, or
/// fewer), rebuilt again after that many insertions as an eighth of its bits: about
/// 2–4 bytes per key, and 512 bytes at least.
#[derive(Debug)]
struct KeyFilter {
    words: Vec<u64>,
    /// Admissions since the last rebuild.
    added: usize,
}

impl KeyFilter {
    const MIN_WORDS: usize = 64;

    fn new() -> Self {
        Self {
            words: vec![0; Self::MIN_WORDS],
            added: 0,
        }
    }

    #[inline]
    fn index(&self, hash: u64) -> (usize, u64) {
        let word = (hash >> 6) as usize & (self.words.len() - 1);
        (word, 1 << (hash & 63))
    }

    /// Whether a pair with `hash` may be held.
    #[inline]
    fn may_hold(&self, hash: u64) -> bool {
        let (word, bit) = self.index(hash);
        self.words[word] & bit != 0
    }

    /// Sets `hash`'s bit; true when the bitmap is due for a rebuild.
    fn add(&mut self, hash: u64) -> bool {
        let (word, bit) = self.index(hash);
        self.words[word] |= bit;
        self.added += 1;
        self.added * 8 > self.words.len() * 64
    }

    /// Sets exactly the bits of `hashes` (`held` of them), in a bitmap sized for them.
    fn rebuild(&mut self, held: usize, hashes: impl Iterator<Item = u64>) {
        let words = (held * 16 / 64).next_power_of_two().max(Self::MIN_WORDS);
        self.words.clear();
        self.words.resize(words, 0);
        self.words.shrink_to(words);
        for hash in hashes {
            let (word, bit) = self.index(hash);
            self.words[word] |= bit;
        }
        self.added = 0;
    }

    /// [`Self::rebuild`] from the pair map.
    fn rebuild_pairs(&mut self, pairs: &BoundedMap<(IpAddr, IpAddr), Pair>) {
        let hashes = pairs
            .iter()
            .map(|(&(host, peer), _)| pair_hash(addr_hash(host), addr_hash(peer)));
        self.rebuild(pairs.len(), hashes);
    }

    /// [`Self::rebuild`] from the connection map.
    fn rebuild_conns(&mut self, conns: &Table<ConnKey, Conn>) {
        let hashes = conns.iter().map(|(k, _)| {
            let pair = pair_hash(addr_hash(k.host), addr_hash(k.peer));
            conn_hash(pair, k.host_port, k.peer_port, k.protocol)
        });
        self.rebuild(conns.len(), hashes);
    }

    fn bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

/// The daily-profile settings, derived once from the configuration.
#[derive(Clone, Copy, Debug)]
struct Periodic {
    learn: Learn,
    window_ms: u64,
    /// A host gets a profile with its first window of at least this many outbound bytes:
    /// the active floor, scaled down for windows shorter than an hour (they add up).
    alloc_bytes: u64,
    /// 0: damping off (no profiles are made).
    min_days: u8,
    tolerance_log10: f32,
    damping: f64,
}

impl Periodic {
    fn new(cfg: &ExfilConfig) -> Self {
        let window_ms = cfg.window_ms.max(1);
        let tolerance = cfg.periodic_tolerance_log10.max(0.0);
        let floor = (cfg.min_bytes as f64 + 1.0).log10() - tolerance;
        let min_days = u8::try_from(cfg.periodic_min_days).unwrap_or(u8::MAX);
        let share = (window_ms as f64 / HOUR_MS as f64).min(1.0);
        Self {
            learn: Learn {
                floor_log10: floor as f32,
                tolerance_log10: tolerance as f32,
                days_cap: min_days.saturating_add(PERIODIC_DAYS_SLACK),
            },
            window_ms,
            alloc_bytes: (10f64.powf(floor) * share) as u64,
            min_days,
            tolerance_log10: tolerance as f32,
            damping: cfg.periodic_damping.clamp(0.0, 1.0),
        }
    }

    /// What `host`'s profile had learned for the hour of window `w` before its day.
    fn view(&self, host: Option<&HostBase>, w: u64) -> Option<BinView> {
        let daily = host?.daily.as_deref()?;
        Some(daily.view(w.saturating_mul(self.window_ms), &self.learn))
    }

    /// Whether `bytes` in a window is within its host's habit at that hour.
    fn covers(&self, view: Option<&BinView>, bytes: u64) -> bool {
        self.min_days > 0
            && view.is_some_and(|v| v.covers(bytes, self.min_days, self.tolerance_log10))
    }
}

/// The exfiltration detector; see the module docs.
pub struct ExfilDetector {
    config: DetectConfig,
    pairs: BoundedMap<(IpAddr, IpAddr), Pair>,
    pair_filter: KeyFilter,
    /// Where the busiest pairs sit in `pairs` (most records of a busy site belong to a few
    /// hundred admitted pairs).
    pair_hints: SlotHints,
    hosts: BoundedMap<IpAddr, HostBase>,
    /// Where hosts sit in `hosts` (asked for every outbound record).
    host_hints: SlotHints,
    conns: Stitched,
    prevalence: Prevalence,
    periodic: Periodic,
    home: HomeNets,
    /// Bytes (both directions) per pair in the current window, for admission.
    admission: CountMin,
    admission_window: u64,
    admit_bytes: u32,
    filter: Option<HostFilter>,
    watermark_ms: u64,
    closed_window: u64,
    /// The window of the last record's event time and its span `[start, end)` in ms:
    /// records arrive in time order, so most fall in it and skip the division.
    last_window: (u64, u64, u64),
    late: u64,
    pending: Vec<Finding>,
    scratch: Vec<f64>,
    scratch2: Vec<f64>,
}

impl ExfilDetector {
    /// A detector with `config`'s thresholds and caps.
    #[must_use]
    pub fn new(config: &DetectConfig) -> Self {
        let cap = config.max_keys_per_detector;
        Self {
            config: config.clone(),
            pairs: BoundedMap::new(cap),
            pair_filter: KeyFilter::new(),
            pair_hints: SlotHints::new(HINT_BITS),
            hosts: BoundedMap::new(cap),
            host_hints: SlotHints::new(HINT_BITS),
            conns: Stitched::new(cap),
            prevalence: Prevalence::new(cap),
            periodic: Periodic::new(&config.exfil),
            home: HomeNets::new(&config.home_nets),
            admission: CountMin::new((cap / 4).clamp(1 << 10, 1 << 18)),
            admission_window: 0,
            admit_bytes: admit_bytes(&config.exfil),
            filter: None,
            watermark_ms: 0,
            closed_window: 0,
            last_window: (0, 0, 0),
            late: 0,
            pending: Vec::new(),
            scratch: Vec::new(),
            scratch2: Vec::new(),
        }
    }

    /// Only internal hosts for which `filter` returns true get state.
    pub fn set_host_filter(&mut self, filter: HostFilter) {
        self.filter = Some(filter);
    }

    /// Feeds the number of internal hosts (over all shards) that talk to `dst`; the
    /// larger of this and the shard's own count is used for rarity and damping.
    pub fn set_prevalence(&mut self, dst: IpAddr, hosts: usize) {
        self.prevalence.set_global(dst, hosts);
    }

    /// This shard's own prevalence counts (destination, internal hosts), for merging
    /// across shards.
    pub fn local_prevalence(&self) -> impl Iterator<Item = (IpAddr, f64)> + '_ {
        self.prevalence.local_counts()
    }

    /// Records ignored because they arrived later than the allowed lateness.
    #[must_use]
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// The internal host this detector keys a record on, if it is an internal ↔
    /// external record (the only kind it looks at).
    #[must_use]
    pub fn key_host(config: &DetectConfig, record: &FlowRecord) -> Option<IpAddr> {
        orient(config, record).map(|(h, _, _)| h)
    }

    fn window_of(&self, t_ms: u64) -> u64 {
        t_ms / self.config.exfil.window_ms.max(1)
    }

    /// [`Self::window_of`] for a record, through `last_window`.
    #[inline]
    fn record_window(&mut self, t_ms: u64) -> u64 {
        let (w, start, end) = self.last_window;
        if start <= t_ms && t_ms < end {
            return w;
        }
        let window_ms = self.config.exfil.window_ms.max(1);
        let w = t_ms / window_ms;
        let start = w * window_ms;
        self.last_window = (w, start, start.saturating_add(window_ms));
        w
    }

    /// Closes the current window of `key` (if it has data) and scores it.
    fn close_pair(&mut self, key: (IpAddr, IpAddr)) -> Option<Finding> {
        let p = self.pairs.get_mut(&key)?;
        let host = self.hosts.get(&key.0);
        let (w, sums) = roll_pair(&self.config.exfil, p, &self.periodic, host)?;
        self.score_pair(key, w, sums)
    }

    /// Moves a known pair on to window `w` (a newer record arrived): closes and scores
    /// the window it holds first, if that has data.
    #[cold]
    fn roll_window(&mut self, key: (IpAddr, IpAddr), w: u64) {
        if self.pairs.get(&key).is_some_and(|p| p.cur.records > 0)
            && let Some(f) = self.close_pair(key)
        {
            self.pending.push(f);
        }
        if let Some(p) = self.pairs.get_mut(&key) {
            p.window = w;
        }
    }

    /// Scores a pair whose window `w` (with `sums`) was just rolled by [`roll_pair`].
    fn score_pair(&mut self, key: (IpAddr, IpAddr), w: u64, sums: WindowSums) -> Option<Finding> {
        let cfg = &self.config.exfil;
        let window_ms = cfg.window_ms.max(1);
        let p = self.pairs.get_mut(&key)?;
        let slow = p.slow;
        let (reported, kind) = (p.reported, p.kind);
        let episode_first = p.episode_first_ms;

        // The host's baseline: its earlier windows, without window `w` itself when the
        // host has rolled past it already (see `HostBase::hist_window`).
        let baseline = self.hosts.get(&key.0).and_then(|h| {
            let n = usize::from(h.n);
            let own =
                (n > 0 && h.hist_window == w).then(|| (usize::from(h.pos) + HISTORY - 1) % HISTORY);
            self.scratch.clear();
            self.scratch.extend(
                (0..n)
                    .filter(|&i| Some(i) != own)
                    .map(|i| f64::from(h.hist[i])),
            );
            (self.scratch.len() >= 3).then(|| {
                let (med, mad) = stats::median_mad(&self.scratch, &mut self.scratch2);
                (med, mad, self.scratch.len())
            })
        });
        let hosts = self.prevalence.hosts(key.1);
        let recent = self
            .prevalence
            .first_seen_ms(key.1)
            .is_some_and(|t| t + FIRST_SEEN_RECENT_MS >= sums.last_ms);
        let z_of = |bytes: u64| {
            #[expect(clippy::cast_precision_loss, reason = "log scale")]
            let x = (bytes as f64 + 1.0).log10();
            baseline.map(|(med, mad, _)| stats::robust_z(x, med, mad, 0.05))
        };
        let rarity = self.rarity(hosts, recent);
        let prevalent_damp = if hosts >= self.config.prevalence_hosts as f64 {
            0.5
        } else {
            1.0
        };
        // The host's daily habit at this hour, learned from earlier days. A window within
        // it is normal for the baseline term, and damped. A slow run is damped when what
        // it sent outside the habit would not make a slow run by itself.
        let daily = self.periodic.view(self.hosts.get(&key.0), w);
        let bulk_damped = self.periodic.covers(daily.as_ref(), sums.out);
        let slow_min = cfg.slow_min_bytes.max(cfg.min_bytes);
        let slow_damped = self.periodic.min_days > 0 && slow.unexplained < slow_min;
        let periodic_damp = |damped: bool| {
            if damped { self.periodic.damping } else { 1.0 }
        };

        let bulk = (sums.out >= cfg.min_bytes).then(|| {
            let z = z_of(sums.out);
            let s = 0.30 * volume_part(sums.out, cfg.min_bytes)
                + 0.25 * if bulk_damped { 0.0 } else { self.z_part(z) }
                + 0.20 * pcr(sums.out, sums.inn).clamp(0.0, 1.0)
                + 0.15 * rarity
                + 0.10 * long_part(sums.long_ms, cfg.long_connection_ms);
            let s = s
                * prevalent_damp
                * periodic_damp(bulk_damped)
                * if sums.sampled {
                    SAMPLED_CONFIDENCE
                } else {
                    1.0
                };
            (s, z)
        });
        let slow_score = (slow.out >= slow_min
            && slow.windows as usize >= cfg.slow_min_windows
            && slow.last_window == w)
            .then(|| {
                let z = z_of(slow.out / u64::from(slow.windows.max(1)));
                let persistence =
                    (f64::from(slow.windows) / cfg.slow_min_windows.max(1) as f64).min(1.0);
                let s = 0.30 * volume_part(slow.out, slow_min)
                    + 0.20 * if slow_damped { 0.0 } else { self.z_part(z) }
                    + 0.20 * pcr(slow.out, slow.inn).clamp(0.0, 1.0)
                    + 0.15 * rarity
                    + 0.15 * persistence;
                let s = s
                    * prevalent_damp
                    * periodic_damp(slow_damped)
                    * if slow.sampled {
                        SAMPLED_CONFIDENCE
                    } else {
                        1.0
                    };
                (s, z)
            });
        let bulk_ok =
            bulk.filter(|&(s, _)| s >= cfg.score_threshold && pcr(sums.out, sums.inn) > 0.2);
        let slow_ok =
            slow_score.filter(|&(s, _)| s >= cfg.score_threshold && pcr(slow.out, slow.inn) > 0.2);
        let best_kind = match (bulk_ok, slow_ok) {
            (None, None) => return None,
            (Some(b), Some(s)) => {
                if kind == 2 || (kind == 0 && s.0 > b.0) {
                    2
                } else {
                    1
                }
            }
            (Some(_), None) => 1,
            (None, Some(_)) => 2,
        };
        let kind = if kind == 0 { best_kind } else { kind };
        let score = bulk_ok
            .map_or(0.0, |b| b.0)
            .max(slow_ok.map_or(0.0, |s| s.0));
        if reported > 0.0 && score < f64::from(reported) + 0.1 {
            return None;
        }
        let p = self.pairs.get_mut(&key)?;
        #[expect(clippy::cast_possible_truncation, reason = "f32 state")]
        {
            p.reported = score as f32;
        }
        p.kind = kind;
        if p.episode_first_ms == 0 {
            p.episode_first_ms = if kind == 2 {
                slow.first_ms
            } else {
                sums.first_ms
            };
        }
        let episode_first = if episode_first == 0 {
            p.episode_first_ms
        } else {
            episode_first
        };

        let mut ev = BTreeMap::new();
        let (out, inn, sampled, long_ms, conns, records, z, span_ms) = if kind == 2 {
            let z = slow_ok.or(bulk_ok).and_then(|x| x.1);
            (
                slow.out,
                slow.inn,
                slow.sampled,
                slow.long_ms,
                slow.conns,
                slow.records,
                z,
                slow.last_ms.saturating_sub(slow.first_ms),
            )
        } else {
            let z = bulk_ok.or(slow_ok).and_then(|x| x.1);
            (
                sums.out,
                sums.inn,
                sums.sampled,
                sums.long_ms,
                sums.conns,
                sums.records,
                z,
                sums.last_ms.saturating_sub(sums.first_ms),
            )
        };
        #[expect(clippy::cast_precision_loss, reason = "evidence numbers")]
        {
            ev.insert("out_bytes".into(), num(out as f64));
            ev.insert("in_bytes".into(), num(inn as f64));
            ev.insert("pcr".into(), num(pcr(out, inn)));
            ev.insert("records".into(), num(f64::from(records)));
            ev.insert("connections".into(), num(f64::from(conns)));
            ev.insert("longest_connection_ms".into(), num(long_ms as f64));
            ev.insert("window_ms".into(), num(window_ms as f64));
            ev.insert("min_bytes".into(), num(cfg.min_bytes as f64));
            ev.insert("slow_windows".into(), num(f64::from(slow.windows)));
            ev.insert("slow_out_bytes".into(), num(slow.out as f64));
            ev.insert("dst_internal_hosts".into(), num(hosts));
            ev.insert("dst_first_seen_recently".into(), recent.into());
        }
        if let Some((med, mad, n)) = baseline {
            ev.insert("baseline_median_bytes".into(), num(10f64.powf(med)));
            ev.insert("baseline_log10_mad".into(), num(mad));
            ev.insert("baseline_windows".into(), num(n as f64));
        }
        if let Some(z) = z {
            ev.insert("robust_z".into(), num(z));
        }
        let damped = if kind == 2 { slow_damped } else { bulk_damped };
        if let Some(v) = daily {
            ev.insert("periodic_hour_utc".into(), num(f64::from(v.hour)));
            ev.insert("periodic_days".into(), num(f64::from(v.days)));
            if v.days > 0 {
                ev.insert(
                    "periodic_baseline_bytes".into(),
                    num(v.usual_bytes().round()),
                );
            }
            ev.insert("periodic_damped".into(), damped.into());
            if kind == 2 {
                #[expect(clippy::cast_precision_loss, reason = "evidence numbers")]
                ev.insert(
                    "slow_unexplained_out_bytes".into(),
                    num(slow.unexplained as f64),
                );
            }
        }
        let at_least = if sampled { "at least " } else { "" };
        let usual = match (baseline, z) {
            (Some((med, _, _)), Some(z)) if z > 0.0 => {
                #[expect(clippy::cast_precision_loss, reason = "display")]
                let ratio =
                    out as f64 / u64::from(slow.windows.max(1)).max(1) as f64 / 10f64.powf(med);
                let ratio = if kind == 2 {
                    ratio
                } else {
                    out as f64 / 10f64.powf(med)
                };
                format!(", {ratio:.0}× its usual volume per window (robust z {z:.1})")
            }
            (Some(_), _) => String::new(),
            (None, _) => ", with no earlier baseline for the host".to_owned(),
        };
        let rare = if hosts <= 1.0 {
            "a destination no other internal host uses"
        } else if hosts < self.config.prevalence_hosts as f64 {
            "a destination few internal hosts use"
        } else {
            "although many internal hosts use that destination"
        };
        let habit = match daily {
            Some(v)
                if kind != 2 && self.periodic.min_days > 0 && v.days >= self.periodic.min_days =>
            {
                let usual_bytes = v.usual_bytes();
                let learned = format!(
                    "{:02}:00 UTC (about {}, learned over {} days)",
                    v.hour,
                    common::fmt_bytes(usual_bytes as u64),
                    v.days
                );
                if damped {
                    format!(", within its daily habit at {learned}")
                } else {
                    #[expect(clippy::cast_precision_loss, reason = "display")]
                    let ratio = out as f64 / usual_bytes.max(1.0);
                    format!(", {ratio:.1}× its daily habit at {learned}")
                }
            }
            _ => String::new(),
        };
        let what = if kind == 2 { "slowly, " } else { "" };
        let summary = format!(
            "{} sent {what}{at_least}{} to {} over {} with byte asymmetry {:.2}{usual}{habit}; {rare}.",
            key.0,
            common::fmt_bytes(out),
            key.1,
            common::fmt_ms(span_ms.max(1000)),
            pcr(out, inn),
        );
        let ports = if sums.port != 0 {
            vec![sums.port]
        } else {
            Vec::new()
        };
        let last = if kind == 2 {
            slow.last_ms
        } else {
            sums.last_ms
        };
        Some(common::finding(
            Category::Exfiltration,
            if kind == 2 { "slow" } else { "bulk" },
            score,
            Entities {
                src: Some(key.0),
                dst: Some(key.1),
                ports,
            },
            episode_first,
            last,
            ev,
            sampled,
            summary,
        ))
    }

    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    fn rarity(&self, hosts: f64, recent: bool) -> f64 {
        let p = self.config.prevalence_hosts.max(2) as f64;
        let host_rarity = if hosts <= 1.0 {
            1.0
        } else {
            (1.0 - (hosts - 1.0) / (p - 1.0)).max(0.0)
        };
        0.7 * host_rarity + 0.3 * if recent { 1.0 } else { 0.0 }
    }

    fn z_part(&self, z: Option<f64>) -> f64 {
        z.map_or(0.5, |z| {
            (z / (2.0 * self.config.exfil.z_threshold.max(0.1))).clamp(0.0, 1.0)
        })
    }

    /// Closes every pair and host window before `window` (sorted, for determinism).
    fn close_windows_before(&mut self, window: u64, out: &mut Vec<Finding>) {
        // Rolling is per pair and order-free; only the few pairs that may be reported
        // are scored, in key order (deterministic output).
        let cfg = &self.config.exfil;
        let (periodic, hosts) = (&self.periodic, &self.hosts);
        let mut ready: Vec<((IpAddr, IpAddr), u64, WindowSums)> = self
            .pairs
            .iter_mut()
            .filter(|(_, p)| p.window < window && p.cur.records > 0)
            .filter_map(|(k, p)| {
                roll_pair(cfg, p, periodic, hosts.get(&k.0)).map(|(w, sums)| (*k, w, sums))
            })
            .collect();
        ready.sort_unstable_by_key(|r| r.0);
        for (key, w, sums) in ready {
            if let Some(f) = self.score_pair(key, w, sums) {
                out.push(f);
            }
        }
        for (_, h) in self.hosts.iter_mut() {
            if h.window < window {
                h.roll(window, &self.periodic);
            }
        }
        // Pairs whose window and slow run are over and that hold nothing more.
        let held = self.pairs.len();
        self.pairs
            .retain(|_, p| p.cur.records > 0 || p.slow.last_window + 2 >= window);
        if self.pairs.len() < held {
            self.pair_filter.rebuild_pairs(&self.pairs);
        }
    }
}

/// Ends the current window of a pair: takes its sums and folds them into the slow
/// accumulator (consecutive active windows, one idle window tolerated). Returns the
/// window and its sums when the pair could be reported now (bulk volume reached, or a
/// slow run long and large enough); scoring is skipped for every other pair, which
/// cannot pass either test whatever the rest of the score. The window's outbound bytes
/// count as unexplained in the slow run unless `host`'s daily profile covers them.
fn roll_pair(
    cfg: &ExfilConfig,
    p: &mut Pair,
    periodic: &Periodic,
    host: Option<&HostBase>,
) -> Option<(u64, WindowSums)> {
    let window_ms = cfg.window_ms.max(1);
    let w = p.window;
    let sums = std::mem::take(&mut p.cur);
    if sums.records == 0 {
        return None;
    }
    if sums.out > 0 {
        let s = &mut p.slow;
        let contiguous = s.windows > 0 && w <= s.last_window + 2;
        let within = (w + 1).saturating_sub(s.first_window) * window_ms <= cfg.slow_horizon_ms;
        if !(contiguous && within) {
            s.out = 0;
            s.inn = 0;
            s.windows = 0;
            s.conns = 0;
            s.records = 0;
            s.long_ms = 0;
            s.sampled = false;
            s.unexplained = 0;
            s.first_window = w;
            s.first_ms = sums.first_ms;
        }
        if !periodic.covers(periodic.view(host, w).as_ref(), sums.out) {
            s.unexplained += sums.out;
        }
        s.out += sums.out;
        s.inn += sums.inn;
        s.windows += 1;
        s.conns += sums.conns;
        s.records += sums.records;
        s.long_ms = s.long_ms.max(sums.long_ms);
        s.sampled |= sums.sampled;
        s.last_window = w;
        s.last_ms = sums.last_ms;
    }
    let slow = &p.slow;
    let bulk = sums.out >= cfg.min_bytes;
    let slow_ready = slow.out >= cfg.slow_min_bytes.max(cfg.min_bytes)
        && slow.windows as usize >= cfg.slow_min_windows
        && slow.last_window == w;
    (bulk || slow_ready).then_some((w, sums))
}

/// The hash of a pair, from its addresses' [`addr_hash`]es: the admission sketch's key
/// and the [`KeyFilter`]'s.
#[inline]
fn pair_hash(host_hash: u64, peer_hash: u64) -> u64 {
    mix64(host_hash ^ peer_hash.rotate_left(29))
}

/// The hash of a stitched connection's [`ConnKey`], from its pair's [`pair_hash`]: the
/// connection [`KeyFilter`]'s key.
#[inline]
fn conn_hash(pair_hash: u64, host_port: u16, peer_port: u16, protocol: u8) -> u64 {
    let rest = u64::from(host_port) | u64::from(peer_port) << 16 | u64::from(protocol) << 32;
    mix64(pair_hash ^ rest.rotate_left(23))
}

/// Bytes (both directions) a pair moves in one window before it gets state: 1/64 of
/// `min_bytes` (at least 64 kB). Every report needs `min_bytes` outbound in a window
/// (bulk) or over a slow run, so a pair below this cannot be reported; what a reported
/// pair moved before it was admitted (under 1/64 of the threshold each way) is left out
/// of its sums.
fn admit_bytes(cfg: &ExfilConfig) -> u32 {
    u32::try_from((cfg.min_bytes / 64).max(CONN_MIN_BYTES)).unwrap_or(u32::MAX)
}

fn pcr(out: u64, inn: u64) -> f64 {
    let total = out.saturating_add(inn);
    if total == 0 {
        0.0
    } else {
        #[expect(clippy::cast_precision_loss, reason = "ratio")]
        let r = (out as f64 - inn as f64) / total as f64;
        r
    }
}

#[expect(clippy::cast_precision_loss, reason = "ratio")]
fn volume_part(bytes: u64, min: u64) -> f64 {
    ((bytes as f64 / min.max(1) as f64).log10() + 0.5).clamp(0.0, 1.0)
}

#[expect(clippy::cast_precision_loss, reason = "ratio")]
fn long_part(long_ms: u64, threshold: u64) -> f64 {
    if long_ms >= threshold {
        1.0
    } else {
        0.5 * long_ms as f64 / threshold.max(1) as f64
    }
}

/// (internal host, external peer, outbound?) for internal ↔ external records.
fn orient(config: &DetectConfig, r: &FlowRecord) -> Option<(IpAddr, IpAddr, bool)> {
    orient_by(|a| config.is_internal(a), r).map(|(h, p, o)| (*h, *p, o))
}

/// [`orient_by`] for a routed record, from what the router already knows ([`Sides`]):
/// none unless this shard owns the internal end.
#[inline]
fn orient_routed(record: &FlowRecord, sides: Sides) -> Option<(&IpAddr, &IpAddr, bool)> {
    match (sides.src_internal, sides.dst_internal) {
        (true, false) if sides.src_owned => Some((&record.src_addr, &record.dst_addr, true)),
        (false, true) if sides.dst_owned => Some((&record.dst_addr, &record.src_addr, false)),
        _ => None,
    }
}

/// [`orient`] with the addresses borrowed from the record (17 bytes each: the hot path
/// copies them only where a map needs a key).
fn orient_by(
    internal: impl Fn(IpAddr) -> bool,
    r: &FlowRecord,
) -> Option<(&IpAddr, &IpAddr, bool)> {
    let src_in = internal(r.src_addr);
    let dst_in = internal(r.dst_addr);
    match (src_in, dst_in) {
        (true, false) => Some((&r.src_addr, &r.dst_addr, true)),
        (false, true) => Some((&r.dst_addr, &r.src_addr, false)),
        _ => None,
    }
}

impl ExfilDetector {
    /// The record's event time, or `None` (counted) when it is later than the allowed
    /// lateness.
    #[inline]
    fn on_time(&mut self, record: &FlowRecord) -> Option<u64> {
        let t = common::event_ms(record);
        if t + self.config.allowed_lateness_ms < self.watermark_ms {
            self.late += 1;
            return None;
        }
        Some(t)
    }

    /// Takes an on-time record of internal `host` (owned by this shard) with external
    /// `peer`; `outbound` when the host sent it.
    ///
    /// Inlined into the loops over records: what most records need (hashing, prevalence,
    /// the host's bytes, the pair bitmap and admission sketch, and a pair's state that
    /// its hint finds) runs in the loop; the rarer paths (an admission, a new host, a
    /// stitched connection) are calls.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "left to itself LLVM calls this once per record: about 20 more instructions per record than with it in the loop"
    )]
    fn observe_host(
        &mut self,
        record: &FlowRecord,
        t: u64,
        host: &IpAddr,
        peer: &IpAddr,
        outbound: bool,
    ) {
        let w = self.record_window(t).max(self.closed_window);
        // Each address is hashed once per record, for prevalence and admission both.
        let host_hash = addr_hash(*host);
        let peer_hash = addr_hash(*peer);
        if outbound {
            // Prevalence counts the internal hosts that send to a peer: the peer of an
            // upload. Inbound-only contacts (a scanner's probes, unanswered) do not make
            // an external host look popular, and skipping them halves the lookups.
            self.prevalence
                .observe_hashed(*peer, peer_hash, host_hash, t);
            // Through the hint when it is right: the same value and reference bit as
            // `get_or_insert_with`, without hashing the address again.
            let hinted = self
                .host_hints
                .get(host_hash)
                .and_then(|i| self.hosts.get_mut_in(i, host));
            if let Some(hb) = hinted {
                if hb.window < w {
                    hb.roll(w, &self.periodic);
                }
                hb.out += record.bytes;
            } else {
                self.add_host_bytes(host, host_hash, w, record.bytes);
            }
        }
        let pair = pair_hash(host_hash, peer_hash);
        // A pair with state in its current window takes the record; most records' pair
        // has none (a clear bit), and they only add to the admission sketch.
        if self.pair_filter.may_hold(pair)
            && self.observe_held(record, t, w, host, peer, outbound, pair)
        {
            return;
        }
        // Admission: a pair gets state once it moved `admit_bytes` in a window.
        if w > self.admission_window {
            self.admission.clear();
            self.admission_window = w;
        }
        let moved = u32::try_from(record.bytes).unwrap_or(u32::MAX);
        if self.admission.add(pair, moved) < self.admit_bytes {
            return;
        }
        self.observe_admitted(record, t, w, host, peer, outbound, pair);
    }

    /// [`Self::observe_host`] for a host the hint did not find: inserts it if new.
    #[inline(never)]
    fn add_host_bytes(&mut self, host: &IpAddr, host_hash: u64, w: u64, bytes: u64) {
        let (i, hb) = self.hosts.get_or_insert_slot(*host, || HostBase {
            window: w,
            ..HostBase::default()
        });
        self.host_hints.set(host_hash, i);
        if hb.window < w {
            hb.roll(w, &self.periodic);
        }
        hb.out += bytes;
    }

    /// Adds the record to its pair's state if the pair has some (its bitmap bit is set);
    /// false when it has none after all (a collision, or a pair evicted since), and the
    /// record goes on to admission.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "most records of a busy site take this path: a call costs them about 30 instructions"
    )]
    #[expect(
        clippy::too_many_arguments,
        reason = "the record as observe_host sees it; a struct of these made LLVM spill more in the loop"
    )]
    fn observe_held(
        &mut self,
        record: &FlowRecord,
        t: u64,
        w: u64,
        host: &IpAddr,
        peer: &IpAddr,
        outbound: bool,
        pair: u64,
    ) -> bool {
        // Through the hint when it is right (the addresses compared where they are),
        // else the index (noting the slot).
        let hinted = self.pair_hints.get(pair).and_then(|i| {
            self.pairs
                .get_mut_in_by(i, |k| k.0 == *host && k.1 == *peer)
        });
        let mut p = if let Some(p) = hinted {
            p
        } else if let Some((i, p)) = self.pairs.get_mut_slot(&(*host, *peer)) {
            self.pair_hints.set(pair, i);
            p
        } else {
            return false;
        };
        if p.window < w {
            let key = (*host, *peer);
            self.roll_window(key, w);
            let Some(q) = self.pairs.get_mut(&key) else {
                return true;
            };
            p = q;
        }
        let gap = self.config.exfil.stitch_gap_ms;
        let (new_conn, duration) = self
            .conns
            .stitch(gap, record, t, host, peer, outbound, pair);
        add_to_window(&mut p.cur, record, t, outbound, new_conn, duration);
        true
    }

    /// Gives a pair that the admission sketch just let in its state (the record that
    /// admitted it is its first).
    #[inline(never)]
    #[expect(
        clippy::too_many_arguments,
        reason = "the record as observe_host sees it"
    )]
    fn observe_admitted(
        &mut self,
        record: &FlowRecord,
        t: u64,
        w: u64,
        host: &IpAddr,
        peer: &IpAddr,
        outbound: bool,
        pair: u64,
    ) {
        let key = (*host, *peer);
        // Marked recently used as it is inserted: the admitting record has always
        // marked its pair, and eviction order depends on it.
        let fresh = move || Pair {
            window: w,
            ..Pair::default()
        };
        let mut p = if self.pair_filter.add(pair) {
            // Rare: the bitmap is rebuilt with the new pair in the map, then the pair is
            // looked up again.
            self.pairs.get_or_insert_touched(key, fresh);
            self.pair_filter.rebuild_pairs(&self.pairs);
            let Some(p) = self.pairs.get_mut(&key) else {
                return;
            };
            p
        } else {
            self.pairs.get_or_insert_touched(key, fresh)
        };
        if p.window < w {
            self.roll_window(key, w);
            let Some(q) = self.pairs.get_mut(&key) else {
                return;
            };
            p = q;
        }
        let gap = self.config.exfil.stitch_gap_ms;
        let (new_conn, duration) = self
            .conns
            .stitch(gap, record, t, host, peer, outbound, pair);
        add_to_window(&mut p.cur, record, t, outbound, new_conn, duration);
    }
}

/// The stitched connections of admitted pairs, and a bitmap of their hashes
/// ([`conn_hash`], see [`KeyFilter`]).
///
/// A [`Table`], indexed by [`conn_hash`], which each record computes anyway for the
/// bitmap. A busy public server opens a connection for most of its responses (records
/// of 64 kB or more), so the table holds on the order of 100,000 connections by the end
/// of a window: an insertion there writes one bucket and appends a slot, and a lookup
/// that the bitmap lets through in vain (a collision) usually ends at an empty bucket
/// without loading a slot or hashing the 39-byte key again.
struct Stitched {
    map: Table<ConnKey, Conn>,
    filter: KeyFilter,
    /// Event time (watermark) of the next [`Self::prune`].
    next_prune_ms: u64,
}

impl Stitched {
    fn new(cap: usize) -> Self {
        Self {
            map: Table::new(cap),
            filter: KeyFilter::new(),
            next_prune_ms: 0,
        }
    }

    /// Forgets the connections that no record can extend any more, once every quarter
    /// of `keep_ms` of event time (so the table holds at most 1.25 × `keep_ms` of them).
    ///
    /// The next record of a running connection starts within the stitch gap of the
    /// connection's last record and ends at most one active timeout later; it is on time
    /// while the watermark is within the allowed lateness of its end. So a connection is
    /// kept for `keep_ms` = lateness + gap + active timeout after its last record,
    /// whatever windows close meanwhile: a transfer that an exporter cuts every 30 min
    /// stays one connection across the hour.
    fn prune(&mut self, watermark_ms: u64, keep_ms: u64) {
        if watermark_ms < self.next_prune_ms {
            return;
        }
        self.next_prune_ms = watermark_ms.saturating_add((keep_ms / 4).max(1_000));
        let horizon = watermark_ms.saturating_sub(keep_ms);
        let held = self.map.len();
        self.map.retain(|_, c| c.last_ms >= horizon);
        if self.map.len() < held {
            self.filter.rebuild_conns(&self.map);
        }
    }

    /// Stitches a record of `host` and `peer` (their pair hashed `pair`) into its
    /// connection (either direction of one 5-tuple; records closer than `gap` ms belong
    /// to one), opening one for an outbound record of at least [`CONN_MIN_BYTES`].
    /// Returns whether a connection began and how long the record's connection has
    /// lasted (0 without one).
    ///
    /// Most records of a pair belong to no stitched connection, which the bitmap
    /// answers here; the map's part is a call.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "part of the path of most records of a busy site (see observe_held)"
    )]
    #[expect(
        clippy::too_many_arguments,
        reason = "the record as observe_host sees it"
    )]
    fn stitch(
        &mut self,
        gap: u64,
        record: &FlowRecord,
        t: u64,
        host: &IpAddr,
        peer: &IpAddr,
        outbound: bool,
        pair: u64,
    ) -> (bool, u64) {
        let (host_port, peer_port) = if outbound {
            (record.src_port, record.dst_port)
        } else {
            (record.dst_port, record.src_port)
        };
        let conn = conn_hash(pair, host_port, peer_port, record.protocol);
        let may_hold = self.filter.may_hold(conn);
        let opens = outbound && record.bytes >= CONN_MIN_BYTES;
        if !may_hold && !opens {
            return (false, 0);
        }
        let ck = ConnKey {
            host: *host,
            peer: *peer,
            host_port,
            peer_port,
            protocol: record.protocol,
        };
        if may_hold && let Some(stitched) = self.extend(gap, record, t, &ck, conn) {
            return stitched;
        }
        if opens {
            // Not held: the bit is clear, or the map just said so.
            return self.open(record, t, ck, conn);
        }
        (false, 0)
    }

    /// [`Self::stitch`] for a record whose connection's bit is set: the connection's
    /// state if it is held.
    #[inline(never)]
    fn extend(
        &mut self,
        gap: u64,
        record: &FlowRecord,
        t: u64,
        ck: &ConnKey,
        conn: u64,
    ) -> Option<(bool, u64)> {
        let slot = self.map.find(conn, ck)?;
        let c = self.map.touch(slot);
        let mut new_conn = false;
        if record.start_ms <= c.last_ms + gap {
            c.last_ms = c.last_ms.max(t);
            c.first_ms = c.first_ms.min(record.start_ms);
        } else {
            *c = Conn {
                first_ms: record.start_ms,
                last_ms: t,
            };
            new_conn = true;
        }
        Some((new_conn, c.last_ms - c.first_ms))
    }

    /// [`Self::stitch`] for an outbound record of at least [`CONN_MIN_BYTES`] of no
    /// held connection (`ck` is not in the map): opens one.
    #[inline(never)]
    fn open(&mut self, record: &FlowRecord, t: u64, ck: ConnKey, conn: u64) -> (bool, u64) {
        // Not marked recently used, as the map's insertion of an absent key.
        let first_ms = record.start_ms.min(t);
        self.map.insert(
            conn,
            ck,
            Conn {
                first_ms,
                last_ms: t,
            },
            false,
        );
        if self.filter.add(conn) {
            self.filter.rebuild_conns(&self.map);
        }
        (true, t - record.start_ms.min(t))
    }
}

/// Adds a record to its pair's current window sums; `new_conn` and `duration` from
/// [`Stitched::stitch`].
#[inline]
fn add_to_window(
    s: &mut WindowSums,
    record: &FlowRecord,
    t: u64,
    outbound: bool,
    new_conn: bool,
    duration: u64,
) {
    if s.records == 0 {
        s.first_ms = t;
    }
    s.records += 1;
    s.first_ms = s.first_ms.min(record.start_ms.max(1));
    s.last_ms = s.last_ms.max(t);
    s.sampled |= record.sampling_interval > 1;
    s.long_ms = s.long_ms.max(duration);
    s.conns += u32::from(new_conn);
    if outbound {
        s.out = s.out.saturating_add(record.bytes);
        if record.bytes >= CONN_MIN_BYTES {
            s.port = record.dst_port;
        }
    } else {
        s.inn = s.inn.saturating_add(record.bytes);
    }
}

impl Detector for ExfilDetector {
    fn name(&self) -> &'static str {
        "exfil"
    }

    fn observe(&mut self, record: &FlowRecord) {
        let Some(t) = self.on_time(record) else {
            return;
        };
        let home = &self.home;
        let Some((host, peer, outbound)) = orient_by(|a| home.contains(a), record) else {
            return;
        };
        if self.filter.as_ref().is_some_and(|f| !f(*host)) {
            return;
        }
        self.observe_host(record, t, host, peer, outbound);
    }

    fn observe_routed(&mut self, record: &FlowRecord, sides: Sides) {
        let Some(t) = self.on_time(record) else {
            return;
        };
        let Some((host, peer, outbound)) = orient_routed(record, sides) else {
            return;
        };
        self.observe_host(record, t, host, peer, outbound);
    }

    /// One loop over the run with the per-record path ([`ExfilDetector::observe_host`])
    /// inlined in it: the same steps as [`Detector::observe_routed`] on each record,
    /// without a call per record.
    ///
    /// It does not look ahead to prefetch the records' state. On the busy site (24 MB of
    /// this detector's state) the loads a look-ahead starts early (admission sketch
    /// lines, pair, host and prevalence slots) are about 3% of the detector's time, and
    /// the look-ahead's own work (hashing the records ahead, keeping them in a ring,
    /// the prefetch addresses) cost 50 to 90 instructions a record: measured slower on
    /// both datasets.
    fn observe_batch(&mut self, batch: &[Routed]) {
        for r in batch {
            let Some(t) = self.on_time(&r.record) else {
                continue;
            };
            let Some((host, peer, outbound)) = orient_routed(&r.record, r.sides) else {
                continue;
            };
            self.observe_host(&r.record, t, host, peer, outbound);
        }
    }

    fn advance(&mut self, watermark_ms: u64, out: &mut Vec<Finding>) {
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        out.append(&mut self.pending);
        let closable = self.window_of(
            self.watermark_ms
                .saturating_sub(self.config.allowed_lateness_ms),
        );
        if closable > self.closed_window {
            self.closed_window = closable;
            self.close_windows_before(closable, out);
        }
        let cfg = &self.config.exfil;
        let keep_ms = self.config.allowed_lateness_ms + cfg.stitch_gap_ms + cfg.active_timeout_ms;
        self.conns.prune(self.watermark_ms, keep_ms);
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        out.append(&mut self.pending);
        self.close_windows_before(u64::MAX, out);
        self.conns.map.clear();
        self.conns.filter.rebuild_conns(&self.conns.map);
    }

    fn state_bytes(&self) -> usize {
        self.pairs.shallow_bytes()
            + self.pair_filter.bytes()
            + self.pair_hints.bytes()
            + self.host_hints.bytes()
            + self.conns.filter.bytes()
            + self.hosts.shallow_bytes()
            + self.hosts.iter().filter(|(_, h)| h.daily.is_some()).count()
                * size_of::<HourProfile>()
            + self.conns.map.shallow_bytes()
            + self.prevalence.state_bytes()
            + self.admission.bytes()
            + (self.scratch.capacity() + self.scratch2.capacity()) * 8
    }

    fn evictions(&self) -> u64 {
        self.pairs.evictions()
            + self.hosts.evictions()
            + self.conns.map.evictions()
            + self.prevalence.evictions()
    }
}
