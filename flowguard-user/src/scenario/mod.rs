//! Labelled scenarios: benign background plus injected attacks, as export packets and
//! ground truth.
//!
//! `flowguard scenario --out DIR` writes
//!
//! - `DIR/exports.pcap`: `NetFlow` v5/v9 or IPFIX export datagrams from the edge router
//!   198.18.0.2 (and, with two exporters, the core switch 198.18.0.3, which sees the
//!   internal-to-internal traffic) to the collector 198.18.0.1, port 2055 (`NetFlow`) or
//!   4739 (IPFIX), stamped with their export times;
//! - `DIR/ground_truth.json`: every injected attack with its entities and times
//!   ([`GroundTruth`]);
//! - `DIR/detect_config.json`: a [`DetectConfig`] with the allow rules the benign
//!   background needs (the nightly backup window, the resolvers' upstream DNS and the CDN
//!   origin sync).
//!
//! [`generate`] builds the same thing in memory for tests.
//!
//! # The model
//!
//! Generation is flow-level. Conversations become the records an exporter with a 60 s
//! active and 15 s inactive timeout would send: one record per direction, long
//! connections cut every 60 s, a 5-tuple idle for longer than 15 s starting a new
//! record. A record becomes ready for export within a second of its end (FIN, or an
//! active-timeout cut) or 15 s after it (idle expiry). Each exporter packs ready records
//! into packets of 20–30 records (at most ~1400 bytes), or sends what it has 5 s
//! (`export_flush_ms`) after the first record waited. With sampling 1:N each record's packets are thinned
//! Binomial(packets, 1/N), records left with none are not exported, bytes are scaled in
//! proportion, and the exporter announces N in its options template.
//!
//! # Addresses
//!
//! Internal hosts are in 10.0.0.0/16 (and `fd00::/8` for dual-stack workstations); external
//! ones in the documentation ranges 203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24 and
//! `2001:db8::/32`, none of which is in [`DetectConfig`]'s default home networks. These
//! addresses only exist inside the generated files.
//!
//! - workstations 10.0.1.10 upward (120 by default), 20% dual-stack;
//! - resolvers 10.0.0.53/.54 (upstream 198.51.100.53, 192.0.2.53);
//! - NTP servers 203.0.113.123, 198.51.100.123, 192.0.2.123;
//! - `SaaS` poll 198.51.100.10/.11 (every 60 s), `SaaS` push 203.0.113.20 (heartbeat 45 s);
//! - update checks 203.0.113.30/.31, CDN edges 198.51.100.40–47;
//! - content server 10.0.4.20 syncing to the CDN ingest 192.0.2.40 every 15 min;
//! - public web server 10.0.5.10, intranet server 10.0.5.20, SSH-exposed server 10.0.5.30
//!   (administered from 203.0.113.5);
//! - backup host 10.0.4.10 to 203.0.113.250:22 at 21:05 UTC (window 21:00–05:00).
//!
//! The default attacks are in [`config::AttackConfig::default`]: a fast and a slow
//! horizontal scan, a fast and a slow vertical scan, five beacons (10 s to 1 h, TCP, UDP
//! and IPv6, jitter up to ±50%, 20% of beats missing), a 600 MB exfiltration in 25 min
//! and a 600 MB one over 4.5 h, a distributed reflection flood and a single-source UDP
//! flood, each on its own hosts and times.

pub mod attacks;
pub mod background;
pub mod config;
pub mod export;
pub mod flow;
pub mod rng;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::capture::pcap::PcapWriter;
use crate::decode::FlowRecord;
use crate::detect::config::AllowRule;
use crate::detect::{Category, DetectConfig};

pub use background::BenignKind;
pub use config::{
    AttackConfig, BackgroundConfig, BackupConfig, BeaconSpec, ExfilSpec, FloodSpec, Proto,
    ScanKind, ScanSpec, ScenarioConfig, ScenarioFormat,
};
pub use export::Datagram;

/// Version of the ground-truth schema (the `schema` field).
pub const GROUND_TRUTH_SCHEMA: &str = "flowguard.scenario.ground_truth/1";

/// Flags of `flowguard scenario`. Unset flags take the `--config` file's values, then
/// the defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// Output directory (created): `exports.pcap`, `ground_truth.json`,
    /// `detect_config.json`.
    #[arg(
        long,
        value_name = "DIR",
        help = "Output directory (created): exports.pcap, ground_truth.json, detect_config.json"
    )]
    pub out: PathBuf,
    /// Export format [default: v9].
    #[arg(long, value_enum)]
    pub format: Option<ScenarioFormat>,
    /// Packet sampling 1:N; 1 is unsampled [default: 1].
    #[arg(long, value_name = "N")]
    pub sampling: Option<u32>,
    /// Hours of event time [default: 6].
    #[arg(long, value_name = "H")]
    pub hours: Option<f64>,
    /// Random seed [default: 1].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Start, Unix seconds [default: 1772467200, 2026-03-02T16:00:00Z].
    #[arg(long, value_name = "T")]
    pub start_unix_secs: Option<u64>,
    /// JSON file of `ScenarioConfig` fields overriding the defaults (attack lists,
    /// background knobs); `--print-config` shows the whole structure.
    #[arg(
        long,
        value_name = "FILE.json",
        help = "JSON file of scenario settings overriding the defaults (attack lists, \
                background knobs); --print-config writes the whole structure"
    )]
    pub config: Option<PathBuf>,
    /// Also write the effective configuration to `DIR/scenario_config.json`.
    #[arg(
        long,
        help = "Also write the effective configuration to DIR/scenario_config.json"
    )]
    pub print_config: bool,
}

impl ScenarioArgs {
    /// The effective configuration: defaults, then the `--config` file, then the flags.
    ///
    /// # Errors
    /// When the file cannot be read or parsed, or the result is invalid.
    pub fn config(&self) -> anyhow::Result<ScenarioConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => ScenarioConfig::default(),
        };
        if let Some(f) = self.format {
            c.format = f;
        }
        if let Some(n) = self.sampling {
            c.sampling = n;
        }
        if let Some(h) = self.hours {
            c.hours = h;
        }
        if let Some(s) = self.seed {
            c.seed = s;
        }
        if let Some(t) = self.start_unix_secs {
            c.start_unix_secs = t;
        }
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

/// What produced a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Benign background of this kind.
    Benign(BenignKind),
    /// The attack at this index of [`GroundTruth::attacks`].
    Attack(usize),
}

/// One export packet's worth of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Index of the exporter (0: 198.18.0.2, 1: 198.18.0.3).
    pub exporter: usize,
    /// Export time (Unix ms).
    pub export_ms: u64,
    /// Its records in [`Scenario::records`].
    pub records: Range<usize>,
}

/// A generated scenario, in memory.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The configuration it was generated from.
    pub config: ScenarioConfig,
    /// Every exported record, in export order (the order of the pcap), with the fields
    /// the decoder reports (exporter, domain, version, template id, sampling).
    pub records: Vec<FlowRecord>,
    /// What produced each record (parallel to `records`).
    pub labels: Vec<Label>,
    /// The export packets, in order.
    pub batches: Vec<Batch>,
    /// The ground truth.
    pub truth: GroundTruth,
}

impl Scenario {
    /// Encodes the export datagrams, in capture order.
    #[must_use]
    pub fn datagrams(&self) -> Vec<Datagram> {
        export::encode(&self.config, &self.records, &self.batches)
    }

    /// Writes the datagrams as a pcap; returns the number written.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write_pcap(&self, path: &Path) -> anyhow::Result<usize> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = PcapWriter::new(BufWriter::with_capacity(1 << 20, file))?;
        let datagrams = self.datagrams();
        for d in &datagrams {
            w.udp(d.ts_ns, d.src, d.dst, &d.payload)?;
        }
        w.finish()?;
        Ok(datagrams.len())
    }

    /// The detector configuration the benign background needs: default thresholds and
    /// home networks, plus allow rules for the nightly backup (its daily window), the
    /// resolvers' upstream DNS forwarding and the CDN origin sync, as a site would
    /// configure them. NTP, `SaaS` keepalives, update checks and web browsing are not
    /// allow-listed: prevalence and good statistics must keep them quiet.
    #[must_use]
    pub fn detect_config(&self) -> DetectConfig {
        detect_config(&self.config)
    }
}

/// See [`Scenario::detect_config`].
#[must_use]
pub fn detect_config(cfg: &ScenarioConfig) -> DetectConfig {
    let mut d = DetectConfig::default();
    let b = &cfg.background.backup;
    if b.enabled {
        d.allow.push(AllowRule {
            comment: "nightly backup to the offsite backup server".into(),
            src: Some(IpNet::from(b.host)),
            dst: Some(IpNet::from(b.server)),
            dst_port: Some(b.port),
            protocol: Some(6),
            daily_window_utc_minutes: Some(b.window_utc_minutes),
        });
    }
    for up in background::UPSTREAM_DNS {
        d.allow.push(AllowRule {
            comment: "internal resolvers forwarding to their upstream DNS server".into(),
            src: "10.0.0.52/30".parse().ok(),
            dst: Some(IpNet::from(up)),
            dst_port: Some(53),
            protocol: Some(17),
            daily_window_utc_minutes: None,
        });
    }
    d.allow.push(AllowRule {
        comment: "content server syncing to the CDN ingest".into(),
        src: Some(IpNet::from(background::CONTENT_SERVER)),
        dst: Some(IpNet::from(background::CDN_INGEST)),
        dst_port: Some(443),
        protocol: Some(6),
        daily_window_utc_minutes: None,
    });
    d
}

/// The ground truth file (`ground_truth.json`), schema [`GROUND_TRUTH_SCHEMA`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// [`GROUND_TRUTH_SCHEMA`].
    pub schema: String,
    /// Seed.
    pub seed: u64,
    /// Export format.
    pub format: ScenarioFormat,
    /// Sampling interval (1: unsampled).
    pub sampling: u32,
    /// Scenario start (Unix ms).
    pub start_ms: u64,
    /// Scenario end (Unix ms).
    pub end_ms: u64,
    /// Internal networks of the scenario.
    pub internal_nets: Vec<IpNet>,
    /// The exporters.
    pub exporters: Vec<ExporterTruth>,
    /// Records exported in all.
    pub records: usize,
    /// Export datagrams in all.
    pub datagrams: usize,
    /// The injected attacks. Every one must be found; a finding is attributed to an
    /// attack when its category matches and its source or destination is the attack's
    /// `src` or `dst`.
    pub attacks: Vec<AttackTruth>,
    /// The benign background, by kind. None of it may produce a finding.
    pub benign: Vec<BenignTruth>,
}

/// One exporter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExporterTruth {
    /// Its address.
    pub address: IpAddr,
    /// UDP source port.
    pub port: u16,
    /// v9 source id / IPFIX observation domain.
    pub observation_domain_id: u32,
    /// "edge" (everything crossing the Internet border) or "core" (internal to internal).
    pub role: String,
    /// Records it exported.
    pub records: usize,
}

/// One injected attack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackTruth {
    /// Stable id from the configuration.
    pub id: String,
    /// Detector category expected to report it.
    pub category: Category,
    /// `horizontal_scan`, `slow_horizontal_scan`, `vertical_scan`, `slow_vertical_scan`,
    /// `beacon`, `exfiltration`, `slow_exfiltration` or `flood`.
    pub kind: String,
    /// The attacking host (scanner, implant, exfiltrating host, single flood source);
    /// `null` for a distributed flood.
    pub src: Option<IpAddr>,
    /// The target (vertical scan target, C2 server, exfiltration destination, flood
    /// victim); `null` for a horizontal scan.
    pub dst: Option<IpAddr>,
    /// Destination ports involved (the scanned port(s), the C2 port, …); empty when
    /// random.
    pub ports: Vec<u16>,
    /// First packet (Unix ms).
    pub start_ms: u64,
    /// Last packet (Unix ms, approximately).
    pub end_ms: u64,
    /// Attack-specific parameters and measurements (JSON object).
    pub params: serde_json::Value,
    /// Records of this attack in the export (after sampling).
    pub records: usize,
    /// Packets as the collector will estimate them (sampled × interval).
    pub packets: u64,
    /// Bytes as the collector will estimate them.
    pub bytes: u64,
    /// Packets really sent (before sampling).
    pub true_packets: u64,
    /// Bytes really sent (before sampling).
    pub true_bytes: u64,
    /// Units of evidence sent: probes (scan), beats (beacon), connections (exfiltration),
    /// flows (flood).
    pub sent_units: u64,
    /// Of those, how many appear in the export (after sampling): distinct probed
    /// (destination, port) pairs seen from the scanner, distinct beacon connections,
    /// distinct exfiltration connections, distinct flood flows.
    pub observed_units: u64,
    /// Whether sampling left enough to detect at all: at least 5 probes of a scan, 4
    /// beats of a beacon (RITA's minimum), one record of an exfiltration or a flood.
    /// Unsampled, every attack is observable. At 1:100, 1-packet probes and beats mostly
    /// vanish: slow scans and long-interval beacons are then not observable, and a
    /// detection-quality test can only ask for the observable ones.
    pub observable: bool,
}

/// One kind of benign background.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenignTruth {
    /// The kind (`web`, `dns`, `dns_upstream`, `ntp`, `saas_poll`, `saas_push`, `updates`, `cdn_sync`,
    /// `public_server`, `intranet`, `admin`, `backup`).
    pub kind: String,
    /// Records exported.
    pub records: usize,
    /// Distinct internal hosts involved.
    pub internal_hosts: usize,
    /// Whether `detect_config.json` allow-lists it (otherwise only good detection keeps
    /// it quiet, e.g. by prevalence).
    pub allow_listed: bool,
}

/// Generates a scenario in memory. Deterministic: the same config gives the same
/// records, packets and ground truth.
///
/// # Panics
/// On an invalid config (see [`ScenarioConfig::validate`]).
#[must_use]
pub fn generate(config: &ScenarioConfig) -> Scenario {
    if let Err(e) = config.validate() {
        panic!("invalid scenario config: {e}");
    }
    let cfg = config.clone();
    let ipv6 = cfg.format != ScenarioFormat::V5;
    let mut sink = flow::Sink::new(cfg.seed, cfg.exporters == 2, ipv6, cfg.end_ms());
    let (mut reserved, reserved_nets) = attacks::reserved(&cfg);
    reserved.insert(cfg.background.backup.server);
    let mut plan_rng = rng::Rng::fork(cfg.seed, "plan");
    let plan = background::Plan::new(&mut plan_rng, &reserved, &reserved_nets);
    background::generate(&cfg, &plan, &mut sink);
    let mut attacks = attacks::generate(&cfg, &mut sink);
    let mut pending = std::mem::take(&mut sink.out);
    // True totals before sampling.
    for pe in &pending {
        if let Label::Attack(i) = pe.label {
            attacks[i].true_packets += pe.rec.raw_packets;
            attacks[i].true_bytes += pe.rec.raw_bytes;
        }
    }
    export::sample(&mut pending, cfg.sampling, cfg.seed);
    let (records, labels, batches) = export::batch(pending, &cfg);
    let mut benign: BTreeMap<BenignKind, (usize, std::collections::BTreeSet<IpAddr>)> =
        BTreeMap::new();
    let mut per_exporter = [0usize; 2];
    for (r, l) in records.iter().zip(&labels) {
        per_exporter[usize::from(r.observation_domain_id == export::DOMAINS[1])] += 1;
        match *l {
            Label::Attack(i) => {
                let a = &mut attacks[i];
                a.records += 1;
                a.packets += r.packets;
                a.bytes += r.bytes;
            }
            Label::Benign(k) => {
                let e = benign.entry(k).or_default();
                e.0 += 1;
                for addr in [r.src_addr, r.dst_addr] {
                    if flow::is_internal(addr) {
                        e.1.insert(addr);
                    }
                }
            }
        }
    }
    observe(&mut attacks, &records, &labels);
    let allowed = [
        BenignKind::Backup,
        BenignKind::CdnSync,
        BenignKind::DnsUpstream,
    ];
    let benign = BenignKind::ALL
        .iter()
        .filter_map(|k| {
            let (n, hosts) = benign.get(k)?;
            Some(BenignTruth {
                kind: serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                records: *n,
                internal_hosts: hosts.len(),
                allow_listed: allowed.contains(k),
            })
        })
        .collect();
    let exporters = (0..usize::from(cfg.exporters))
        .map(|i| ExporterTruth {
            address: IpAddr::V4(export::EXPORTERS[i]),
            port: export::EXPORTER_PORTS[i],
            observation_domain_id: export::DOMAINS[i],
            role: if i == 0 { "edge" } else { "core" }.into(),
            records: per_exporter[i],
        })
        .collect();
    let truth = GroundTruth {
        schema: GROUND_TRUTH_SCHEMA.into(),
        seed: cfg.seed,
        format: cfg.format,
        sampling: cfg.sampling,
        start_ms: cfg.start_ms(),
        end_ms: cfg.end_ms(),
        internal_nets: ["10.0.0.0/16", "fd00::/8"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
        exporters,
        records: records.len(),
        datagrams: batches.len(),
        attacks,
        benign,
    };
    Scenario {
        config: cfg,
        records,
        labels,
        batches,
        truth,
    }
}

/// Fills in `observed_units` and `observable` from the exported records.
fn observe(attacks: &mut [AttackTruth], records: &[FlowRecord], labels: &[Label]) {
    let mut units: Vec<std::collections::BTreeSet<(IpAddr, u16, u16)>> =
        vec![std::collections::BTreeSet::new(); attacks.len()];
    for (r, l) in records.iter().zip(labels) {
        let Label::Attack(i) = *l else { continue };
        let a = &attacks[i];
        let key = match a.category {
            // A probe is known by its target; answers count for the probe they answer.
            Category::PortScan if Some(r.src_addr) == a.src => Some((r.dst_addr, r.dst_port, 0)),
            Category::PortScan => Some((r.src_addr, r.src_port, 0)),
            // A beacon connection or exfiltration connection by its client port.
            Category::Beaconing | Category::Exfiltration => {
                if Some(r.src_addr) == a.src {
                    Some((r.dst_addr, r.src_port, 0))
                } else {
                    Some((r.src_addr, r.dst_port, 0))
                }
            }
            Category::Volumetric => Some((r.src_addr, r.src_port, r.dst_port)),
        };
        if let Some(k) = key {
            units[i].insert(k);
        }
    }
    for (a, u) in attacks.iter_mut().zip(units) {
        a.observed_units = u.len() as u64;
        let min = match a.category {
            Category::PortScan => 5,
            // Six connections: RITA's floor and the beacon detector's default
            // `min_connections`; fewer beats are indistinguishable from chance.
            Category::Beaconing => 6,
            Category::Exfiltration | Category::Volumetric => 1,
        };
        a.observable = a.observed_units >= min.min(a.sent_units.max(1));
    }
}

/// `flowguard scenario`: generates and writes the pcap, the ground truth and the detector
/// configuration into `--out`, and prints a one-line summary.
///
/// # Errors
/// On a bad configuration or I/O failure.
pub fn run(args: &ScenarioArgs) -> anyhow::Result<()> {
    let cfg = args.config()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = std::time::Instant::now();
    let scenario = generate(&cfg);
    let pcap = args.out.join("exports.pcap");
    let datagrams = scenario.write_pcap(&pcap)?;
    let write_json = |name: &str, value: &dyn erased::Json| -> anyhow::Result<()> {
        let path = args.out.join(name);
        let text = value.to_json()?;
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
    };
    write_json("ground_truth.json", &scenario.truth)?;
    write_json("detect_config.json", &scenario.detect_config())?;
    if args.print_config {
        write_json("scenario_config.json", &scenario.config)?;
    }
    let size = std::fs::metadata(&pcap).map_or(0, |m| m.len());
    println!(
        "scenario: {} records in {} datagrams ({}.{} MB), {} attacks, {} 1:{}, {} h, seed {} -> {} ({:.2} s)",
        scenario.records.len(),
        datagrams,
        size / 1_000_000,
        size / 100_000 % 10,
        scenario.truth.attacks.len(),
        serde_json::to_value(cfg.format)?.as_str().unwrap_or("?"),
        cfg.sampling,
        cfg.hours,
        cfg.seed,
        args.out.display(),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// Pretty JSON through a trait object, for the writer closure in [`run`].
mod erased {
    /// Anything serializable as pretty JSON.
    pub trait Json {
        /// Pretty JSON text.
        fn to_json(&self) -> anyhow::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> anyhow::Result<String> {
            Ok(serde_json::to_string_pretty(self)?)
        }
    }
}
