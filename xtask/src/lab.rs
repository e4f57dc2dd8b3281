//! `cargo xtask lab up|down` and the no-argument `cargo xtask run` demo.

use std::{io::Read as _, net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context as _, Result};
use flowguard::decode::{
    Direction, FlowRecord,
    encode::{Encoder, EncoderConfig, Format},
};
use flowguard_e2e::{COLLECTOR_V4, COLLECTOR_V6, Collector, Lab, TempDir};

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

/// Synthetic flows for the demo: web, DNS and NTP from a few hosts.
fn demo_records(n: usize, v6: bool, now_ms: u64, salt: u16) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let i16 = u16::try_from(i % 60_000).unwrap_or(0);
            let (src, dst) = if v6 {
                (
                    format!("2001:2::a:{:x}", i % 20).parse().ok(),
                    format!("2001:2::b:{:x}", i % 7).parse().ok(),
                )
            } else {
                (
                    format!("198.18.10.{}", i % 20 + 1).parse().ok(),
                    format!("198.18.20.{}", i % 7 + 1).parse().ok(),
                )
            };
            let (dst_port, protocol) = [(443, 6), (53, 17), (123, 17), (80, 6)][i % 4];
            let mut r = FlowRecord {
                src_addr: src.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                dst_addr: dst.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                src_port: 30_000 + i16.wrapping_add(salt),
                dst_port,
                protocol,
                tcp_flags: if protocol == 6 { 0x1b } else { 0 },
                direction: Direction::Ingress,
                start_ms: now_ms - 5_000,
                end_ms: now_ms - 100,
                input_interface: 1,
                output_interface: 2,
                ..FlowRecord::default()
            };
            r.set_counts(500 + i as u64 * 3, 1 + i as u64 % 9, 1);
            r
        })
        .collect()
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0)
}

/// Attaches flowguard to a fresh lab with native XDP, and for ten seconds replays NetFlow v5,
/// v9 and IPFIX exports (built by flowguard's encoder) from three exporter domains over IPv4
/// and IPv6, printing flowguard's per-second counters as they come and a sample of the
/// decoded flows at the end.
pub fn demo(bin: &Path) -> Result<()> {
    // SAFETY: set before any thread that reads the environment is spawned.
    unsafe { std::env::set_var("FLOWGUARD_BIN", bin) };
    let lab = Lab::new().context("creating a lab namespace pair (needs root)")?;
    let dir = TempDir::new("demo");
    let flows = dir.join("flows.ndjson");
    let log = dir.join("flowguard.log");
    eprintln!(
        "demo: flowguard on {} (native XDP, 2 workers) in netns {}; exports from {}",
        lab.collector_if, lab.collector_ns, lab.exporter_ns
    );
    let mut collector = Collector::start(
        &lab,
        &[
            "--iface",
            &lab.collector_if,
            "--workers",
            "2",
            "--flows-out",
            flows.to_str().unwrap_or("-"),
        ],
        log.clone(),
        2055,
    )?;
    let mut senders = Vec::new();
    for (format, port, v6, domain) in [
        (Format::V5, 9995u16, false, 1u32),
        (Format::V9, 2055, false, 2),
        (Format::V9, 2055, false, 3),
        (Format::Ipfix, 4739, true, 4),
        (Format::Ipfix, 4739, true, 6),
    ] {
        let socket = lab.exporter_socket(v6)?;
        let dst: SocketAddr = if v6 {
            (COLLECTOR_V6, port).into()
        } else {
            (COLLECTOR_V4, port).into()
        };
        senders.push(std::thread::spawn(move || -> Result<u64> {
            let mut config = EncoderConfig::new(format);
            config.observation_domain_id = domain;
            // Keep datagrams under the 1500-byte MTU, as exporters do.
            config.records_per_packet = if v6 { 16 } else { config.records_per_packet };
            let mut encoder = Encoder::new(config);
            let mut sent = 0;
            for second in 0..10u16 {
                let mut packets = Vec::new();
                encoder.encode(
                    &demo_records(3000, v6, now_ms(), second),
                    now_ms(),
                    &mut packets,
                );
                for p in &packets {
                    socket.send_to(p, dst)?;
                    sent += 1;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(sent)
        }));
    }
    let mut shown = 0usize;
    let show_log = |shown: &mut usize| {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&log) {
            let _ = f.read_to_string(&mut text);
        }
        if text.len() > *shown {
            eprint!("{}", &text[*shown..]);
            *shown = text.len();
        }
    };
    while senders.iter().any(|s| !s.is_finished()) {
        std::thread::sleep(Duration::from_millis(500));
        show_log(&mut shown);
    }
    let mut sent = 0;
    for s in senders {
        sent += s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    std::thread::sleep(Duration::from_millis(500));
    collector.stop(2)?;
    show_log(&mut shown);
    let text = std::fs::read_to_string(&flows).unwrap_or_default();
    eprintln!(
        "\ndemo: sent {sent} export datagrams; flowguard wrote {} flow records; a sample:",
        text.lines().count()
    );
    for line in text.lines().step_by(7919).take(5) {
        eprintln!("  {line}");
    }
    Ok(())
}
