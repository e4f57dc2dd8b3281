//! Detector configuration: home networks, allow-lists, thresholds and state caps.
//!
//! Loaded from a JSON file (`--detect-config`); every field has a default, so `{}` is a
//! valid configuration. Thresholds default to the values DESIGN.md cites (Zeek's scan
//! thresholds, RITA-style beacon scoring).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::sketch::HomeNets;
use crate::decode::FlowRecord;

/// Everything the detectors need to know about the site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// The internal networks (Suricata's `HOME_NET`). Default: RFC 1918, RFC 4193, and the
    /// benchmarking range 198.18.0.0/15 the lab and scenarios use.
    pub home_nets: Vec<IpNet>,
    /// Traffic that must never produce a finding.
    pub allow: Vec<AllowRule>,
    /// Port scan thresholds.
    pub scan: ScanConfig,
    /// Exfiltration thresholds.
    pub exfil: ExfilConfig,
    /// Beaconing thresholds.
    pub beacon: BeaconConfig,
    /// Volumetric thresholds.
    pub volume: VolumeConfig,
    /// Most keys (hosts, host pairs) any one map of one detector of one shard keeps;
    /// beyond it the least recently seen key is evicted and counted. Each detector's
    /// module docs give its bytes per key; at the default (1,000,000) a shard whose maps
    /// are all full holds about 1.3 GiB (`cargo xtask bench detect`, key-churn run), and
    /// stays there however many more distinct keys arrive.
    pub max_keys_per_detector: usize,
    /// How far behind the watermark a record may arrive and still count (ms).
    pub allowed_lateness_ms: u64,
    /// Destinations contacted by at least this many internal hosts are "prevalent"
    /// (CDN, `SaaS`, NTP, update services) and damp beacon and exfiltration scores.
    pub prevalence_hosts: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        let nets = [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "fc00::/7",
            "2001:2::/48",
        ];
        Self {
            home_nets: nets.iter().filter_map(|n| n.parse().ok()).collect(),
            allow: Vec::new(),
            scan: ScanConfig::default(),
            exfil: ExfilConfig::default(),
            beacon: BeaconConfig::default(),
            volume: VolumeConfig::default(),
            max_keys_per_detector: 1_000_000,
            allowed_lateness_ms: 120_000,
            prevalence_hosts: 10,
        }
    }
}

impl DetectConfig {
    /// Whether `addr` is inside the home networks.
    #[must_use]
    pub fn is_internal(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.home_nets.iter().any(|n| n.contains(&addr))
    }

    /// Whether an allow rule covers this record (at its start time).
    #[must_use]
    pub fn allowed(&self, r: &FlowRecord) -> bool {
        self.allow.iter().any(|rule| rule.matches(r))
    }
}

/// The site as the hot path asks about it: home networks and allow rules compiled to
/// integer masks, giving the same answers as [`DetectConfig::is_internal`] and
/// [`DetectConfig::allowed`] for a few instructions per network instead of
/// `IpNet::contains`' general path (which cost a third of detection time when every
/// record was checked against a scenario's handful of rules). Each address is made
/// canonical (v4-mapped v6 tests as v4) once per record, not once per network.
#[derive(Clone, Debug, Default)]
pub struct Site {
    home: HomeNets,
    allow: Vec<CompiledRule>,
    /// Protocols some rule can match (bit per protocol number), so that records of
    /// other protocols skip the rules.
    allow_protocols: [u64; 4],
    /// Which rules could cover a record, by the port a rule names; `None` when there
    /// are more rules than bits, and every rule is tried.
    candidates: Option<RuleIndex>,
}

/// The rules worth trying for a record, as bit masks over `Site::allow`: a record is
/// checked against the rules naming its destination port (forward) or its source port
/// (reverse, the answer of the same conversation), plus those naming no port. Most
/// records carry at most one port a rule names, so this leaves zero or one rule to try
/// instead of all of them, for one probe of a small direct-mapped table per port.
///
/// Each group of rules also keeps the smallest v4 networks holding all of its rules'
/// source and destination networks (their common prefixes), so that a v4 record on a
/// named port that no rule of the port can cover, such as a workstation's DNS query
/// when only the resolvers' forwarding is allowed, is turned away with two mask
/// tests instead of a walk over the rules.
#[derive(Clone, Debug)]
struct RuleIndex {
    /// The rules naming a port, at `port % PORT_SLOTS`, with those naming none; a slot
    /// no port names holds just the latter.
    by_port: [PortRules; PORT_SLOTS],
    /// Rules naming no port.
    any_port: PortRules,
}

/// Rules sharing a port (see [`RuleIndex`]).
#[derive(Clone, Copy, Debug, Default)]
struct PortRules {
    port: u16,
    /// The rules, as a bit mask.
    rules: u64,
    /// (network, mask) holding every v4 source network of the rules.
    from: (u32, u32),
    /// The same for destinations.
    to: (u32, u32),
}

impl PortRules {
    /// Adds rule number `i`.
    fn add(&mut self, i: usize, rule: &CompiledRule) {
        let first = self.rules == 0;
        self.rules |= 1 << i;
        self.from = hull(first, self.from, rule.src);
        self.to = hull(first, self.to, rule.dst);
    }

    /// The rules that could cover a v4 record read with `from` as the rules' source end.
    #[inline]
    #[expect(
        clippy::needless_bitwise_bool,
        reason = "both tests made, so that no branch depends on either"
    )]
    fn covering_v4(&self, from: u32, to: u32) -> u64 {
        // Both tests made and the mask selected without a branch: whether a record's
        // source end falls in the hull is as random as the record's direction, a branch
        // per test mispredicted about once a record.
        let inside = (from & self.from.1 == self.from.0) & (to & self.to.1 == self.to.0);
        std::hint::select_unpredictable(inside, self.rules, 0)
    }
}

/// The smallest v4 network holding `acc` (unless `first`) and the v4 addresses `net`
/// can hold: a v6 network holds none, so it widens nothing; "any" widens to all.
fn hull(first: bool, acc: (u32, u32), net: Net) -> (u32, u32) {
    let (n, m) = match net {
        Net::Any => (0, 0),
        Net::V4(n, m) => (n, m),
        Net::V6(..) => return acc,
    };
    if first {
        return (n, m);
    }
    // Keep the leading bits both networks fix and agree on.
    let agree = !(acc.0 ^ n) & acc.1 & m;
    let mask = match agree.leading_ones() {
        0 => 0,
        len => u32::MAX << (32 - len),
    };
    (acc.0 & mask, mask)
}

/// Slots of [`RuleIndex::by_port`]: room for a site's handful of distinct ports.
const PORT_SLOTS: usize = 32;

impl RuleIndex {
    /// The index, or `None` when there are more rules than mask bits or two named ports
    /// share a slot (every rule is then tried).
    fn new(rules: &[CompiledRule]) -> Option<Self> {
        if rules.len() > 64 {
            return None;
        }
        let mut any_port = PortRules::default();
        for (i, rule) in rules.iter().enumerate() {
            if rule.dst_port.is_none() {
                any_port.add(i, rule);
            }
        }
        // Every slot starts as the rules naming no port (port 0 in an unnamed slot
        // then finds just those, as it should).
        let mut index = Self {
            by_port: [any_port; PORT_SLOTS],
            any_port,
        };
        let mut named = [false; PORT_SLOTS];
        for (i, rule) in rules.iter().enumerate() {
            let Some(p) = rule.dst_port else {
                continue;
            };
            let k = usize::from(p) % PORT_SLOTS;
            let slot = &mut index.by_port[k];
            if named[k] && slot.port != p {
                return None;
            }
            named[k] = true;
            slot.port = p;
            slot.add(i, rule);
        }
        Some(index)
    }

    /// The rules for records on `port`: those naming it or none.
    #[inline]
    fn slot(&self, port: u16) -> &PortRules {
        let slot = &self.by_port[usize::from(port) % PORT_SLOTS];
        if slot.port == port {
            slot
        } else {
            &self.any_port
        }
    }

    /// Rules naming `port` or none.
    #[inline]
    fn naming(&self, port: u16) -> u64 {
        self.slot(port).rules
    }

    /// Rules that could cover a v4 record on `port` read with `from` as the rules'
    /// source end: those naming `port` or none, less those whose networks cannot hold
    /// the ends.
    #[inline]
    fn covering_v4(&self, port: u16, from: u32, to: u32) -> u64 {
        self.slot(port).covering_v4(from, to)
    }
}

/// An address made canonical, as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addr {
    V4(u32),
    V6(u128),
}

impl Addr {
    #[inline]
    fn of(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Addr::V4(a.to_bits()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Addr::V4(v4.to_bits()),
                None => Addr::V6(a.to_bits()),
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Net {
    Any,
    V4(u32, u32),
    V6(u128, u128),
}

impl Net {
    fn of(net: Option<IpNet>) -> Self {
        match net {
            None => Net::Any,
            Some(IpNet::V4(n)) => Net::V4(n.network().to_bits(), n.netmask().to_bits()),
            Some(IpNet::V6(n)) => Net::V6(n.network().to_bits(), n.netmask().to_bits()),
        }
    }

    /// Whether `a` is inside (a network only holds its own family).
    #[inline]
    fn contains(self, a: Addr) -> bool {
        match (self, a) {
            (Net::Any, _) => true,
            (Net::V4(n, m), Addr::V4(a)) => a & m == n,
            (Net::V6(n, m), Addr::V6(a)) => a & m == n,
            _ => false,
        }
    }
}

/// An address as the allow rules test it: any canonical address, or one known to be v4,
/// for which the compiler drops every v6 arm of the tests.
trait RuleAddr: Copy {
    fn within(self, net: Net) -> bool;
}

impl RuleAddr for Addr {
    #[inline]
    fn within(self, net: Net) -> bool {
        net.contains(self)
    }
}

impl RuleAddr for u32 {
    #[inline]
    fn within(self, net: Net) -> bool {
        match net {
            Net::Any => true,
            Net::V4(n, m) => self & m == n,
            Net::V6(..) => false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct CompiledRule {
    src: Net,
    dst: Net,
    dst_port: Option<u16>,
    protocol: Option<u8>,
    window: Option<[u16; 2]>,
}

impl Site {
    /// Compiles `config`'s home networks and allow rules.
    #[must_use]
    pub fn new(config: &DetectConfig) -> Self {
        let allow: Vec<CompiledRule> = config
            .allow
            .iter()
            .map(|r| CompiledRule {
                src: Net::of(r.src),
                dst: Net::of(r.dst),
                dst_port: r.dst_port,
                protocol: r.protocol,
                window: r.daily_window_utc_minutes,
            })
            .collect();
        let mut allow_protocols = [0u64; 4];
        for rule in &allow {
            match rule.protocol {
                Some(p) => allow_protocols[usize::from(p) / 64] |= 1 << (p % 64),
                None => allow_protocols = [u64::MAX; 4],
            }
        }
        Self {
            home: HomeNets::new(&config.home_nets),
            candidates: RuleIndex::new(&allow),
            allow,
            allow_protocols,
        }
    }

    /// Whether `addr` is inside the home networks.
    #[inline]
    #[must_use]
    pub fn is_internal(&self, addr: IpAddr) -> bool {
        self.internal(Addr::of(addr))
    }

    #[inline]
    fn internal(&self, a: Addr) -> bool {
        match a {
            Addr::V4(a) => self.home.contains_v4(a),
            Addr::V6(a) => self.home.contains_v6(a),
        }
    }

    /// Whether an allow rule covers this record; the same answer as
    /// [`AllowRule::matches`] over all rules.
    #[inline]
    #[must_use]
    pub fn allowed(&self, r: &FlowRecord) -> bool {
        self.allowed_canonical(r, Addr::of(r.src_addr), Addr::of(r.dst_addr))
    }

    /// Whether at least one end of `r` is internal and no allow rule covers it: the
    /// records detection looks at.
    #[inline]
    #[must_use]
    pub fn wants(&self, r: &FlowRecord) -> bool {
        self.classify(r).is_some()
    }

    /// For a record detection looks at (see [`wants`](Self::wants)): whether its source
    /// and its destination are internal. `None` for the others.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "the routing hot path: one call per record, whose rule tests stay out of line"
    )]
    #[must_use]
    pub fn classify(&self, r: &FlowRecord) -> Option<(bool, bool)> {
        // Two v4 ends, nearly every record: with both addresses known to be v4, the
        // compiler drops every v6 arm from the network tests below.
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (r.src_addr, r.dst_addr) else {
            return self.classify_any(r);
        };
        let (src, dst) = (src.to_bits(), dst.to_bits());
        let sides = (self.home.contains_v4(src), self.home.contains_v4(dst));
        if !(sides.0 | sides.1) {
            return None;
        }
        // Most records name no port an allow rule names, or come from hosts no rule of
        // the port names: that much is decided here, and only the others go out of
        // line to test rules.
        let (forward, reverse) = self.candidates_v4(r, src, dst);
        if (forward | reverse) != 0 && self.allowed_by(r, src, dst, forward, reverse) {
            return None;
        }
        Some(sides)
    }

    /// [`classify`](Self::classify) for records with a v6 end.
    #[inline(never)]
    fn classify_any(&self, r: &FlowRecord) -> Option<(bool, bool)> {
        let (src, dst) = (Addr::of(r.src_addr), Addr::of(r.dst_addr));
        let sides = (self.internal(src), self.internal(dst));
        ((sides.0 || sides.1) && !self.allowed_canonical(r, src, dst)).then_some(sides)
    }

    #[inline]
    fn allowed_canonical<A: RuleAddr>(&self, r: &FlowRecord, src: A, dst: A) -> bool {
        let (forward, reverse) = self.candidates(r);
        (forward | reverse) != 0 && self.allowed_by(r, src, dst, forward, reverse)
    }

    /// The rules that could cover `r` read forward and reversed, as masks over
    /// `self.allow` (`u64::MAX` each when the rules are not indexed): `(0, 0)` for a
    /// record of a protocol no rule names, or naming no port a rule names.
    #[inline]
    fn candidates(&self, r: &FlowRecord) -> (u64, u64) {
        if self.allow_protocols[usize::from(r.protocol) / 64] & (1 << (r.protocol % 64)) == 0 {
            return (0, 0);
        }
        match &self.candidates {
            Some(index) => (index.naming(r.dst_port), index.naming(r.src_port)),
            None => (u64::MAX, u64::MAX),
        }
    }

    /// [`candidates`](Self::candidates) for a record with two v4 ends `src` and `dst`,
    /// less the rules whose networks cannot hold them.
    #[inline]
    fn candidates_v4(&self, r: &FlowRecord, src: u32, dst: u32) -> (u64, u64) {
        if self.allow_protocols[usize::from(r.protocol) / 64] & (1 << (r.protocol % 64)) == 0 {
            return (0, 0);
        }
        match &self.candidates {
            Some(index) => (
                index.covering_v4(r.dst_port, src, dst),
                index.covering_v4(r.src_port, dst, src),
            ),
            None => (u64::MAX, u64::MAX),
        }
    }

    /// Whether one of the candidate rules covers `r` (forward, or reversed: the answer
    /// of the same conversation).
    #[inline(never)]
    fn allowed_by<A: RuleAddr>(
        &self,
        r: &FlowRecord,
        src: A,
        dst: A,
        forward: u64,
        reverse: u64,
    ) -> bool {
        if self.candidates.is_none() {
            return self
                .allow
                .iter()
                .any(|rule| rule.covers(r, src, dst, true) || rule.covers(r, dst, src, false));
        }
        self.any_covers(forward, r, src, dst, true) || self.any_covers(reverse, r, dst, src, false)
    }

    /// Whether one of the rules in the bit mask `rules` covers `r` with `from` as the
    /// rule's source end.
    #[inline]
    fn any_covers<A: RuleAddr>(
        &self,
        mut rules: u64,
        r: &FlowRecord,
        from: A,
        to: A,
        forward: bool,
    ) -> bool {
        while rules != 0 {
            let i = rules.trailing_zeros() as usize;
            rules &= rules - 1;
            if self.allow[i].covers(r, from, to, forward) {
                return true;
            }
        }
        false
    }
}

impl CompiledRule {
    /// Whether this rule covers `r` read with `from` as the rule's source and `to` as
    /// its destination: `forward` as exported, or reversed (the rule's port is then the
    /// record's source port, the answer of the same conversation).
    #[inline]
    fn covers<A: RuleAddr>(&self, r: &FlowRecord, from: A, to: A, forward: bool) -> bool {
        let port = if forward { r.dst_port } else { r.src_port };
        self.protocol.is_none_or(|p| p == r.protocol)
            && self.dst_port.is_none_or(|p| p == port)
            && from.within(self.src)
            && to.within(self.dst)
            && self.window.is_none_or(|w| in_daily_window(w, r.start_ms))
    }
}

/// Whether `at_ms` falls in the daily UTC window `[start, end)` minutes (wrapping past
/// midnight when `start > end`).
fn in_daily_window([start, end]: [u16; 2], at_ms: u64) -> bool {
    let minute = u16::try_from(at_ms / 60_000 % 1440).unwrap_or(0);
    if start <= end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

/// One allow-list rule. Every field that is set must match; unset fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowRule {
    /// Why (shown in reports and audits).
    pub comment: String,
    /// Source network.
    pub src: Option<IpNet>,
    /// Destination network.
    pub dst: Option<IpNet>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Protocol number.
    pub protocol: Option<u8>,
    /// Daily time window in UTC, `[start_minute, end_minute)` of the day; may wrap past
    /// midnight (e.g. `[1380, 240]` is 23:00–04:00), for nightly backups.
    pub daily_window_utc_minutes: Option<[u16; 2]>,
}

impl AllowRule {
    /// Whether this rule covers `r` (either direction for the host pair).
    #[must_use]
    pub fn matches(&self, r: &FlowRecord) -> bool {
        let forward = self
            .src
            .is_none_or(|n| n.contains(&r.src_addr.to_canonical()))
            && self
                .dst
                .is_none_or(|n| n.contains(&r.dst_addr.to_canonical()))
            && self.dst_port.is_none_or(|p| p == r.dst_port);
        let reverse = self
            .src
            .is_none_or(|n| n.contains(&r.dst_addr.to_canonical()))
            && self
                .dst
                .is_none_or(|n| n.contains(&r.src_addr.to_canonical()))
            && self.dst_port.is_none_or(|p| p == r.src_port);
        (forward || reverse)
            && self.protocol.is_none_or(|p| p == r.protocol)
            && self
                .daily_window_utc_minutes
                .is_none_or(|w| in_daily_window(w, r.start_ms))
    }
}

/// Port scan thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Sliding window (ms). Default 5 min.
    pub window_ms: u64,
    /// Slow-scan window (ms), for scans of one probe every 30 s and slower. Default 1 h.
    pub slow_window_ms: u64,
    /// Distinct destinations on one port for a horizontal scan (Zeek: 25).
    pub horizontal_hosts: usize,
    /// Distinct ports on one destination for a vertical scan (Zeek: 15).
    pub vertical_ports: usize,
    /// Threshold Random Walk (Jung et al. 2004): P(success | benign), P(success | scanner),
    /// and the false-positive / detection targets that set the thresholds.
    pub trw_theta0: f64,
    /// See `trw_theta0`.
    pub trw_theta1: f64,
    /// Target false-positive rate alpha.
    pub trw_alpha: f64,
    /// Target detection rate beta.
    pub trw_beta: f64,
    /// On sampled exports, the fewest distinct targets actually observed before the
    /// scaled estimate (observed × sampling interval) may cross the thresholds.
    pub sampled_min_distinct: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            window_ms: 5 * 60_000,
            slow_window_ms: 60 * 60_000,
            horizontal_hosts: 25,
            vertical_ports: 15,
            trw_theta0: 0.8,
            trw_theta1: 0.2,
            trw_alpha: 0.01,
            trw_beta: 0.99,
            sampled_min_distinct: 4,
        }
    }
}

/// Exfiltration thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExfilConfig {
    /// Records of one 5-tuple (either direction) closer than this are one connection.
    pub stitch_gap_ms: u64,
    /// The exporters' active timeout (ms): the longest record they make of a flow that is
    /// still running. A stitched connection is kept this long (plus `stitch_gap_ms` and
    /// the allowed lateness) after its last record, so that the next record of a long
    /// transfer still finds it, also across a window's end. 30 min is Cisco IOS's default
    /// (`ip flow-cache timeout active`); exporters set shorter ones too (60 s is common),
    /// which this covers.
    pub active_timeout_ms: u64,
    /// Scoring window (ms). Default 1 h.
    pub window_ms: u64,
    /// Outbound bytes to one external destination in a window below which nothing is
    /// reported, whatever the baseline says.
    pub min_bytes: u64,
    /// Robust z (median/MAD of log bytes) above which volume is anomalous.
    pub z_threshold: f64,
    /// Connections longer than this count as long (ms).
    pub long_connection_ms: u64,
    /// Slow exfiltration: outbound bytes to one destination accumulated over consecutive
    /// active windows (a gap of one idle window is tolerated) at or above which a slow
    /// transfer is reported, even when no single window reaches `min_bytes`.
    pub slow_min_bytes: u64,
    /// Fewest active windows for the slow variant.
    pub slow_min_windows: usize,
    /// Longest run the slow accumulator covers before it restarts (ms).
    pub slow_horizon_ms: u64,
    /// Score at or above which a pair is reported.
    pub score_threshold: f64,
    /// Daily profile: a UTC hour of a host's day counts as a learned habit once it has
    /// been active (the host sent at least `min_bytes` / 10^`periodic_tolerance_log10`
    /// in that hour) on this many more earlier days than it was quiet. A window at that
    /// hour within the habit's volume is then damped (see the exfil module docs). The
    /// net count is capped at this value + 4, so a job that stops is forgotten after 5
    /// quiet days. 0 turns the damping off.
    pub periodic_min_days: usize,
    /// How far above a learned hour's level (log10 of bytes) a window may go and still be
    /// the habit: 0.3 is 2×. It also bounds how far one day moves the level.
    pub periodic_tolerance_log10: f64,
    /// Factor on the score of a window that matches its host's daily habit. The
    /// host-baseline term already counts such a window as normal. 0.5 keeps every such
    /// window below the default `score_threshold`, and 1 only neutralises the baseline
    /// term.
    pub periodic_damping: f64,
}

impl Default for ExfilConfig {
    fn default() -> Self {
        Self {
            stitch_gap_ms: 60_000,
            active_timeout_ms: 30 * 60_000,
            window_ms: 60 * 60_000,
            min_bytes: 100 << 20,
            z_threshold: 3.5,
            long_connection_ms: 30 * 60_000,
            slow_min_bytes: 300 << 20,
            slow_min_windows: 3,
            slow_horizon_ms: 12 * 3_600_000,
            score_threshold: 0.6,
            periodic_min_days: 3,
            periodic_tolerance_log10: 0.3,
            periodic_damping: 0.5,
        }
    }
}

/// Beaconing thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconConfig {
    /// Analysis horizon (ms). Default 24 h.
    pub horizon_ms: u64,
    /// Fewest connections to score (RITA: 4–6).
    pub min_connections: usize,
    /// Score at or above which a pair is reported.
    pub threshold: f64,
    /// Most timestamps kept per pair.
    pub max_timestamps: usize,
    /// UDP destination ports never scored as beacons (well-known periodic benign
    /// services). Default: NTP (123).
    pub skip_udp_ports: Vec<u16>,
    /// TCP destination ports never scored as beacons. Default: none.
    pub skip_tcp_ports: Vec<u16>,
    /// How often (event time, ms) series with new connections are rescored.
    pub eval_interval_ms: u64,
    /// Also score internal-to-internal pairs (lateral C2). Off by default: internal
    /// services (directory, monitoring) are periodic by design.
    pub include_internal_dst: bool,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        Self {
            horizon_ms: 24 * 3_600_000,
            min_connections: 6,
            threshold: 0.7,
            max_timestamps: 2048,
            skip_udp_ports: vec![123],
            skip_tcp_ports: Vec::new(),
            eval_interval_ms: 10 * 60_000,
            include_internal_dst: false,
        }
    }
}

/// Volumetric thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeConfig {
    /// Bucket width (ms). Default 10 s.
    pub bucket_ms: u64,
    /// Multiple of the learned baseline that counts as a flood.
    pub factor: f64,
    /// Robust z above which a bucket is anomalous.
    pub z_threshold: f64,
    /// Static ceilings (`FastNetMon` style), per destination: bits/s, packets/s, flows/s.
    /// Zero disables a ceiling.
    pub ceiling_bps: f64,
    /// See `ceiling_bps`.
    pub ceiling_pps: f64,
    /// See `ceiling_bps`.
    pub ceiling_flows_per_sec: f64,
    /// Buckets of history before a baseline is trusted.
    pub warmup_buckets: usize,
    /// Floors under the learned baseline (bits/s, packets/s, flows/s): a key whose
    /// baseline is below the floor (or not yet learned) is compared with the floor, so a
    /// rarely used host getting a few packets is not a flood.
    pub floor_bps: f64,
    /// See `floor_bps`.
    pub floor_pps: f64,
    /// See `floor_bps`.
    pub floor_flows_per_sec: f64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            bucket_ms: 10_000,
            factor: 5.0,
            z_threshold: 3.5,
            ceiling_bps: 0.0,
            ceiling_pps: 0.0,
            ceiling_flows_per_sec: 0.0,
            warmup_buckets: 30,
            floor_bps: 2e6,
            floor_pps: 300.0,
            floor_flows_per_sec: 30.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_the_default_and_unknown_keys_are_errors() {
        let c: DetectConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, DetectConfig::default());
        assert!(serde_json::from_str::<DetectConfig>(r#"{"home_net": []}"#).is_err());
        assert!(c.is_internal("10.1.2.3".parse().unwrap()));
        assert!(!c.is_internal("8.8.8.8".parse().unwrap()));
        assert!(c.is_internal("::ffff:192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn allow_rules_match_pairs_ports_and_nightly_windows() {
        let rule: AllowRule = serde_json::from_str(
            r#"{"comment":"backup","src":"10.0.0.5/32","dst":"203.0.113.0/24","dst_port":22,"daily_window_utc_minutes":[1380,240]}"#,
        )
        .unwrap();
        let mut r = FlowRecord {
            src_addr: "10.0.0.5".parse().unwrap(),
            dst_addr: "203.0.113.9".parse().unwrap(),
            dst_port: 22,
            start_ms: 23 * 3_600_000 + 30 * 60_000,
            ..FlowRecord::default()
        };
        assert!(rule.matches(&r), "23:30 is inside 23:00–04:00");
        r.start_ms = 12 * 3_600_000;
        assert!(!rule.matches(&r), "noon is outside");
        r.start_ms = 3 * 3_600_000;
        std::mem::swap(&mut r.src_addr, &mut r.dst_addr);
        r.src_port = 22;
        r.dst_port = 50_000;
        assert!(
            rule.matches(&r),
            "the reverse direction of the pair is covered"
        );
    }

    #[test]
    fn compiled_site_agrees_with_the_rules_it_was_built_from() {
        let mut c = DetectConfig::default();
        for rule in [
            r#"{"src":"10.0.0.0/30","dst":"203.0.113.0/28","dst_port":22,"daily_window_utc_minutes":[1380,240]}"#,
            r#"{"dst":"203.0.113.8/29","protocol":17}"#,
            r#"{"src":"fc00::/126","dst_port":993}"#,
            r#"{"dst_port":123,"protocol":17,"daily_window_utc_minutes":[60,120]}"#,
            // Resolvers forwarding to two upstreams: one port, sources in one /30.
            r#"{"src":"10.0.0.52/30","dst":"9.9.9.9/32","dst_port":53,"protocol":17}"#,
            r#"{"src":"10.0.0.52/30","dst":"8.8.8.8/32","dst_port":53,"protocol":17}"#,
            r#"{"src":"fc00::/7","dst_port":53}"#,
        ] {
            c.allow.push(serde_json::from_str(rule).unwrap());
        }
        agrees(&c, true);
        // Two rules naming one port, and more rules than the candidate index holds.
        c.allow
            .push(serde_json::from_str(r#"{"src":"fc00::9/128","dst_port":22}"#).unwrap());
        agrees(&c, true);
        for i in 0..64 {
            let filler = format!(r#"{{"src":"192.0.2.{i}/32","dst_port":{}}}"#, 1000 + i);
            c.allow.push(serde_json::from_str(&filler).unwrap());
        }
        agrees(&c, false);
    }

    /// `Site` gives `DetectConfig`'s answers over addresses × ports × protocols × hours.
    fn agrees(c: &DetectConfig, indexed: bool) {
        let site = Site::new(c);
        assert_eq!(site.candidates.is_some(), indexed);
        let addrs: Vec<IpAddr> = [
            "10.0.0.1",
            "10.0.0.5",
            "203.0.113.3",
            "203.0.113.9",
            "8.8.8.8",
            "9.9.9.9",
            "10.0.0.53",
            "::ffff:10.0.0.2",
            "::ffff:203.0.113.1",
            "fc00::1",
            "fc00::9",
            "2001:db8::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut checked = 0;
        let mut allowed = 0;
        for &src in &addrs {
            assert_eq!(site.is_internal(src), c.is_internal(src), "{src}");
            for &dst in &addrs {
                for (src_port, dst_port) in [
                    (50_000, 22),
                    (22, 50_000),
                    (40_000, 993),
                    (123, 123),
                    (50_000, 53),
                    (53, 50_000),
                    (0, 0),
                ] {
                    for protocol in [6, 17] {
                        for hour in [0, 1, 12, 23] {
                            let r = FlowRecord {
                                src_addr: src,
                                dst_addr: dst,
                                src_port,
                                dst_port,
                                protocol,
                                start_ms: 1_780_000_000_000 / 86_400_000 * 86_400_000
                                    + hour * 3_600_000
                                    + 600_000,
                                ..FlowRecord::default()
                            };
                            let want = c.allowed(&r);
                            assert_eq!(site.allowed(&r), want, "{r:?}");
                            let sides = (c.is_internal(src), c.is_internal(dst));
                            assert_eq!(
                                site.classify(&r),
                                ((sides.0 || sides.1) && !want).then_some(sides),
                                "{r:?}"
                            );
                            checked += 1;
                            allowed += usize::from(want);
                        }
                    }
                }
            }
        }
        assert!(
            allowed > 20 && allowed < checked / 2,
            "{allowed} of {checked}"
        );
    }
}
