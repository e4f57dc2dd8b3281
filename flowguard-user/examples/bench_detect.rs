//! Detection throughput on one core: records/s through all standard detectors, against a
//! baseline in the same run that only routes records to shards and moves the watermark
//! (the engine's own cost), so the ratio isolates what the detectors cost.
//!
//! All detectors are timed on two feeds: the offline engine (`flowguard analyze`: each
//! record routed and observed on one thread), and a live detection shard (`flowguard
//! run`: batches of [`DETECT_BATCH`] records that the decoding workers routed, which is
//! not timed here, each followed by a watermark move). The live row is what a detection
//! thread of the collector sustains.
//!
//! Run with `cargo xtask bench detect`. Datasets:
//!
//! - **synthetic**: shaped like an enterprise edge at its worst for per-pair state:
//!   2,000 internal hosts talking to 50,000 external hosts on common ports in random
//!   pairs, with event time advancing ~20,000 records per second of traffic;
//! - **scenario**: the records of a generated 6-hour scenario with the default settings
//!   (`flowguard::scenario`): realistic benign background with the default attacks, in
//!   export order, with the scenario's detector configuration (its allow rules).
//!
//! - **busy**: the same generator at its largest site (2,000 workstations, a public web
//!   server at 200 connections/s) over the two hours around the daily peak, about 4.6 M
//!   records: realistic state sizes at ~640 records per second of event time, where the
//!   6-hour scenario has ~10 (so per-watermark-step work weighs less and per-key state
//!   more). `FLOWGUARD_BENCH_BUSY_HOURS` shortens it for profiling.
//!
//! - **keys**: bounded state under key churn: 10,000,000 records, each with a new
//!   internal host and a new external peer in both directions (so every detector sees
//!   10 M new keys), at the default cap of `max_keys_per_detector` (1,000,000). It prints
//!   state bytes, evictions and the process RSS every 1 M records, which must level off
//!   once the caps are reached (`FLOWGUARD_BENCH_KEYS` and `FLOWGUARD_BENCH_KEY_CAP`
//!   change the count and the cap).
//!
//! The benchmark restarts itself onto transparent huge pages as the `flowguard` binary
//! does (`flowguard::hugepages`) and says so in its header; `FLOWGUARD_HUGE_PAGES=0`
//! measures the same code on 4 KiB pages.
//!
//! `FLOWGUARD_BENCH_RECORDS=N` sets the synthetic record count (default 2,000,000) and
//! `FLOWGUARD_BENCH_DATASETS=synthetic,scenario,busy,keys` picks the datasets (all by default), for
//! profiling smaller runs under callgrind; each pipeline is timed as the best of
//! `FLOWGUARD_BENCH_REPEAT` passes (default 3; five times as many for the short
//! scenario), the pipelines taking turns. `FLOWGUARD_BENCH_EACH=1` adds a row per
//! detector run alone.

use std::{
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use flowguard::{
    decode::{Direction, FlowRecord},
    detect::{
        BeaconDetector, DetectConfig, Detector, ExfilDetector, Finding, ScanDetector, ShardId,
        VolumeDetector, engine::DetectEngine, engine::DetectShard, engine::Routed, engine::Router,
        engine::ShardStats, standard_detectors,
    },
    scenario::{ScenarioConfig, generate},
    worker::DETECT_BATCH,
};

const RECORDS: usize = 2_000_000;

fn synthetic(n: usize) -> Vec<FlowRecord> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = 1_780_000_000_000u64;
    (0..n)
        .map(|i| {
            let internal = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (next() % 2000) as u32));
            let external = IpAddr::V4(Ipv4Addr::from(0xcb00_7100 ^ (next() % 50_000) as u32));
            let outbound = next() % 3 != 0;
            let (src, dst) = if outbound {
                (internal, external)
            } else {
                (external, internal)
            };
            let t = base + i as u64 / 20; // 20 records per ms of event time
            let dst_port = [443u16, 80, 53, 123, 22, 8080, 25][(next() % 7) as usize];
            let mut r = FlowRecord {
                src_addr: src,
                dst_addr: dst,
                src_port: 1024 + (next() % 60_000) as u16,
                dst_port,
                protocol: if dst_port == 53 || dst_port == 123 {
                    17
                } else {
                    6
                },
                tcp_flags: 0x1b,
                direction: Direction::Ingress,
                start_ms: t.saturating_sub(next() % 30_000),
                end_ms: t,
                ..FlowRecord::default()
            };
            r.set_counts(60 + next() % 100_000, 1 + next() % 100, 1);
            r
        })
        .collect()
}

fn no_detectors(_: &DetectConfig, _: ShardId) -> Vec<Box<dyn Detector + Send>> {
    Vec::new()
}

fn scan_only(c: &DetectConfig, _: ShardId) -> Vec<Box<dyn Detector + Send>> {
    vec![Box::new(ScanDetector::new(c))]
}

fn exfil_only(c: &DetectConfig, _: ShardId) -> Vec<Box<dyn Detector + Send>> {
    vec![Box::new(ExfilDetector::new(c))]
}

fn beacon_only(c: &DetectConfig, _: ShardId) -> Vec<Box<dyn Detector + Send>> {
    vec![Box::new(BeaconDetector::new(c))]
}

fn volume_only(c: &DetectConfig, _: ShardId) -> Vec<Box<dyn Detector + Send>> {
    vec![Box::new(VolumeDetector::new(c))]
}

type Factory = fn(&DetectConfig, ShardId) -> Vec<Box<dyn Detector + Send>>;

/// One timed pass: seconds, findings, shard 0's counters. Never inlined, so that
/// callgrind can collect it alone (`--toggle-collect='bench_detect::run*'`).
#[inline(never)]
fn run(
    config: &DetectConfig,
    recs: &[FlowRecord],
    factory: Factory,
) -> (f64, Vec<Finding>, ShardStats) {
    let started = Instant::now();
    let mut engine = DetectEngine::new(config, 1, factory);
    for r in recs {
        engine.observe(r);
    }
    let (findings, stats) = engine.finish();
    let secs = started.elapsed().as_secs_f64();
    (secs, black_box(findings), stats[0])
}

/// The records as a live detection shard gets them: routed by the decoding workers (not
/// timed here: that is the workers' work) into batches of [`DETECT_BATCH`], each with the
/// largest end time in it.
fn live_batches(config: &DetectConfig, recs: &[FlowRecord]) -> Vec<(Vec<Routed>, u64)> {
    let router = Router::new(config, 1);
    let mut batches = Vec::with_capacity(recs.len() / DETECT_BATCH + 1);
    let mut batch = Vec::with_capacity(DETECT_BATCH);
    let mut max_end = 0;
    for r in recs {
        if let Some(route) = router.route(r) {
            batch.push(Routed {
                record: *r,
                sides: route.sides(0),
            });
            max_end = max_end.max(r.end_ms);
            if batch.len() == DETECT_BATCH {
                batches.push((std::mem::take(&mut batch), max_end));
            }
        }
    }
    if !batch.is_empty() {
        batches.push((batch, max_end));
    }
    batches
}

/// One timed pass of a live detection shard's loop (`run.rs`, `run_shard`) with one input:
/// each batch to the detectors, then the watermark to the input's event time less the
/// allowed lateness. Queue hand-off between threads is not part of it.
#[inline(never)]
fn run_live(
    config: &DetectConfig,
    batches: &[(Vec<Routed>, u64)],
    factory: Factory,
) -> (f64, Vec<Finding>, ShardStats) {
    let started = Instant::now();
    let mut shard = DetectShard::new(config, factory, ShardId { index: 0, count: 1 });
    let mut findings = Vec::new();
    for (batch, max_end) in batches {
        shard.observe_batch(batch);
        shard.advance_to(max_end.saturating_sub(shard.lateness_ms()), &mut findings);
    }
    shard.finish(&mut findings);
    let secs = started.elapsed().as_secs_f64();
    (secs, black_box(findings), shard.stats())
}

struct Row {
    name: String,
    records: usize,
    base_secs: f64,
    secs: f64,
    findings: usize,
    stats: ShardStats,
    /// The live shard's loop over pre-routed batches: seconds, findings.
    live_secs: f64,
    live_findings: usize,
    /// With `FLOWGUARD_BENCH_EACH=1`: (detector, seconds, state bytes) of each alone.
    each: Vec<(&'static str, f64, u64)>,
}

/// How a pipeline is fed: through the offline engine (routing on the same thread) or as
/// a live detection shard (pre-routed batches).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Engine,
    Live,
}

/// The best of `repeat` passes of each pipeline (the machine may be busy with other work).
/// The pipelines take turns, one pass each per round, so that a slow spell of the machine
/// falls on all of them alike and the ratios to routing stay fair.
fn measure(name: &str, config: &DetectConfig, recs: &[FlowRecord], repeat: usize) -> Row {
    let mut pipelines: Vec<(&'static str, Feed, Factory)> = vec![
        ("routing", Feed::Engine, no_detectors),
        ("all", Feed::Engine, standard_detectors),
        ("live", Feed::Live, standard_detectors),
    ];
    if std::env::var_os("FLOWGUARD_BENCH_EACH").is_some() {
        pipelines.extend([
            ("scan", Feed::Engine, scan_only as Factory),
            ("exfil", Feed::Engine, exfil_only),
            ("beacon", Feed::Engine, beacon_only),
            ("volume", Feed::Engine, volume_only),
        ]);
    }
    let batches = live_batches(config, recs);
    let mut best: Vec<Option<(f64, Vec<Finding>, ShardStats)>> = vec![None; pipelines.len()];
    for _ in 0..repeat.max(1) {
        for (slot, &(_, feed, factory)) in best.iter_mut().zip(&pipelines) {
            let pass = match feed {
                Feed::Engine => run(config, recs, factory),
                Feed::Live => run_live(config, &batches, factory),
            };
            if slot.as_ref().is_none_or(|b| pass.0 < b.0) {
                *slot = Some(pass);
            }
        }
    }
    drop(batches);
    let mut best = best.into_iter().map(|b| b.expect("at least one pass"));
    let (base_secs, _, _) = best.next().expect("the routing pipeline");
    let (secs, findings, stats) = best.next().expect("the all-detectors pipeline");
    let (live_secs, live_findings, _) = best.next().expect("the live pipeline");
    if let Some(dir) = std::env::var_os("FLOWGUARD_BENCH_DUMP") {
        // Every finding of the all-detectors passes, so that a change meant to be faster
        // only can be checked to give byte-identical results.
        let slug: String = name
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        for (suffix, findings) in [("", &findings), ("-live", &live_findings)] {
            let path = std::path::Path::new(&dir).join(format!("{slug}{suffix}.json"));
            let json = serde_json::to_string_pretty(findings).expect("findings serialize");
            std::fs::write(&path, json).expect("write the findings dump");
        }
    }
    let each = pipelines[3..]
        .iter()
        .zip(best)
        .map(|(&(name, _, _), (s, _, st))| (name, s, st.state_bytes))
        .collect();
    Row {
        name: name.to_owned(),
        records: recs.len(),
        base_secs,
        secs,
        findings: findings.len(),
        stats,
        live_secs,
        live_findings: live_findings.len(),
        each,
    }
}

/// Resident set size of this process, MiB (Linux `/proc/self/status`).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The key-churn run: every record a new internal host and a new external peer, in
/// both directions. Returns the table.
#[expect(
    clippy::cast_possible_truncation,
    reason = "addresses from the low 32 bits of the record number"
)]
fn churn(n: u64, cap: usize) -> String {
    let config = DetectConfig {
        max_keys_per_detector: cap,
        ..DetectConfig::default()
    };
    let mut engine = DetectEngine::new(&config, 1, standard_detectors);
    let base = 1_780_000_000_000u64;
    let rss_before = rss_mib();
    let started = Instant::now();
    let mut table = format!(
        "key churn: {n} records, each a new internal host and external peer (both directions), cap {cap} keys per map\n\n| records | state MiB | evictions | RSS MiB |\n|---:|---:|---:|---:|\n"
    );
    let step = (n / 10).max(1);
    for i in 0..n {
        let t = base + i / 10; // 10 records per ms of event time
        let internal = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i as u32 & 0x00ff_ffff)));
        let external = IpAddr::V4(Ipv4Addr::from(0x2000_0000u32.wrapping_add(i as u32)));
        let mut out = FlowRecord {
            src_addr: internal,
            dst_addr: external,
            src_port: 40_000,
            dst_port: 80,
            protocol: 6,
            tcp_flags: 0x02,
            start_ms: t,
            end_ms: t,
            ..FlowRecord::default()
        };
        out.set_counts(60, 1, 1);
        let mut back = FlowRecord {
            src_addr: external,
            dst_addr: internal,
            src_port: 443,
            dst_port: 40_000,
            protocol: 17,
            ..out
        };
        back.set_counts(300, 1, 1);
        engine.observe(&out);
        engine.observe(&back);
        if (i + 1) % step == 0 {
            let s = engine.stats()[0];
            #[expect(clippy::cast_precision_loss, reason = "display")]
            let mib = s.state_bytes as f64 / f64::from(1u32 << 20);
            let _ = writeln!(
                table,
                "| {} | {mib:.0} | {} | {:.0} |",
                i + 1,
                s.evictions,
                rss_mib() - rss_before
            );
        }
    }
    let (findings, _) = engine.finish();
    let _ = writeln!(
        table,
        "\n({:.1} s; {} findings; RSS is the growth over the run's start)",
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    table
}

#[expect(
    clippy::too_many_lines,
    reason = "one dataset after another, then the table"
)]
fn main() {
    // As the `flowguard` binary does: the detectors' state on the pages it has there.
    flowguard::hugepages::restart_if_due();
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.into_iter().last()) {
        core_affinity::set_for_current(core);
    }
    let n = std::env::var("FLOWGUARD_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(RECORDS);
    let repeat = std::env::var("FLOWGUARD_BENCH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let datasets = std::env::var("FLOWGUARD_BENCH_DATASETS")
        .unwrap_or_else(|_| "synthetic,scenario,busy,keys".into());
    let mut rows = Vec::new();
    if datasets.contains("synthetic") {
        let recs = synthetic(n);
        rows.push(measure(
            "synthetic (2k x 50k random pairs)",
            &DetectConfig::default(),
            &recs,
            repeat,
        ));
    }
    if datasets.contains("scenario") {
        let scenario = generate(&ScenarioConfig::default());
        // A pass takes well under 0.1 s, so more of them for a steady best.
        rows.push(measure(
            "scenario (default, 6 h)",
            &scenario.detect_config(),
            &scenario.records,
            repeat * 5,
        ));
    }
    if datasets.contains("busy") {
        // The same generator at its largest site (2,000 workstations, a busy public web
        // server) over the two hours around the daily peak: the benign mix and the attacks
        // of the default scenario at a record rate closer to a collector's.
        let hours = std::env::var("FLOWGUARD_BENCH_BUSY_HOURS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0);
        let mut config = ScenarioConfig {
            hours,
            ..ScenarioConfig::default()
        };
        config.start_unix_secs = config.start_unix_secs / 86_400 * 86_400 + 12 * 3600;
        config.background.workstations = 2000;
        config.background.public_server_conn_per_s = 200.0;
        let started = Instant::now();
        let scenario = generate(&config);
        eprintln!(
            "busy site: {} records generated in {:.1} s",
            scenario.records.len(),
            started.elapsed().as_secs_f64()
        );
        rows.push(measure(
            "busy site (2,000 workstations, 2 h at the daily peak)",
            &scenario.detect_config(),
            &scenario.records,
            repeat,
        ));
    }
    let detectors: Vec<&str> =
        standard_detectors(&DetectConfig::default(), ShardId { index: 0, count: 1 })
            .iter()
            .map(|d| d.name())
            .collect();
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    let rate = |records: usize, s: f64| records as f64 / s;
    println!(
        "detect benchmark: one core, one shard; detectors: {detectors:?}; heap: {}\n",
        flowguard::hugepages::describe()
    );
    println!(
        "| dataset | records | pipeline | records/s | time s | vs routing | findings | state bytes | evictions |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        // One table row: the pipeline, its time and rate against routing, and the
        // findings, state bytes and evictions cells (empty where not measured).
        let row = |pipeline: &str, secs: f64, cells: [String; 3]| {
            println!(
                "| {} | {} | {pipeline} | {:.2e} | {secs:.2} | {:.1}x | {} |",
                r.name,
                r.records,
                rate(r.records, secs),
                secs / r.base_secs,
                cells.join(" | ")
            );
        };
        row("routing + watermark only", r.base_secs, Default::default());
        row(
            "all detectors",
            r.secs,
            [
                r.findings.to_string(),
                r.stats.state_bytes.to_string(),
                r.stats.evictions.to_string(),
            ],
        );
        row(
            "all detectors, live shard (pre-routed batches)",
            r.live_secs,
            [r.live_findings.to_string(), String::new(), String::new()],
        );
        for (name, secs, bytes) in &r.each {
            row(
                &format!("{name} alone"),
                *secs,
                [String::new(), bytes.to_string(), String::new()],
            );
        }
    }
    println!(
        "\ngoal: >= 5e6 records/s through all detectors on one core. The live shard row is a \
         detection thread of `flowguard run` (its records routed by the decoding workers); \
         the all-detectors row is `flowguard analyze`'s one thread, routing included."
    );
    if datasets.contains("keys") {
        let keys = std::env::var("FLOWGUARD_BENCH_KEYS")
            .ok()
            .and_then(|s| s.replace('_', "").parse().ok())
            .unwrap_or(10_000_000);
        let cap = std::env::var("FLOWGUARD_BENCH_KEY_CAP")
            .ok()
            .and_then(|s| s.replace('_', "").parse().ok())
            .unwrap_or(DetectConfig::default().max_keys_per_detector);
        println!("\n{}", churn(keys, cap));
    }
    println!("rerun: cargo xtask bench detect");
}
