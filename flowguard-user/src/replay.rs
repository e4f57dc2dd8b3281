//! `flowguard replay`: send the export datagrams of a capture (or a generated scenario) to a
//! collector, with the original timing, at a fixed rate, or as fast as possible.
//!
//! Datagrams go out with `sendmmsg` in batches. Each distinct exporter of the capture is
//! mapped to one of the `--source` addresses (round robin in order of appearance), so a
//! collector sees as many exporters as the replay has sources, and an exporter's packets
//! always come from the same address and socket — its templates stay with it. Templates
//! travel in the capture itself: replaying from the first packet sends them first, and a
//! capture made by a real exporter (or by `flowguard scenario`) refreshes them as it goes.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{capture::pcap::PcapFile, decode::Decoder};

/// Flags of `flowguard replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A pcap/pcapng of export packets.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub read: Option<PathBuf>,
    /// A directory written by `flowguard scenario` (its `exports.pcap`).
    #[arg(long, value_name = "DIR")]
    pub scenario: Option<PathBuf>,
    /// Collector address, e.g. 198.18.0.1:2055. With `--keep-ports`, only its address is used.
    #[arg(long)]
    pub to: SocketAddr,
    /// Send each datagram to its original destination port instead of `--to`'s port.
    #[arg(long)]
    pub keep_ports: bool,
    /// Ports of export traffic in the capture. Default: 2055, 4739, 6343, 9995.
    #[arg(long = "port", value_delimiter = ',')]
    pub ports: Vec<u16>,
    /// `original` (the capture's timing, scaled by `--speed`), `max`, or packets per second.
    #[arg(long, default_value = "original")]
    pub rate: Rate,
    /// Time scale for `--rate original` (2 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Local source addresses to send from (repeat); exporters are mapped onto them.
    #[arg(long = "source", value_name = "ADDR")]
    pub sources: Vec<IpAddr>,
    /// Replay the capture this many times (0 = until interrupted).
    #[arg(long = "loop", default_value_t = 1)]
    pub loops: u64,
    /// Stop after this many seconds (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
}

/// How fast to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// The capture's own inter-packet timing.
    Original,
    /// As fast as the socket takes them.
    Max,
    /// A fixed number of datagrams per second.
    PacketsPerSecond(f64),
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "original" => Ok(Rate::Original),
            "max" => Ok(Rate::Max),
            n => match n.parse::<f64>() {
                Ok(pps) if pps > 0.0 => Ok(Rate::PacketsPerSecond(pps)),
                _ => Err(format!(
                    "--rate takes original, max or a positive packets/s, not {n:?}"
                )),
            },
        }
    }
}

/// What a replay sent.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReplayTotals {
    /// Datagrams sent.
    pub packets: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Flow records in the datagrams sent (decoded once, before sending).
    pub records: u64,
    /// Datagrams the kernel refused (buffer full), retried until sent.
    pub retries: u64,
    /// Seconds spent sending.
    pub seconds: f64,
}

struct Datagram {
    exporter: IpAddr,
    dst_port: u16,
    at_ns: u64,
    payload: Vec<u8>,
    records: u64,
}

/// Runs the replay.
///
/// # Errors
/// Unreadable capture, unusable source addresses, or socket errors.
pub fn replay(args: &ReplayArgs) -> Result<ReplayTotals> {
    let path = match (&args.read, &args.scenario) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.join("exports.pcap"),
        (None, None) => bail!("give --read FILE.pcap or --scenario DIR"),
    };
    if args.speed <= 0.0 {
        bail!("--speed must be positive");
    }
    let ports = if args.ports.is_empty() {
        flowguard_ebpf::DEFAULT_PORTS.to_vec()
    } else {
        args.ports.clone()
    };
    let datagrams = load(&path, &ports)?;
    if datagrams.is_empty() {
        bail!("{}: no export datagrams on ports {ports:?}", path.display());
    }
    let sources: Vec<IpAddr> = if args.sources.is_empty() {
        vec![if args.to.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        }]
    } else {
        args.sources.clone()
    };
    let sockets = sources
        .iter()
        .map(|s| {
            UdpSocket::bind((*s, 0)).with_context(|| format!("binding a socket to source {s}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut exporter_socket: HashMap<IpAddr, usize> = HashMap::new();
    let mut totals = ReplayTotals::default();
    let started = Instant::now();
    let deadline = (args.duration > 0).then(|| started + Duration::from_secs(args.duration));
    let mut batch = SendBatch::default();
    let mut sent_in_rate = 0u64;
    let mut round = 0u64;
    'outer: while args.loops == 0 || round < args.loops {
        let loop_start = Instant::now();
        let first_ns = datagrams[0].at_ns;
        for d in &datagrams {
            if deadline.is_some_and(|t| Instant::now() >= t) {
                break 'outer;
            }
            let next = exporter_socket.len();
            let socket = *exporter_socket
                .entry(d.exporter)
                .or_insert(next % sockets.len());
            let dst = SocketAddr::new(
                args.to.ip(),
                if args.keep_ports {
                    d.dst_port
                } else {
                    args.to.port()
                },
            );
            match args.rate {
                Rate::Original => {
                    #[expect(
                        clippy::cast_precision_loss,
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "durations"
                    )]
                    let due =
                        Duration::from_nanos(((d.at_ns - first_ns) as f64 / args.speed) as u64);
                    if let Some(wait) = due.checked_sub(loop_start.elapsed()) {
                        batch.flush(&sockets, &mut totals);
                        std::thread::sleep(wait);
                    }
                }
                Rate::PacketsPerSecond(pps) => {
                    #[expect(clippy::cast_precision_loss, reason = "rates")]
                    let due = Duration::from_secs_f64(sent_in_rate as f64 / pps);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        batch.flush(&sockets, &mut totals);
                        std::thread::sleep(wait);
                    }
                }
                Rate::Max => {}
            }
            batch.push(socket, dst, d);
            sent_in_rate += 1;
            if batch.len() >= 64 {
                batch.flush(&sockets, &mut totals);
            }
        }
        batch.flush(&sockets, &mut totals);
        round += 1;
    }
    batch.flush(&sockets, &mut totals);
    totals.seconds = started.elapsed().as_secs_f64();
    Ok(totals)
}

fn load(path: &std::path::Path, ports: &[u16]) -> Result<Vec<Datagram>> {
    let file = PcapFile::open(path)?;
    let mut counters = crate::capture::pcap::PcapCounters::default();
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    file.for_each_datagram(ports, &mut counters, |p| {
        let mut records = 0u64;
        let _ = decoder.decode(
            p.exporter.ip(),
            p.received_ns / 1_000_000,
            p.payload,
            &mut |_| records += 1,
        );
        out.push(Datagram {
            exporter: p.exporter.ip(),
            dst_port: p.dst_port,
            at_ns: p.received_ns,
            payload: p.payload.to_vec(),
            records,
        });
    })?;
    // Capture order is send order; keep time monotonic for the pacing arithmetic.
    let mut last = 0;
    for d in &mut out {
        d.at_ns = d.at_ns.max(last);
        last = d.at_ns;
    }
    Ok(out)
}

/// Datagrams waiting for one `sendmmsg` per socket (borrowed from the loaded capture).
#[derive(Default)]
struct SendBatch<'a> {
    items: Vec<(usize, SocketAddr, &'a Datagram)>,
}

impl<'a> SendBatch<'a> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn push(&mut self, socket: usize, dst: SocketAddr, datagram: &'a Datagram) {
        self.items.push((socket, dst, datagram));
    }

    fn flush(&mut self, sockets: &[UdpSocket], totals: &mut ReplayTotals) {
        for (k, socket) in sockets.iter().enumerate() {
            let mine: Vec<&(usize, SocketAddr, &Datagram)> =
                self.items.iter().filter(|i| i.0 == k).collect();
            let mut start = 0;
            while start < mine.len() {
                match sendmmsg(socket, &mine[start..]) {
                    Ok(0) | Err(_) => {
                        totals.retries += 1;
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    Ok(n) => {
                        for item in &mine[start..start + n] {
                            totals.packets += 1;
                            totals.bytes += item.2.payload.len() as u64;
                            totals.records += item.2.records;
                        }
                        start += n;
                    }
                }
            }
        }
        self.items.clear();
    }
}

fn sendmmsg(
    socket: &UdpSocket,
    items: &[&(usize, SocketAddr, &Datagram)],
) -> std::io::Result<usize> {
    let addrs: Vec<socket2::SockAddr> =
        items.iter().map(|i| socket2::SockAddr::from(i.1)).collect();
    let mut iovecs: Vec<libc::iovec> = items
        .iter()
        .map(|i| libc::iovec {
            iov_base: i.2.payload.as_ptr().cast_mut().cast(),
            iov_len: i.2.payload.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zero is a valid start.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; items.len()];
    for ((m, iov), addr) in msgs.iter_mut().zip(iovecs.iter_mut()).zip(&addrs) {
        m.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast();
        m.msg_hdr.msg_namelen = addr.len();
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer refers to buffers alive for the call.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            u32::try_from(msgs.len()).unwrap_or(u32::MAX),
            0,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_reject_nonsense() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("original".parse::<Rate>(), Ok(Rate::Original));
        assert_eq!("2500".parse::<Rate>(), Ok(Rate::PacketsPerSecond(2500.0)));
        assert!("-1".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn replays_a_capture_to_a_local_socket_in_order() {
        use crate::{
            capture::pcap::PcapWriter,
            decode::{
                FlowRecord,
                encode::{Encoder, EncoderConfig, Format},
            },
        };
        let dir = std::env::temp_dir().join(format!("fg-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pcap");
        let records: Vec<FlowRecord> = (0..100u16)
            .map(|i| {
                let mut r = FlowRecord {
                    src_addr: "10.0.0.1".parse().unwrap(),
                    dst_addr: "10.0.0.2".parse().unwrap(),
                    src_port: i,
                    start_ms: 1_700_000_000_000,
                    end_ms: 1_700_000_000_500,
                    ..FlowRecord::default()
                };
                r.set_counts(100, 1, 1);
                r
            })
            .collect();
        let mut packets = Vec::new();
        Encoder::new(EncoderConfig::new(Format::Ipfix)).encode(
            &records,
            1_700_000_001_000,
            &mut packets,
        );
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let src: SocketAddr = "198.18.0.2:5000".parse().unwrap();
            let dst: SocketAddr = "198.18.0.1:4739".parse().unwrap();
            w.udp(1_000_000_000 + i as u64 * 1_000_000, src, dst, p)
                .unwrap();
        }
        w.finish().unwrap();
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let args = ReplayArgs {
            read: Some(path),
            scenario: None,
            to: collector.local_addr().unwrap(),
            keep_ports: false,
            ports: vec![4739],
            rate: Rate::Max,
            speed: 1.0,
            sources: vec![],
            loops: 1,
            duration: 0,
        };
        let totals = replay(&args).unwrap();
        assert_eq!(totals.packets, packets.len() as u64);
        assert_eq!(totals.records, 100);
        let mut buf = vec![0u8; 65_536];
        for p in &packets {
            let n = collector.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], p.as_slice(), "byte-identical, in order");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
