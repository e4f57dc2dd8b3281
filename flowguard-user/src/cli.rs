//! Command-line flags (clap) and their validation into a [`RunConfig`].
//!
//! Two layers, as ripgrep does it: the raw flags below mirror what the user typed; `validate`
//! turns them into a config that the rest of the program can trust.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    capture::{CaptureMode, xdp::AttachMode},
    report::flows::FlowFormat,
};

/// flowguard: a security-focused `NetFlow` v5 / v9 / IPFIX collector.
#[derive(Debug, Parser)]
#[command(name = "flowguard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect export packets live (XDP or sockets), or replay capture files, through the
    /// per-shard workers.
    Run(RunArgs),
    /// Decode capture files of export packets and print the flow records, like `nfdump -r`.
    /// Files are read in order through one template cache.
    Decode(DecodeArgs),
    /// Analyze captures of export packets or the Python netflow collector's files and write
    /// the prioritized findings report.
    Analyze(AnalyzeArgs),
    /// Send the export packets of a capture or scenario to a collector.
    Replay(crate::replay::ReplayArgs),
    /// Write a labelled scenario: benign background plus injected attacks, as a pcap of
    /// export packets with its ground truth.
    Scenario(crate::scenario::ScenarioArgs),
}

/// Flags of `flowguard analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// pcap/pcapng files of export packets, read in order through one template cache.
    #[arg(long = "read", value_name = "FILE")]
    pub read: Vec<PathBuf>,
    /// Files written by the Python `netflow` collector (JSON lines, plain or gzip).
    #[arg(long = "flow-file", value_name = "FILE")]
    pub flow_file: Vec<PathBuf>,
    /// Where to write the JSON report (`-` for stdout).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// Detector configuration (JSON): home networks, allow-lists, thresholds.
    #[arg(long, value_name = "FILE")]
    pub detect_config: Option<PathBuf>,
    /// UDP ports of export traffic in the captures. Default: 2055, 4739, 6343, 9995.
    #[arg(long = "port", value_delimiter = ',')]
    pub ports: Vec<u16>,
    /// Detection shards (state is sharded by internal host).
    #[arg(long, default_value_t = 1)]
    pub detect_shards: usize,
    /// Never draw the progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Flags of `flowguard decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// pcap/pcapng files of export packets, read in order.
    #[arg(long = "read", value_name = "FILE", required = true)]
    pub read: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FlowFormat,
    /// UDP destination ports of export traffic (repeat or comma-separate). Default: 2055,
    /// 4739, 6343, 9995.
    #[arg(long = "port", value_delimiter = ',')]
    pub ports: Vec<u16>,
}

impl DecodeArgs {
    /// The ports to take, defaulted and de-duplicated.
    #[must_use]
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = if self.ports.is_empty() {
            flowguard_ebpf::DEFAULT_PORTS.to_vec()
        } else {
            self.ports.clone()
        };
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Flags of `flowguard run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Live capture path.
    #[arg(long, value_enum, default_value = "xdp")]
    pub capture: CaptureMode,
    /// Interface to attach XDP to (required with `--capture xdp`).
    #[arg(long)]
    pub iface: Option<String>,
    /// XDP attach mode: `native` (driver) or `skb` (generic, for drivers without XDP).
    #[arg(long, value_enum, default_value = "native")]
    pub xdp_mode: AttachMode,
    /// Worker threads (shards), each pinned to a core. Default: one per core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// UDP destination ports to take (repeat or comma-separate). Default: 2055, 4739, 6343, 9995.
    #[arg(long = "port", value_delimiter = ',')]
    pub ports: Vec<u16>,
    /// Bytes per shard ring buffer (a power of two, at least 4096).
    #[arg(long, default_value_t = 8 << 20)]
    pub ring_bytes: u32,
    /// Receive buffer per socket, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub socket_rcvbuf: usize,
    /// Read export packets from these pcap/pcapng files instead of capturing live.
    #[arg(long = "read", value_name = "FILE")]
    pub read: Vec<PathBuf>,
    /// Seconds between counter lines on stderr (0 = only the final summary).
    #[arg(long, default_value_t = 1)]
    pub stats_interval: u64,
    /// Write the final counters as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Diagnostics: log every datagram a worker receives (hex payload) to DIR/shard-<k>.ndjson.
    #[arg(long, value_name = "DIR")]
    pub packet_log: Option<PathBuf>,
    /// Test knob: workers sleep this many milliseconds before reading, so rings fill up.
    #[arg(long, default_value_t = 0, hide = true)]
    pub stall_workers_ms: u64,
    /// Stop after this many seconds (0 = run until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Write decoded flow records as NDJSON (IPFIX IE names) to FILE, or `-` for stdout.
    #[arg(long, value_name = "FILE|-")]
    pub flows_out: Option<PathBuf>,
    /// Keep template caches here: loaded at start, saved at exit (`shard-<k>.json`), so a
    /// restart decodes at once instead of waiting for exporters to resend templates.
    #[arg(long, value_name = "DIR")]
    pub template_dir: Option<PathBuf>,
    /// Decoder limits.
    #[command(flatten)]
    pub limits: DecoderLimits,
    /// Write the live alert stream (NDJSON; each finding once, again when it escalates) to
    /// FILE, or `-` for stdout.
    #[arg(long, value_name = "FILE|-")]
    pub alerts: Option<PathBuf>,
    /// Write the prioritized findings report (JSON) here at exit.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Detector configuration (JSON): home networks, allow-lists, thresholds.
    #[arg(long, value_name = "FILE")]
    pub detect_config: Option<PathBuf>,
    /// Detection shards, each a thread owning the state of the internal hosts hashed to it.
    #[arg(long, default_value_t = 1)]
    pub detect_shards: usize,
    /// Decode only; run no detectors.
    #[arg(long)]
    pub no_detect: bool,
}

/// Decoder limits (each hit is counted).
#[derive(Debug, Args, Clone)]
pub struct DecoderLimits {
    /// Templates kept per exporter (over all its domains); the oldest is evicted beyond it.
    #[arg(long, default_value_t = 4096)]
    pub max_templates_per_exporter: usize,
    /// Fields one template may declare.
    #[arg(long, default_value_t = 1024)]
    pub max_fields_per_template: u16,
    /// Bytes of data waiting for its template, per (exporter, domain).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_pending_bytes_per_domain: usize,
    /// Bytes of data waiting for templates, in all (per worker).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_pending_bytes: usize,
    /// Seconds a template lives without a refresh (RFC 7011 §8.4).
    #[arg(long, default_value_t = 1800)]
    pub template_ttl_secs: u64,
}

impl DecoderLimits {
    /// The decoder configuration these limits give.
    #[must_use]
    pub fn config(&self) -> crate::decode::DecoderConfig {
        crate::decode::DecoderConfig {
            max_templates_per_exporter: self.max_templates_per_exporter,
            max_fields_per_template: self.max_fields_per_template,
            max_pending_bytes_per_domain: self.max_pending_bytes_per_domain,
            max_pending_bytes_total: self.max_pending_bytes,
            template_ttl_ms: self.template_ttl_secs.saturating_mul(1000),
            ..crate::decode::DecoderConfig::default()
        }
    }
}

/// Where packets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Live, on XDP (with the socket path beside it).
    Xdp {
        /// Interface.
        iface: String,
        /// Attach mode.
        mode: AttachMode,
    },
    /// Live, sockets only.
    Socket,
    /// Capture files, in order.
    Files(Vec<PathBuf>),
}

/// A validated `flowguard run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Packet source.
    pub input: Input,
    /// Number of workers (shards).
    pub workers: usize,
    /// Ports taken.
    pub ports: Vec<u16>,
    /// Bytes per ring.
    pub ring_bytes: u32,
    /// Socket receive buffer.
    pub socket_rcvbuf: usize,
    /// Seconds between stats lines (0 = none).
    pub stats_interval: u64,
    /// Final counters JSON file.
    pub stats_json: Option<PathBuf>,
    /// Packet log directory.
    pub packet_log: Option<PathBuf>,
    /// Worker start-up stall.
    pub stall: std::time::Duration,
    /// Run time limit.
    pub duration: Option<std::time::Duration>,
    /// Flow record output (`-` = stdout).
    pub flows_out: Option<PathBuf>,
    /// Template snapshot directory.
    pub template_dir: Option<PathBuf>,
    /// Decoder configuration.
    pub decoder: crate::decode::DecoderConfig,
    /// Detection, unless `--no-detect`.
    pub detect: Option<DetectSettings>,
}

/// Validated detection flags of `flowguard run`.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    /// Detector configuration.
    pub config: crate::detect::DetectConfig,
    /// Number of detection shards.
    pub shards: usize,
    /// Alert stream output (`-` = stdout).
    pub alerts: Option<PathBuf>,
    /// Report written at exit.
    pub report: Option<PathBuf>,
}

/// A flag combination that makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl RunArgs {
    /// Checks the flags and builds the config.
    ///
    /// # Errors
    /// A [`UsageError`] naming the bad flag.
    pub fn validate(self) -> Result<RunConfig, UsageError> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let workers = self.workers.unwrap_or(cores);
        if workers == 0 || workers > flowguard_ebpf::MAX_SHARDS {
            return Err(UsageError(format!(
                "--workers must be between 1 and {}, got {workers}",
                flowguard_ebpf::MAX_SHARDS
            )));
        }
        let mut ports = if self.ports.is_empty() {
            flowguard_ebpf::DEFAULT_PORTS.to_vec()
        } else {
            self.ports
        };
        ports.sort_unstable();
        ports.dedup();
        if ports.contains(&0) || ports.len() > flowguard_ebpf::MAX_PORTS {
            return Err(UsageError(format!(
                "--port takes 1 to {} non-zero ports",
                flowguard_ebpf::MAX_PORTS
            )));
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            return Err(UsageError(format!(
                "--ring-bytes must be a power of two of at least 4096, got {}",
                self.ring_bytes
            )));
        }
        let input = if self.read.is_empty() {
            match self.capture {
                CaptureMode::Xdp => Input::Xdp {
                    iface: self.iface.ok_or_else(|| {
                        UsageError(
                            "--capture xdp needs --iface <IFACE> (or use --capture socket)".into(),
                        )
                    })?,
                    mode: self.xdp_mode,
                },
                CaptureMode::Socket => Input::Socket,
            }
        } else {
            Input::Files(self.read)
        };
        Ok(RunConfig {
            input,
            workers,
            ports,
            ring_bytes: self.ring_bytes,
            socket_rcvbuf: self.socket_rcvbuf,
            stats_interval: self.stats_interval,
            stats_json: self.stats_json,
            packet_log: self.packet_log,
            stall: std::time::Duration::from_millis(self.stall_workers_ms),
            duration: (self.duration > 0).then(|| std::time::Duration::from_secs(self.duration)),
            flows_out: self.flows_out,
            template_dir: self.template_dir,
            decoder: self.limits.config(),
            detect: if self.no_detect {
                None
            } else {
                let config = crate::analyze::load_detect_config(self.detect_config.as_deref())
                    .map_err(|e| UsageError(format!("{e:#}")))?;
                if self.detect_shards == 0 || self.detect_shards > 64 {
                    return Err(UsageError(
                        "--detect-shards must be between 1 and 64".into(),
                    ));
                }
                Some(DetectSettings {
                    config,
                    shards: self.detect_shards,
                    alerts: self.alerts,
                    report: self.report,
                })
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("flowguard").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command else {
            return Err("not run".into());
        };
        run.validate().map_err(|e| e.0)
    }

    #[test]
    fn xdp_needs_an_interface() {
        let err = parse(&["run"]).unwrap_err();
        assert!(err.contains("--iface"), "{err}");
        let ok = parse(&[
            "run",
            "--iface",
            "eth0",
            "--workers",
            "2",
            "--port",
            "2055,4739",
        ])
        .unwrap();
        assert_eq!(ok.ports, vec![2055, 4739]);
        assert_eq!(ok.workers, 2);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(parse(&["run", "--capture", "socket", "--workers", "0"]).is_err());
        assert!(parse(&["run", "--capture", "socket", "--workers", "33"]).is_err());
        assert!(parse(&["run", "--capture", "socket", "--ring-bytes", "5000"]).is_err());
        assert!(parse(&["run", "--capture", "socket", "--port", "0"]).is_err());
        assert!(parse(&["run", "--capture", "bogus"]).is_err());
        let defaults = parse(&["run", "--capture", "socket"]).unwrap();
        assert_eq!(defaults.ports, vec![2055, 4739, 6343, 9995]);
    }
}
