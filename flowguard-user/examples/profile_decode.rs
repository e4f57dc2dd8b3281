//! A fixed amount of decode work for instruction-level profiling, without the timing
//! loop of `bench_decode` (whose iteration count depends on the clock):
//!
//! ```text
//! cargo build --release -p flowguard-user --example profile_decode
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*decode_rounds*' \
//!     target/release/examples/profile_decode ipfix 200 10
//! ```
//!
//! Arguments: format (`v5`, `v9`, `ipfix`), packets, rounds. It prints the record count,
//! so instructions per record is callgrind's total divided by it.

#![expect(
    clippy::cast_possible_truncation,
    reason = "random values cut to field widths"
)]

use std::{hint::black_box, net::IpAddr};

use flowguard::decode::{
    Decoder, Direction, FlowRecord,
    encode::{Encoder, EncoderConfig, Format},
};

/// The same record mix as `bench_decode`: one IPv6 flow in five, TCP/UDP/ICMP.
fn records(n: usize, seed: u64) -> Vec<FlowRecord> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = 1_780_000_000_000u64;
    (0..n)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if i % 5 == 0 {
                (
                    std::net::Ipv6Addr::from(0x2001_0002u128 << 96 | u128::from(next() as u32))
                        .into(),
                    std::net::Ipv6Addr::from(
                        0x2001_0002_0001u128 << 80 | u128::from(next() as u16),
                    )
                    .into(),
                )
            } else {
                (
                    std::net::Ipv4Addr::from(0xc612_0000 | (next() as u32 & 0xffff)).into(),
                    std::net::Ipv4Addr::from(0x0a00_0000 | (next() as u32 & 0x00ff_ffff)).into(),
                )
            };
            let proto = [6u8, 6, 6, 17, 17, 1][usize::try_from(next() % 6).unwrap_or(0)];
            let start = base + next() % 60_000;
            let mut r = FlowRecord {
                src_addr: src,
                dst_addr: dst,
                src_port: next() as u16,
                dst_port: [443u16, 80, 53, 123, 22][usize::try_from(next() % 5).unwrap_or(0)],
                protocol: proto,
                tcp_flags: if proto == 6 { 0x1b } else { 0 },
                direction: Direction::Ingress,
                start_ms: start,
                end_ms: start + next() % 30_000,
                input_interface: (next() % 48) as u32,
                output_interface: (next() % 48) as u32,
                ..FlowRecord::default()
            };
            r.set_counts(40 + next() % 1_000_000, 1 + next() % 1000, 1);
            r
        })
        .collect()
}

#[inline(never)]
fn decode_rounds(decoder: &mut Decoder, pkts: &[Vec<u8>], rounds: usize) -> u64 {
    let exporter = IpAddr::from([198, 18, 0, 2]);
    let mut n = 0u64;
    for _ in 0..rounds {
        for p in pkts {
            let _ = decoder.decode(exporter, 0, p, &mut |r| {
                n += 1;
                black_box(r);
            });
        }
    }
    n
}

fn main() {
    let mut args = std::env::args().skip(1);
    let format = match args.next().as_deref() {
        Some("v5") => Format::V5,
        Some("v9") => Format::V9,
        _ => Format::Ipfix,
    };
    let packets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut config = EncoderConfig::new(format);
    config.records_per_packet = if format == Format::V5 { 30 } else { 26 };
    let mut encoder = Encoder::new(config);
    let mut pkts = Vec::new();
    encoder.encode(&records(packets * 30, 7), 1_780_000_100_000, &mut pkts);
    pkts.truncate(packets);
    let mut decoder = Decoder::default();
    // Learn the templates outside the measured rounds.
    decode_rounds(&mut decoder, &pkts, 1);
    let n = decode_rounds(&mut decoder, &pkts, rounds);
    println!("records {n}");
}
