//! `cargo xtask lab up|down` and the no-argument `cargo xtask run` demo.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use flowguard_e2e::{COLLECTOR_V4, COLLECTOR_V6, Collector, Lab, TempDir, blast, export_payload};

/// Tag of the persistent lab.
const TAG: &str = "lab";

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create namespaces fgc-lab (collector, 198.18.0.1, 2001:2::1) and fge-lab (exporter,
    /// 198.18.0.2, 2001:2::2) joined by veth fgc-lab/fge-lab.
    Up,
    /// Delete them.
    Down,
}

pub fn run(action: Action) -> Result<()> {
    match action {
        Action::Up => {
            let lab = Lab::persistent(TAG).context("creating the lab (needs root)")?;
            println!(
                "lab up: collector netns {} ({}, {COLLECTOR_V4}, {COLLECTOR_V6}); exporter netns {} ({})\n\
                 try: ip netns exec {} target/release/flowguard run --iface {} --workers 2",
                lab.collector_ns,
                lab.collector_if,
                lab.exporter_ns,
                lab.exporter_if,
                lab.collector_ns,
                lab.collector_if
            );
            lab.leak();
            Ok(())
        }
        Action::Down => {
            drop(Lab::named(TAG));
            println!("lab down");
            Ok(())
        }
    }
}

/// Attaches flowguard to a fresh lab with native XDP and sends it export-like traffic from
/// eight observation domains of two exporters (IPv4 and IPv6) for ten seconds, so the
/// per-second counters show steering and sharding at work.
pub fn demo(bin: &Path) -> Result<()> {
    // SAFETY: set before any thread that reads the environment is spawned.
    unsafe { std::env::set_var("FLOWGUARD_BIN", bin) };
    let lab = Lab::new().context("creating a lab namespace pair (needs root)")?;
    let dir = TempDir::new("demo");
    eprintln!(
        "demo: flowguard on {} (native XDP) in netns {}, traffic from {}",
        lab.collector_if, lab.collector_ns, lab.exporter_ns
    );
    let mut collector = Collector::start(
        &lab,
        &["--iface", &lab.collector_if, "--workers", "2"],
        dir.join("flowguard.log"),
        2055,
    )?;
    let mut handles = Vec::new();
    for (v6, port, ipfix) in [(false, 2055u16, false), (true, 4739u16, true)] {
        let socket = lab.exporter_socket(v6)?;
        let dst = if v6 {
            (COLLECTOR_V6, port).into()
        } else {
            (COLLECTOR_V4, port).into()
        };
        let payloads: Vec<Vec<u8>> = (0..8).map(|d| export_payload(1200, d, ipfix, d)).collect();
        handles.push(std::thread::spawn(move || {
            let mut sent = 0;
            for _ in 0..10 {
                sent += blast(&socket, dst, &payloads, Duration::from_millis(100)).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(900));
            }
            sent
        }));
    }
    let sent: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    std::thread::sleep(Duration::from_millis(500));
    collector.stop(libc_sigint())?;
    eprint!("{}", collector.log_text());
    eprintln!("demo: sent {sent} datagrams");
    Ok(())
}

const fn libc_sigint() -> i32 {
    2
}
