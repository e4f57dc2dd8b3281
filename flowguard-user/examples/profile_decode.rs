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
    Decoder,
    encode::{Encoder, EncoderConfig, Format},
};

#[path = "common/records.rs"]
mod records;

use records::records;

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
