//! Decode throughput on one core: flowguard's decoder against the `netflow_parser` crate on
//! the same packets, and against a plain pass that reads every byte (the memory-speed
//! ceiling), all in one process and one run.
//!
//! Run with `cargo xtask bench decode` (it builds this in release mode). Packets are what
//! the project's encoder emits for realistic records: v5 with 30 records per packet, v9 and
//! IPFIX with 24–28 records per packet, IPv4 and IPv6 mixed, templates in the first packet
//! and refreshed every 20.

#![expect(
    clippy::cast_possible_truncation,
    reason = "random values cut to field widths"
)]

use std::{
    hint::black_box,
    net::IpAddr,
    time::{Duration, Instant},
};

use flowguard::decode::{
    Decoder,
    encode::{Encoder, EncoderConfig, Format},
};

#[path = "common/records.rs"]
mod records;

use records::records;

const PACKETS: usize = 4000;
const MIN_TIME: Duration = Duration::from_millis(1500);

fn packets(format: Format) -> (Vec<Vec<u8>>, u64) {
    let mut config = EncoderConfig::new(format);
    config.records_per_packet = if format == Format::V5 { 30 } else { 26 };
    let mut encoder = Encoder::new(config);
    let recs = records(PACKETS * 30, 7);
    let mut out = Vec::new();
    encoder.encode(&recs, 1_780_000_100_000, &mut out);
    out.truncate(PACKETS);
    let mut decoder = Decoder::default();
    let mut n = 0u64;
    for p in &out {
        let _ = decoder.decode(IpAddr::from([198, 18, 0, 2]), 0, p, &mut |_| n += 1);
    }
    (out, n)
}

/// Flow records `netflow_parser` produced for one packet, so the table can show that it
/// decoded as many records as flowguard (its records/s uses flowguard's count).
fn np_record_count(p: &netflow_parser::NetflowPacket) -> u64 {
    use netflow_parser::variable_versions::{ipfix, v9};
    let n = match p {
        netflow_parser::NetflowPacket::V5(v) => v.flowsets.len(),
        netflow_parser::NetflowPacket::V9(v) => v
            .flowsets
            .iter()
            .map(|f| match &f.body {
                v9::FlowSetBody::Data(d) => d.fields.len(),
                _ => 0,
            })
            .sum(),
        netflow_parser::NetflowPacket::IPFix(v) => v
            .flowsets
            .iter()
            .map(|f| match &f.body {
                ipfix::FlowSetBody::Data(d) => d.fields.len(),
                _ => 0,
            })
            .sum(),
        _ => 0,
    };
    n as u64
}

/// Runs `pass` over all packets until `MIN_TIME` has passed; returns seconds per pass.
fn time(mut pass: impl FnMut()) -> f64 {
    pass(); // warm-up (and templates learned)
    let start = Instant::now();
    let mut rounds = 0u32;
    while start.elapsed() < MIN_TIME {
        pass();
        rounds += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(rounds)
}

fn main() {
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.into_iter().last()) {
        core_affinity::set_for_current(core);
    }
    println!(
        "decode benchmark: {PACKETS} packets per format, one core, records/s (higher is better)\n"
    );
    println!(
        "| format | records/pkt | flowguard | netflow_parser | read-every-byte | flowguard / netflow_parser | flowguard / ceiling | records per pass: flowguard / netflow_parser |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, format) in [
        ("v5", Format::V5),
        ("v9", Format::V9),
        ("ipfix", Format::Ipfix),
    ] {
        let (pkts, recs) = packets(format);
        let exporter = IpAddr::from([198, 18, 0, 2]);
        let mut decoder = Decoder::default();
        let mut fg_ok = true;
        let fg = time(|| {
            let mut n = 0u64;
            for p in &pkts {
                fg_ok &= decoder
                    .decode(exporter, 0, p, &mut |r| {
                        n += r.bytes;
                        // The whole record must be built: a consumer that read only
                        // `bytes` would let the compiler drop the work for the rest.
                        black_box(r);
                    })
                    .is_ok();
            }
            black_box(n);
        });
        let mut parser = netflow_parser::NetflowParser::default();
        let mut parsed_ok = true;
        let mut np_records = 0u64;
        let np = time(|| {
            np_records = 0;
            for p in &pkts {
                let result = parser.parse_bytes(p);
                parsed_ok &= result.error.is_none() && !result.packets.is_empty();
                np_records += result.packets.iter().map(np_record_count).sum::<u64>();
                black_box(&result);
            }
        });
        let ceiling = time(|| {
            // Sums every byte; the loop vectorises, so this runs at memory/cache speed.
            let mut acc = 0u64;
            for p in &pkts {
                acc = acc.wrapping_add(p.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b))));
            }
            black_box(acc);
        });
        #[expect(clippy::cast_precision_loss, reason = "rates")]
        let rate = |secs: f64| recs as f64 / secs;
        #[expect(clippy::cast_precision_loss, reason = "an average")]
        let per_packet = recs as f64 / pkts.len() as f64;
        println!(
            "| {name} | {per_packet:.1} | {:.2e}{} | {:.2e}{} | {:.2e} | {:.1}x | {:.2} | {recs} / {np_records} |",
            rate(fg),
            if fg_ok { "" } else { " (errors)" },
            rate(np),
            if parsed_ok { "" } else { " (errors)" },
            rate(ceiling),
            np / fg,
            ceiling / fg,
        );
    }
    println!("\nrerun: cargo xtask bench decode");
}
