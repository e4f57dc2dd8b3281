//! `flowguard analyze`: the offline path from captures (or the Python collector's files) to
//! the prioritized findings report.
//!
//! Records go through one decoder (files in order, one template cache) and one
//! [`DetectEngine`]; detection runs on event time, so the report is the same whatever the
//! speed the files are read at.

use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    capture::{
        flowfile::{FlowFileCounters, read_flow_file},
        pcap::{PcapCounters, PcapFile},
    },
    cli::AnalyzeArgs,
    decode::{DecodeCounters, Decoder, FlowRecord},
    detect::{
        DetectConfig,
        engine::{DetectEngine, DetectorFactory, ShardStats},
    },
    report::findings::{Report, build_report},
};

/// Loads a detector configuration file (JSON; every field optional).
///
/// # Errors
/// Unreadable file or invalid JSON, naming the file.
pub fn load_detect_config(path: Option<&Path>) -> Result<DetectConfig> {
    let Some(path) = path else {
        return Ok(DetectConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid detector configuration", path.display()))
}

/// A progress line on stderr, redrawn at most four times a second, only on a terminal.
struct Progress {
    enabled: bool,
    last: Instant,
    total_bytes: u64,
}

impl Progress {
    fn new(enabled: bool, total_bytes: u64) -> Self {
        Self {
            enabled: enabled && std::io::stderr().is_terminal(),
            last: Instant::now(),
            total_bytes,
        }
    }

    fn update(&mut self, done_bytes: u64, records: u64, findings: usize) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        #[expect(clippy::cast_precision_loss, reason = "display")]
        let frac = if self.total_bytes == 0 {
            1.0
        } else {
            done_bytes as f64 / self.total_bytes as f64
        };
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "0..=30"
        )]
        let filled = (frac.clamp(0.0, 1.0) * 30.0) as usize;
        eprint!(
            "\ranalyze [{}{}] {:>3.0}% {records} records, {findings} findings ",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            frac * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}

/// What `analyze` read.
#[derive(Debug, Default, serde::Serialize)]
pub struct AnalyzeInput {
    /// Capture files.
    pub pcap_files: Vec<String>,
    /// Python collector files.
    pub flow_files: Vec<String>,
    /// Flow records analysed.
    pub records: u64,
    /// Records no detector shard took (both ends external, or allow-listed).
    pub unrouted_records: u64,
    /// Event time of the first and last record, Unix ms.
    pub first_ms: u64,
    /// See `first_ms`.
    pub last_ms: u64,
    /// Capture reader counters.
    pub pcap: PcapCounters,
    /// Decoder counters.
    pub decode: DecodeCounters,
    /// Flow-file reader counters.
    pub flow_file: FlowFileCounters,
    /// Detector shard counters.
    pub shards: Vec<ShardStats>,
}

/// Runs the analysis and returns the report (also written to `--output`).
///
/// # Errors
/// Unreadable inputs, bad configuration, or an unwritable output.
pub fn analyze(args: &AnalyzeArgs, factory: DetectorFactory) -> Result<Report> {
    if args.read.is_empty() && args.flow_file.is_empty() {
        bail!("nothing to analyze: give --read FILE.pcap and/or --flow-file FILE");
    }
    let config = load_detect_config(args.detect_config.as_deref())?;
    let mut engine = DetectEngine::new(&config, args.detect_shards.max(1), factory);
    let mut input = AnalyzeInput::default();
    let total: u64 = args
        .read
        .iter()
        .chain(&args.flow_file)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut progress = Progress::new(!args.no_progress, total);
    let mut done = 0u64;
    let observe = |r: &FlowRecord, input: &mut AnalyzeInput, engine: &mut DetectEngine| {
        input.records += 1;
        input.first_ms = if input.first_ms == 0 {
            r.start_ms
        } else {
            input.first_ms.min(r.start_ms)
        };
        input.last_ms = input.last_ms.max(r.end_ms);
        engine.observe(r);
    };
    let ports = if args.ports.is_empty() {
        flowguard_ebpf::DEFAULT_PORTS.to_vec()
    } else {
        args.ports.clone()
    };
    let mut decoder = Decoder::default();
    for path in &args.read {
        let file = PcapFile::open(path)?;
        let mut offset_guess = 0u64;
        let mut pcap = std::mem::take(&mut input.pcap);
        file.for_each_datagram(&ports, &mut pcap, |packet| {
            offset_guess += packet.payload.len() as u64 + 58;
            let _ = decoder.decode(
                packet.exporter.ip(),
                packet.received_ns / 1_000_000,
                packet.payload,
                &mut |r| {
                    observe(r, &mut input, &mut engine);
                },
            );
            progress.update(done + offset_guess, input.records, 0);
        })?;
        input.pcap = pcap;
        done += std::fs::metadata(path).map_or(0, |m| m.len());
        input.pcap_files.push(path.display().to_string());
    }
    input.decode = *decoder.counters();
    for path in &args.flow_file {
        let mut counters = FlowFileCounters::default();
        read_flow_file(path, &mut counters, |r| {
            observe(r, &mut input, &mut engine);
            progress.update(done, input.records, 0);
        })?;
        input.flow_file.lines += counters.lines;
        input.flow_file.records += counters.records;
        input.flow_file.bad_lines += counters.bad_lines;
        input.flow_file.bad_flows += counters.bad_flows;
        done += std::fs::metadata(path).map_or(0, |m| m.len());
        input.flow_files.push(path.display().to_string());
    }
    input.unrouted_records = engine.unrouted;
    let (findings, shards) = engine.finish();
    progress.update(total, input.records, findings.len());
    progress.done();
    input.shards = shards;
    let report = build_report(findings, serde_json::to_value(&input)?);
    let json = serde_json::to_string_pretty(&report)?;
    if args.output.as_os_str() == "-" {
        println!("{json}");
    } else {
        std::fs::write(&args.output, json)
            .with_context(|| format!("writing {}", args.output.display()))?;
    }
    eprintln!(
        "flowguard: analyzed {} records; {} findings on {} hosts",
        input.records,
        report
            .entities
            .iter()
            .map(|e| e.findings.len())
            .sum::<usize>(),
        report.entities.len()
    );
    Ok(report)
}
