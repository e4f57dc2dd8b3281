//! Command-line flags (clap) and their validation into a [`RunConfig`].
//!
//! Two layers, as ripgrep does it: the raw flags below mirror what the user typed; `validate`
//! turns them into a config that the rest of the program can trust.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::capture::{CaptureMode, xdp::AttachMode};

/// flowguard: a security-focused NetFlow v5 / v9 / IPFIX collector.
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("flowguard").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command;
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
