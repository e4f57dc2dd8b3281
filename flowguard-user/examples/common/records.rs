//! The record mix the decode benchmark and profiler encode: one IPv6 flow in five,
//! TCP/UDP/ICMP, realistic ports, interfaces and counters, from a seeded xorshift.

use std::net::IpAddr;

use flowguard::decode::{Direction, FlowRecord};

/// `n` records from `seed`.
pub fn records(n: usize, seed: u64) -> Vec<FlowRecord> {
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
            let v6 = i % 5 == 0;
            let (src, dst): (IpAddr, IpAddr) = if v6 {
                (
                    std::net::Ipv6Addr::from(
                        0x2001_0002_0000_0000_0000_0000_0000_0000u128 | u128::from(next() as u32),
                    )
                    .into(),
                    std::net::Ipv6Addr::from(
                        0x2001_0002_0001_0000_0000_0000_0000_0000u128 | u128::from(next() as u16),
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
