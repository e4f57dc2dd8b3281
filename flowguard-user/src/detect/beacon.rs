//! Command-and-control beaconing detection (MITRE ATT&CK T1071 / T1573).
//!
//! Series are keyed by (internal source, external destination, destination port,
//! protocol); every `eval_interval_ms` of event time the series with new connections
//! and at least `min_connections` connections within `horizon_ms` are scored, and the
//! series of one (source, destination) are also scored merged (a beacon that rotates
//! ports), when no single port was reported. The score follows RITA v5's shape:
//!
//! - **timestamps**: intervals between connection starts, their Bowley skew
//!   (1 − |skew|) and MAD/median dispersion (1 − (MAD/median)/0.8);
//! - **period fit**, which survives dropped beats and sampling: the share of intervals
//!   within ±15 % of the period of an integer multiple of a candidate base period
//!   (candidates: low quantiles of the intervals divided by 1–3; the largest good one
//!   wins), rescaled so that random timing (30 % fit by chance) scores 0. The timestamp
//!   score is the larger of the RITA measures and the period fit;
//! - **data size**: Bowley skew and MAD/median dispersion of bytes per connection;
//! - **histogram**: connection counts in up to 24 bins over the series span,
//!   1 − coefficient of variation (or bimodal: nearly all bins at one of two levels);
//! - **duration coverage**: series span over the data seen (up to the horizon).
//!
//! score = 0.35·timestamps + 0.20·size + 0.20·histogram + 0.25·coverage (on sampled
//! exports, where thinning turns a periodic series into a constant-rate random one, equal
//! weights, and the histogram also accepts Poisson-like bins: index of dispersion ≈ 1),
//! multiplied by
//! the prevalence damping ([`common::prevalence_damping`]: 1 for one internal host, 0.3 at
//! `prevalence_hosts`) and by 0.92 on sampled exports; reported at `threshold`.
//!
//! A "connection" is one flow record from the internal host, with the records that an
//! exporter's active timeout split from it (same source port, starting within 1 s of
//! the previous end) merged back. Responses of internal servers (source port < 1024,
//! destination port ≥ 1024), multicast, internal destinations (unless
//! `include_internal_dst`) and `skip_udp_ports`/`skip_tcp_ports` (NTP by default) are
//! not scored.
//!
//! Prevalence is counted per shard (each shard sees its own hosts' clients); feed the
//! global count with [`BeaconDetector::set_prevalence`] for exact damping.
//!
//! Admission: a key's first connection is held in a compact first-seen table (≈ 80 bytes
//! per key with its index, no heap); its second connection promotes it to a series with
//! both events, so the one-off (source, destination, port) keys of ordinary browsing
//! never get a series. Scoring is skipped for a series whose best possible score (every
//! timing, size and histogram term at 1) stays below the threshold after prevalence
//! damping, which is the case for destinations that many internal hosts use.
//!
//! Both tables are [`Table`]s: the slab and eviction of [`lru::BoundedMap`] with an
//! index that a run of records prefetches (see [`Detector::observe_batch`]).
//!
//! Byte cost per series: ≈ 140 bytes (slot, index, timing state) + 8 bytes per kept
//! connection (room for at least 8; ≤ `max_timestamps`; when full, every other connection
//! is dropped and the decimation factor doubles, which keeps the period structure and the
//! coverage).

#![allow(
    clippy::doc_markdown,
    reason = "protocol and product names (NTP, SaaS, RITA) are prose, not code"
)]
#![allow(
    clippy::too_many_lines,
    reason = "one scoring pass reads best in one piece"
)]
#![allow(
    clippy::similar_names,
    reason = "paired statistics (median, MAD) of intervals and sizes"
)]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "statistics over counts, times and bytes: f64/f32 precision is ample and every narrowing cast is of a clamped or rounded value"
)]

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    net::IpAddr,
};

use super::{
    Category, Detector, Entities, Finding, Sides,
    common::{self, HostFilter, Prevalence, SAMPLED_CONFIDENCE, num},
    config::DetectConfig,
    engine,
    lru::{self, BoundedMap, NO_SLOT, Table},
    sketch, stats,
};

use crate::decode::FlowRecord;

/// Records of one source port starting within this long of the previous end are one
/// connection split by the exporter's active timeout.
const SPLIT_GAP_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    protocol: u8,
}

/// Two words for a v4 pair, five for anything else, instead of the derived hash's eight
/// (an `IpAddr` hashes as a discriminant and then its bits): every admitted record looks
/// its key up. Equal keys write equal words, as `Hash` requires.
impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let tail = u64::from(self.port) << 8 | u64::from(self.protocol);
        if let (IpAddr::V4(src), IpAddr::V4(dst)) = (self.src, self.dst) {
            state.write_u64(u64::from(src.to_bits()) << 32 | u64::from(dst.to_bits()));
            state.write_u64(tail);
            return;
        }
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => (0, u128::from(a.to_bits())),
            IpAddr::V6(a) => (1, a.to_bits()),
        };
        let ((src_v6, src), (dst_v6, dst)) = (bits(self.src), bits(self.dst));
        for half in [src, src >> 64, dst, dst >> 64] {
            #[expect(clippy::cast_possible_truncation, reason = "one 64-bit half")]
            state.write_u64(half as u64);
        }
        state.write_u64(tail | src_v6 << 24 | dst_v6 << 25);
    }
}

/// [`SeriesKey::order`]: (source is v6, source bits, destination is v6, its bits, port,
/// protocol).
type KeyOrder = (bool, u128, bool, u128, u16, u8);

impl SeriesKey {
    /// A key that orders as the derived `Ord`: addresses by family (v4 first), then bits.
    fn order(&self) -> KeyOrder {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => (false, u128::from(a.to_bits())),
            IpAddr::V6(a) => (true, a.to_bits()),
        };
        let (src, dst) = (bits(self.src), bits(self.dst));
        (src.0, src.1, dst.0, dst.1, self.port, self.protocol)
    }
}

#[derive(Clone, Copy, Debug)]
struct Event {
    /// Start, ms after the series base.
    t: u32,
    /// Bytes of the connection's outbound record, or (bit 31, [`REPLY`]) of its reply
    /// when only the reply was sampled.
    bytes: u32,
}

/// Events a new series has room for.
const INITIAL_EVENTS: usize = 8;

/// Bit of [`Event::bytes`] marking a connection seen only by its reply (sampled exports).
const REPLY: u32 = 1 << 31;

impl Event {
    fn size(self) -> u32 {
        self.bytes & !REPLY
    }

    fn is_reply(self) -> bool {
        self.bytes & REPLY != 0
    }
}

#[derive(Debug, Default)]
struct Series {
    base_ms: u64,
    events: Vec<Event>,
    decimation: u32,
    last_src_port: u16,
    last_end_ms: u64,
    last_ms: u64,
    sampled: bool,
    dirty: bool,
    /// Whether an event was pushed with an earlier time than the one before it since the
    /// events were last sorted (false: already in order, and sorting would change
    /// nothing).
    out_of_order: bool,
    reported: f32,
}

/// A key seen with one connection so far (a series of one event, compactly): 56 bytes
/// of slot against ~180 for a series and its event vector.
#[derive(Clone, Copy, Debug)]
struct FirstSeen {
    base_ms: u64,
    last_end_ms: u64,
    last_ms: u64,
    event: Event,
    last_src_port: u16,
    sampled: bool,
}

/// A record of a run admitted for scoring: where it is, its direction, and its key's
/// hash (computed once, to prefetch its state). Small, so that collecting a run's
/// admitted records costs little; the key is built again from the record (a few loads)
/// when it is recorded.
#[derive(Clone, Copy, Debug)]
struct Admitted {
    /// [`sketch::hash_of`] the key: where both tables index it, and the first-seen
    /// table's key.
    hash: u64,
    /// Position in the run ([`Detector::observe_batch`]).
    at: u32,
    /// The series slot the key most likely has ([`Table::guess`]), or [`NO_SLOT`]: where
    /// to prefetch its events from.
    series_slot: u32,
    /// Seen only by the server's reply (see [`BeaconDetector::admit`]).
    reply: bool,
}

impl SeriesKey {
    /// The key of `r` (turned around when `reply`), and the client's port.
    #[inline]
    fn of(r: &FlowRecord, reply: bool) -> (Self, u16) {
        let (src, dst, client_port, server_port) = if reply {
            (r.dst_addr, r.src_addr, r.dst_port, r.src_port)
        } else {
            (r.src_addr, r.dst_addr, r.src_port, r.dst_port)
        };
        let key = SeriesKey {
            src,
            dst,
            port: if matches!(r.protocol, 6 | 17 | 132) {
                server_port
            } else {
                0
            },
            protocol: r.protocol,
        };
        (key, client_port)
    }
}

impl Admitted {
    /// `r`, admitted as a reply when `reply`, at position `at`.
    #[inline]
    fn new(r: &FlowRecord, reply: bool, at: u32) -> Self {
        Self {
            hash: sketch::hash_of(&SeriesKey::of(r, reply).0),
            at,
            series_slot: NO_SLOT,
            reply,
        }
    }
}

/// Drops the entries of `table` whose last time (`last_ms`) is more than `horizon` before
/// `now`, and sets `oldest` to the earliest last time kept. The table is only swept when
/// its oldest entry may have expired (`oldest` from the last sweep) or it has evicted:
/// otherwise the sweep would keep every entry and change nothing else either (it moves
/// the eviction hand only once evictions have started).
fn sweep<K: Eq + Copy, V>(
    table: &mut Table<K, V>,
    oldest: &mut u64,
    horizon: u64,
    now: u64,
    last_ms: impl Fn(&V) -> u64,
) {
    if table.evictions() == 0 && oldest.saturating_add(horizon) >= now {
        return;
    }
    let mut kept = u64::MAX;
    table.retain(|_, v| {
        let t = last_ms(v);
        let keep = t + horizon >= now;
        if keep {
            kept = kept.min(t);
        }
        keep
    });
    *oldest = kept;
}

/// The result of scoring one series.
#[derive(Clone, Copy, Debug, Default)]
struct Scored {
    score: f64,
    ts: f64,
    ts_skew: f64,
    ts_dispersion: f64,
    period_fit: f64,
    period_ms: f64,
    size: f64,
    hist: f64,
    coverage: f64,
    interval_median_ms: f64,
    interval_mad_ms: f64,
    bytes_median: f64,
    connections: f64,
    first_ms: u64,
    last_ms: u64,
}

/// The beaconing detector; see the module docs.
pub struct BeaconDetector {
    config: DetectConfig,
    series: Table<SeriesKey, Series>,
    home: sketch::HomeNets,
    /// `skip_tcp_ports` and `skip_udp_ports` as bit sets of the 65,536 ports (8 KiB each),
    /// tested on every record.
    skip_ports: Box<[[u64; 1024]; 2]>,
    /// Keys with one connection so far, by a 64-bit hash of the [`SeriesKey`].
    first: Table<u64, FirstSeen>,
    pair_reported: BoundedMap<(IpAddr, IpAddr), f32>,
    prevalence: Prevalence,
    filter: Option<HostFilter>,
    watermark_ms: u64,
    next_eval_ms: u64,
    data_first_ms: u64,
    /// At most the least `last_ms` of any series (`u64::MAX`: none yet), so that
    /// evaluation can tell without a pass over the series that none has expired.
    series_oldest_ms: u64,
    /// The same for the first-seen table.
    first_oldest_ms: u64,
    late: u64,
    scratch: Scratch,
    /// Scratch for [`sort_events`]: the out-of-order tail and the merged sequence.
    event_scratch: [Vec<Event>; 2],
    /// The admitted records of the run being observed (kept for its allocation).
    admitted: Vec<Admitted>,
}

impl BeaconDetector {
    /// A detector with `config`'s thresholds and caps.
    #[must_use]
    pub fn new(config: &DetectConfig) -> Self {
        let cap = config.max_keys_per_detector;
        Self {
            config: config.clone(),
            series: Table::new(cap),
            home: sketch::HomeNets::new(&config.home_nets),
            skip_ports: {
                let mut sets: Box<[[u64; 1024]; 2]> = vec![[0u64; 1024]; 2]
                    .into_boxed_slice()
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("two sets"));
                let lists = [&config.beacon.skip_tcp_ports, &config.beacon.skip_udp_ports];
                for (set, list) in sets.iter_mut().zip(lists) {
                    for &port in list {
                        set[usize::from(port >> 6)] |= 1 << (port & 63);
                    }
                }
                sets
            },
            first: Table::new(cap),
            pair_reported: BoundedMap::new(cap),
            prevalence: Prevalence::new(cap),
            filter: None,
            watermark_ms: 0,
            next_eval_ms: 0,
            data_first_ms: u64::MAX,
            series_oldest_ms: u64::MAX,
            first_oldest_ms: u64::MAX,
            late: 0,
            scratch: Scratch::default(),
            event_scratch: [Vec::new(), Vec::new()],
            admitted: Vec::with_capacity(engine::BATCH),
        }
    }

    /// Only internal sources for which `filter` returns true get state.
    pub fn set_host_filter(&mut self, filter: HostFilter) {
        self.filter = Some(filter);
    }

    /// Feeds the number of internal hosts (over all shards) that talk to `dst`; the
    /// larger of this and the shard's own count damps the score.
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

    /// The host a record is keyed on: its source (the beaconing host).
    #[must_use]
    pub fn key_host(record: &FlowRecord) -> IpAddr {
        record.src_addr
    }

    /// Whether `record` is scored, and how: `Some(false)` for a client's own record,
    /// `Some(true)` for a server's reply to be turned around into the client's direction
    /// (sampled exports only: a 1-packet beat's two directions are sampled independently,
    /// and either one proves the connection; unsampled, the client's own record is always
    /// there), `None` when neither.
    ///
    /// Eligible: an internal source, a destination that is neither a group address nor
    /// (unless `include_internal_dst`) internal, and for TCP/UDP not a server's response
    /// (source port < 1024, destination port ≥ 1024) nor a skipped port. A reply (an
    /// external service port to an internal ephemeral port) is taken when its turned-around
    /// record is eligible. Each address is tested against the home networks once: a record
    /// with an internal source can only be eligible as it stands (a reply needs an
    /// external source), and an external source is never eligible itself.
    ///
    /// Every record is asked, so this is inlined into the loops over records (a call
    /// cost about as much as the tests), cheapest test first; the reply's tests, which
    /// only sampled records reach, are out of line.
    #[expect(
        clippy::inline_always,
        reason = "measured: left to itself the compiler calls it, once per record"
    )]
    #[inline(always)]
    fn admit(&self, r: &FlowRecord, src_home: bool, dst_home: bool) -> Option<bool> {
        if src_home {
            let eligible = (self.config.beacon.include_internal_dst || !dst_home)
                && !is_group_or_unspecified(r.dst_addr)
                && self.ports_eligible(r.protocol, r.src_port, r.dst_port);
            return eligible.then_some(false);
        }
        (r.sampling_interval > 1 && self.admit_reply(r, dst_home)).then_some(true)
    }

    /// The rest of [`Self::admit`] for a sampled record with an external source: whether
    /// it is a reply whose turned-around record is eligible.
    #[inline(never)]
    fn admit_reply(&self, r: &FlowRecord, dst_home: bool) -> bool {
        // The turned-around record's source is `dst_addr`, its destination `src_addr`
        // (external, so the internal-destination test passes), its ports swapped.
        matches!(r.protocol, 6 | 17)
            && r.dst_port >= 1024
            && r.src_port < r.dst_port
            && (r.src_port < 1024 || r.dst_port >= 32_768)
            && dst_home
            && !is_group_or_unspecified(r.src_addr)
            && self.ports_eligible(r.protocol, r.dst_port, r.src_port)
    }

    /// The port part of eligibility: for TCP and UDP, not a server's response and not a
    /// skipped destination port.
    #[inline]
    #[expect(
        clippy::needless_bitwise_bool,
        reason = "all tests made, so that no branch depends on one"
    )]
    fn ports_eligible(&self, protocol: u8, src_port: u16, dst_port: u16) -> bool {
        let skip = match protocol {
            6 => &self.skip_ports[0],
            17 => &self.skip_ports[1],
            _ => return true,
        };
        let (word, bit) = (usize::from(dst_port >> 6), dst_port & 63);
        // All three tests made (each is a compare of a loaded value): which of them
        // fails varies from record to record, and short-circuiting them mispredicted.
        ((src_port >= 1024) | (dst_port < 1024)) & (skip[word] >> bit & 1 == 0)
    }

    fn build(
        &self,
        src: IpAddr,
        dst: IpAddr,
        ports: Vec<u16>,
        s: &Scored,
        sampled: bool,
    ) -> Finding {
        let hosts = self.prevalence.hosts(dst);
        let mut ev = BTreeMap::new();
        ev.insert("connections".into(), num(s.connections));
        ev.insert(
            "interval_median_s".into(),
            num(s.interval_median_ms / 1000.0),
        );
        ev.insert("interval_mad_s".into(), num(s.interval_mad_ms / 1000.0));
        ev.insert("interval_skew_score".into(), num(s.ts_skew));
        ev.insert("interval_dispersion_score".into(), num(s.ts_dispersion));
        ev.insert("period_fit".into(), num(s.period_fit));
        ev.insert("period_s".into(), num(s.period_ms / 1000.0));
        ev.insert("timestamp_score".into(), num(s.ts));
        ev.insert("size_score".into(), num(s.size));
        ev.insert("bytes_median".into(), num(s.bytes_median));
        ev.insert("histogram_score".into(), num(s.hist));
        ev.insert("coverage_score".into(), num(s.coverage));
        ev.insert("dst_internal_hosts".into(), num(hosts));
        ev.insert(
            "prevalence_damping".into(),
            num(common::prevalence_damping(
                hosts,
                self.config.prevalence_hosts,
            )),
        );
        let at_least = if sampled { "at least " } else { "" };
        let period = if s.period_fit >= 0.5 {
            s.period_ms
        } else {
            s.interval_median_ms
        };
        let port_text = match ports.as_slice() {
            [p] => format!(" port {p}"),
            [] => String::new(),
            many => format!(
                " ports {}",
                many.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let summary = format!(
            "{src} connected to {dst}{port_text} {at_least}{:.0} times over {} at a regular interval of about {} (timing score {:.2}, size score {:.2}, coverage {:.0}%){}.",
            s.connections,
            common::fmt_ms(s.last_ms - s.first_ms),
            common::fmt_ms(period.max(0.0) as u64),
            s.ts,
            s.size,
            s.coverage * 100.0,
            if hosts > 1.0 {
                format!("; {hosts:.0} internal hosts use this destination")
            } else {
                String::new()
            },
        );
        common::finding(
            Category::Beaconing,
            "periodic",
            s.score,
            Entities {
                src: Some(src),
                dst: Some(dst),
                ports,
            },
            s.first_ms,
            s.last_ms,
            ev,
            sampled,
            summary,
        )
    }

    /// A record as [`Detector::observe_routed`] admits it, at position `at` of its run:
    /// `None` when it is late (and counted), not scored, or of a host this shard does not
    /// own.
    #[expect(
        clippy::inline_always,
        reason = "part of the loop over every record of a run"
    )]
    #[inline(always)]
    fn admit_routed(&mut self, record: &FlowRecord, sides: Sides, at: u32) -> Option<Admitted> {
        let end = common::event_ms(record);
        if end + self.config.allowed_lateness_ms < self.watermark_ms {
            self.late += 1;
            return None;
        }
        match self.admit(record, sides.src_internal, sides.dst_internal) {
            Some(false) if sides.src_owned => Some(Admitted::new(record, false, at)),
            Some(true) if sides.dst_owned => Some(Admitted::new(record, true, at)),
            _ => None,
        }
    }

    /// [`Self::record`] out of line, for the record-at-a-time paths, where most records
    /// stop at admission.
    #[inline(never)]
    fn record_one(&mut self, record: &FlowRecord, a: Admitted) {
        self.record(record, a);
    }

    /// Adds an admitted record (`a` says how) to its key's state. Inlined into the last
    /// pass of [`Detector::observe_batch`], which does nothing else.
    #[expect(
        clippy::inline_always,
        reason = "measured: fewer instructions than the call, the pass's only work"
    )]
    #[inline(always)]
    fn record(&mut self, record: &FlowRecord, a: Admitted) {
        let end = common::event_ms(record);
        let (key, client_port) = SeriesKey::of(record, a.reply);
        let start = if record.start_ms == 0 {
            end
        } else {
            record.start_ms.min(end)
        };
        self.prevalence.observe(key.dst, key.src, start);
        self.data_first_ms = self.data_first_ms.min(start);
        let max_events = self.config.beacon.max_timestamps.max(16);
        let bytes = u32::try_from(record.bytes)
            .unwrap_or(u32::MAX)
            .min(REPLY - 1);
        let sampled = record.sampling_interval > 1;
        let slot = match self.series.find(a.hash, &key) {
            Some(slot) => slot,
            None => match self.first_connection(&key, client_port, a, (start, end), bytes, sampled)
            {
                Some(slot) => slot,
                None => return,
            },
        };
        let s = self.series.touch(slot);
        s.dirty = true;
        s.sampled |= sampled;
        s.last_ms = s.last_ms.max(end);
        // The same connection: a record the exporter split from the last one, or (sampled)
        // any record of the last connection's client port, either direction. A sampled
        // long-lived connection is one connection, not a train of beats.
        if let Some(last) = s.events.last_mut()
            && fold_same_connection(
                last,
                s.last_src_port,
                &mut s.last_end_ms,
                client_port,
                (start, end),
                bytes,
                a.reply,
                sampled,
            )
        {
            return;
        }
        if start < s.base_ms {
            // A connection before the base (reordering): shift the base back.
            let shift = u32::try_from(s.base_ms - start).unwrap_or(u32::MAX);
            for e in &mut s.events {
                e.t = e.t.saturating_add(shift);
            }
            s.base_ms = start;
        }
        let Ok(t) = u32::try_from(start - s.base_ms) else {
            // More than 49 days after the base: restart the series.
            *s = Series {
                base_ms: start,
                decimation: 1,
                dirty: true,
                ..Series::default()
            };
            self.series_oldest_ms = 0;
            return;
        };
        if s.events.len() >= max_events {
            s.events.sort_unstable_by_key(|e| e.t);
            let mut i = 0;
            s.events.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            s.decimation = s.decimation.saturating_mul(2);
            s.out_of_order = false;
        }
        // Shifting the base and folding into the last event keep the order.
        if s.events.last().is_some_and(|last| t < last.t) {
            s.out_of_order = true;
        }
        s.events.push(Event {
            t,
            bytes: bytes | if a.reply { REPLY } else { 0 },
        });
        s.last_src_port = client_port;
        s.last_end_ms = end;
    }

    /// A connection of a key without a series. Admission: a key's first connection
    /// waits in the compact first-seen table; the second one promotes it to a series
    /// (the same state, event for event), whose slot is returned. Out of line: most
    /// records of a busy key find a series.
    #[inline(never)]
    fn first_connection(
        &mut self,
        key: &SeriesKey,
        client_port: u16,
        a: Admitted,
        (start, end): (u64, u64),
        bytes: u32,
        sampled: bool,
    ) -> Option<u32> {
        let fk = a.hash;
        let Some(slot) = self.first.find(fk, &fk) else {
            // Not marked recently used, as the map's `get_or_insert_with` leaves a key
            // it inserts.
            let first = FirstSeen {
                base_ms: start,
                last_end_ms: end,
                last_ms: end,
                event: Event {
                    t: 0,
                    bytes: bytes | if a.reply { REPLY } else { 0 },
                },
                last_src_port: client_port,
                sampled,
            };
            self.first.insert(fk, fk, first, false);
            self.first_oldest_ms = self.first_oldest_ms.min(end);
            return None;
        };
        let f = self.first.touch(slot);
        f.sampled |= sampled;
        f.last_ms = f.last_ms.max(end);
        if fold_same_connection(
            &mut f.event,
            f.last_src_port,
            &mut f.last_end_ms,
            client_port,
            (start, end),
            bytes,
            a.reply,
            sampled,
        ) {
            return None;
        }
        let f = self.first.remove(fk, &fk).expect("present");
        self.series_oldest_ms = self.series_oldest_ms.min(f.last_ms);
        // Room for a few connections up front: growing from one event a step at a time
        // cost more (in `realloc`) than the pushes themselves.
        let mut events = Vec::with_capacity(INITIAL_EVENTS);
        events.push(f.event);
        // Marked recently used as it is inserted, as any series a record touches.
        let series = Series {
            base_ms: f.base_ms,
            events,
            decimation: 1,
            last_src_port: f.last_src_port,
            last_end_ms: f.last_end_ms,
            last_ms: f.last_ms,
            sampled: f.sampled,
            dirty: true,
            out_of_order: false,
            reported: 0.0,
        };
        Some(self.series.insert(a.hash, *key, series, true))
    }

    /// Scores the dirty series and emits what crosses the threshold.
    fn evaluate(&mut self, out: &mut Vec<Finding>) {
        let horizon = self.config.beacon.horizon_ms;
        let now = self.watermark_ms;
        // Drop series silent for the whole horizon (the episode is over), and
        // connections that fell out of the horizon.
        sweep(
            &mut self.series,
            &mut self.series_oldest_ms,
            horizon,
            now,
            |s| s.last_ms,
        );
        sweep(
            &mut self.first,
            &mut self.first_oldest_ms,
            horizon,
            now,
            |f| f.last_ms,
        );
        // The keys to score, with their slots (nothing below moves a series).
        let mut ordered: Vec<SeriesKey> = Vec::new();
        let mut slots: Vec<u32> = Vec::new();
        // Series of a destination so prevalent that its damping alone keeps every score
        // below the threshold: the best a series (or a pair's merged series) can score is
        // the damping itself (every other factor is at most 1), so scoring them would
        // stop at `score_events`' bound and report nothing. They are left out of the sort
        // and the scoring, and only marked recently used, as scoring marks them.
        let mut damped: Vec<u32> = Vec::new();
        let mut hosts = HostsCache::new();
        let threshold = self.config.beacon.threshold;
        let [tail, merged] = &mut self.event_scratch;
        for (slot, (k, s)) in (0u32..).zip(self.series.iter_mut()) {
            if !s.dirty {
                continue;
            }
            s.dirty = false;
            let from = now.saturating_sub(horizon);
            if s.base_ms < from {
                let cut = u32::try_from(from - s.base_ms).unwrap_or(u32::MAX);
                s.events.retain(|e| e.t >= cut);
            }
            if s.events.len() >= self.config.beacon.min_connections.max(3) {
                // Dropping the oldest events keeps the rest in order.
                if s.out_of_order {
                    sort_events(&mut s.events, tail, merged);
                    s.out_of_order = false;
                }
                let damp = common::prevalence_damping(
                    hosts.get(&self.prevalence, k.dst),
                    self.config.prevalence_hosts,
                );
                if damp < threshold - 1e-9 {
                    damped.push(slot);
                } else {
                    ordered.push(*k);
                    slots.push(slot);
                }
            }
        }
        for slot in damped {
            self.series.touch(slot);
        }
        let order = sort_order(&ordered);
        let keys: Vec<SeriesKey> = order.iter().map(|&i| ordered[i as usize]).collect();
        let mut pair_start = 0;
        while pair_start < keys.len() {
            let (src, dst) = (keys[pair_start].src, keys[pair_start].dst);
            let mut pair_end = pair_start;
            while pair_end < keys.len() && keys[pair_end].src == src && keys[pair_end].dst == dst {
                pair_end += 1;
            }
            let mut any_reported = false;
            let ctx = ScoreContext {
                config: &self.config,
                watermark_ms: self.watermark_ms,
                data_first_ms: self.data_first_ms,
            };
            for (key, &i) in keys[pair_start..pair_end]
                .iter()
                .zip(&order[pair_start..pair_end])
            {
                // The series is scored where it lies (found by its slot, which also marks
                // it recently used, as a lookup would).
                let Some(s) = self.series.get_mut_in(slots[i as usize], key) else {
                    continue;
                };
                let (sampled, reported) = (s.sampled, s.reported);
                let need = if reported > 0.0 {
                    threshold.max(f64::from(reported) + 0.1)
                } else {
                    threshold
                };
                let scored = score_events(
                    &ctx,
                    &mut self.scratch,
                    &s.events,
                    s.base_ms,
                    s.decimation,
                    sampled,
                    hosts.get(&self.prevalence, dst),
                    need,
                );
                any_reported |= reported > 0.0;
                if let Some(sc) = scored
                    && sc.score >= threshold
                    && (reported == 0.0 || sc.score >= f64::from(reported) + 0.1)
                {
                    #[expect(clippy::cast_possible_truncation, reason = "f32 state")]
                    {
                        s.reported = sc.score as f32;
                    }
                    any_reported = true;
                    let ports = if key.port == 0 {
                        Vec::new()
                    } else {
                        vec![key.port]
                    };
                    out.push(self.build(src, dst, ports, &sc, sampled));
                }
            }
            if pair_end - pair_start >= 2 && !any_reported {
                self.evaluate_pair(&keys[pair_start..pair_end], out);
            }
            pair_start = pair_end;
        }
    }

    /// Scores the merged connections of several series of one (source, destination).
    fn evaluate_pair(&mut self, keys: &[SeriesKey], out: &mut Vec<Finding>) {
        let (src, dst) = (keys[0].src, keys[0].dst);
        let mut merged: Vec<(u64, u32)> = Vec::new();
        let mut sampled = false;
        let mut decimation = 1;
        for key in keys {
            if let Some(s) = self.series.get(sketch::hash_of(key), key) {
                sampled |= s.sampled;
                decimation = decimation.max(s.decimation.max(1));
                merged.extend(
                    s.events
                        .iter()
                        .map(|e| (s.base_ms + u64::from(e.t), e.bytes)),
                );
            }
        }
        merged.sort_unstable();
        let Some(&(base, _)) = merged.first() else {
            return;
        };
        let events: Vec<Event> = merged
            .iter()
            .map(|&(t, bytes)| Event {
                t: u32::try_from(t - base).unwrap_or(u32::MAX),
                bytes,
            })
            .collect();
        let reported = self.pair_reported.get(&(src, dst)).copied().unwrap_or(0.0);
        let threshold = self.config.beacon.threshold;
        let need = if reported > 0.0 {
            threshold.max(f64::from(reported) + 0.1)
        } else {
            threshold
        };
        let ctx = ScoreContext {
            config: &self.config,
            watermark_ms: self.watermark_ms,
            data_first_ms: self.data_first_ms,
        };
        let Some(sc) = score_events(
            &ctx,
            &mut self.scratch,
            &events,
            base,
            decimation,
            sampled,
            self.prevalence.hosts(dst),
            need,
        ) else {
            return;
        };
        if sc.score >= self.config.beacon.threshold
            && (reported == 0.0 || sc.score >= f64::from(reported) + 0.1)
        {
            #[expect(clippy::cast_possible_truncation, reason = "f32 state")]
            let score = sc.score as f32;
            *self.pair_reported.get_or_insert_with((src, dst), || 0.0) = score;
            let mut ports: Vec<u16> = keys.iter().map(|k| k.port).filter(|&p| p != 0).collect();
            ports.dedup();
            ports.truncate(32);
            out.push(self.build(src, dst, ports, &sc, sampled));
        }
    }
}

/// What [`score_events`] reads of the detector besides the series.
struct ScoreContext<'a> {
    config: &'a DetectConfig,
    watermark_ms: u64,
    data_first_ms: u64,
}

/// [`Prevalence::hosts`] of the destinations scored in one evaluation, direct-mapped by
/// address: a destination that many internal hosts use (the series whose damping rules
/// them out before any statistics, most of those scored) comes back for many sources,
/// and counting its hosts costs a map lookup and a logarithm each time. Prevalence does
/// not change during an evaluation, so a cached count is the count.
struct HostsCache {
    entries: [(IpAddr, f64); HOSTS_CACHE],
    /// Bit `i`: entry `i` is filled.
    filled: u64,
}

const HOSTS_CACHE: usize = 64;

impl HostsCache {
    fn new() -> Self {
        Self {
            entries: [(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0.0); HOSTS_CACHE],
            filled: 0,
        }
    }

    /// `prevalence.hosts(dst)`.
    fn get(&mut self, prevalence: &Prevalence, dst: IpAddr) -> f64 {
        #[expect(clippy::cast_possible_truncation, reason = "masked below HOSTS_CACHE")]
        let i = sketch::addr_hash(dst) as usize & (HOSTS_CACHE - 1);
        let entry = &mut self.entries[i];
        if self.filled >> i & 1 == 1 && entry.0 == dst {
            return entry.1;
        }
        let hosts = prevalence.hosts(dst);
        *entry = (dst, hosts);
        self.filled |= 1 << i;
        hosts
    }
}

/// Work space of [`score_events`], kept between calls.
#[derive(Debug, Default)]
struct Scratch {
    /// Intervals or sizes as integers, to be sorted (cheaper than sorting floats).
    ints: Vec<u32>,
    iv: Vec<f64>,
    sizes: Vec<f64>,
    tmp: Vec<f64>,
}

/// Scores sorted events; `None` when there are too few intervals.
#[expect(clippy::cast_precision_loss, reason = "statistics on counts and times")]
#[expect(
    clippy::too_many_arguments,
    reason = "a series' fields, borrowed apart from the map that holds it"
)]
fn score_events(
    ctx: &ScoreContext<'_>,
    scratch: &mut Scratch,
    events: &[Event],
    base_ms: u64,
    decimation: u32,
    sampled: bool,
    hosts: f64,
    need: f64,
) -> Option<Scored> {
    let min = ctx.config.beacon.min_connections.max(3);
    if events.len() < min {
        return None;
    }
    // The most this series can score: every other term is at most 1, so the raw score
    // is at most 0.75 + 0.25·coverage; with the damping of a prevalent destination
    // that can stay below `need`, and then nothing is reported whatever the timing,
    // so the statistics are not computed at all.
    let (first_ms, last_ms) = (
        base_ms + u64::from(events[0].t),
        base_ms + u64::from(events[events.len() - 1].t),
    );
    let data_span = ctx
        .watermark_ms
        .max(last_ms)
        .saturating_sub(ctx.data_first_ms.min(first_ms))
        .min(ctx.config.beacon.horizon_ms)
        .max(1);
    let coverage = ((last_ms - first_ms) as f64 / data_span as f64).clamp(0.0, 1.0);
    let damp = common::prevalence_damping(hosts, ctx.config.prevalence_hosts);
    let conf = if sampled { SAMPLED_CONFIDENCE } else { 1.0 };
    if (0.75 + 0.25 * coverage) * damp * conf < need - 1e-9 {
        return None;
    }
    let Scratch {
        ints,
        iv,
        sizes,
        tmp,
    } = scratch;
    ints.clear();
    for w in events.windows(2) {
        let d = w[1].t.saturating_sub(w[0].t);
        if d > 0 {
            ints.push(d);
        }
    }
    let connections = events.len() as f64 * f64::from(decimation.max(1));
    if events.len() < min || ints.len() + 1 < min {
        return None;
    }
    // Sorted as integers, then converted: the same floats in the same order as sorting
    // the floats (the conversion is exact and monotonic).
    sorted_floats(ints, iv);
    let iv_med = stats::median_sorted(iv);
    let iv_mad = mad_sorted(iv, iv_med, tmp);
    let ts_skew = 1.0 - stats::bowley_skew(iv).abs();
    let ts_dispersion = (1.0 - (iv_mad / iv_med.max(1.0)) / 0.8).clamp(0.0, 1.0);
    let (period_fit, period_ms) = period_fit(iv);
    // On sampled exports, the beats that survive are a random subset and the jitter
    // between them accumulates (after k beats of ±j jitter the phase spreads by about
    // 0.58·j·√k periods), so no interval or period test survives 1:100; a thinned
    // periodic series is a constant-rate one, with intervals as regular as a Poisson
    // process' (coefficient of variation ≤ 1), while bursty traffic has a CV well
    // above 1. Score that: 1 at CV ≤ 0.8, 0 at CV ≥ 1.3.
    let iv_cv = {
        let n = iv.len() as f64;
        let mean = iv.iter().sum::<f64>() / n;
        let var = iv.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / n;
        var.sqrt() / mean.max(1.0)
    };
    let thinned = if sampled {
        ((1.3 - iv_cv) / 0.5).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let ts = f64::midpoint(ts_skew, ts_dispersion)
        .max(period_fit)
        .max(thinned);
    // Sizes per direction: outbound records, and (sampled) replies standing in for
    // unsampled outbound ones; each direction with 3 or more is scored, weighted by
    // count.
    let counts = [false, true].map(|r| events.iter().filter(|e| e.is_reply() == r).count());
    let (mut size, mut weight) = (0.0, 0.0);
    for (r, n) in [false, true].into_iter().zip(counts) {
        if n < 3 && counts.iter().any(|&m| m >= 3) {
            continue;
        }
        ints.clear();
        ints.extend(
            events
                .iter()
                .filter(|e| n < 3 || e.is_reply() == r)
                .map(|e| e.size()),
        );
        sorted_floats(ints, sizes);
        let med = stats::median_sorted(sizes);
        let mad = mad_sorted(sizes, med, tmp);
        let score = f64::midpoint(
            1.0 - stats::bowley_skew(sizes).abs(),
            (1.0 - (mad / med.max(1.0)) / 0.8).clamp(0.0, 1.0),
        );
        size += score * sizes.len() as f64;
        weight += sizes.len() as f64;
    }
    let size = size / weight.max(1.0);
    // The typical outbound size (all sizes when only replies were seen). Without replies
    // that is every event, which the loop above left sorted in `sizes`.
    if counts[1] > 0 {
        let outbound = counts[0] > 0;
        ints.clear();
        ints.extend(
            events
                .iter()
                .filter(|e| !outbound || !e.is_reply())
                .map(|e| e.size()),
        );
        sorted_floats(ints, sizes);
    }
    let size_med = stats::median_sorted(sizes);
    // Histogram over the series span.
    let first = f64::from(events[0].t);
    let last = f64::from(events[events.len() - 1].t);
    let span = (last - first).max(1.0);
    let bins = (events.len() / 2).clamp(3, 24);
    let mut counts = [0f64; 24];
    for e in events {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "bin index"
        )]
        let b = (((f64::from(e.t) - first) / span * bins as f64) as usize).min(bins - 1);
        counts[b] += 1.0;
    }
    let counts = &counts[..bins];
    let mean = counts.iter().sum::<f64>() / bins as f64;
    let var = counts.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / bins as f64;
    let cv = var.sqrt() / mean.max(1e-9);
    let bimodal = if mean >= 4.0 {
        let mut c: Vec<f64> = counts.to_vec();
        stats::sort(&mut c);
        // Two levels: the share of bins within 10 % (or ±1) of the lowest or highest
        // level, when the levels differ.
        let (lo, hi) = (c[0], c[bins - 1]);
        let near = |x: f64, l: f64| (x - l).abs() <= (0.1 * l).max(1.0);
        let share = c.iter().filter(|&&x| near(x, lo) || near(x, hi)).count() as f64 / bins as f64;
        if hi > lo * 1.5 && share >= 0.9 {
            share
        } else {
            0.0
        }
    } else {
        0.0
    };
    // On sampled exports a periodic series is thinned into a constant-rate random
    // one: its bin counts are then Poisson-like (index of dispersion ≈ 1), while
    // bursty or diurnal traffic is over-dispersed. Score that instead of the CV.
    let dispersion_index = var / mean.max(1e-9);
    let poisson_flat = if sampled {
        (1.0 - (dispersion_index - 1.0).max(0.0) / 3.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let hist = (1.0 - cv).max(bimodal).max(poisson_flat).clamp(0.0, 1.0);
    // Sampling destroys interval regularity (the observed beats are a random subset,
    // and jitter accumulates between them), so on sampled exports timing weighs less
    // and the rate, size and coverage regularity more.
    let raw = if sampled {
        0.25 * ts + 0.25 * size + 0.25 * hist + 0.25 * coverage
    } else {
        0.35 * ts + 0.20 * size + 0.20 * hist + 0.25 * coverage
    };
    let score = raw * damp * conf;
    Some(Scored {
        score,
        ts,
        ts_skew,
        ts_dispersion,
        period_fit,
        period_ms,
        size,
        hist,
        coverage,
        interval_median_ms: iv_med,
        interval_mad_ms: iv_mad,
        bytes_median: size_med,
        connections,
        first_ms,
        last_ms,
    })
}

/// Sorts `ints` and writes them to `out` as floats: what sorting the floats would give
/// (`f64::from(u32)` is exact and monotonic, so the order and the values are the same).
fn sorted_floats(ints: &mut [u32], out: &mut Vec<f64>) {
    ints.sort_unstable();
    out.clear();
    out.extend(ints.iter().map(|&x| f64::from(x)));
}

/// `stats::mad` of sorted finite `values` about their median `median`, without its sort:
/// the deviations `|v − median|` fall along the values below the median and rise along
/// those above it, so merging the two runs yields them sorted (the same floats, computed
/// by the same expression, so the same median).
fn mad_sorted(values: &[f64], median: f64, scratch: &mut Vec<f64>) -> f64 {
    let split = values.partition_point(|&v| v < median);
    let (below, above) = values.split_at(split);
    scratch.clear();
    scratch.reserve(values.len());
    let dev = |v: f64| (v - median).abs();
    let (mut i, mut j) = (below.len(), 0);
    while i > 0 && j < above.len() {
        let (a, b) = (dev(below[i - 1]), dev(above[j]));
        if a <= b {
            scratch.push(a);
            i -= 1;
        } else {
            scratch.push(b);
            j += 1;
        }
    }
    scratch.extend(below[..i].iter().rev().map(|&v| dev(v)));
    scratch.extend(above[j..].iter().map(|&v| dev(v)));
    stats::median_sorted(scratch)
}

/// The indices of `keys` (distinct) in the order of `keys.sort_unstable()`, by plain
/// integers instead of `IpAddr`'s comparison: each key becomes the bit string of
/// [`SeriesKey::order`] (source family, its 128 bits, destination family, its bits, port,
/// protocol: 282 bits, big-endian in five words, so that the words compare as the key),
/// with the key's index in the 38 bits left over.
fn sort_order(keys: &[SeriesKey]) -> Vec<u32> {
    // Usually every v6 address has bits from 2^32 on (v4 addresses are below), and then
    // the bits alone order (family, bits) as the key does: sort by those, three plain
    // integers per key, moving only 4-byte indices.
    let mut plain: Vec<(u128, u128, u32)> = Vec::with_capacity(keys.len());
    for k in keys {
        let (src_v6, src, dst_v6, dst, port, protocol) = k.order();
        if (src_v6 && src >> 32 == 0) || (dst_v6 && dst >> 32 == 0) {
            break;
        }
        plain.push((src, dst, u32::from(port) << 8 | u32::from(protocol)));
    }
    if plain.len() == keys.len() {
        let mut order: Vec<u32> = (0..).take(keys.len()).collect();
        order.sort_unstable_by(|&a, &b| plain[a as usize].cmp(&plain[b as usize]));
        return order;
    }
    let mut packed: Vec<[u64; 5]> = (0u64..)
        .zip(keys)
        .map(|(i, k)| {
            let (src_v6, src, dst_v6, dst, port, protocol) = k.order();
            let mut w = BitString::default();
            w.push(u64::from(src_v6), 1);
            w.push_u128(src);
            w.push(u64::from(dst_v6), 1);
            w.push_u128(dst);
            w.push(u64::from(port), 16);
            w.push(u64::from(protocol), 8);
            w.push(i, 38);
            w.words
        })
        .collect();
    packed.sort_unstable();
    packed
        .iter()
        .map(|w| (w[4] & ((1 << 38) - 1)) as u32)
        .collect()
}

/// Bits appended big-endian to five words.
#[derive(Default)]
struct BitString {
    words: [u64; 5],
    used: u32,
}

impl BitString {
    /// Appends the low `n` (1 to 64) bits of `value`.
    fn push(&mut self, value: u64, n: u32) {
        let value = if n == 64 {
            value
        } else {
            value & ((1 << n) - 1)
        };
        let word = (self.used / 64) as usize;
        let free = 64 - self.used % 64;
        if n <= free {
            self.words[word] |= value << (free - n);
        } else {
            self.words[word] |= value >> (n - free);
            self.words[word + 1] |= value << (64 - (n - free));
        }
        self.used += n;
    }

    /// Appends all 128 bits of `value`.
    fn push_u128(&mut self, value: u128) {
        #[expect(clippy::cast_possible_truncation, reason = "one 64-bit half")]
        let (high, low) = ((value >> 64) as u64, value as u64);
        self.push(high, 64);
        self.push(low, 64);
    }
}

/// `common::is_group_or_unspecified`, with the v4 case (almost every record) inline.
#[inline]
fn is_group_or_unspecified(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
        IpAddr::V6(_) => common::is_group_or_unspecified(addr),
    }
}

/// When a record (client port `src_port`, `[start, end]`) is the same connection as the
/// last one (a record the exporter split from it, or, sampled, any record of its client
/// port), folds its bytes into `last` and returns true.
#[expect(
    clippy::too_many_arguments,
    reason = "the two callers hold different structs"
)]
fn fold_same_connection(
    last: &mut Event,
    last_src_port: u16,
    last_end_ms: &mut u64,
    src_port: u16,
    (start, end): (u64, u64),
    bytes: u32,
    reply: bool,
    sampled: bool,
) -> bool {
    if last_src_port != src_port
        || !(sampled
            || (start <= *last_end_ms + SPLIT_GAP_MS
                && start >= last_end_ms.saturating_sub(SPLIT_GAP_MS)))
    {
        return false;
    }
    match (last.is_reply(), reply) {
        // The size score compares outbound sizes; a reply adds nothing to one.
        (false, true) => {}
        (true, false) => last.bytes = bytes,
        (was_reply, _) => {
            last.bytes = ((last.bytes & !REPLY).saturating_add(bytes)).min(REPLY - 1)
                | if was_reply { REPLY } else { 0 };
        }
    }
    *last_end_ms = (*last_end_ms).max(end);
    true
}

/// Sorts `events` by time into exactly the order `sort_unstable_by_key(|e| e.t)` gives,
/// cheaply for the usual shape: a series is sorted up to its last evaluation, and the
/// connections added since (records arrive by end time, so by start time only roughly)
/// form a short tail. The tail is sorted on its own and merged in, O(n) plus the tail's
/// sort instead of a sort of everything.
///
/// The order must be exactly the unstable sort's, because the last event after
/// evaluation is the one a split record folds into and decimation drops every other
/// event. Sorted by time, two sequences can differ only in the order of events with equal
/// times; where all such events are also equal in bytes (so indistinguishable) the merge
/// is used, otherwise the events are sorted by `sort_unstable_by_key` itself. A slice
/// already in order is left as it is, as the unstable sort leaves it.
fn sort_events(events: &mut [Event], tail: &mut Vec<Event>, merged: &mut Vec<Event>) {
    let run = 1 + events.windows(2).take_while(|w| w[0].t <= w[1].t).count();
    if run >= events.len() {
        return;
    }
    let head = &events[..run];
    tail.clear();
    tail.extend_from_slice(&events[run..]);
    tail.sort_unstable_by_key(|e| e.t);
    merged.clear();
    merged.reserve(events.len());
    let (mut i, mut j) = (0, 0);
    while i < head.len() && j < tail.len() {
        if tail[j].t < head[i].t {
            merged.push(tail[j]);
            j += 1;
        } else {
            merged.push(head[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&head[i..]);
    merged.extend_from_slice(&tail[j..]);
    if merged
        .windows(2)
        .any(|w| w[0].t == w[1].t && w[0].bytes != w[1].bytes)
    {
        events.sort_unstable_by_key(|e| e.t);
    } else {
        events.copy_from_slice(merged);
    }
}

/// `x.round()` (half away from zero) for `x ≥ 0`, without the library call that the
/// baseline x86-64 target makes of it: below 2^52 the fraction `x − ⌊x⌋` is exact, and
/// from 2^52 on every float is an integer.
#[inline]
fn round_non_negative(x: f64) -> f64 {
    const INTEGRAL: f64 = 4_503_599_627_370_496.0; // 2^52
    if (0.0..INTEGRAL).contains(&x) {
        // Through i64, not u64: the same truncation on this range, in one instruction
        // (the baseline target converts to u64 with a branch and a fix-up).
        #[expect(
            clippy::cast_possible_truncation,
            reason = "0 <= x < 2^52: truncation toward zero, exactly"
        )]
        let floor = x as i64 as f64;
        if x - floor >= 0.5 { floor + 1.0 } else { floor }
    } else {
        x.round()
    }
}

/// How far from a multiple of a candidate period an interval may be, as a share of the
/// period, and still fit it.
const PERIOD_TOLERANCE: f64 = 0.15;

/// Whether interval `d` fits period `p`: within [`PERIOD_TOLERANCE`] of a positive
/// multiple of it.
#[inline]
fn fits_period(d: f64, p: f64) -> bool {
    let k = round_non_negative(d / p);
    k >= 1.0 && (d - k * p).abs() <= PERIOD_TOLERANCE * p
}

/// How many of `sorted` (ascending, non-negative intervals) fit period `p` (positive):
/// `sorted.iter().filter(|&&d| fits_period(d, p)).count()`, the same floats compared,
/// by binary searches instead of one test per interval.
///
/// The nearest multiple `k = round(d / p)` never falls as `d` grows (division by a
/// positive number and rounding are monotonic in floats too), so the intervals of one
/// multiple are a run; within it `d − k·p` never falls either, so those within the
/// tolerance are a run too, found by two more searches. A periodic series has few
/// multiples (the missed beats), so this is a few searches per candidate instead of a
/// pass over every interval; intervals spread over many multiples (no period) fall back
/// to the pass.
fn period_hits(sorted: &[f64], p: f64) -> usize {
    /// Runs of one multiple searched before the rest is tested one by one.
    const MAX_RUNS: usize = 8;
    let tolerance = PERIOD_TOLERANCE * p;
    let mut hits = 0;
    let mut rest = sorted;
    for _ in 0..MAX_RUNS {
        let Some(&first) = rest.first() else {
            return hits;
        };
        let k = round_non_negative(first / p);
        let len = rest.partition_point(|&d| round_non_negative(d / p) <= k);
        let (run, after) = rest.split_at(len);
        if k >= 1.0 {
            let q = k * p;
            // `|d − q| ≤ tolerance` is `−tolerance ≤ d − q ≤ tolerance` (negating a float
            // is exact).
            let below = run.partition_point(|&d| d - q < -tolerance);
            let within = run.partition_point(|&d| d - q <= tolerance);
            hits += within - below;
        }
        rest = after;
    }
    hits + rest.iter().filter(|&&d| fits_period(d, p)).count()
}

/// The period fit of sorted intervals: (score in [0, 1], base period in ms).
#[expect(clippy::cast_precision_loss, reason = "statistics")]
fn period_fit(sorted: &[f64]) -> (f64, f64) {
    const NULL: f64 = 0.3;
    if sorted.len() < 3 {
        return (0.0, 0.0);
    }
    let mut best = (0.0f64, 0.0f64);
    let mut candidates = [0.0f64; 9];
    let mut n = 0;
    for q in [0.1, 0.25, 0.5] {
        let base = stats::quantile_sorted(sorted, q);
        for m in 1..=3 {
            let p = base / f64::from(m);
            if p >= 1000.0 {
                candidates[n] = p;
                n += 1;
            }
        }
    }
    let mut fits = [(0.0f64, 0.0f64); 9];
    for (&p, fit) in candidates[..n].iter().zip(&mut fits) {
        let hits = period_hits(sorted, p);
        let share = hits as f64 / sorted.len() as f64;
        *fit = (((share - NULL) / (1.0 - NULL)).clamp(0.0, 1.0), p);
    }
    let fits = &fits[..n];
    let top = fits.iter().map(|f| f.0).fold(0.0, f64::max);
    for &(f, p) in fits {
        // The largest period that fits about as well as the best (P/2 always fits as
        // well as P).
        if f >= top - 0.05 && p > best.1 {
            best = (f, p);
        }
    }
    best
}

impl Detector for BeaconDetector {
    fn name(&self) -> &'static str {
        "beacon"
    }

    fn observe(&mut self, record: &FlowRecord) {
        let end = common::event_ms(record);
        if end + self.config.allowed_lateness_ms < self.watermark_ms {
            self.late += 1;
            return;
        }
        let (src_home, dst_home) = (
            self.home.contains(record.src_addr),
            self.home.contains(record.dst_addr),
        );
        let reply = match self.admit(record, src_home, dst_home) {
            Some(false) => {
                if self.filter.as_ref().is_some_and(|f| !f(record.src_addr)) {
                    return;
                }
                false
            }
            Some(true) => {
                if self.filter.as_ref().is_some_and(|f| !f(record.dst_addr)) {
                    return;
                }
                true
            }
            None => return,
        };
        self.record_one(record, Admitted::new(record, reply, 0));
    }

    fn observe_routed(&mut self, record: &FlowRecord, sides: Sides) {
        if let Some(a) = self.admit_routed(record, sides, 0) {
            self.record_one(record, a);
        }
    }

    /// Three passes over the run, so that the loads of one record's state overlap with
    /// those of the others instead of stalling each record in turn (once the tables
    /// outgrow the caches, those stalls are most of a record's cost): admission (about
    /// one record in eight gets further), which starts loading the admitted keys' index
    /// buckets; then, with the buckets loaded, the slots they name; then the records in
    /// order, each starting to load the last event of a series a few records ahead,
    /// whose slot has arrived by then.
    #[expect(
        clippy::needless_bitwise_bool,
        reason = "the first pass's tests are made without branches (see there)"
    )]
    fn observe_batch(&mut self, batch: &[engine::Routed]) {
        /// How many admitted records ahead a series' events are prefetched.
        const EVENTS_AHEAD: usize = 2;
        let mut admitted = std::mem::take(&mut self.admitted);
        // In runs of at most `BATCH`: what is prefetched must still be cached when used.
        for run in batch.chunks(engine::BATCH) {
            admitted.clear();
            // Only a record with an internal source this shard owns can be a client's,
            // and only a sampled one a reply: the others are dropped first, without a
            // branch on which they are (as random as the records' directions; a branch
            // on the source's side mispredicted about every other record).
            // A late record among them is counted here, the others by `admit_routed`.
            let mut candidates = [0u32; engine::BATCH];
            let mut n = 0;
            let lateness = self.config.allowed_lateness_ms;
            for (at, routed) in (0..).zip(run) {
                candidates[n] = at;
                let (r, sides) = (&routed.record, routed.sides);
                let candidate = (sides.src_internal & sides.src_owned) | (r.sampling_interval > 1);
                let late = common::event_ms(r) + lateness < self.watermark_ms;
                self.late += u64::from(late & !candidate);
                n += usize::from(candidate);
            }
            for &at in &candidates[..n] {
                let routed = &run[at as usize];
                if let Some(a) = self.admit_routed(&routed.record, routed.sides, at) {
                    self.series.prefetch_index(a.hash);
                    self.first.prefetch_index(a.hash);
                    admitted.push(a);
                }
            }
            for a in &mut admitted {
                // No series: the first-seen slot is the one the record will touch.
                if let Some(slot) = self.series.guess(a.hash) {
                    self.series.prefetch_slot(slot);
                    a.series_slot = slot;
                } else if let Some(slot) = self.first.guess(a.hash) {
                    self.first.prefetch_slot(slot);
                }
            }
            for (i, &a) in admitted.iter().enumerate() {
                if let Some(s) = admitted
                    .get(i + EVENTS_AHEAD)
                    .and_then(|ahead| self.series.peek(ahead.series_slot))
                    && let Some(last) = s.events.last()
                {
                    lru::prefetch(last);
                }
                self.record(&run[a.at as usize].record, a);
            }
        }
        self.admitted = admitted;
    }

    fn advance(&mut self, watermark_ms: u64, out: &mut Vec<Finding>) {
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        if self.watermark_ms >= self.next_eval_ms {
            let step = self.config.beacon.eval_interval_ms.max(1000);
            self.next_eval_ms = self.watermark_ms - self.watermark_ms % step + step;
            if self.data_first_ms != u64::MAX {
                self.evaluate(out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        if self.data_first_ms != u64::MAX {
            let last = self
                .series
                .iter()
                .map(|(_, s)| s.last_ms)
                .chain(self.first.iter().map(|(_, f)| f.last_ms))
                .max()
                .unwrap_or(0);
            self.watermark_ms = self.watermark_ms.max(last);
            self.evaluate(out);
        }
        self.series.clear();
        self.first.clear();
        self.series_oldest_ms = u64::MAX;
        self.first_oldest_ms = u64::MAX;
    }

    fn state_bytes(&self) -> usize {
        self.series.shallow_bytes()
            + self
                .series
                .iter()
                .map(|(_, s)| s.events.capacity() * size_of::<Event>())
                .sum::<usize>()
            + self.first.shallow_bytes()
            + self.pair_reported.shallow_bytes()
            + self.prevalence.state_bytes()
    }

    fn evictions(&self) -> u64 {
        self.series.evictions()
            + self.first.evictions()
            + self.pair_reported.evictions()
            + self.prevalence.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `period_hits` counts what testing every interval counts: periodic intervals with
    /// jitter, missed beats and ties, and intervals with no period, against candidate
    /// periods around and below the true one.
    #[test]
    fn period_hits_counts_as_testing_each_interval() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..4000 {
            let n = 3 + (next() % 300) as usize;
            // Small numbers, as i64 (every cast below is exact).
            let mut small = |below: u64| i64::from((next() % below) as u32);
            let period = 1000 + small(100_000);
            let mut ints: Vec<u32> = (0..n)
                .map(|_| {
                    let d = match case % 4 {
                        // Jittered beats, some missed.
                        0 | 1 => {
                            let beats = 1 + small(3) * small(2);
                            period * beats + small(period as u64 / 3 + 1) - period / 6
                        }
                        // Exact beats: many ties, and intervals on the tolerance's edge.
                        2 => period * (1 + small(4)) + [0, 150, -150][small(3) as usize],
                        // No period at all.
                        _ => small(10_000_000),
                    };
                    d.clamp(1, i64::from(u32::MAX)) as u32
                })
                .collect();
            let mut sorted = Vec::new();
            sorted_floats(&mut ints, &mut sorted);
            for p in [
                period as f64,
                period as f64 / 2.0,
                period as f64 / 3.0,
                stats::quantile_sorted(&sorted, 0.1),
                stats::quantile_sorted(&sorted, 0.5) / 3.0,
                1000.0,
            ] {
                if p <= 0.0 {
                    continue;
                }
                let want = sorted.iter().filter(|&&d| fits_period(d, p)).count();
                assert_eq!(period_hits(&sorted, p), want, "case {case}, p {p}");
            }
        }
    }

    /// `sort_events` leaves exactly what `sort_unstable_by_key` leaves: sorted series
    /// with out-of-order tails, with many ties (some differing in bytes) and with few.
    #[test]
    fn sort_events_matches_the_unstable_sort() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut tail, mut merged) = (Vec::new(), Vec::new());
        let pairs = |v: &[Event]| v.iter().map(|e| (e.t, e.bytes)).collect::<Vec<_>>();
        for case in 0..3000 {
            let n = 1 + (next() % 100) as usize;
            let spread = if case % 3 == 0 { 16 } else { 1_000_000 };
            let mut events: Vec<Event> = (0..n)
                .map(|_| Event {
                    t: (next() % spread) as u32,
                    bytes: (next() % 3) as u32,
                })
                .collect();
            let head = (next() % (n as u64 + 1)) as usize;
            events[..head].sort_unstable_by_key(|e| e.t);
            let mut want = events.clone();
            want.sort_unstable_by_key(|e| e.t);
            sort_events(&mut events, &mut tail, &mut merged);
            assert_eq!(pairs(&events), pairs(&want), "case {case}");
        }
    }
}
