//! Flow-level emission: conversations become the records an exporter with a 60 s active
//! and a 15 s inactive timeout would send, one per direction, each with the time it
//! becomes ready for export.

use std::net::IpAddr;

use crate::decode::{Direction, FlowRecord};

use super::Label;
use super::rng::Rng;

/// Active timeout of the modelled exporter (ms): a long flow is cut into records this long.
pub const ACTIVE_TIMEOUT_MS: u64 = 60_000;
/// Inactive timeout (ms): a flow idle this long is exported; a gap longer than this
/// between packets of one 5-tuple gives a new record.
pub const INACTIVE_TIMEOUT_MS: u64 = 15_000;

/// TCP flag bits.
pub const FIN: u8 = 0x01;
/// SYN.
pub const SYN: u8 = 0x02;
/// RST.
pub const RST: u8 = 0x04;
/// PSH.
pub const PSH: u8 = 0x08;
/// ACK.
pub const ACK: u8 = 0x10;

/// TCP protocol number.
pub const TCP: u8 = 6;
/// UDP protocol number.
pub const UDP: u8 = 17;

/// One record waiting for export.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    /// The record (exporter fields are filled in at export).
    pub rec: FlowRecord,
    /// When the exporter expires it and queues it for the next export packet (Unix ms).
    pub ready_ms: u64,
    /// Which exporter saw it (index into the scenario's exporters).
    pub exporter: usize,
    /// What produced it.
    pub label: Label,
}

/// Whether `a` is one of the scenario's internal addresses (10/8 or `fd00::/8`).
#[must_use]
pub fn is_internal(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

/// Interface index: 1 for the LAN side, 2 for the WAN side.
fn iface(a: IpAddr) -> u32 {
    if is_internal(a) { 1 } else { 2 }
}

/// A TCP or UDP conversation to emit.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    /// Client (initiator) address.
    pub client: IpAddr,
    /// Server (responder) address.
    pub server: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Server port.
    pub sport: u16,
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// First packet (Unix ms).
    pub start_ms: u64,
    /// Duration (ms); long conversations are split at the active timeout.
    pub dur_ms: u64,
    /// Client-to-server packets (0: no record that way).
    pub out_pkts: u64,
    /// Client-to-server bytes.
    pub out_bytes: u64,
    /// Server-to-client packets (0: no reply).
    pub in_pkts: u64,
    /// Server-to-client bytes.
    pub in_bytes: u64,
    /// TCP only: whether the conversation opens with SYN and closes with FIN (a whole
    /// connection); `false` for segments of a connection that was already open.
    pub whole: bool,
}

impl Conv {
    /// A conversation with no traffic yet; fill in the counts.
    #[must_use]
    pub fn new(client: IpAddr, server: IpAddr, cport: u16, sport: u16, proto: u8) -> Self {
        Self {
            client,
            server,
            cport,
            sport,
            proto,
            start_ms: 0,
            dur_ms: 0,
            out_pkts: 0,
            out_bytes: 0,
            in_pkts: 0,
            in_bytes: 0,
            whole: true,
        }
    }
}

/// Collects pending records.
#[derive(Debug)]
pub struct Sink {
    /// Everything emitted so far.
    pub out: Vec<Pending>,
    /// Jitter for export delays and chunk edges.
    rng: Rng,
    /// Two exporters: internal-to-internal traffic goes to the second (a core switch).
    two_exporters: bool,
    /// Whether IPv6 records may be produced (not for v5).
    pub ipv6: bool,
    /// Scenario end (Unix ms); nothing starting at or after it is kept.
    pub end_ms: u64,
}

impl Sink {
    /// An empty sink.
    #[must_use]
    pub fn new(seed: u64, two_exporters: bool, ipv6: bool, end_ms: u64) -> Self {
        Self {
            out: Vec::new(),
            rng: Rng::fork(seed, "sink"),
            two_exporters,
            ipv6,
            end_ms,
        }
    }

    fn exporter_for(&self, a: IpAddr, b: IpAddr) -> usize {
        usize::from(self.two_exporters && is_internal(a) && is_internal(b))
    }

    /// Emits one raw record.
    #[expect(clippy::too_many_arguments, reason = "a record has that many parts")]
    pub fn record(
        &mut self,
        label: Label,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        proto: u8,
        flags: u8,
        (start_ms, end_ms): (u64, u64),
        packets: u64,
        bytes: u64,
        ready_ms: u64,
    ) {
        if packets == 0 || start_ms >= self.end_ms {
            return;
        }
        if !self.ipv6 && (src.0.is_ipv6() || dst.0.is_ipv6()) {
            return;
        }
        let mut rec = FlowRecord {
            src_addr: src.0,
            dst_addr: dst.0,
            src_port: src.1,
            dst_port: dst.1,
            protocol: proto,
            tcp_flags: if proto == TCP { flags } else { 0 },
            direction: Direction::Ingress,
            start_ms,
            end_ms: end_ms.max(start_ms),
            input_interface: iface(src.0),
            output_interface: iface(dst.0),
            ..FlowRecord::default()
        };
        rec.set_counts(bytes.max(packets * 28), packets, 1);
        let exporter = self.exporter_for(src.0, dst.0);
        self.out.push(Pending {
            rec,
            ready_ms: ready_ms.max(rec.end_ms),
            exporter,
            label,
        });
    }

    /// Export delay after a flow ends: a FIN/RST-closed TCP flow or an active-timeout
    /// cut is exported within a second; anything else waits for the inactive timeout.
    fn ready(&mut self, end_ms: u64, closed: bool) -> u64 {
        let base = if closed { 0 } else { INACTIVE_TIMEOUT_MS };
        end_ms + base + self.rng.range(50, 1000)
    }

    /// Emits both directions of a conversation, cut at the active timeout.
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::many_single_char_names,
        reason = "shares of counts far below 2^52; s/e/p/b are start, end, packets, bytes"
    )]
    pub fn conv(&mut self, label: Label, c: &Conv) {
        let dur = c.dur_ms.max(1);
        let end = c.start_ms + dur;
        // Chunk edges [s, e] at the active timeout.
        let mut chunks = Vec::new();
        let mut s = c.start_ms;
        loop {
            if s + ACTIVE_TIMEOUT_MS >= end {
                chunks.push((s, end));
                break;
            }
            let e = s + ACTIVE_TIMEOUT_MS - self.rng.range(1, 400);
            chunks.push((s, e));
            s = (e + self.rng.range(1, 300)).min(end - 1);
        }
        let n = chunks.len();
        let rtt = self.rng.range(1, 40);
        let mut sent = [(0u64, 0u64); 2];
        for (i, &(cs, ce)) in chunks.iter().enumerate() {
            let last = i + 1 == n;
            let first = i == 0;
            let frac = (ce - cs) as f64 / dur as f64;
            for (dir, (pkts, bytes)) in [(c.out_pkts, c.out_bytes), (c.in_pkts, c.in_bytes)]
                .into_iter()
                .enumerate()
            {
                if pkts == 0 {
                    continue;
                }
                let (p, b) = if last {
                    (
                        pkts.saturating_sub(sent[dir].0),
                        bytes.saturating_sub(sent[dir].1),
                    )
                } else {
                    let p = ((pkts as f64 * frac).round() as u64).max(1);
                    let b = (bytes as f64 * frac).round() as u64;
                    (p, b)
                };
                if p == 0 {
                    continue;
                }
                sent[dir].0 += p;
                sent[dir].1 += b;
                let mut flags = 0;
                if c.proto == TCP {
                    flags = ACK | PSH;
                    if c.whole && first {
                        flags |= SYN;
                    }
                    if c.whole && last {
                        flags |= FIN;
                    }
                }
                let closed = c.proto == TCP && c.whole;
                let (src, dst, ts, te) = if dir == 0 {
                    ((c.client, c.cport), (c.server, c.sport), cs, ce)
                } else {
                    let ts = (cs + rtt / 2).min(ce);
                    ((c.server, c.sport), (c.client, c.cport), ts, ce)
                };
                let ready = if last {
                    self.ready(te, closed)
                } else {
                    te + self.rng.range(50, 1000)
                };
                self.record(label, src, dst, c.proto, flags, (ts, te), p, b, ready);
            }
        }
    }

    /// A TCP connection attempt of one SYN, with an optional one-packet answer:
    /// `Some(true)` SYN-ACK (open; the prober then sends RST), `Some(false)` RST-ACK
    /// (closed), `None` no answer.
    pub fn syn_probe(
        &mut self,
        label: Label,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        at_ms: u64,
        answer: Option<bool>,
    ) {
        let rtt = self.rng.range(1, 30);
        match answer {
            Some(true) => {
                // SYN then RST from the prober: one record of two packets.
                let ready = self.ready(at_ms + rtt, true);
                self.record(
                    label,
                    src,
                    dst,
                    TCP,
                    SYN | RST,
                    (at_ms, at_ms + rtt),
                    2,
                    84,
                    ready,
                );
                let ready = self.ready(at_ms + rtt / 2, true);
                self.record(
                    label,
                    dst,
                    src,
                    TCP,
                    SYN | ACK,
                    (at_ms + rtt / 2, at_ms + rtt / 2),
                    1,
                    44,
                    ready,
                );
            }
            Some(false) => {
                let ready = self.ready(at_ms, false);
                self.record(label, src, dst, TCP, SYN, (at_ms, at_ms), 1, 44, ready);
                let ready = self.ready(at_ms + rtt / 2, true);
                self.record(
                    label,
                    dst,
                    src,
                    TCP,
                    RST | ACK,
                    (at_ms + rtt / 2, at_ms + rtt / 2),
                    1,
                    40,
                    ready,
                );
            }
            None => {
                let ready = self.ready(at_ms, false);
                self.record(label, src, dst, TCP, SYN, (at_ms, at_ms), 1, 44, ready);
            }
        }
    }
}
