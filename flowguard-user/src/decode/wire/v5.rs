//! NetFlow v5 header and record views.
//!
//! v5 has no public RFC; the layout is Cisco's ("NetFlow Export Datagram Format"): a
//! 24-byte header followed by `count` (at most 30) fixed 48-byte records.

use std::net::Ipv4Addr;

use super::{Truncated, be_u16, be_u32};

mod field {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const COUNT: usize = 2;
    pub const SYS_UPTIME: usize = 4;
    pub const UNIX_SECS: usize = 8;
    pub const UNIX_NSECS: usize = 12;
    pub const FLOW_SEQUENCE: usize = 16;
    pub const ENGINE_TYPE: usize = 20;
    pub const ENGINE_ID: usize = 21;
    pub const SAMPLING_INTERVAL: usize = 22;
    pub const HEADER_LEN: usize = 24;

    pub const SRCADDR: Range<usize> = 0..4;
    pub const DSTADDR: Range<usize> = 4..8;
    pub const NEXTHOP: Range<usize> = 8..12;
    pub const INPUT: usize = 12;
    pub const OUTPUT: usize = 14;
    pub const D_PKTS: usize = 16;
    pub const D_OCTETS: usize = 20;
    pub const FIRST: usize = 24;
    pub const LAST: usize = 28;
    pub const SRCPORT: usize = 32;
    pub const DSTPORT: usize = 34;
    pub const TCP_FLAGS: usize = 37;
    pub const PROT: usize = 38;
    pub const TOS: usize = 39;
    pub const SRC_AS: usize = 40;
    pub const DST_AS: usize = 42;
    pub const SRC_MASK: usize = 44;
    pub const DST_MASK: usize = 45;
    pub const RECORD_LEN: usize = 48;
}

/// Length of the v5 header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of one v5 record.
pub const RECORD_LEN: usize = field::RECORD_LEN;
/// Most records a v5 datagram may carry (Cisco's limit; larger counts are hostile).
pub const MAX_RECORDS: u16 = 30;

/// View of the v5 header.
#[derive(Clone, Copy, Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking its length (accessors then return 0 past the end).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer`, failing if it is shorter than [`HEADER_LEN`].
    ///
    /// # Errors
    /// [`Truncated`] when the buffer is too short.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        Ok(Self { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version field (5).
    pub fn version(&self) -> u16 {
        be_u16(self.b(), field::VERSION)
    }
    /// Number of records that follow.
    pub fn count(&self) -> u16 {
        be_u16(self.b(), field::COUNT)
    }
    /// Milliseconds since the exporter booted, at export time.
    pub fn sys_uptime(&self) -> u32 {
        be_u32(self.b(), field::SYS_UPTIME)
    }
    /// Export time, seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u32 {
        be_u32(self.b(), field::UNIX_SECS)
    }
    /// Residual nanoseconds of the export time.
    pub fn unix_nsecs(&self) -> u32 {
        be_u32(self.b(), field::UNIX_NSECS)
    }
    /// Sequence number of the first record (total flows seen).
    pub fn flow_sequence(&self) -> u32 {
        be_u32(self.b(), field::FLOW_SEQUENCE)
    }
    /// Type of flow-switching engine.
    pub fn engine_type(&self) -> u8 {
        self.b().get(field::ENGINE_TYPE).copied().unwrap_or(0)
    }
    /// Slot number of the flow-switching engine.
    pub fn engine_id(&self) -> u8 {
        self.b().get(field::ENGINE_ID).copied().unwrap_or(0)
    }
    /// The raw sampling field: top 2 bits mode, low 14 bits interval.
    pub fn sampling_raw(&self) -> u16 {
        be_u16(self.b(), field::SAMPLING_INTERVAL)
    }
    /// Sampling mode (top 2 bits; 1 = deterministic, 2 = random).
    pub fn sampling_mode(&self) -> u8 {
        // Cannot truncate: a u16 shifted right by 14 fits in 2 bits.
        (self.sampling_raw() >> 14) as u8
    }
    /// Sampling interval (low 14 bits); 0 means unsampled.
    pub fn sampling_interval(&self) -> u16 {
        self.sampling_raw() & 0x3fff
    }
    /// The domain key flowguard uses for v5: `engine_type << 8 | engine_id`, which is
    /// also where the XDP program reads it (payload bytes 20–21).
    pub fn observation_domain_id(&self) -> u32 {
        u32::from(self.engine_type()) << 8 | u32::from(self.engine_id())
    }
}

/// View of one 48-byte v5 record.
#[derive(Clone, Copy, Debug)]
pub struct Record<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// Wraps `buffer`, failing if it is shorter than [`RECORD_LEN`].
    ///
    /// # Errors
    /// [`Truncated`] when the buffer is too short.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let len = buffer.as_ref().len();
        if len < RECORD_LEN {
            return Err(Truncated {
                len,
                needed: RECORD_LEN,
            });
        }
        Ok(Self { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn addr(&self, range: std::ops::Range<usize>) -> Ipv4Addr {
        self.b()
            .get(range)
            .and_then(|octets| <[u8; 4]>::try_from(octets).ok())
            .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
    }

    /// Source address.
    pub fn srcaddr(&self) -> Ipv4Addr {
        self.addr(field::SRCADDR)
    }
    /// Destination address.
    pub fn dstaddr(&self) -> Ipv4Addr {
        self.addr(field::DSTADDR)
    }
    /// Next hop router.
    pub fn nexthop(&self) -> Ipv4Addr {
        self.addr(field::NEXTHOP)
    }
    /// SNMP index of the input interface.
    pub fn input(&self) -> u16 {
        be_u16(self.b(), field::INPUT)
    }
    /// SNMP index of the output interface.
    pub fn output(&self) -> u16 {
        be_u16(self.b(), field::OUTPUT)
    }
    /// Packets in the flow.
    pub fn d_pkts(&self) -> u32 {
        be_u32(self.b(), field::D_PKTS)
    }
    /// Layer-3 bytes in the flow.
    pub fn d_octets(&self) -> u32 {
        be_u32(self.b(), field::D_OCTETS)
    }
    /// sysUptime at the start of the flow (ms).
    pub fn first(&self) -> u32 {
        be_u32(self.b(), field::FIRST)
    }
    /// sysUptime at the last packet of the flow (ms).
    pub fn last(&self) -> u32 {
        be_u32(self.b(), field::LAST)
    }
    /// Source port (or 0).
    pub fn srcport(&self) -> u16 {
        be_u16(self.b(), field::SRCPORT)
    }
    /// Destination port (ICMP type/code for ICMP, by exporter convention).
    pub fn dstport(&self) -> u16 {
        be_u16(self.b(), field::DSTPORT)
    }
    /// Cumulative OR of TCP flags.
    pub fn tcp_flags(&self) -> u8 {
        self.b().get(field::TCP_FLAGS).copied().unwrap_or(0)
    }
    /// IP protocol.
    pub fn prot(&self) -> u8 {
        self.b().get(field::PROT).copied().unwrap_or(0)
    }
    /// IP type of service.
    pub fn tos(&self) -> u8 {
        self.b().get(field::TOS).copied().unwrap_or(0)
    }
    /// Source AS.
    pub fn src_as(&self) -> u16 {
        be_u16(self.b(), field::SRC_AS)
    }
    /// Destination AS.
    pub fn dst_as(&self) -> u16 {
        be_u16(self.b(), field::DST_AS)
    }
    /// Source prefix mask bits.
    pub fn src_mask(&self) -> u8 {
        self.b().get(field::SRC_MASK).copied().unwrap_or(0)
    }
    /// Destination prefix mask bits.
    pub fn dst_mask(&self) -> u8 {
        self.b().get(field::DST_MASK).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: [u8; 24] = [
        0, 5, 0, 2, // version 5, count 2
        0, 0, 0x03, 0xe8, // uptime 1000
        0x60, 0, 0, 0, // unix_secs
        0, 0x0f, 0x42, 0x40, // nsecs 1_000_000
        0, 0, 0, 7, // sequence
        1, 2, // engine type/id
        0x40, 0x64, // mode 1, interval 100
    ];

    #[test]
    fn golden_header() {
        let h = Header::new_checked(&HEADER[..]).unwrap();
        assert_eq!(h.version(), 5);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sys_uptime(), 1000);
        assert_eq!(h.unix_secs(), 0x6000_0000);
        assert_eq!(h.unix_nsecs(), 1_000_000);
        assert_eq!(h.flow_sequence(), 7);
        assert_eq!(h.observation_domain_id(), 0x0102);
        assert_eq!(h.sampling_mode(), 1);
        assert_eq!(h.sampling_interval(), 100);
    }

    #[test]
    fn truncated_header_and_record() {
        assert_eq!(
            Header::new_checked(&HEADER[..23]).unwrap_err(),
            Truncated {
                len: 23,
                needed: 24
            }
        );
        assert!(Record::new_checked(&[0u8; 47][..]).is_err());
        // Unchecked views never panic; they read zeros past the end.
        assert_eq!(Header::new_unchecked(&HEADER[..3]).count(), 0);
    }

    #[test]
    fn golden_record() {
        let mut r = [0u8; 48];
        r[0..4].copy_from_slice(&[10, 0, 0, 1]);
        r[4..8].copy_from_slice(&[10, 0, 0, 2]);
        r[12..14].copy_from_slice(&3u16.to_be_bytes());
        r[16..20].copy_from_slice(&5u32.to_be_bytes());
        r[20..24].copy_from_slice(&500u32.to_be_bytes());
        r[32..34].copy_from_slice(&1234u16.to_be_bytes());
        r[34..36].copy_from_slice(&80u16.to_be_bytes());
        r[37] = 0x12;
        r[38] = 6;
        let v = Record::new_checked(&r[..]).unwrap();
        assert_eq!(v.srcaddr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(v.dstaddr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(v.input(), 3);
        assert_eq!(v.d_pkts(), 5);
        assert_eq!(v.d_octets(), 500);
        assert_eq!(v.srcport(), 1234);
        assert_eq!(v.dstport(), 80);
        assert_eq!(v.tcp_flags(), 0x12);
        assert_eq!(v.prot(), 6);
    }
}
