//! The information elements flowguard interprets, and how their values land in a record.
//!
//! Numbers are from the IANA IPFIX registry (RFC 7012 and later); NetFlow v9 field types
//! 1–127 use the same numbers (RFC 3954 §8), so one table serves both. Every other element
//! is [`Ie::Unknown`] and skipped by its length, never dropping the record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::record::Direction;
use super::wire::be_uint;

/// An information element the decoder understands, or `Unknown` for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ie {
    /// 1 `octetDeltaCount` (v9 `IN_BYTES`).
    OctetDeltaCount,
    /// 2 `packetDeltaCount` (v9 `IN_PKTS`).
    PacketDeltaCount,
    /// 4 `protocolIdentifier`.
    ProtocolIdentifier,
    /// 6 `tcpControlBits`.
    TcpControlBits,
    /// 7 `sourceTransportPort`.
    SourceTransportPort,
    /// 8 `sourceIPv4Address`.
    SourceIpv4Address,
    /// 10 `ingressInterface`.
    IngressInterface,
    /// 11 `destinationTransportPort`.
    DestinationTransportPort,
    /// 12 `destinationIPv4Address`.
    DestinationIpv4Address,
    /// 14 `egressInterface`.
    EgressInterface,
    /// 21 `flowEndSysUpTime` (v9 `LAST_SWITCHED`).
    FlowEndSysUpTime,
    /// 22 `flowStartSysUpTime` (v9 `FIRST_SWITCHED`).
    FlowStartSysUpTime,
    /// 23 `postOctetDeltaCount` (v9 `OUT_BYTES`).
    PostOctetDeltaCount,
    /// 24 `postPacketDeltaCount` (v9 `OUT_PKTS`).
    PostPacketDeltaCount,
    /// 27 `sourceIPv6Address`.
    SourceIpv6Address,
    /// 28 `destinationIPv6Address`.
    DestinationIpv6Address,
    /// 32 `icmpTypeCodeIPv4` (v9 `ICMP_TYPE`).
    IcmpTypeCodeIpv4,
    /// 34 `samplingInterval` (v9 `SAMPLING_INTERVAL`).
    SamplingInterval,
    /// 35 `samplingAlgorithm` (v9 `SAMPLING_ALGORITHM`).
    SamplingAlgorithm,
    /// 48 `samplerId` (v9 `FLOW_SAMPLER_ID`).
    SamplerId,
    /// 49 `samplerMode` (v9 `FLOW_SAMPLER_MODE`).
    SamplerMode,
    /// 50 `samplerRandomInterval` (v9 `FLOW_SAMPLER_RANDOM_INTERVAL`).
    SamplerRandomInterval,
    /// 61 `flowDirection`.
    FlowDirection,
    /// 85 `octetTotalCount`.
    OctetTotalCount,
    /// 86 `packetTotalCount`.
    PacketTotalCount,
    /// 139 `icmpTypeCodeIPv6`.
    IcmpTypeCodeIpv6,
    /// 150 `flowStartSeconds`.
    FlowStartSeconds,
    /// 151 `flowEndSeconds`.
    FlowEndSeconds,
    /// 152 `flowStartMilliseconds`.
    FlowStartMilliseconds,
    /// 153 `flowEndMilliseconds`.
    FlowEndMilliseconds,
    /// 154 `flowStartMicroseconds` (NTP format, RFC 7011 §6.1.9).
    FlowStartMicroseconds,
    /// 155 `flowEndMicroseconds`.
    FlowEndMicroseconds,
    /// 156 `flowStartNanoseconds` (NTP format, RFC 7011 §6.1.10).
    FlowStartNanoseconds,
    /// 157 `flowEndNanoseconds`.
    FlowEndNanoseconds,
    /// 158 `flowStartDeltaMicroseconds` (before the export time).
    FlowStartDeltaMicroseconds,
    /// 159 `flowEndDeltaMicroseconds`.
    FlowEndDeltaMicroseconds,
    /// 160 `systemInitTimeMilliseconds`.
    SystemInitTimeMilliseconds,
    /// 322 `observationTimeSeconds`: when an event (e.g. a NAT translation, RFC 8158) was
    /// observed; the record's time when it has no flow start/end.
    ObservationTimeSeconds,
    /// 323 `observationTimeMilliseconds`.
    ObservationTimeMilliseconds,
    /// 324 `observationTimeMicroseconds` (NTP format).
    ObservationTimeMicroseconds,
    /// 325 `observationTimeNanoseconds` (NTP format).
    ObservationTimeNanoseconds,
    /// 176 `icmpTypeIPv4`.
    IcmpTypeIpv4,
    /// 177 `icmpCodeIPv4`.
    IcmpCodeIpv4,
    /// 178 `icmpTypeIPv6`.
    IcmpTypeIpv6,
    /// 179 `icmpCodeIPv6`.
    IcmpCodeIpv6,
    /// 231 `initiatorOctets` (NSEL-style exporters).
    InitiatorOctets,
    /// 252 `ingressPhysicalInterface`.
    IngressPhysicalInterface,
    /// 253 `egressPhysicalInterface`.
    EgressPhysicalInterface,
    /// 298 `initiatorPackets`.
    InitiatorPackets,
    /// 312 `dataLinkFrameSize`: size of the sampled frame (packet-sampling exporters).
    DataLinkFrameSize,
    /// 315 `dataLinkFrameSection`: the first bytes of the sampled frame, parsed for
    /// addresses and ports when the record has no layer-3 fields.
    DataLinkFrameSection,
    /// 302 `selectorId` (RFC 5477).
    SelectorId,
    /// 304 `selectorAlgorithm`.
    SelectorAlgorithm,
    /// 305 `samplingPacketInterval`.
    SamplingPacketInterval,
    /// 306 `samplingPacketSpace`.
    SamplingPacketSpace,
    /// 309 `samplingSize`.
    SamplingSize,
    /// 310 `samplingPopulation`.
    SamplingPopulation,
    /// Anything else, including every enterprise-specific element: skipped by length.
    Unknown(u16),
}

impl Ie {
    /// Maps an element id; enterprise-specific ids (`enterprise != 0`) are always
    /// `Unknown`, since their numbers mean nothing outside that enterprise.
    #[must_use]
    pub fn new(id: u16, enterprise: u32) -> Self {
        if enterprise != 0 {
            return Self::Unknown(id);
        }
        match id {
            1 => Self::OctetDeltaCount,
            2 => Self::PacketDeltaCount,
            4 => Self::ProtocolIdentifier,
            6 => Self::TcpControlBits,
            7 => Self::SourceTransportPort,
            8 => Self::SourceIpv4Address,
            10 => Self::IngressInterface,
            11 => Self::DestinationTransportPort,
            12 => Self::DestinationIpv4Address,
            14 => Self::EgressInterface,
            21 => Self::FlowEndSysUpTime,
            22 => Self::FlowStartSysUpTime,
            23 => Self::PostOctetDeltaCount,
            24 => Self::PostPacketDeltaCount,
            27 => Self::SourceIpv6Address,
            28 => Self::DestinationIpv6Address,
            32 => Self::IcmpTypeCodeIpv4,
            34 => Self::SamplingInterval,
            35 => Self::SamplingAlgorithm,
            48 => Self::SamplerId,
            49 => Self::SamplerMode,
            50 => Self::SamplerRandomInterval,
            61 => Self::FlowDirection,
            85 => Self::OctetTotalCount,
            86 => Self::PacketTotalCount,
            139 => Self::IcmpTypeCodeIpv6,
            150 => Self::FlowStartSeconds,
            151 => Self::FlowEndSeconds,
            152 => Self::FlowStartMilliseconds,
            153 => Self::FlowEndMilliseconds,
            154 => Self::FlowStartMicroseconds,
            155 => Self::FlowEndMicroseconds,
            156 => Self::FlowStartNanoseconds,
            157 => Self::FlowEndNanoseconds,
            158 => Self::FlowStartDeltaMicroseconds,
            159 => Self::FlowEndDeltaMicroseconds,
            160 => Self::SystemInitTimeMilliseconds,
            322 => Self::ObservationTimeSeconds,
            323 => Self::ObservationTimeMilliseconds,
            324 => Self::ObservationTimeMicroseconds,
            325 => Self::ObservationTimeNanoseconds,
            176 => Self::IcmpTypeIpv4,
            177 => Self::IcmpCodeIpv4,
            178 => Self::IcmpTypeIpv6,
            179 => Self::IcmpCodeIpv6,
            231 => Self::InitiatorOctets,
            252 => Self::IngressPhysicalInterface,
            253 => Self::EgressPhysicalInterface,
            298 => Self::InitiatorPackets,
            312 => Self::DataLinkFrameSize,
            315 => Self::DataLinkFrameSection,
            302 => Self::SelectorId,
            304 => Self::SelectorAlgorithm,
            305 => Self::SamplingPacketInterval,
            306 => Self::SamplingPacketSpace,
            309 => Self::SamplingSize,
            310 => Self::SamplingPopulation,
            other => Self::Unknown(other),
        }
    }

    /// True when the decoder does nothing with this element.
    #[must_use]
    pub fn is_unknown(self) -> bool {
        matches!(self, Self::Unknown(_))
    }
}

/// Seconds between the NTP era-0 epoch (1900) and the Unix epoch (RFC 7011 §6.1.9).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Converts an NTP-format timestamp (32-bit seconds since 1900, 32-bit fraction) to Unix
/// milliseconds, as RFC 7011 §6.1.9/§6.1.10 encode `dateTimeMicroseconds`/`…Nanoseconds`.
#[must_use]
pub fn ntp_to_unix_ms(ntp: u64) -> u64 {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let frac_ms = ((ntp & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac_ms
}

/// Converts Unix milliseconds to an NTP-format timestamp (inverse of [`ntp_to_unix_ms`]
/// to the millisecond).
#[must_use]
pub fn unix_ms_to_ntp(ms: u64) -> u64 {
    let secs = ms / 1000 + NTP_UNIX_OFFSET;
    // Round up so that truncation in `ntp_to_unix_ms` lands back on the same millisecond.
    let frac = ((ms % 1000) << 32).div_ceil(1000);
    (secs << 32) | frac
}

/// Counter sources in order of preference; a lower rank wins.
const RANK_NONE: u8 = u8::MAX;

/// Everything one data or options record said, before clocks and sampling are applied.
///
/// It is reset per record by copying [`RawRecord::EMPTY`], so the hot path allocates
/// nothing.
#[derive(Clone, Copy, Debug)]
#[expect(
    missing_docs,
    reason = "fields mirror the information elements of `Ie`"
)]
pub struct RawRecord {
    pub src_addr: Option<IpAddr>,
    pub dst_addr: Option<IpAddr>,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub tcp_flags: u8,
    pub icmp_type_code: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub direction: Direction,
    pub bytes: u64,
    bytes_rank: u8,
    pub packets: u64,
    packets_rank: u8,
    pub input_interface: u32,
    input_rank: u8,
    pub output_interface: u32,
    output_rank: u8,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub start_delta_us: Option<u64>,
    pub end_delta_us: Option<u64>,
    pub start_uptime_ms: Option<u32>,
    pub end_uptime_ms: Option<u32>,
    pub system_init_ms: Option<u64>,
    /// `observationTime*` (322–325), Unix ms: the event time of records without flow times.
    pub observation_ms: Option<u64>,
    pub sampling_interval: Option<u64>,
    pub sampler_random_interval: Option<u64>,
    pub sampler_id: Option<u64>,
    pub packet_interval: Option<u64>,
    pub packet_space: Option<u64>,
    pub sampling_size: Option<u64>,
    pub sampling_population: Option<u64>,
    /// What the `dataLinkFrameSection` (315) said, used where layer-3 fields are absent.
    pub frame: Option<FrameInfo>,
}

impl RawRecord {
    /// A record with nothing set.
    pub const EMPTY: Self = Self {
        src_addr: None,
        dst_addr: None,
        src_port: 0,
        dst_port: 0,
        protocol: 0,
        tcp_flags: 0,
        icmp_type_code: None,
        icmp_type: None,
        icmp_code: None,
        direction: Direction::Unknown,
        bytes: 0,
        bytes_rank: RANK_NONE,
        packets: 0,
        packets_rank: RANK_NONE,
        input_interface: 0,
        input_rank: RANK_NONE,
        output_interface: 0,
        output_rank: RANK_NONE,
        start_ms: None,
        end_ms: None,
        start_delta_us: None,
        end_delta_us: None,
        start_uptime_ms: None,
        end_uptime_ms: None,
        system_init_ms: None,
        observation_ms: None,
        sampling_interval: None,
        sampler_random_interval: None,
        sampler_id: None,
        packet_interval: None,
        packet_space: None,
        sampling_size: None,
        sampling_population: None,
        frame: None,
    };

    /// Stores one field value. Values of an unexpected length are ignored (an address
    /// that is not 4 or 16 bytes, say), since nothing sensible can be read from them.
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "narrowing is the wire semantics of each element"
    )]
    pub fn apply(&mut self, ie: Ie, v: &[u8]) {
        match ie {
            Ie::OctetDeltaCount => self.set_bytes(0, be_uint(v)),
            Ie::PostOctetDeltaCount => self.set_bytes(1, be_uint(v)),
            Ie::OctetTotalCount => self.set_bytes(2, be_uint(v)),
            Ie::InitiatorOctets => self.set_bytes(3, be_uint(v)),
            Ie::DataLinkFrameSize => self.set_bytes(4, be_uint(v)),
            Ie::DataLinkFrameSection => self.frame = parse_frame(v),
            Ie::PacketDeltaCount => self.set_packets(0, be_uint(v)),
            Ie::PostPacketDeltaCount => self.set_packets(1, be_uint(v)),
            Ie::PacketTotalCount => self.set_packets(2, be_uint(v)),
            Ie::InitiatorPackets => self.set_packets(3, be_uint(v)),
            Ie::ProtocolIdentifier => self.protocol = be_uint(v) as u8,
            // tcpControlBits grew to 16 bits (RFC 7125); the classic flags are the low byte.
            Ie::TcpControlBits => self.tcp_flags = be_uint(v) as u8,
            Ie::SourceTransportPort => self.src_port = be_uint(v) as u16,
            Ie::DestinationTransportPort => self.dst_port = be_uint(v) as u16,
            // Templates often carry both IPv4 and IPv6 fields and zero the unused pair;
            // an unspecified address never replaces a real one.
            Ie::SourceIpv4Address | Ie::SourceIpv6Address => set_addr(&mut self.src_addr, v),
            Ie::DestinationIpv4Address | Ie::DestinationIpv6Address => {
                set_addr(&mut self.dst_addr, v);
            }
            Ie::IngressInterface => self.set_input(0, be_uint(v) as u32),
            Ie::IngressPhysicalInterface => self.set_input(1, be_uint(v) as u32),
            Ie::EgressInterface => self.set_output(0, be_uint(v) as u32),
            Ie::EgressPhysicalInterface => self.set_output(1, be_uint(v) as u32),
            Ie::FlowEndSysUpTime => self.end_uptime_ms = Some(be_uint(v) as u32),
            Ie::FlowStartSysUpTime => self.start_uptime_ms = Some(be_uint(v) as u32),
            Ie::IcmpTypeCodeIpv4 | Ie::IcmpTypeCodeIpv6 => {
                self.icmp_type_code = Some(be_uint(v) as u16);
            }
            Ie::IcmpTypeIpv4 | Ie::IcmpTypeIpv6 => self.icmp_type = Some(be_uint(v) as u8),
            Ie::IcmpCodeIpv4 | Ie::IcmpCodeIpv6 => self.icmp_code = Some(be_uint(v) as u8),
            Ie::FlowDirection => self.direction = Direction::from_wire(be_uint(v)),
            Ie::FlowStartSeconds => self.start_ms = Some(be_uint(v).saturating_mul(1000)),
            Ie::FlowEndSeconds => self.end_ms = Some(be_uint(v).saturating_mul(1000)),
            Ie::FlowStartMilliseconds => self.start_ms = Some(be_uint(v)),
            Ie::FlowEndMilliseconds => self.end_ms = Some(be_uint(v)),
            Ie::FlowStartMicroseconds | Ie::FlowStartNanoseconds => {
                self.start_ms = Some(ntp_to_unix_ms(be_uint(v)));
            }
            Ie::FlowEndMicroseconds | Ie::FlowEndNanoseconds => {
                self.end_ms = Some(ntp_to_unix_ms(be_uint(v)));
            }
            Ie::FlowStartDeltaMicroseconds => self.start_delta_us = Some(be_uint(v)),
            Ie::FlowEndDeltaMicroseconds => self.end_delta_us = Some(be_uint(v)),
            Ie::SystemInitTimeMilliseconds => self.system_init_ms = Some(be_uint(v)),
            Ie::ObservationTimeSeconds => {
                self.observation_ms = Some(be_uint(v).saturating_mul(1000));
            }
            Ie::ObservationTimeMilliseconds => self.observation_ms = Some(be_uint(v)),
            Ie::ObservationTimeMicroseconds | Ie::ObservationTimeNanoseconds => {
                self.observation_ms = Some(ntp_to_unix_ms(be_uint(v)));
            }
            Ie::SamplingInterval => self.sampling_interval = Some(be_uint(v)),
            Ie::SamplerRandomInterval => self.sampler_random_interval = Some(be_uint(v)),
            Ie::SamplerId | Ie::SelectorId => self.sampler_id = Some(be_uint(v)),
            Ie::SamplingPacketInterval => self.packet_interval = Some(be_uint(v)),
            Ie::SamplingPacketSpace => self.packet_space = Some(be_uint(v)),
            Ie::SamplingSize => self.sampling_size = Some(be_uint(v)),
            Ie::SamplingPopulation => self.sampling_population = Some(be_uint(v)),
            // The algorithm/mode fields describe *how* packets were picked; the scale
            // factor is the same for random and deterministic 1-in-N sampling.
            Ie::SamplingAlgorithm | Ie::SamplerMode | Ie::SelectorAlgorithm | Ie::Unknown(_) => {}
        }
    }

    /// True when some byte counter element was present.
    #[must_use]
    pub fn has_bytes(&self) -> bool {
        self.bytes_rank != RANK_NONE
    }

    /// True when some packet counter element was present.
    #[must_use]
    pub fn has_packets(&self) -> bool {
        self.packets_rank != RANK_NONE
    }

    #[inline]
    fn set_bytes(&mut self, rank: u8, v: u64) {
        if rank <= self.bytes_rank {
            self.bytes = v;
            self.bytes_rank = rank;
        }
    }
    #[inline]
    fn set_packets(&mut self, rank: u8, v: u64) {
        if rank <= self.packets_rank {
            self.packets = v;
            self.packets_rank = rank;
        }
    }
    #[inline]
    fn set_input(&mut self, rank: u8, v: u32) {
        if rank <= self.input_rank {
            self.input_interface = v;
            self.input_rank = rank;
        }
    }
    #[inline]
    fn set_output(&mut self, rank: u8, v: u32) {
        if rank <= self.output_rank {
            self.output_interface = v;
            self.output_rank = rank;
        }
    }

    /// The one-out-of-N factor this record states, if it states one (see
    /// [`sampling_factor`]).
    #[must_use]
    pub fn sampling_factor(&self) -> Option<u32> {
        sampling_factor(
            self.sampling_interval,
            self.sampler_random_interval,
            self.packet_interval,
            self.packet_space,
            self.sampling_size,
            self.sampling_population,
        )
    }
}

/// The one-out-of-N factor stated by a record's sampling elements, if they state one.
///
/// Sources, in order: `samplingInterval` (34), `samplerRandomInterval` (50), the
/// RFC 5477 count-based pair `samplingPacketInterval`/`samplingPacketSpace`
/// (305/306: *interval* packets are taken, then *space* skipped, so the factor is
/// (interval + space) / interval), and `samplingPopulation`/`samplingSize`
/// (310/309: *size* out of every *population*, factor population / size).
/// Factors are rounded to the nearest integer and clamped to at least 1.
#[must_use]
#[inline]
pub fn sampling_factor(
    sampling_interval: Option<u64>,
    sampler_random_interval: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
    sampling_size: Option<u64>,
    sampling_population: Option<u64>,
) -> Option<u32> {
    let f = if let Some(n) = sampling_interval.filter(|&n| n > 0) {
        n
    } else if let Some(n) = sampler_random_interval.filter(|&n| n > 0) {
        n
    } else if let Some(i) = packet_interval.filter(|&i| i > 0) {
        let space = packet_space.unwrap_or(0);
        (i.saturating_add(space).saturating_add(i / 2)) / i
    } else if let (Some(s), Some(p)) = (sampling_size.filter(|&s| s > 0), sampling_population) {
        (p.saturating_add(s / 2)) / s
    } else {
        return None;
    };
    Some(u32::try_from(f.max(1)).unwrap_or(u32::MAX))
}

#[inline]
fn set_addr(slot: &mut Option<IpAddr>, v: &[u8]) {
    if let Some(a) = addr(v)
        && slot.is_none_or(|old| old.is_unspecified())
    {
        *slot = Some(a);
    }
}

/// Layer-3/4 facts read from a sampled frame (IE 315).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(missing_docs, reason = "fields mirror the FlowRecord fields they fill")]
pub struct FrameInfo {
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP type << 8 | code, for ICMP and ICMPv6.
    pub icmp_type_code: u16,
}

/// Parses an Ethernet frame section: up to a few VLAN tags and MPLS labels (with a
/// pseudowire control word and inner Ethernet, RFC 4448), then the outer IPv4 or IPv6
/// header and the first 4 bytes of TCP/UDP/SCTP or ICMP. The section is usually cut
/// short by the exporter, so anything missing just ends the parse.
#[must_use]
pub fn parse_frame(frame: &[u8]) -> Option<FrameInfo> {
    let mut at = 12usize; // after destination and source MAC
    let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    at += 2;
    for _ in 0..16 {
        match ethertype {
            // 802.1Q / 802.1ad tags: skip TCI, read the next ethertype.
            0x8100 | 0x88a8 | 0x9100 => {
                ethertype = u16::from_be_bytes([*frame.get(at + 2)?, *frame.get(at + 3)?]);
                at += 4;
            }
            // MPLS: pop labels to bottom of stack, then guess the payload by its first nibble.
            0x8847 | 0x8848 => {
                loop {
                    let bos = frame.get(at + 2)? & 1;
                    at += 4;
                    if bos == 1 {
                        break;
                    }
                }
                match frame.get(at)? >> 4 {
                    4 => ethertype = 0x0800,
                    6 => ethertype = 0x86dd,
                    0 => {
                        // Pseudowire control word, then an inner Ethernet frame.
                        at += 4 + 12;
                        ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
                        at += 2;
                    }
                    _ => return None,
                }
            }
            0x0800 => return parse_ipv4(frame.get(at..)?),
            0x86dd => return parse_ipv6(frame.get(at..)?),
            _ => return None,
        }
    }
    None
}

fn parse_ipv4(ip: &[u8]) -> Option<FrameInfo> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let protocol = *ip.get(9)?;
    let src = <[u8; 4]>::try_from(ip.get(12..16)?).ok()?;
    let dst = <[u8; 4]>::try_from(ip.get(16..20)?).ok()?;
    // Only the first fragment carries the transport header.
    let fragment_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
    let first_fragment = fragment_offset == 0;
    let l4 = if first_fragment { ip.get(ihl..) } else { None };
    Some(with_l4(
        IpAddr::V4(src.into()),
        IpAddr::V4(dst.into()),
        protocol,
        l4,
    ))
}

fn parse_ipv6(ip: &[u8]) -> Option<FrameInfo> {
    let protocol = *ip.get(6)?;
    let src = <[u8; 16]>::try_from(ip.get(8..24)?).ok()?;
    let dst = <[u8; 16]>::try_from(ip.get(24..40)?).ok()?;
    Some(with_l4(
        IpAddr::V6(src.into()),
        IpAddr::V6(dst.into()),
        protocol,
        ip.get(40..),
    ))
}

fn with_l4(src_addr: IpAddr, dst_addr: IpAddr, protocol: u8, l4: Option<&[u8]>) -> FrameInfo {
    let mut info = FrameInfo {
        src_addr,
        dst_addr,
        protocol,
        src_port: 0,
        dst_port: 0,
        icmp_type_code: 0,
    };
    let word = |i: usize| {
        l4.and_then(|b| b.get(i..i + 2))
            .map_or(0, |w| u16::from_be_bytes([w[0], w[1]]))
    };
    match protocol {
        6 | 17 | 132 => {
            info.src_port = word(0);
            info.dst_port = word(2);
        }
        1 | 58 => info.icmp_type_code = word(0),
        _ => {}
    }
    info
}

#[inline]
fn addr(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => <[u8; 4]>::try_from(v)
            .ok()
            .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        16 => <[u8; 16]>::try_from(v)
            .ok()
            .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trip() {
        for ms in [0u64, 1, 999, 1_700_000_000_123, 1_700_000_000_999] {
            assert_eq!(ntp_to_unix_ms(unix_ms_to_ntp(ms)), ms, "{ms}");
        }
    }

    #[test]
    fn sampling_factors() {
        let mut r = RawRecord::EMPTY;
        assert_eq!(r.sampling_factor(), None);
        r.packet_interval = Some(1);
        r.packet_space = Some(99);
        assert_eq!(r.sampling_factor(), Some(100));
        r.sampling_size = Some(1);
        r.sampling_population = Some(10);
        assert_eq!(r.sampling_factor(), Some(100));
        r.packet_interval = None;
        assert_eq!(r.sampling_factor(), Some(10));
        r.sampler_random_interval = Some(7);
        assert_eq!(r.sampling_factor(), Some(7));
        r.sampling_interval = Some(0);
        assert_eq!(r.sampling_factor(), Some(7));
    }

    #[test]
    fn counter_preference() {
        let mut r = RawRecord::EMPTY;
        r.apply(Ie::OctetTotalCount, &[0, 9]);
        r.apply(Ie::OctetDeltaCount, &[0, 5]);
        r.apply(Ie::OctetTotalCount, &[0, 7]);
        assert_eq!(r.bytes, 5);
        r.apply(Ie::SourceIpv4Address, &[1, 2, 3]);
        assert_eq!(r.src_addr, None);
        assert_eq!(Ie::new(8, 9), Ie::Unknown(8));
    }
}
