//! flowguard's kernel programs.
//!
//! * `flowguard_xdp` (XDP): takes UDP export packets for configured ports, picks a shard from
//!   (exporter, observation domain) and copies the payload behind a [`RingHeader`] into that
//!   shard's ring buffer (`RING_<k>`), then drops the packet. Anything it cannot take whole —
//!   fragments, IPv6 extension headers, deep VLAN stacks, malformed headers, a full ring —
//!   is passed to the kernel so the user-space socket on the same port still receives it.
//!   On any doubt the program fails open with `XDP_PASS`, never `XDP_ABORTED`.
//! * `flowguard_reuseport` (`sk_reuseport`): gives the socket path the same sharding, by
//!   choosing the `SO_REUSEPORT` socket of the shard the XDP program would have chosen.
//!
//! Ring buffers need kernel 5.8, `bpf_xdp_load_bytes` 5.18, `sk_reuseport` 4.19.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        bpf_hdr_start_off::BPF_HDR_START_NET, sk_action::SK_PASS, xdp_action,
    },
    helpers::generated::{
        bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_skb_load_bytes_relative, bpf_xdp_load_bytes,
    },
    macros::{map, sk_reuseport, xdp},
    maps::{Array, HashMap, PerCpuArray, ReusePortSockArray, RingBuf},
    programs::{SkReuseportContext, XdpContext},
};
use flowguard_ebpf::{
    MAX_PORTS, MAX_SHARDS, Outcome, PAYLOAD_CLASSES, RING_HEADER_LEN, RingHeader, config, offsets,
    shard_hash, shard_of,
};

#[map]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(64, 0);

#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Outcome::COUNT, 0);

#[map]
static SOCKETS: ReusePortSockArray =
    ReusePortSockArray::with_max_entries((MAX_SHARDS * MAX_PORTS) as u32, 0);

/// Declares the ring-buffer maps and the `ring(k)` lookup over them. User space resizes
/// every ring at load time (`EbpfLoader::set_max_entries`); the size here is a default.
macro_rules! rings {
    ($($idx:literal => $name:ident),* $(,)?) => {
        $(
            #[map]
            static $name: RingBuf = RingBuf::with_byte_size(1 << 22, 0);
        )*

        #[inline(always)]
        fn ring(shard: u32) -> Option<&'static RingBuf> {
            match shard {
                $($idx => Some(&$name),)*
                _ => None,
            }
        }
    };
}

rings! {
    0 => RING_0, 1 => RING_1, 2 => RING_2, 3 => RING_3,
    4 => RING_4, 5 => RING_5, 6 => RING_6, 7 => RING_7,
    8 => RING_8, 9 => RING_9, 10 => RING_10, 11 => RING_11,
    12 => RING_12, 13 => RING_13, 14 => RING_14, 15 => RING_15,
    16 => RING_16, 17 => RING_17, 18 => RING_18, 19 => RING_19,
    20 => RING_20, 21 => RING_21, 22 => RING_22, 23 => RING_23,
    24 => RING_24, 25 => RING_25, 26 => RING_26, 27 => RING_27,
    28 => RING_28, 29 => RING_29, 30 => RING_30, 31 => RING_31,
}

const _: () = assert!(MAX_SHARDS == 32, "update the rings! list");

const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_UDP: u8 = 17;
const IPV6_HDR_LEN: usize = 40;
const UDP_HDR_LEN: usize = 8;

#[xdp]
pub fn flowguard_xdp(ctx: XdpContext) -> u32 {
    let outcome = try_flowguard_xdp(&ctx);
    count(outcome);
    match outcome {
        Outcome::Steered => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn count(outcome: Outcome) {
    if let Some(counter) = COUNTERS.get_ptr_mut(outcome as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}

/// Returns a pointer to a `T` at `offset` from the start of the packet, bounds-checked
/// against the packet end. Every direct packet read goes through here.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    // SAFETY: ptr_at checked the two bytes lie inside the packet.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn be32_at(ctx: &XdpContext, offset: usize) -> Option<u32> {
    // SAFETY: ptr_at checked the four bytes lie inside the packet.
    ptr_at::<[u8; 4]>(ctx, offset).map(|p| u32::from_be_bytes(unsafe { *p }))
}

/// Where the UDP payload sits and who sent it.
struct Datagram {
    exporter: [u32; 4],
    family: u8,
    src_port: u16,
    dst_port: u16,
    payload_off: usize,
    payload_len: usize,
}

#[inline(always)]
fn try_flowguard_xdp(ctx: &XdpContext) -> Outcome {
    let dgram = match parse(ctx) {
        Ok(d) => d,
        Err(outcome) => return outcome,
    };
    // SAFETY: map lookups with a plain key; the value is read once.
    if unsafe { PORTS.get(&dgram.dst_port) }.is_none() {
        return Outcome::PassOtherPort;
    }
    if dgram.payload_len == 0 {
        return Outcome::PassEmpty;
    }
    let domain = domain_at(ctx, dgram.payload_off, dgram.payload_len);
    let num_shards = CONFIG.get(config::NUM_SHARDS).copied().unwrap_or(1);
    let shard = shard_of(shard_hash(dgram.exporter, domain), num_shards);
    let Some(ring) = ring(shard) else {
        return Outcome::PassRingFull;
    };
    enqueue(ctx, ring, &dgram)
}

#[inline(always)]
fn parse(ctx: &XdpContext) -> Result<Datagram, Outcome> {
    let mut ethertype = be16_at(ctx, 12).ok_or(Outcome::PassMalformed)?;
    let mut l3 = ETH_HDR_LEN;
    // Up to two VLAN tags (802.1Q, or QinQ with an 802.1ad outer tag).
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16_at(ctx, l3 + 2).ok_or(Outcome::PassMalformed)?;
        l3 += VLAN_HDR_LEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = be16_at(ctx, l3 + 2).ok_or(Outcome::PassMalformed)?;
            l3 += VLAN_HDR_LEN;
            if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
                return Err(Outcome::PassVlanDepth);
            }
        }
    }
    let (exporter, family, l4, l4_room) = match ethertype {
        ETH_P_IP => {
            let vihl = *ptr_u8(ctx, l3)?;
            if vihl >> 4 != 4 {
                return Err(Outcome::PassMalformed);
            }
            let ihl = usize::from(vihl & 0x0f) * 4;
            if ihl < 20 {
                return Err(Outcome::PassMalformed);
            }
            let total_len = usize::from(be16_at(ctx, l3 + 2).ok_or(Outcome::PassMalformed)?);
            // Any fragment (MF set or a non-zero offset) goes to the kernel for reassembly.
            let frag = be16_at(ctx, l3 + 6).ok_or(Outcome::PassMalformed)?;
            if frag & 0x3fff != 0 {
                return Err(Outcome::PassFragment);
            }
            if *ptr_u8(ctx, l3 + 9)? != IPPROTO_UDP {
                return Err(Outcome::PassNotUdp);
            }
            let src = be32_at(ctx, l3 + 12).ok_or(Outcome::PassMalformed)?;
            if total_len < ihl {
                return Err(Outcome::PassMalformed);
            }
            ([src, 0, 0, 0], 4u8, l3 + ihl, total_len - ihl)
        }
        ETH_P_IPV6 => {
            let next = *ptr_u8(ctx, l3 + 6)?;
            if next != IPPROTO_UDP {
                // 0 hop-by-hop, 43 routing, 44 fragment, 60 destination options, …: the
                // kernel walks extension chains better than a bounded BPF loop.
                return Err(match next {
                    0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => Outcome::PassIpv6Ext,
                    _ => Outcome::PassNotUdp,
                });
            }
            let payload_len = usize::from(be16_at(ctx, l3 + 4).ok_or(Outcome::PassMalformed)?);
            let a = be32_at(ctx, l3 + 8).ok_or(Outcome::PassMalformed)?;
            let b = be32_at(ctx, l3 + 12).ok_or(Outcome::PassMalformed)?;
            let c = be32_at(ctx, l3 + 16).ok_or(Outcome::PassMalformed)?;
            let d = be32_at(ctx, l3 + 20).ok_or(Outcome::PassMalformed)?;
            ([a, b, c, d], 6u8, l3 + IPV6_HDR_LEN, payload_len)
        }
        _ => return Err(Outcome::PassNotIp),
    };
    let src_port = be16_at(ctx, l4).ok_or(Outcome::PassMalformed)?;
    let dst_port = be16_at(ctx, l4 + 2).ok_or(Outcome::PassMalformed)?;
    let udp_len = usize::from(be16_at(ctx, l4 + 4).ok_or(Outcome::PassMalformed)?);
    // The UDP length, not the frame length, bounds the payload: short frames carry
    // Ethernet padding. It must fit in both the IP payload and the frame.
    let frame_len = ctx.data_end() - ctx.data();
    if udp_len < UDP_HDR_LEN || udp_len > l4_room || l4 + udp_len > frame_len {
        return Err(Outcome::PassMalformed);
    }
    Ok(Datagram {
        exporter,
        family,
        src_port,
        dst_port,
        payload_off: l4 + UDP_HDR_LEN,
        payload_len: udp_len - UDP_HDR_LEN,
    })
}

#[inline(always)]
fn ptr_u8(ctx: &XdpContext, offset: usize) -> Result<&u8, Outcome> {
    // SAFETY: ptr_at checked the byte lies inside the packet.
    ptr_at::<u8>(ctx, offset)
        .map(|p| unsafe { &*p })
        .ok_or(Outcome::PassMalformed)
}

/// The observation domain, read at the fixed offsets `flowguard_ebpf::observation_domain`
/// documents (the user-space copy of this rule).
#[inline(always)]
fn domain_at(ctx: &XdpContext, off: usize, len: usize) -> u32 {
    let Some(version) = be16_at(ctx, off) else {
        return 0;
    };
    let (at, width) = match version {
        5 => (offsets::V5_ENGINE, 2),
        9 => (offsets::V9_SOURCE_ID, 4),
        10 => (offsets::IPFIX_DOMAIN, 4),
        _ => return 0,
    };
    if at + width > len {
        return 0;
    }
    if width == 2 {
        be16_at(ctx, off + at).map_or(0, u32::from)
    } else {
        be32_at(ctx, off + at).unwrap_or(0)
    }
}

/// Reserves a slot of the smallest class that fits, fills the header, copies the payload
/// with `bpf_xdp_load_bytes` and submits.
#[inline(always)]
fn enqueue(ctx: &XdpContext, ring: &RingBuf, dgram: &Datagram) -> Outcome {
    const SMALL: usize = PAYLOAD_CLASSES[0];
    const MEDIUM: usize = PAYLOAD_CLASSES[1];
    const LARGE: usize = PAYLOAD_CLASSES[2];
    let len = dgram.payload_len;
    if len <= SMALL {
        enqueue_class::<{ RING_HEADER_LEN + SMALL }>(ctx, ring, dgram)
    } else if len <= MEDIUM {
        enqueue_class::<{ RING_HEADER_LEN + MEDIUM }>(ctx, ring, dgram)
    } else if len <= LARGE {
        enqueue_class::<{ RING_HEADER_LEN + LARGE }>(ctx, ring, dgram)
    } else {
        Outcome::PassTooLarge
    }
}

#[inline(always)]
fn enqueue_class<const SLOT: usize>(ctx: &XdpContext, ring: &RingBuf, dgram: &Datagram) -> Outcome {
    let Some(mut slot) = ring.reserve_bytes(SLOT, 0) else {
        return Outcome::PassRingFull;
    };
    let base = slot.as_mut_ptr();
    let header = RingHeader {
        exporter: words_to_bytes(dgram.exporter),
        // SAFETY: helper with no arguments.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        ifindex: ctx.ingress_ifindex() as u32,
        payload_len: dgram.payload_len as u16,
        src_port: dgram.src_port,
        dst_port: dgram.dst_port,
        family: dgram.family,
        _reserved: [0; 5],
    };
    // SAFETY: the slot is SLOT >= RING_HEADER_LEN bytes and 8-aligned by the kernel.
    unsafe { base.cast::<RingHeader>().write(header) };
    // The verifier must see the copy length bounded by the slot: 1..=SLOT-RING_HEADER_LEN.
    let len = dgram.payload_len as u32;
    if len == 0 || len as usize > SLOT - RING_HEADER_LEN {
        slot.discard(0);
        return Outcome::PassCopyFailed;
    }
    // SAFETY: destination is inside the reserved slot (checked just above); the helper
    // bounds-checks the packet side itself.
    let ret = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            dgram.payload_off as u32,
            base.add(RING_HEADER_LEN).cast(),
            len,
        )
    };
    if ret != 0 {
        slot.discard(0);
        return Outcome::PassCopyFailed;
    }
    // Batch wakeups: only once enough is queued (user space polls briefly for the rest).
    let wakeup_bytes = u64::from(CONFIG.get(config::WAKEUP_BYTES).copied().unwrap_or(0));
    let flags = if ring.query(u64::from(BPF_RB_AVAIL_DATA)) >= wakeup_bytes {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    slot.submit(u64::from(flags));
    Outcome::Steered
}

#[inline(always)]
fn words_to_bytes(w: [u32; 4]) -> [u8; 16] {
    let a = w[0].to_be_bytes();
    let b = w[1].to_be_bytes();
    let c = w[2].to_be_bytes();
    let d = w[3].to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

/// Picks the `SO_REUSEPORT` socket of the shard the XDP program would choose, so that
/// fragments, ring-full spill-over and `--capture socket` traffic keep the same
/// (exporter, domain) → worker mapping. For UDP the context's data starts at the UDP header
/// (net/ipv4/udp.c `lookup_reuseport`), and the network header is reachable with
/// `bpf_skb_load_bytes_relative(…, BPF_HDR_START_NET)`.
#[sk_reuseport]
pub fn flowguard_reuseport(ctx: SkReuseportContext) -> u32 {
    let _ = try_reuseport(&ctx);
    // On failure the kernel falls back to its own 4-tuple hash.
    SK_PASS
}

#[inline(always)]
fn try_reuseport(ctx: &SkReuseportContext) -> Result<(), i64> {
    let mut exporter = [0u32; 4];
    let eth_proto = u16::from_be(ctx.eth_protocol() as u16);
    if eth_proto == ETH_P_IP {
        let mut src = [0u8; 4];
        load_net(ctx, 12, &mut src)?;
        exporter[0] = u32::from_be_bytes(src);
    } else if eth_proto == ETH_P_IPV6 {
        let mut src = [0u8; 16];
        load_net(ctx, 8, &mut src)?;
        exporter = flowguard_ebpf::exporter_words(&src);
    } else {
        return Err(-1);
    }
    let mut udp = [0u8; 4];
    load(ctx, 0, &mut udp)?;
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    // SAFETY: plain map lookup; the value is copied out.
    let Some(&slot) = (unsafe { PORTS.get(&dst_port) }) else {
        return Err(-1);
    };
    let mut head = [0u8; UDP_HDR_LEN + 24];
    let have = ctx.len();
    // Read as much of the first 24 payload bytes as exists; short payloads are domain 0.
    let domain = if have >= head.len() {
        load(ctx, 0, &mut head)?;
        flowguard_ebpf::observation_domain(&head[UDP_HDR_LEN..])
    } else if have >= UDP_HDR_LEN + 16 {
        let mut short = [0u8; UDP_HDR_LEN + 16];
        load(ctx, 0, &mut short)?;
        flowguard_ebpf::observation_domain(&short[UDP_HDR_LEN..])
    } else {
        0
    };
    let num_shards = CONFIG.get(config::NUM_SHARDS).copied().unwrap_or(1);
    let shard = shard_of(shard_hash(exporter, domain), num_shards);
    if usize::from(slot) >= MAX_PORTS {
        return Err(-1);
    }
    SOCKETS.select_reuseport(ctx, u32::from(slot) * MAX_SHARDS as u32 + shard)
}

#[inline(always)]
fn load<const N: usize>(ctx: &SkReuseportContext, off: u32, buf: &mut [u8; N]) -> Result<(), i64> {
    // SAFETY: the helper writes at most N bytes into buf.
    let ret = unsafe { bpf_skb_load_bytes(ctx.as_ptr(), off, buf.as_mut_ptr().cast(), N as u32) };
    if ret == 0 { Ok(()) } else { Err(ret) }
}

#[inline(always)]
fn load_net<const N: usize>(
    ctx: &SkReuseportContext,
    off: u32,
    buf: &mut [u8; N],
) -> Result<(), i64> {
    // SAFETY: the helper writes at most N bytes into buf.
    let ret = unsafe {
        bpf_skb_load_bytes_relative(
            ctx.as_ptr(),
            off,
            buf.as_mut_ptr().cast(),
            N as u32,
            BPF_HDR_START_NET,
        )
    };
    if ret == 0 { Ok(()) } else { Err(ret) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic; this is never run.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
