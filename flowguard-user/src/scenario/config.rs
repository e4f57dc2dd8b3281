//! Scenario settings: time span, export format, sampling, benign background and the
//! injected attacks. Every field has a default, so `{}` is a valid `--config` file and
//! a file only needs the parts it changes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// 2026-03-02T16:00:00Z: a weekday afternoon, so the default 6 hours run from a busy
/// afternoon into the night and include the nightly backup window.
pub const DEFAULT_START_UNIX_SECS: u64 = 1_772_467_200;

/// Export format of the generated packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioFormat {
    /// `NetFlow` v5 (IPv4 only: the IPv6 parts of the scenario are left out).
    #[value(help = "NetFlow v5 (IPv4 only: the IPv6 parts of the scenario are left out)")]
    V5,
    /// `NetFlow` v9.
    #[default]
    #[value(help = "NetFlow v9")]
    V9,
    /// IPFIX.
    Ipfix,
}

impl ScenarioFormat {
    /// The encoder's format.
    #[must_use]
    pub fn encoder_format(self) -> crate::decode::encode::Format {
        use crate::decode::encode::Format;
        match self {
            Self::V5 => Format::V5,
            Self::V9 => Format::V9,
            Self::Ipfix => Format::Ipfix,
        }
    }

    /// The version number records carry once decoded (5, 9 or 10).
    #[must_use]
    pub fn version(self) -> u16 {
        match self {
            Self::V5 => 5,
            Self::V9 => 9,
            Self::Ipfix => 10,
        }
    }

    /// The collector port the packets are addressed to: 2055 for `NetFlow`, 4739 for IPFIX.
    #[must_use]
    pub fn collector_port(self) -> u16 {
        match self {
            Self::V5 | Self::V9 => 2055,
            Self::Ipfix => 4739,
        }
    }
}

/// Everything that defines one scenario. Same config, same output, byte for byte.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Random seed.
    pub seed: u64,
    /// Scenario start, Unix seconds (UTC). Default 2026-03-02T16:00:00Z.
    pub start_unix_secs: u64,
    /// Length in hours of event time. Default 6.
    pub hours: f64,
    /// Export format. Default v9.
    pub format: ScenarioFormat,
    /// Packet sampling 1:N; 1 is unsampled.
    pub sampling: u32,
    /// Exporters: 1 (one edge router sees everything) or 2 (the second, a core switch at
    /// 198.18.0.3, sees internal-to-internal traffic). Default 2.
    pub exporters: u8,
    /// Flow records per export packet, at most (also capped at ~1400 bytes of records).
    /// Each packet takes a size between 20 and this. Default 30.
    pub max_records_per_packet: usize,
    /// How long an exporter holds records for a packet that is not full yet (ms); at low
    /// record rates packets leave part-filled when this runs out. Default 5000.
    pub export_flush_ms: u64,
    /// The benign background.
    pub background: BackgroundConfig,
    /// The injected attacks.
    pub attacks: AttackConfig,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_unix_secs: DEFAULT_START_UNIX_SECS,
            hours: 6.0,
            format: ScenarioFormat::V9,
            sampling: 1,
            exporters: 2,
            max_records_per_packet: 30,
            export_flush_ms: 5000,
            background: BackgroundConfig::default(),
            attacks: AttackConfig::default(),
        }
    }
}

impl ScenarioConfig {
    /// Start in Unix ms.
    #[must_use]
    pub fn start_ms(&self) -> u64 {
        self.start_unix_secs * 1000
    }

    /// End in Unix ms.
    #[must_use]
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "hours is checked to be positive and sane"
    )]
    pub fn end_ms(&self) -> u64 {
        self.start_ms() + (self.hours.max(0.0) * 3_600_000.0) as u64
    }

    /// Checks the settings that would otherwise give nonsense.
    ///
    /// # Errors
    /// A description of the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.hours > 0.0 && self.hours <= 24.0 * 14.0) {
            return Err(format!("hours must be in (0, 336], not {}", self.hours));
        }
        if self.sampling == 0 {
            return Err("sampling must be at least 1 (1 = unsampled)".into());
        }
        if self.format == ScenarioFormat::V5 && self.sampling > 0x3fff {
            return Err("v5 carries sampling intervals up to 16383".into());
        }
        if !(1..=2).contains(&self.exporters) {
            return Err("exporters must be 1 or 2".into());
        }
        if !(20..=200).contains(&self.max_records_per_packet) {
            return Err("max_records_per_packet must be in 20..=200".into());
        }
        if self.export_flush_ms == 0 || self.export_flush_ms > 60_000 {
            return Err("export_flush_ms must be in 1..=60000".into());
        }
        if self.background.workstations == 0 || self.background.workstations > 2000 {
            return Err("background.workstations must be in 1..=2000".into());
        }
        for b in &self.attacks.beacons {
            if b.interval_s < 1.0 || !(0.0..1.0).contains(&b.jitter) {
                return Err(format!(
                    "beacon {}: interval_s ≥ 1 and jitter in [0, 1) required",
                    b.id
                ));
            }
            if b.packets[0] == 0 || b.packets[0] > b.packets[1] {
                return Err(format!(
                    "beacon {}: packets must be [min ≥ 1, max ≥ min]",
                    b.id
                ));
            }
        }
        for s in &self.attacks.scans {
            if s.count == 0 {
                return Err(format!("scan {}: count must be ≥ 1", s.id));
            }
        }
        Ok(())
    }
}

/// The benign background. Addresses are fixed (see the module docs); these are the
/// knobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackgroundConfig {
    /// Workstations, at 10.0.1.10 upward (then 10.0.2.10 …). Default 120.
    pub workstations: u32,
    /// Share of workstations that are dual-stack (`fd00:0:0:1::N`) and browse over IPv6 too.
    pub ipv6_fraction: f64,
    /// Web browsing sessions per workstation per hour at the daily peak (Poisson, shaped
    /// by a diurnal curve peaking at 13:30 UTC).
    pub web_sessions_per_hour: f64,
    /// Share of web connections that fail (SYN without answer).
    pub web_failure_rate: f64,
    /// Share of workstations running the polling `SaaS` client.
    pub saas_poll_fraction: f64,
    /// Its poll interval (s); a new TLS connection each time.
    pub saas_poll_interval_s: f64,
    /// Share of workstations holding a push channel (persistent TCP with heartbeats).
    pub saas_push_fraction: f64,
    /// Heartbeat interval of the push channel (s); longer than the inactive timeout, so
    /// every heartbeat is a record of the same 5-tuple.
    pub saas_push_interval_s: f64,
    /// Update check interval per host (s).
    pub update_check_interval_s: f64,
    /// Share of update checks that download an update from the CDN.
    pub update_download_fraction: f64,
    /// Interval of the content server's sync to the CDN ingest (s); allow-listed.
    pub cdn_sync_interval_s: f64,
    /// Connections per second to the public web server 10.0.5.10 at the daily peak.
    pub public_server_conn_per_s: f64,
    /// The nightly backup.
    pub backup: BackupConfig,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            workstations: 120,
            ipv6_fraction: 0.2,
            web_sessions_per_hour: 24.0,
            web_failure_rate: 0.003,
            saas_poll_fraction: 0.6,
            saas_poll_interval_s: 60.0,
            saas_push_fraction: 0.4,
            saas_push_interval_s: 45.0,
            update_check_interval_s: 4.0 * 3600.0,
            update_download_fraction: 0.1,
            cdn_sync_interval_s: 900.0,
            public_server_conn_per_s: 1.0,
            backup: BackupConfig::default(),
        }
    }
}

/// The nightly backup: one internal host sending tens of GB to an external server, in
/// an allow-listed daily window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Whether there is one.
    pub enabled: bool,
    /// Backup client.
    pub host: IpAddr,
    /// Backup server (external).
    pub server: IpAddr,
    /// Server port.
    pub port: u16,
    /// Bytes per night.
    pub bytes: u64,
    /// Throughput (bits/s), shared by the streams.
    pub rate_bps: f64,
    /// Parallel TCP streams.
    pub streams: u32,
    /// Start, minute of the UTC day.
    pub start_minute_utc: u16,
    /// The allow-listed daily window, `[start, end)` minutes of the UTC day (may wrap).
    pub window_utc_minutes: [u16; 2],
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: IpAddr::V4(Ipv4Addr::new(10, 0, 4, 10)),
            server: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 250)),
            port: 22,
            bytes: 20_000_000_000,
            rate_bps: 100e6,
            streams: 4,
            start_minute_utc: 21 * 60 + 5,
            window_utc_minutes: [21 * 60, 5 * 60],
        }
    }
}

/// The injected attacks, by kind. Giving one list in a `--config` file replaces that
/// list only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackConfig {
    /// Port scans.
    pub scans: Vec<ScanSpec>,
    /// C2 beacons.
    pub beacons: Vec<BeaconSpec>,
    /// Exfiltration transfers.
    pub exfiltrations: Vec<ExfilSpec>,
    /// Volumetric floods.
    pub floods: Vec<FloodSpec>,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid literal network")
}

impl Default for AttackConfig {
    #[expect(clippy::too_many_lines, reason = "the default attack list, as data")]
    fn default() -> Self {
        let scans = vec![
            ScanSpec {
                id: "scan-horizontal".into(),
                kind: ScanKind::Horizontal,
                src: v4(203, 0, 113, 66),
                dst: v4(10, 0, 16, 0),
                count: 4096,
                port: 22,
                start_s: 45 * 60,
                probe_interval_ms: 15,
                answer_fraction: 0.03,
                open_ports: vec![],
            },
            ScanSpec {
                id: "scan-horizontal-slow".into(),
                kind: ScanKind::Horizontal,
                src: v4(10, 0, 1, 45),
                dst: v4(10, 0, 9, 1),
                count: 90,
                port: 445,
                start_s: 60 * 60,
                probe_interval_ms: 30_000,
                answer_fraction: 0.2,
                open_ports: vec![445],
            },
            ScanSpec {
                id: "scan-vertical".into(),
                kind: ScanKind::Vertical,
                src: v4(10, 0, 1, 20),
                dst: v4(10, 0, 5, 20),
                count: 1000,
                port: 10_000,
                start_s: 150 * 60,
                probe_interval_ms: 120,
                answer_fraction: 1.0,
                open_ports: vec![22, 445, 8080],
            },
            ScanSpec {
                id: "scan-vertical-slow".into(),
                kind: ScanKind::Vertical,
                src: v4(198, 51, 100, 77),
                dst: v4(10, 0, 5, 30),
                count: 100,
                port: 10_000,
                start_s: 180 * 60,
                probe_interval_ms: 30_000,
                answer_fraction: 0.1,
                open_ports: vec![22],
            },
        ];
        let tcp = Proto::Tcp;
        let beacons = vec![
            BeaconSpec {
                id: "beacon-10s-tcp443".into(),
                src: v4(10, 0, 1, 31),
                dst: v4(203, 0, 113, 50),
                port: 443,
                protocol: tcp,
                interval_s: 10.0,
                jitter: 0.2,
                packets: [1, 3],
                bytes_per_packet: 180,
                reply: true,
                missing: 0.2,
                start_s: 20 * 60,
                duration_s: Some(2 * 3600),
            },
            BeaconSpec {
                id: "beacon-60s-udp".into(),
                src: v4(10, 0, 1, 32),
                dst: v4(198, 51, 100, 60),
                port: 53,
                protocol: Proto::Udp,
                interval_s: 60.0,
                jitter: 0.5,
                packets: [1, 1],
                bytes_per_packet: 120,
                reply: true,
                missing: 0.2,
                start_s: 10 * 60,
                duration_s: None,
            },
            BeaconSpec {
                id: "beacon-300s-tcp8443".into(),
                src: v4(10, 0, 1, 33),
                dst: v4(192, 0, 2, 70),
                port: 8443,
                protocol: tcp,
                interval_s: 300.0,
                jitter: 0.5,
                packets: [1, 3],
                bytes_per_packet: 300,
                reply: true,
                missing: 0.2,
                start_s: 5 * 60,
                duration_s: None,
            },
            BeaconSpec {
                id: "beacon-3600s-tcp443".into(),
                src: v4(10, 0, 1, 34),
                dst: v4(203, 0, 113, 80),
                port: 443,
                protocol: tcp,
                interval_s: 3600.0,
                jitter: 0.1,
                packets: [1, 2],
                bytes_per_packet: 400,
                reply: true,
                missing: 0.2,
                start_s: 3 * 60,
                duration_s: None,
            },
            BeaconSpec {
                id: "beacon-900s-ipv6".into(),
                src: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 0x35)),
                dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xc2, 0, 0, 0, 0, 0x443)),
                port: 443,
                protocol: tcp,
                interval_s: 900.0,
                jitter: 0.3,
                packets: [1, 3],
                bytes_per_packet: 250,
                reply: true,
                missing: 0.2,
                start_s: 15 * 60,
                duration_s: None,
            },
        ];
        let exfiltrations = vec![
            ExfilSpec {
                id: "exfil-fast".into(),
                src: v4(10, 0, 1, 40),
                dst: v4(198, 51, 100, 99),
                port: 443,
                bytes: 600_000_000,
                start_s: 90 * 60,
                duration_s: 25 * 60,
            },
            ExfilSpec {
                id: "exfil-slow".into(),
                src: v4(10, 0, 1, 41),
                dst: v4(192, 0, 2, 99),
                port: 443,
                bytes: 600_000_000,
                start_s: 30 * 60,
                duration_s: 4 * 3600 + 30 * 60,
            },
        ];
        let floods = vec![
            FloodSpec {
                id: "flood-reflection".into(),
                victim: v4(10, 0, 5, 10),
                port: 0,
                protocol: Proto::Udp,
                src_nets: vec![net("198.51.100.128/25"), net("192.0.2.128/25")],
                sources: 200,
                src_port: 53,
                flows_per_source: 1,
                factor: 20.0,
                min_pps: 20_000.0,
                packet_bytes: 1200,
                start_s: 210 * 60,
                duration_s: 60,
            },
            FloodSpec {
                id: "flood-udp-internal".into(),
                victim: v4(10, 0, 0, 53),
                port: 53,
                protocol: Proto::Udp,
                src_nets: vec![net("10.0.1.50/32")],
                sources: 1,
                src_port: 0,
                flows_per_source: 40,
                factor: 10.0,
                min_pps: 20_000.0,
                packet_bytes: 90,
                start_s: 270 * 60,
                duration_s: 30,
            },
        ];
        Self {
            scans,
            beacons,
            exfiltrations,
            floods,
        }
    }
}

/// Transport protocol of an attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IP protocol number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// Horizontal (many hosts, one port) or vertical (one host, many ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanKind {
    /// Many hosts on one port.
    Horizontal,
    /// Many ports on one host.
    Vertical,
}

/// A TCP SYN scan: 1-packet SYN probes, answered by RST (closed) or SYN-ACK (open, then
/// reset by the prober) or not at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSpec {
    /// Ground-truth id.
    pub id: String,
    /// Horizontal or vertical.
    pub kind: ScanKind,
    /// The scanner.
    pub src: IpAddr,
    /// Horizontal: the first target (targets are `dst`, `dst`+1, …, probed in random
    /// order). Vertical: the one target.
    pub dst: IpAddr,
    /// Distinct targets (horizontal) or distinct ports (vertical).
    pub count: u32,
    /// Horizontal: the port probed. Vertical: the highest port; ports are drawn from
    /// 1..=max(port, count).
    pub port: u16,
    /// Start, seconds after the scenario start.
    pub start_s: u64,
    /// Time between probes (ms), ±10%. ≥ 10 000 makes it a slow scan.
    pub probe_interval_ms: u64,
    /// Horizontal: share of targets that are alive and answer. Vertical: share of
    /// probes answered (1.0: an unfiltered host).
    pub answer_fraction: f64,
    /// Ports answering SYN-ACK; the others answer RST.
    pub open_ports: Vec<u16>,
}

/// C2 beaconing: one new connection (new source port) per beat, gaps of
/// `interval_s × (1 + U(−jitter, +jitter))` (a renewal process, as implants sleep), with
/// exactly `round(missing × beats)` beats left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeaconSpec {
    /// Ground-truth id.
    pub id: String,
    /// The implant.
    pub src: IpAddr,
    /// The C2 server.
    pub dst: IpAddr,
    /// Destination port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Proto,
    /// Mean interval (s).
    pub interval_s: f64,
    /// Jitter as a fraction of the interval, uniform ±.
    pub jitter: f64,
    /// Packets per connection and direction, `[min, max]`.
    pub packets: [u64; 2],
    /// Mean bytes per outbound packet (±10%).
    pub bytes_per_packet: u64,
    /// Whether the server answers (same packet count, 1.5× the bytes).
    pub reply: bool,
    /// Share of beats missing.
    pub missing: f64,
    /// Start, seconds after the scenario start.
    pub start_s: u64,
    /// Duration (s); `null`: to the end of the scenario.
    pub duration_s: Option<u64>,
}

/// Exfiltration: one long TCP upload, cut into records by the active timeout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExfilSpec {
    /// Ground-truth id.
    pub id: String,
    /// The internal host.
    pub src: IpAddr,
    /// The external destination.
    pub dst: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Start, seconds after the scenario start.
    pub start_s: u64,
    /// Duration (s): a steady trickle over it. ≥ 2 h counts as the slow variant.
    pub duration_s: u64,
}

/// A volumetric flood to one victim, from one or many sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodSpec {
    /// Ground-truth id.
    pub id: String,
    /// The victim.
    pub victim: IpAddr,
    /// Victim port; 0: a random high port per flow.
    pub port: u16,
    /// TCP (SYN flood) or UDP.
    pub protocol: Proto,
    /// Networks the sources are drawn from (distinct addresses).
    pub src_nets: Vec<IpNet>,
    /// Number of sources.
    pub sources: u32,
    /// Source port (53 for DNS reflection); 0: random per flow.
    pub src_port: u16,
    /// Flows per source (distinct source ports when `src_port` is 0).
    pub flows_per_source: u32,
    /// Multiple of the victim's baseline (its mean inbound pps and bps over the hour
    /// before) the flood reaches, at least.
    pub factor: f64,
    /// Floor of the flood's packet rate (pps).
    pub min_pps: f64,
    /// Bytes per packet.
    pub packet_bytes: u64,
    /// Start, seconds after the scenario start.
    pub start_s: u64,
    /// Duration (s).
    pub duration_s: u64,
}
