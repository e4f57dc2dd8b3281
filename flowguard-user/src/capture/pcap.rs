//! Reading export packets from pcap and pcapng files.
//!
//! The file is memory-mapped and walked with pcap-parser; frames are sliced with etherparse
//! (Ethernet with VLANs, Linux cooked capture v1/v2, raw IP, BSD loopback). IP fragments are
//! reassembled (bounded, see [`MAX_PENDING_FRAGMENTS`]) so a datagram larger than the MTU
//! arrives whole, as it does on the socket path. Every frame that is not a UDP datagram to a
//! taken port is counted by reason, never silently dropped.

use std::{fs::File, net::IpAddr, path::Path};

use etherparse::{NetSlice, SlicedPacket, TransportSlice, UdpHeader, defrag::IpDefragPool};
use memmap2::Mmap;
use pcap_parser::{
    LegacyPcapSlice, Linktype, PcapBlockOwned, PcapNGSlice, pcapng::Block,
    traits::PcapNGPacketBlock as _,
};

use super::{ExportPacket, Source};

/// Most incomplete fragmented datagrams held at once; beyond it the oldest are dropped and
/// counted, so a hostile capture cannot grow memory without bound.
pub const MAX_PENDING_FRAGMENTS: usize = 1024;

/// Errors opening a capture.
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// File name.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng file")]
    Format {
        /// File name.
        path: String,
    },
}

/// What the reader skipped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PcapCounters {
    /// Frames read.
    pub frames: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Frames of a link type we cannot slice.
    pub unsupported_link: u64,
    /// Frames etherparse could not slice (truncated, malformed).
    pub malformed: u64,
    /// Non-UDP frames.
    pub not_udp: u64,
    /// UDP to other ports.
    pub other_port: u64,
    /// Fragments held for reassembly (each completes into at most one datagram).
    pub fragments: u64,
    /// Fragmented datagrams abandoned (reassembly error or pending limit).
    pub fragments_dropped: u64,
    /// The file ended mid-record, or a block failed to parse.
    pub truncated_file: u64,
}

/// A mapped capture file.
#[derive(Debug)]
pub struct PcapFile {
    map: Mmap,
    path: String,
}

impl PcapFile {
    /// Maps `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or mapped.
    pub fn open(path: &Path) -> Result<Self, PcapFileError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| PcapFileError::Io {
            path: name.clone(),
            source,
        })?;
        // SAFETY: the map is read-only and private to this process. If another process
        // truncates the file while we read it, access past the new end raises SIGBUS; capture
        // files are not expected to change under the reader.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| PcapFileError::Io {
            path: name.clone(),
            source,
        })?;
        Ok(Self { map, path: name })
    }

    /// Calls `each` for every UDP datagram to one of `ports` in the file, in file order.
    ///
    /// # Errors
    /// When the file is not pcap/pcapng.
    pub fn for_each_datagram(
        &self,
        ports: &[u16],
        counters: &mut PcapCounters,
        mut each: impl FnMut(&ExportPacket<'_>),
    ) -> Result<(), PcapFileError> {
        let mut reader = FrameReader {
            ports,
            counters,
            defrag: IpDefragPool::new(),
            pending_order: Vec::new(),
        };
        let data: &[u8] = &self.map;
        if let Ok(slice) = LegacyPcapSlice::from_slice(data) {
            let linktype = slice.header.network;
            let nanos = slice.header.is_nanosecond_precision();
            for block in slice {
                match block {
                    Ok(PcapBlockOwned::Legacy(b)) => {
                        let frac = u64::from(b.ts_usec) * if nanos { 1 } else { 1000 };
                        let ts = u64::from(b.ts_sec) * 1_000_000_000 + frac;
                        reader.frame(linktype, b.data, ts, &mut each);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        reader.counters.truncated_file += 1;
                        break;
                    }
                }
            }
            return Ok(());
        }
        if let Ok(slice) = PcapNGSlice::from_slice(data) {
            let mut links: Vec<(Linktype, u64)> = Vec::new();
            for block in slice {
                match block {
                    Ok(PcapBlockOwned::NG(Block::SectionHeader(_))) => links.clear(),
                    Ok(PcapBlockOwned::NG(Block::InterfaceDescription(idb))) => {
                        // if_tsresol: default microseconds (pcapng §4.2).
                        let per_sec = idb.ts_resolution().unwrap_or(1_000_000);
                        links.push((idb.linktype, per_sec));
                    }
                    Ok(PcapBlockOwned::NG(Block::EnhancedPacket(epb))) => {
                        let Some(&(linktype, per_sec)) = links.get(epb.if_id as usize) else {
                            reader.counters.frames += 1;
                            reader.counters.unsupported_link += 1;
                            continue;
                        };
                        let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let ts = raw.checked_div(per_sec).map_or(0, |secs| {
                            secs * 1_000_000_000 + raw % per_sec * 1_000_000_000 / per_sec
                        });
                        reader.frame(linktype, epb.packet_data(), ts, &mut each);
                    }
                    Ok(PcapBlockOwned::NG(Block::SimplePacket(spb))) => {
                        let linktype = links.first().map_or(Linktype::ETHERNET, |l| l.0);
                        reader.frame(linktype, spb.packet_data(), 0, &mut each);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        reader.counters.truncated_file += 1;
                        break;
                    }
                }
            }
            return Ok(());
        }
        Err(PcapFileError::Format {
            path: self.path.clone(),
        })
    }
}

struct FrameReader<'p, 'c> {
    ports: &'p [u16],
    counters: &'c mut PcapCounters,
    defrag: IpDefragPool<u64, ()>,
    /// Insertion order of pending reassemblies, to evict the oldest at the cap.
    pending_order: Vec<u64>,
}

impl FrameReader<'_, '_> {
    fn frame(
        &mut self,
        linktype: Linktype,
        data: &[u8],
        ts_ns: u64,
        each: &mut impl FnMut(&ExportPacket<'_>),
    ) {
        self.counters.frames += 1;
        let sliced = match linktype {
            Linktype::ETHERNET => SlicedPacket::from_ethernet(data),
            Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => SlicedPacket::from_ip(data),
            Linktype::LINUX_SLL => SlicedPacket::from_linux_sll(data),
            Linktype::NULL | Linktype::LOOP => {
                let Some(rest) = data.get(4..) else {
                    self.counters.malformed += 1;
                    return;
                };
                SlicedPacket::from_ip(rest)
            }
            _ => {
                self.counters.unsupported_link += 1;
                return;
            }
        };
        let Ok(packet) = sliced else {
            self.counters.malformed += 1;
            return;
        };
        let Some((src, _dst)) = ip_pair(&packet) else {
            self.counters.not_udp += 1;
            return;
        };
        if is_fragment(&packet) {
            self.counters.fragments += 1;
            self.reassemble(&packet, src, ts_ns, each);
            return;
        }
        let Some(TransportSlice::Udp(udp)) = &packet.transport else {
            self.counters.not_udp += 1;
            return;
        };
        self.deliver(
            src,
            udp.source_port(),
            udp.destination_port(),
            udp.payload(),
            ts_ns,
            each,
        );
    }

    fn reassemble(
        &mut self,
        packet: &SlicedPacket<'_>,
        src: IpAddr,
        ts_ns: u64,
        each: &mut impl FnMut(&ExportPacket<'_>),
    ) {
        match self.defrag.process_sliced_packet(packet, ts_ns, ()) {
            Ok(Some(whole)) => {
                let Ok((udp, payload)) = UdpHeader::from_slice(&whole.payload) else {
                    self.counters.not_udp += 1;
                    return;
                };
                let len = usize::from(udp.length)
                    .saturating_sub(UdpHeader::LEN)
                    .min(payload.len());
                self.deliver(
                    src,
                    udp.source_port,
                    udp.destination_port,
                    &payload[..len],
                    ts_ns,
                    each,
                );
                self.defrag.return_buf(whole);
            }
            Ok(None) => {
                self.pending_order.push(ts_ns);
                if self.pending_order.len() > MAX_PENDING_FRAGMENTS {
                    // Evict everything older than the median pending timestamp.
                    self.pending_order.sort_unstable();
                    let cutoff = self.pending_order[self.pending_order.len() / 2];
                    let evicted = std::cell::Cell::new(0u64);
                    self.defrag.retain(|t| {
                        let keep = *t >= cutoff;
                        evicted.set(evicted.get() + u64::from(!keep));
                        keep
                    });
                    self.counters.fragments_dropped += evicted.get();
                    self.pending_order.retain(|t| *t >= cutoff);
                }
            }
            Err(_) => self.counters.fragments_dropped += 1,
        }
    }

    fn deliver(
        &mut self,
        src: IpAddr,
        sport: u16,
        dport: u16,
        payload: &[u8],
        ts_ns: u64,
        each: &mut impl FnMut(&ExportPacket<'_>),
    ) {
        if !self.ports.contains(&dport) {
            self.counters.other_port += 1;
            return;
        }
        self.counters.delivered += 1;
        each(&ExportPacket {
            exporter: std::net::SocketAddr::new(src.to_canonical(), sport),
            dst_port: dport,
            ifindex: 0,
            received_ns: ts_ns,
            source: Source::Pcap,
            payload,
        });
    }
}

fn ip_pair(packet: &SlicedPacket<'_>) -> Option<(IpAddr, IpAddr)> {
    match &packet.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            Some((
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
            ))
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            Some((
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
            ))
        }
        _ => None,
    }
}

fn is_fragment(packet: &SlicedPacket<'_>) -> bool {
    match &packet.net {
        Some(NetSlice::Ipv4(v4)) => v4.header().is_fragmenting_payload(),
        Some(NetSlice::Ipv6(v6)) => v6.payload().fragmented,
        _ => false,
    }
}

/// Writes a classic pcap (Ethernet link type, microsecond stamps) — enough for tests and
/// scenario output, read back by [`PcapFile`], tshark and tcpreplay.
#[derive(Debug)]
pub struct PcapWriter<W: std::io::Write> {
    out: W,
}

impl<W: std::io::Write> PcapWriter<W> {
    /// Writes the global header.
    ///
    /// # Errors
    /// On write failure.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&65_535u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?;
        Ok(Self { out })
    }

    /// Appends one Ethernet frame.
    ///
    /// # Errors
    /// On write failure.
    pub fn frame(&mut self, ts_ns: u64, frame: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
        let secs = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let usecs = u32::try_from(ts_ns % 1_000_000_000 / 1000).unwrap_or(0);
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&usecs.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(frame)
    }

    /// Appends a UDP datagram from `src` to `dst` in an Ethernet/IP frame.
    ///
    /// # Errors
    /// On write failure or a payload too big for one IP packet.
    pub fn udp(
        &mut self,
        ts_ns: u64,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let builder = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => builder.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => builder.ipv6(s.octets(), d.octets(), 64),
            _ => return Err(std::io::Error::other("mixed address families")),
        };
        let builder = builder.udp(src.port(), dst.port());
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut frame, payload)
            .map_err(std::io::Error::other)?;
        self.frame(ts_ns, &frame)
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    /// On flush failure.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_datagrams_read_back_in_order() {
        let dir = std::env::temp_dir().join(format!("fg-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let mut w = PcapWriter::new(std::io::BufWriter::new(File::create(&path).unwrap())).unwrap();
        let src: std::net::SocketAddr = "198.18.0.2:5000".parse().unwrap();
        let dst: std::net::SocketAddr = "198.18.0.1:2055".parse().unwrap();
        let other: std::net::SocketAddr = "198.18.0.1:9".parse().unwrap();
        let src6: std::net::SocketAddr = "[2001:db8::2]:5001".parse().unwrap();
        let dst6: std::net::SocketAddr = "[2001:db8::1]:4739".parse().unwrap();
        w.udp(1_000_000_000, src, dst, b"first").unwrap();
        w.udp(2_000_000_000, src, other, b"skipped").unwrap();
        w.udp(3_000_000_000, src6, dst6, b"third").unwrap();
        w.finish().unwrap();

        let file = PcapFile::open(&path).unwrap();
        let mut got = Vec::new();
        let mut counters = PcapCounters::default();
        file.for_each_datagram(&[2055, 4739], &mut counters, |p| {
            got.push((p.exporter, p.dst_port, p.payload.to_vec(), p.received_ns));
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (src, 2055, b"first".to_vec(), 1_000_000_000),
                (src6, 4739, b"third".to_vec(), 3_000_000_000),
            ]
        );
        assert_eq!(counters.frames, 3);
        assert_eq!(counters.other_port, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("fg-pcap-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.pcap");
        std::fs::write(&path, b"definitely not a capture file").unwrap();
        let file = PcapFile::open(&path).unwrap();
        let mut c = PcapCounters::default();
        assert!(file.for_each_datagram(&[2055], &mut c, |_| {}).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
