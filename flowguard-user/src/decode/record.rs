//! The normalized flow record every decoder produces.
//!
//! One `FlowRecord` is what NetFlow v5, NetFlow v9 and IPFIX all boil down to once
//! templates, sampling and clocks have been applied. It is `Copy` and has no heap
//! parts, so workers can batch it into queues without allocating.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// Direction of a flow as the exporter saw it (IPFIX IE 61 `flowDirection`, v9 field 61
/// `DIRECTION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Direction {
    /// The exporter did not say (v5, or no field 61 in the template).
    #[default]
    Unknown = 0xff,
    /// Observed on the ingress interface (`flowDirection` 0).
    Ingress = 0,
    /// Observed on the egress interface (`flowDirection` 1).
    Egress = 1,
}

impl Direction {
    /// Maps the wire value of IE 61; anything other than 0 or 1 is `Unknown`.
    #[must_use]
    pub fn from_wire(value: u64) -> Self {
        match value {
            0 => Self::Ingress,
            1 => Self::Egress,
            _ => Self::Unknown,
        }
    }

    /// The wire value of IE 61, or `None` for `Unknown`.
    #[must_use]
    pub fn to_wire(self) -> Option<u8> {
        match self {
            Self::Ingress => Some(0),
            Self::Egress => Some(1),
            Self::Unknown => None,
        }
    }
}

/// One decoded flow, with absolute times and sampling already applied.
///
/// Names follow the RFC 7011/7012 spelling where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Source address (IE 8 `sourceIPv4Address` or IE 27 `sourceIPv6Address`).
    pub src_addr: IpAddr,
    /// Destination address (IE 12 or IE 28).
    pub dst_addr: IpAddr,
    /// Source transport port (IE 7); 0 when absent.
    pub src_port: u16,
    /// Destination transport port (IE 11); 0 when absent.
    pub dst_port: u16,
    /// IP protocol number (IE 4 `protocolIdentifier`).
    pub protocol: u8,
    /// Cumulative TCP flags, low 8 bits of IE 6 `tcpControlBits`.
    pub tcp_flags: u8,
    /// ICMP type in the high byte and code in the low byte (IE 32
    /// `icmpTypeCodeIPv4`, IE 139 `icmpTypeCodeIPv6`, or 176–179 combined). For v5,
    /// where exporters put type/code in the destination port, it is that port for ICMP.
    pub icmp_type_code: u16,
    /// Flow direction (IE 61).
    pub direction: Direction,
    /// Bytes, scaled by `sampling_interval` (estimate of what really crossed the wire).
    pub bytes: u64,
    /// Packets, scaled by `sampling_interval`.
    pub packets: u64,
    /// Bytes as exported (IE 1 `octetDeltaCount`, or its fallbacks).
    pub raw_bytes: u64,
    /// Packets as exported (IE 2 `packetDeltaCount`, or its fallbacks).
    pub raw_packets: u64,
    /// One-out-of-N sampling interval applied to this record; 1 means unsampled.
    pub sampling_interval: u32,
    /// Flow start, milliseconds since the Unix epoch (`flowStartMilliseconds`).
    pub start_ms: u64,
    /// Flow end, milliseconds since the Unix epoch (`flowEndMilliseconds`).
    pub end_ms: u64,
    /// Address the export packet came from (the key of the template cache).
    pub exporter: IpAddr,
    /// v9 `source_id` or IPFIX `observationDomainId`; for v5, `engine_type << 8 | engine_id`.
    pub observation_domain_id: u32,
    /// Input interface index (IE 10 `ingressInterface`, else IE 252).
    pub input_interface: u32,
    /// Output interface index (IE 14 `egressInterface`, else IE 253).
    pub output_interface: u32,
    /// Export format: 5, 9 or 10.
    pub version: u16,
    /// Template the record was decoded with; 0 for v5.
    pub template_id: u16,
}

impl Default for FlowRecord {
    fn default() -> Self {
        Self {
            src_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            protocol: 0,
            tcp_flags: 0,
            icmp_type_code: 0,
            direction: Direction::Unknown,
            bytes: 0,
            packets: 0,
            raw_bytes: 0,
            raw_packets: 0,
            sampling_interval: 1,
            start_ms: 0,
            end_ms: 0,
            exporter: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            observation_domain_id: 0,
            input_interface: 0,
            output_interface: 0,
            version: 0,
            template_id: 0,
        }
    }
}

impl FlowRecord {
    /// Sets `raw_bytes`/`raw_packets` and the scaled `bytes`/`packets` for `interval`
    /// (0 is treated as 1, as RFC 3954 exporters send 0 for "not sampled").
    #[inline]
    pub fn set_counts(&mut self, raw_bytes: u64, raw_packets: u64, interval: u32) {
        let interval = interval.max(1);
        self.sampling_interval = interval;
        self.raw_bytes = raw_bytes;
        self.raw_packets = raw_packets;
        // Saturate: a hostile exporter can claim 2^64 bytes at interval 2^32.
        self.bytes = raw_bytes.saturating_mul(u64::from(interval));
        self.packets = raw_packets.saturating_mul(u64::from(interval));
    }
}
