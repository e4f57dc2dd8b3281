//! Getting export packets from the wire (or a file) to the worker that owns their shard.
//!
//! Three sources feed one interface, [`ExportPacket`]:
//! * [`xdp`]: the XDP program copies payloads into one ring buffer per shard;
//! * [`socket`]: one `SO_REUSEPORT` UDP socket per (port, shard), steered by the
//!   `sk_reuseport` program with the same shard function. In XDP mode it carries what the
//!   program passes (fragments, ring-full spill-over); with `--capture socket` it carries all;
//! * [`pcap`]: a capture file of export packets, read through memmap2.
//!
//! All three compute the shard with [`shard_for`], so one (exporter, observation domain)
//! always reaches the same worker and its templates.

pub mod flowfile;
pub mod pcap;
pub mod socket;
pub mod xdp;

use std::net::{IpAddr, SocketAddr};

/// How live traffic is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureMode {
    /// XDP program steering into per-shard ring buffers, with the socket path beside it.
    Xdp,
    /// `SO_REUSEPORT` sockets only, for hosts without XDP.
    Socket,
}

/// Where a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A shard's XDP ring buffer.
    Xdp,
    /// The shard's UDP socket.
    Socket,
    /// A capture file.
    Pcap,
}

impl Source {
    /// Every source, in counter order.
    pub const ALL: [Source; 3] = [Source::Xdp, Source::Socket, Source::Pcap];

    /// Lower-case name for counters and logs.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Source::Xdp => "xdp",
            Source::Socket => "socket",
            Source::Pcap => "pcap",
        }
    }
}

/// One export datagram handed to a worker. The payload is borrowed from the ring buffer,
/// the socket batch buffer or the mapped file, and is only valid during the call.
#[derive(Clone, Copy, Debug)]
pub struct ExportPacket<'a> {
    /// The exporter's address and UDP source port.
    pub exporter: SocketAddr,
    /// The UDP destination port (the collector port it was sent to).
    pub dst_port: u16,
    /// Ingress interface index, when the source knows it (XDP), else 0.
    pub ifindex: u32,
    /// When it was received, nanoseconds since the Unix epoch (capture time for files).
    pub received_ns: u64,
    /// Which path delivered it.
    pub source: Source,
    /// The UDP payload: the NetFlow/IPFIX message.
    pub payload: &'a [u8],
}

/// The 16-byte exporter form the kernel programs hash: IPv4 in the first four bytes.
#[must_use]
pub fn exporter_bytes(addr: IpAddr) -> [u8; 16] {
    match addr.to_canonical() {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The shard that owns (exporter, observation domain of `payload`), the same rule the XDP and
/// `sk_reuseport` programs apply.
#[must_use]
pub fn shard_for(exporter: IpAddr, payload: &[u8], num_shards: usize) -> usize {
    let words = flowguard_ebpf::exporter_words(&exporter_bytes(exporter));
    let domain = flowguard_ebpf::observation_domain(payload);
    let n = u32::try_from(num_shards).unwrap_or(u32::MAX);
    flowguard_ebpf::shard_of(flowguard_ebpf::shard_hash(words, domain), n) as usize
}

/// Nanoseconds since the Unix epoch, now.
#[must_use]
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapped_exporters_hash_like_v4() {
        let v4: IpAddr = "198.18.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.18.0.2".parse().unwrap();
        let mut v9 = [0u8; 20];
        v9[1] = 9;
        v9[19] = 3;
        assert_eq!(exporter_bytes(v4), exporter_bytes(mapped));
        assert_eq!(shard_for(v4, &v9, 7), shard_for(mapped, &v9, 7));
    }
}
