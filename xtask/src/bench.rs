//! Benchmarks. Each reports ratios measured in the same run, because these machines are
//! small (2 cores) and noisy: absolute numbers move between runs, ratios much less.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use flowguard_e2e::{COLLECTOR_V4, Collector, Lab, TempDir, blast, export_payload};

#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Records/s on one core for v5, v9 and IPFIX: flowguard against the netflow_parser crate
    /// and against a plain read of every byte, on the same packets.
    Decode,
    /// Records/s on one core through all four detectors, against the engine alone.
    Detect,
    /// Offered load against loss, CPU per million records and peak RSS: flowguard (XDP and
    /// socket), nfcapd and the Python netflow collector, same traffic, same run.
    E2e {
        /// Offered packets/s per step (`max` = as fast as the replayer goes).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1000,5000,20000,50000,max"
        )]
        steps: Vec<String>,
        /// Seconds per step.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Export formats.
        #[arg(long, value_delimiter = ',', default_value = "v9,ipfix")]
        formats: Vec<String>,
    },
    /// Packets/s delivered to user space and loss, `--capture xdp` against `--capture socket`,
    /// for the same sendmmsg blast from a lab namespace.
    Capture {
        /// Seconds of traffic per capture mode.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// UDP payload bytes per datagram (real exporters send ~1,400).
        #[arg(long, default_value_t = 1400)]
        size: usize,
        /// flowguard workers.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Rounds; each round runs both modes, alternating which goes first.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
}

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::E2e {
            steps,
            seconds,
            formats,
        } => {
            let steps = steps
                .iter()
                .map(|s| {
                    if s == "max" {
                        Ok(f64::INFINITY)
                    } else {
                        s.parse::<f64>().map_err(anyhow::Error::from)
                    }
                })
                .collect::<Result<Vec<f64>>>()?;
            crate::e2e::run(&steps, seconds, &formats)
        }
        Which::Detect => crate::check(
            std::process::Command::new("cargo")
                .current_dir(crate::root())
                .args([
                    "run",
                    "--quiet",
                    "--release",
                    "-p",
                    "flowguard-user",
                    "--example",
                    "bench_detect",
                ]),
        ),
        Which::Decode => crate::check(
            std::process::Command::new("cargo")
                .current_dir(crate::root())
                .args([
                    "run",
                    "--quiet",
                    "--release",
                    "-p",
                    "flowguard-user",
                    "--example",
                    "bench_decode",
                ]),
        ),
        Which::Capture {
            seconds,
            size,
            workers,
            rounds,
        } => capture(seconds, size, workers, rounds),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    sent: u64,
    delivered: u64,
    secs: f64,
}

fn capture(seconds: u64, size: usize, workers: usize, rounds: usize) -> Result<()> {
    let bin = crate::build_flowguard(true)?;
    // SAFETY: set before any thread that reads the environment is spawned.
    unsafe { std::env::set_var("FLOWGUARD_BIN", &bin) };
    let mut xdp = Vec::new();
    let mut sock = Vec::new();
    for round in 0..rounds {
        let order: [&str; 2] = if round % 2 == 0 {
            ["xdp", "socket"]
        } else {
            ["socket", "xdp"]
        };
        for mode in order {
            let s = one(mode, seconds, size, workers)?;
            eprintln!(
                "bench capture: round {round} {mode:>6}: sent {} delivered {} ({:.0} pkt/s, loss {:.2}%)",
                s.sent,
                s.delivered,
                s.delivered as f64 / s.secs,
                loss(s)
            );
            if mode == "xdp" {
                xdp.push(s)
            } else {
                sock.push(s)
            }
        }
    }
    let total = |v: &[Sample]| {
        v.iter().fold(Sample::default(), |a, s| Sample {
            sent: a.sent + s.sent,
            delivered: a.delivered + s.delivered,
            secs: a.secs + s.secs,
        })
    };
    let (x, s) = (total(&xdp), total(&sock));
    let (xr, sr) = (x.delivered as f64 / x.secs, s.delivered as f64 / s.secs);
    println!(
        "\nflowguard capture benchmark: {rounds} round(s) x {seconds}s per mode, {size}-byte payloads, {workers} worker(s)"
    );
    println!("| capture | sent | delivered | delivered pkt/s | loss % |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| xdp    | {} | {} | {xr:.0} | {:.3} |",
        x.sent,
        x.delivered,
        loss(x)
    );
    println!(
        "| socket | {} | {} | {sr:.0} | {:.3} |",
        s.sent,
        s.delivered,
        loss(s)
    );
    println!(
        "\nratio xdp/socket delivered pkt/s: {:.2}",
        xr / sr.max(1.0)
    );
    println!(
        "rerun: cargo xtask bench capture --seconds {seconds} --size {size} --workers {workers} --rounds {rounds}"
    );
    Ok(())
}

fn loss(s: Sample) -> f64 {
    if s.sent == 0 {
        0.0
    } else {
        100.0 * (s.sent.saturating_sub(s.delivered)) as f64 / s.sent as f64
    }
}

fn one(mode: &str, seconds: u64, size: usize, workers: usize) -> Result<Sample> {
    let lab = Lab::new().context("creating a lab (needs root)")?;
    let dir = TempDir::new("bench-capture");
    let stats = dir.join("stats.json");
    let workers_s = workers.to_string();
    let stats_s = stats.display().to_string();
    let mut args = vec![
        "--capture",
        mode,
        "--workers",
        &workers_s,
        "--port",
        "2055",
        "--stats-interval",
        "0",
        "--stats-json",
        &stats_s,
    ];
    if mode == "xdp" {
        args.extend(["--iface", lab.collector_if.as_str()]);
    }
    let mut collector = Collector::start(&lab, &args, dir.join("log"), 2055)?;
    let socket = lab.exporter_socket(false)?;
    let payloads: Vec<Vec<u8>> = (0..64)
        .map(|i| export_payload(size, i % 16, false, i))
        .collect();
    let started = std::time::Instant::now();
    let sent = blast(
        &socket,
        (COLLECTOR_V4, 2055).into(),
        &payloads,
        Duration::from_secs(seconds),
    )?;
    let secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let status = collector.stop(2)?;
    if !status.success() {
        bail!("flowguard failed: {}", collector.log_text());
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    let delivered = json["workers"]
        .as_array()
        .context("workers")?
        .iter()
        .map(|w| w["packets"].as_u64().unwrap_or(0))
        .sum();
    Ok(Sample {
        sent,
        delivered,
        secs,
    })
}
