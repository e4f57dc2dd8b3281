//! Records and rules shared by flowguard's kernel programs and its user space.
//!
//! Everything here is `no_std`, allocation-free and usable from BPF: the ring-buffer record
//! header, the outcome counters, the map names and sizes, and the shard function. The shard
//! function is the single definition both the XDP program, the `sk_reuseport` program and
//! the user-space pcap reader call, so one (exporter, observation domain) lands on one worker
//! whatever path its packets take.
#![no_std]
#![deny(missing_docs)]

/// Most shards (workers, ring buffers) one program instance supports.
///
/// BPF has no runtime-sized array of ring buffers in the aya version we use, so the program
/// declares `MAX_SHARDS` ring-buffer maps (`RING_0` …) and user space sizes the ones it uses
/// and shrinks the rest to one page.
pub const MAX_SHARDS: usize = 32;

/// Most UDP ports the collector listens on at once. Each port has its own `SO_REUSEPORT`
/// group, so [`SOCKETS_MAP`] holds `MAX_PORTS * MAX_SHARDS` sockets: the socket of port slot
/// `p`, shard `k` is at index `p * MAX_SHARDS + k`.
pub const MAX_PORTS: usize = 16;

/// Export ports taken by default: NetFlow (2055, 9995), IPFIX (4739) and sFlow (6343).
pub const DEFAULT_PORTS: [u16; 4] = [2055, 4739, 6343, 9995];

/// Name of the hash map of taken UDP destination ports (key: port in host order, value: the
/// port's slot, `0..MAX_PORTS`).
pub const PORTS_MAP: &str = "PORTS";
/// Name of the `u32` config array, indexed by [`config`] constants.
pub const CONFIG_MAP: &str = "CONFIG";
/// Name of the per-CPU outcome counter array, indexed by [`Outcome`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the `REUSEPORT_SOCKARRAY` holding one UDP socket per shard.
pub const SOCKETS_MAP: &str = "SOCKETS";
/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "flowguard_xdp";
/// Name of the `sk_reuseport` program in the object.
pub const REUSEPORT_PROGRAM: &str = "flowguard_reuseport";

/// Slots of the config array.
pub mod config {
    /// Number of shards in use, 1..=`MAX_SHARDS`. Zero (unset) behaves as one.
    pub const NUM_SHARDS: u32 = 0;
    /// Bytes waiting in a ring before the program wakes its consumer. Below it, records
    /// are submitted without a wakeup and the worker finds them on its next short poll, so
    /// a steady stream costs one wakeup per batch instead of one per packet. Zero wakes on
    /// every record.
    pub const WAKEUP_BYTES: u32 = 1;
    /// Number of slots.
    pub const LEN: u32 = 2;
}

/// Offsets inside an export packet's UDP payload, used to find the observation domain.
pub mod offsets {
    /// NetFlow v5 engine_type (1 byte) and engine_id (1 byte).
    pub const V5_ENGINE: usize = 20;
    /// NetFlow v9 source_id (RFC 3954 §5.1).
    pub const V9_SOURCE_ID: usize = 16;
    /// IPFIX observation domain id (RFC 7011 §3.1).
    pub const IPFIX_DOMAIN: usize = 12;
}

/// Payload size classes for ring-buffer slots.
///
/// `bpf_ringbuf_reserve` needs a size the verifier knows to be constant, so the program
/// reserves the smallest class that fits and copies the payload into it with
/// `bpf_xdp_load_bytes`. The record's real length is in [`RingHeader::payload_len`].
pub const PAYLOAD_CLASSES: [usize; 3] = [256, 1536, 9216];

/// Header in front of every payload in a shard's ring buffer.
///
/// Layout (40 bytes, 8-aligned, no implicit padding):
///
/// | offset | field            |
/// |--------|------------------|
/// | 0      | `exporter` (16)  |
/// | 16     | `ktime_ns` (8)   |
/// | 24     | `ifindex` (4)    |
/// | 28     | `payload_len` (2)|
/// | 30     | `src_port` (2)   |
/// | 32     | `dst_port` (2)   |
/// | 34     | `family` (1)     |
/// | 35     | `_reserved` (5)  |
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingHeader {
    /// Exporter address: IPv4 in the first four bytes (rest zero), or IPv6.
    pub exporter: [u8; 16],
    /// `bpf_ktime_get_ns()` when the packet was steered (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Ingress interface index.
    pub ifindex: u32,
    /// UDP payload length; the payload follows this header.
    pub payload_len: u16,
    /// Exporter UDP source port, host order.
    pub src_port: u16,
    /// UDP destination port, host order.
    pub dst_port: u16,
    /// 4 or 6.
    pub family: u8,
    /// Zero.
    pub _reserved: [u8; 5],
}

/// Size of [`RingHeader`] in bytes.
pub const RING_HEADER_LEN: usize = core::mem::size_of::<RingHeader>();
const _: () = assert!(RING_HEADER_LEN == 40);

#[cfg(feature = "user")]
// SAFETY: RingHeader is repr(C), Copy, and every bit pattern is a valid value.
unsafe impl aya::Pod for RingHeader {}

/// What the XDP program did with a packet; one per-CPU counter each.
///
/// Every packet the program sees increments exactly one of these, so their sum is the
/// number of packets seen.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Copied into a shard's ring buffer, then `XDP_DROP`.
    Steered = 0,
    /// Not IPv4/IPv6 (ARP, LLDP …): passed.
    PassNotIp,
    /// IP but not UDP: passed.
    PassNotUdp,
    /// UDP to a port not in the port set: passed.
    PassOtherPort,
    /// An IPv4 fragment: passed so the kernel reassembles it for the socket path.
    PassFragment,
    /// IPv6 with extension headers (including fragments): passed.
    PassIpv6Ext,
    /// More than two VLAN tags: passed.
    PassVlanDepth,
    /// Headers cut short, or a UDP length that disagrees with the packet: passed.
    PassMalformed,
    /// Empty UDP payload: passed.
    PassEmpty,
    /// Payload larger than the biggest slot class: passed.
    PassTooLarge,
    /// The shard's ring buffer was full: passed to the socket path.
    PassRingFull,
    /// `bpf_xdp_load_bytes` failed: passed.
    PassCopyFailed,
}

impl Outcome {
    /// Number of outcomes (length of the counter array).
    pub const COUNT: u32 = 12;
    /// All outcomes, in counter-index order.
    pub const ALL: [Outcome; Self::COUNT as usize] = [
        Outcome::Steered,
        Outcome::PassNotIp,
        Outcome::PassNotUdp,
        Outcome::PassOtherPort,
        Outcome::PassFragment,
        Outcome::PassIpv6Ext,
        Outcome::PassVlanDepth,
        Outcome::PassMalformed,
        Outcome::PassEmpty,
        Outcome::PassTooLarge,
        Outcome::PassRingFull,
        Outcome::PassCopyFailed,
    ];

    /// Stable snake_case name used in counters output.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Steered => "steered",
            Outcome::PassNotIp => "pass_not_ip",
            Outcome::PassNotUdp => "pass_not_udp",
            Outcome::PassOtherPort => "pass_other_port",
            Outcome::PassFragment => "pass_fragment",
            Outcome::PassIpv6Ext => "pass_ipv6_ext",
            Outcome::PassVlanDepth => "pass_vlan_depth",
            Outcome::PassMalformed => "pass_malformed",
            Outcome::PassEmpty => "pass_empty",
            Outcome::PassTooLarge => "pass_too_large",
            Outcome::PassRingFull => "pass_ring_full",
            Outcome::PassCopyFailed => "pass_copy_failed",
        }
    }
}

/// Mixes one 32-bit word into a running hash (a murmur3-style round).
#[inline(always)]
#[must_use]
pub const fn mix(h: u32, word: u32) -> u32 {
    let k = word
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Final avalanche (murmur3 fmix32).
#[inline(always)]
#[must_use]
pub const fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of (exporter address, observation domain).
///
/// `exporter` holds four big-endian words: an IPv4 exporter is its address in word 0 and
/// zero elsewhere. The exporter's source port is deliberately not part of the key: a router
/// may change it on restart, and its templates must stay on the same worker.
#[inline(always)]
#[must_use]
pub const fn shard_hash(exporter: [u32; 4], domain: u32) -> u32 {
    let mut h = 0x6a09_e667;
    h = mix(h, exporter[0]);
    h = mix(h, exporter[1]);
    h = mix(h, exporter[2]);
    h = mix(h, exporter[3]);
    h = mix(h, domain);
    finish(h)
}

/// The shard for a hash, given the number of shards in use (zero counts as one).
#[inline(always)]
#[must_use]
pub const fn shard_of(hash: u32, num_shards: u32) -> u32 {
    if num_shards <= 1 {
        0
    } else {
        hash % num_shards
    }
}

/// The observation domain of an export packet's UDP payload, as the kernel programs read it.
///
/// NetFlow v5: engine type and id (`u16` at byte 20). NetFlow v9: source id (byte 16).
/// IPFIX: observation domain id (byte 12). Anything else, or a payload too short to hold the
/// field, is domain 0: it still gets a shard, and the worker decides whether it is valid.
#[must_use]
pub fn observation_domain(payload: &[u8]) -> u32 {
    let be32 = |at: usize| match payload.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    };
    let version = match payload.get(0..2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return 0,
    };
    match version {
        5 => match payload.get(offsets::V5_ENGINE..offsets::V5_ENGINE + 2) {
            Some(b) => u32::from(u16::from_be_bytes([b[0], b[1]])),
            None => 0,
        },
        9 => be32(offsets::V9_SOURCE_ID),
        10 => be32(offsets::IPFIX_DOMAIN),
        _ => 0,
    }
}

/// Splits a 16-byte exporter field into the four big-endian words [`shard_hash`] takes.
#[inline(always)]
#[must_use]
pub const fn exporter_words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_be_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_be_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_be_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_offsets_follow_the_rfcs() {
        let mut v9 = [0u8; 20];
        v9[1] = 9;
        v9[16..20].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        assert_eq!(observation_domain(&v9), 0x0102_0304);

        let mut ipfix = [0u8; 16];
        ipfix[1] = 10;
        ipfix[12..16].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(observation_domain(&ipfix), 7);

        let mut v5 = [0u8; 24];
        v5[1] = 5;
        v5[20] = 1;
        v5[21] = 2;
        assert_eq!(observation_domain(&v5), 0x0102);

        assert_eq!(observation_domain(&v9[..18]), 0, "truncated v9 header");
        assert_eq!(observation_domain(&[0]), 0);
        assert_eq!(
            observation_domain(&[0, 6, 1, 2, 3, 4]),
            0,
            "unknown version"
        );
    }

    #[test]
    fn shard_spreads_domains_and_ignores_nothing_else() {
        let a = exporter_words(&[198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut seen = [0u32; 4];
        for domain in 0..1000 {
            seen[shard_of(shard_hash(a, domain), 4) as usize] += 1;
        }
        for count in seen {
            assert!((150..350).contains(&count), "uneven spread: {seen:?}");
        }
        assert_eq!(shard_of(shard_hash(a, 3), 1), 0);
        assert_eq!(shard_of(shard_hash(a, 3), 0), 0);
    }
}
