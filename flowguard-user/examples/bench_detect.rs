//! Detection throughput on one core: records/s through all standard detectors, against a
//! baseline in the same run that only routes records to shards and moves the watermark
//! (the engine's own cost), so the ratio isolates what the detectors cost.
//!
//! Run with `cargo xtask bench detect`. Records are synthetic but shaped like an enterprise
//! edge: 2,000 internal hosts talking to 50,000 external hosts on common ports, with event
//! time advancing ~20,000 records per second of traffic, over several hours of event time.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use flowguard::{
    decode::{Direction, FlowRecord},
    detect::{DetectConfig, Detector, ShardId, engine::DetectEngine, standard_detectors},
};

const RECORDS: usize = 2_000_000;

fn records() -> Vec<FlowRecord> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = 1_780_000_000_000u64;
    (0..RECORDS)
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

fn main() {
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.into_iter().last()) {
        core_affinity::set_for_current(core);
    }
    let recs = records();
    let run = |factory: fn(&DetectConfig, ShardId) -> Vec<Box<dyn Detector + Send>>| {
        let started = Instant::now();
        let mut engine = DetectEngine::new(DetectConfig::default(), 1, factory);
        for r in &recs {
            engine.observe(r);
        }
        let (findings, stats) = engine.finish();
        black_box(&findings);
        (started.elapsed().as_secs_f64(), findings.len(), stats)
    };
    let (base_secs, _, _) = run(no_detectors);
    let (secs, findings, stats) = run(standard_detectors);
    let detectors: Vec<&str> =
        standard_detectors(&DetectConfig::default(), ShardId { index: 0, count: 1 })
            .iter()
            .map(|d| d.name())
            .collect();
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    let rate = |s: f64| RECORDS as f64 / s;
    println!(
        "detect benchmark: {RECORDS} records, one core, one shard; detectors: {detectors:?}\n"
    );
    println!("| pipeline | records/s | time s |");
    println!("|---|---:|---:|");
    println!(
        "| routing + watermark only | {:.2e} | {base_secs:.2} |",
        rate(base_secs)
    );
    println!("| all detectors | {:.2e} | {secs:.2} |", rate(secs));
    println!(
        "\ndetectors cost {:.1}x the engine alone; {findings} findings; state {} bytes, {} evictions",
        secs / base_secs,
        stats[0].state_bytes,
        stats[0].evictions
    );
    println!("goal: >= 5e6 records/s through all detectors");
    println!("rerun: cargo xtask bench detect");
}
