//! `cargo xtask soak --minutes N`: steady replay of a mixed scenario (benign background plus
//! attacks) into flowguard on native XDP, sampling RSS, counters and findings every few
//! seconds.
//!
//! It fails if memory keeps growing after warm-up, if any packet is unaccounted for
//! (sent ≠ received + counted drops), or if an injected attack is missing from the report.
//! The scenario's event time is stretched over the soak (`--speed` = scenario time / wall
//! time), so detectors see hours of traffic in minutes.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use flowguard_e2e::{COLLECTOR_V4, Collector, Lab, TempDir};

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss_kib: u64,
    packets: u64,
    records: u64,
    alerts: usize,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sum_workers(stats: &serde_json::Value, key: &str) -> u64 {
    stats["workers"]
        .as_array()
        .map_or(0, |w| w.iter().map(|w| w[key].as_u64().unwrap_or(0)).sum())
}

pub fn run(minutes: u64, hours: f64, format: &str) -> Result<()> {
    if minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let bin = crate::build_flowguard(true)?;
    // SAFETY: set before any thread that reads the environment is spawned.
    unsafe { std::env::set_var("FLOWGUARD_BIN", &bin) };
    let dir = TempDir::new("soak");
    let scenario = dir.join("scenario");
    crate::check(
        Command::new(&bin)
            .args(["scenario", "--out"])
            .arg(&scenario)
            .args(["--format", format, "--hours", &hours.to_string()]),
    )?;
    let truth: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        scenario.join("ground_truth.json"),
    )?)?;
    let lab = Lab::new().context("creating the lab (needs root)")?;
    let stats_path = dir.join("stats.json");
    let alerts_path = dir.join("alerts.ndjson");
    let report_path = dir.join("report.json");
    let detect_config = scenario.join("detect_config.json");
    let port = if format == "ipfix" { 4739 } else { 2055 };
    let args = [
        "--iface",
        &lab.collector_if,
        "--workers",
        "2",
        "--port",
        "2055,4739",
        "--stats-interval",
        "5",
        "--stats-json",
        stats_path.to_str().unwrap_or_default(),
        "--alerts",
        alerts_path.to_str().unwrap_or_default(),
        "--report",
        report_path.to_str().unwrap_or_default(),
        "--detect-config",
        detect_config.to_str().unwrap_or_default(),
    ];
    let mut collector = Collector::start(&lab, &args, dir.join("flowguard.log"), port)?;
    let pid = collector.child.id();
    let speed = hours * 3600.0 / (minutes as f64 * 60.0);
    let mut replay = lab
        .in_exporter(&bin)
        .args(["replay", "--scenario"])
        .arg(&scenario)
        .args([
            "--to",
            &format!("{COLLECTOR_V4}:{port}"),
            "--keep-ports",
            "--port",
            "2055,4739",
            "--rate",
            "original",
        ])
        .args(["--speed", &format!("{speed}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the replay")?;
    eprintln!(
        "soak: {minutes} min, {hours} h of {format} scenario event time at {speed:.1}x, flowguard pid {pid}"
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let live: serde_json::Value = std::fs::read_to_string(&stats_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let alerts = std::fs::read_to_string(&alerts_path).map_or(0, |t| t.lines().count());
        let s = Sample {
            secs: started.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            packets: sum_workers(&live, "packets"),
            records: sum_workers(&live, "records"),
            alerts,
        };
        eprintln!(
            "soak [{:>6.0}s] rss {:>6} KiB, packets {:>9}, records {:>10}, alerts {}",
            s.secs, s.rss_kib, s.packets, s.records, s.alerts
        );
        samples.push(s);
        if replay.try_wait()?.is_some() {
            break;
        }
    }
    let mut err = String::new();
    std::io::Read::read_to_string(
        &mut replay.stderr.take().context("replay stderr")?,
        &mut err,
    )?;
    let words: Vec<&str> = err.split_whitespace().collect();
    let sent: u64 = words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == "packets")
        .and_then(|w| w[0].parse().ok())
        .with_context(|| format!("unexpected replay output: {err}"))?;
    std::thread::sleep(Duration::from_secs(3));
    let status = collector.stop(15)?;
    if !status.success() {
        bail!("flowguard exited with {status}: {}", collector.log_text());
    }
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats_path)?)?;
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    check(&samples, sent, &stats, &report, &truth, minutes, &dir.0)
}

fn check(
    samples: &[Sample],
    sent: u64,
    stats: &serde_json::Value,
    report: &serde_json::Value,
    truth: &serde_json::Value,
    minutes: u64,
    dir: &Path,
) -> Result<()> {
    let mut failures = Vec::new();
    // Memory: after the first quarter (warm-up), the last third must not sit above the
    // middle by more than 20% + 16 MiB.
    let n = samples.len();
    let warm = &samples[n / 4..];
    let third = warm.len() / 3;
    let (middle, last) = (
        &warm[..third.max(1)],
        &warm[warm.len().saturating_sub(third.max(1))..],
    );
    let peak = |s: &[Sample]| s.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let (mid_peak, last_peak) = (peak(middle), peak(last));
    if last_peak > mid_peak + mid_peak / 5 + 16 * 1024 {
        failures.push(format!(
            "RSS grew after warm-up: {mid_peak} KiB -> {last_peak} KiB"
        ));
    }
    // Accounting: every packet sent was received by a worker or counted as dropped.
    let received = sum_workers(stats, "packets");
    let counted_drops = stats["socket_kernel_drops"].as_u64().unwrap_or(0);
    let unaccounted = sent.saturating_sub(received + counted_drops);
    if unaccounted > 0 {
        failures.push(format!("{unaccounted} packets unaccounted (sent {sent}, received {received}, counted drops {counted_drops})"));
    }
    let queue_full = sum_workers(stats, "detect_queue_full");
    // Attacks: each observable injected attack has a finding of its category on its host.
    let findings: Vec<&serde_json::Value> = report["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["findings"].as_array().into_iter().flatten())
        .collect();
    let mut missing = Vec::new();
    for attack in truth["attacks"].as_array().into_iter().flatten() {
        if attack["observable"] == false {
            continue;
        }
        let category = attack["category"].as_str().unwrap_or_default();
        let hosts: Vec<&str> = [&attack["src"], &attack["dst"]]
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let found = findings.iter().any(|f| {
            f["category"].as_str() == Some(category)
                && [&f["entities"]["src"], &f["entities"]["dst"]]
                    .iter()
                    .filter_map(|v| v.as_str())
                    .any(|h| hosts.contains(&h))
        });
        if !found {
            missing.push(attack["id"].as_str().unwrap_or("?").to_owned());
        }
    }
    if !missing.is_empty() {
        failures.push(format!("attacks not reported: {}", missing.join(", ")));
    }
    let mut md = format!(
        "## soak: {minutes} min\n\n| t (s) | RSS MiB | packets | records | alert lines |\n|---:|---:|---:|---:|---:|\n"
    );
    let step = (samples.len() / 24).max(1);
    for s in samples.iter().step_by(step).chain(samples.last()) {
        let _ = writeln!(
            md,
            "| {:.0} | {:.1} | {} | {} | {} |",
            s.secs,
            s.rss_kib as f64 / 1024.0,
            s.packets,
            s.records,
            s.alerts
        );
    }
    let _ = writeln!(
        md,
        "\nsent {sent} packets; received {received}; counted drops {counted_drops}; unaccounted {unaccounted}; \
         detect queue full {queue_full} records; RSS peak middle {:.1} MiB, last {:.1} MiB; attacks reported {}/{}",
        mid_peak as f64 / 1024.0,
        last_peak as f64 / 1024.0,
        truth["attacks"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|a| a["observable"] != false).count())
            - missing.len(),
        truth["attacks"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|a| a["observable"] != false).count()),
    );
    println!("{md}");
    let out = crate::root().join("target/soak.md");
    std::fs::write(&out, &md)?;
    let _ = std::fs::copy(
        dir.join("report.json"),
        crate::root().join("target/soak-report.json"),
    );
    if failures.is_empty() {
        println!("soak passed; table in {}", out.display());
        Ok(())
    } else {
        bail!("soak failed:\n  {}", failures.join("\n  "))
    }
}
