//! A synthetic packet capture for softflowd to turn into exports: TCP, UDP and ICMP over
//! IPv4 and IPv6, a few long flows (hundreds of packets over four minutes of capture
//! time) and hundreds of short ones. Addresses are from the benchmarking ranges
//! (`198.18.0.0/15`, `2001:2::/48`); the capture is only ever read from a file.

#![expect(
    clippy::many_single_char_names,
    reason = "short host names (a, b, p, q) read like a topology sketch"
)]

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::Result;
use etherparse::PacketBuilder;

/// Capture start (2023-11-14T22:13:20Z).
pub const T0_SECS: u64 = 1_700_000_000;

/// Layer 4 of a generated packet.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP with flags spelled as in tcpdump ("S", "SA", "PA", "FA", "A").
    Tcp(u16, u16, &'static str),
    Udp(u16, u16),
    /// ICMP/ICMPv6 echo request (`false`) or reply (`true`), id, seq.
    Echo(bool, u16, u16),
}

/// A unidirectional flow as the generator sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// What the flow is for ("long-tcp4", "short-udp6", ...).
    pub kind: &'static str,
    pub packets: u64,
    /// Sum of IP total lengths.
    pub bytes: u64,
}

/// Flow key: (src, dst, protocol, sport, dport); ports are 0 for ICMP.
pub type Key = (IpAddr, IpAddr, u8, u16, u16);

#[derive(Default)]
pub struct Capture {
    /// (time in µs since T0, frame).
    frames: Vec<(u64, Vec<u8>)>,
    /// Unidirectional flows with their packet and byte counts.
    pub flows: BTreeMap<Key, Flow>,
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

impl Capture {
    fn send(
        &mut self,
        kind: &'static str,
        t_ms: u64,
        src: IpAddr,
        dst: IpAddr,
        l4: L4,
        len: usize,
    ) {
        let payload = vec![0x61u8; len];
        let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!("mixed families"),
        };
        let mut frame = Vec::new();
        let (proto, sport, dport) = match l4 {
            L4::Tcp(sp, dp, flags) => {
                let mut b = ip.tcp(sp, dp, 1000 + u32::try_from(t_ms).unwrap_or(0), 65_000);
                for c in flags.chars() {
                    b = match c {
                        'S' => b.syn(),
                        'A' => b.ack(1),
                        'P' => b.psh(),
                        'F' => b.fin(),
                        'R' => b.rst(),
                        _ => unreachable!("flag {c}"),
                    };
                }
                b.write(&mut frame, &payload).expect("tcp frame");
                (6, sp, dp)
            }
            L4::Udp(sp, dp) => {
                ip.udp(sp, dp)
                    .write(&mut frame, &payload)
                    .expect("udp frame");
                (17, sp, dp)
            }
            L4::Echo(reply, id, seq) => {
                match (src.is_ipv4(), reply) {
                    (true, false) => ip.icmpv4_echo_request(id, seq).write(&mut frame, &payload),
                    (true, true) => ip.icmpv4_echo_reply(id, seq).write(&mut frame, &payload),
                    (false, false) => ip.icmpv6_echo_request(id, seq).write(&mut frame, &payload),
                    (false, true) => ip.icmpv6_echo_reply(id, seq).write(&mut frame, &payload),
                }
                .expect("icmp frame");
                (if src.is_ipv4() { 1 } else { 58 }, 0, 0)
            }
        };
        let ip_len = (frame.len() - 14) as u64;
        let f = self
            .flows
            .entry((src, dst, proto, sport, dport))
            .or_insert(Flow {
                kind,
                packets: 0,
                bytes: 0,
            });
        f.packets += 1;
        f.bytes += ip_len;
        self.frames.push((t_ms * 1000, frame));
    }

    /// Builds the traffic.
    #[must_use]
    pub fn generate() -> Self {
        let mut c = Self::default();
        let v4 = |a: u8, b: u8, d: u8| IpAddr::V4(Ipv4Addr::new(198, a, b, d));
        let v6 = |net: u16, host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, net, 0, 0, 0, host));
        // Long flows: a TCP conversation (both directions), a one-way UDP stream over
        // IPv6, ping over IPv4 (both directions) and IPv6.
        let (a, b) = (v4(18, 1, 10), v4(18, 2, 20));
        for i in 0..400u64 {
            let flags = if i == 0 { "S" } else { "PA" };
            c.send("long-tcp4", i * 600, a, b, L4::Tcp(40_000, 443, flags), 100);
            let flags = if i == 0 { "SA" } else { "A" };
            let len = 200 + usize::try_from(i % 7).unwrap_or(0);
            c.send(
                "long-tcp4-rev",
                i * 600 + 10,
                b,
                a,
                L4::Tcp(443, 40_000, flags),
                len,
            );
        }
        for i in 0..300u64 {
            let len = 50 + usize::try_from(i % 13).unwrap_or(0);
            c.send(
                "long-udp6",
                i * 800,
                v6(1, 0x10),
                v6(2, 0x20),
                L4::Udp(5000, 5001),
                len,
            );
        }
        let (p, q) = (v4(18, 1, 11), v4(18, 2, 21));
        for i in 0..240u16 {
            let t = u64::from(i) * 1000;
            c.send("long-icmp4", t, p, q, L4::Echo(false, 7, i), 56);
            c.send("long-icmp4-rev", t + 2, q, p, L4::Echo(true, 7, i), 56);
        }
        for i in 0..120u16 {
            let t = u64::from(i) * 2000;
            c.send(
                "long-icmp6",
                t,
                v6(1, 0x11),
                v6(2, 0x21),
                L4::Echo(false, 9, i),
                32,
            );
        }
        // Short flows: 300 TCP connections (5 packets, both directions), 150 IPv6 UDP
        // query/response pairs, 60 one-packet IPv4 UDP flows, 40 one-packet ICMPv6 pings.
        for i in 0..300u16 {
            let t = 1000 + u64::from(i) * 750;
            let cl = v4(
                18,
                u8::try_from(10 + i / 200).unwrap_or(0),
                u8::try_from(1 + i % 200).unwrap_or(0),
            );
            let sv = v4(19, 0, u8::try_from(1 + i % 50).unwrap_or(0));
            let cp = 20_000 + i;
            c.send("short-tcp4", t, cl, sv, L4::Tcp(cp, 80, "S"), 0);
            c.send("short-tcp4", t + 1, sv, cl, L4::Tcp(80, cp, "SA"), 0);
            c.send("short-tcp4", t + 2, cl, sv, L4::Tcp(cp, 80, "PA"), 18);
            c.send(
                "short-tcp4",
                t + 3,
                sv,
                cl,
                L4::Tcp(80, cp, "FA"),
                100 + usize::from(i),
            );
            c.send("short-tcp4", t + 4, cl, sv, L4::Tcp(cp, 80, "FA"), 0);
        }
        for i in 0..150u16 {
            let t = 2000 + u64::from(i) * 1500;
            let cl = v6(0x10, 1 + i);
            let dns = v6(0x20, 0x53);
            c.send("short-udp6", t, cl, dns, L4::Udp(30_000 + i, 53), 30);
            c.send("short-udp6", t + 5, dns, cl, L4::Udp(53, 30_000 + i), 90);
        }
        for i in 0..60u8 {
            let t = 3000 + u64::from(i) * 3700;
            c.send(
                "short-udp4",
                t,
                v4(18, 3, 1 + i),
                v4(19, 1, 1),
                L4::Udp(123, 123),
                48,
            );
        }
        for i in 0..40u16 {
            let t = 5000 + u64::from(i) * 5100;
            c.send(
                "short-icmp6",
                t,
                v6(0x30, 1 + i),
                v6(2, 0x21),
                L4::Echo(false, i, 1),
                8,
            );
        }
        c.frames.sort_by_key(|(t, _)| *t);
        c
    }

    /// Writes a classic pcap (Ethernet, microsecond timestamps).
    ///
    /// # Errors
    /// On I/O errors.
    pub fn write_pcap(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        out.extend(0xa1b2_c3d4u32.to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend([0u8; 8]);
        out.extend(65_535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for (t_us, frame) in &self.frames {
            let secs = u32::try_from(T0_SECS + t_us / 1_000_000)?;
            let usecs = u32::try_from(t_us % 1_000_000)?;
            let len = u32::try_from(frame.len())?;
            for x in [secs, usecs, len, len] {
                out.extend(x.to_le_bytes());
            }
            out.extend(frame);
        }
        std::fs::write(path, out)?;
        Ok(())
    }

    /// Number of packets.
    #[must_use]
    pub fn packet_count(&self) -> usize {
        self.frames.len()
    }
}
