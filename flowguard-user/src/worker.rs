//! Per-shard workers.
//!
//! A worker owns everything for its shard: its ring buffer, its sockets, its buffers and
//! (from the decode stage on) the template caches of the exporters hashed to it. Its state is
//! built inside its own pinned thread; only the inputs, which are `Send`, cross over. Nothing
//! is shared but the counters, which the worker publishes once per batch into a cache-line
//! aligned block that the stats printer reads.

use std::{
    fmt::Write as _,
    fs::File,
    io::{BufWriter, Write as _},
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};

use crate::{
    capture::{ExportPacket, Source, socket::RecvBatch, xdp},
    decode::{DecodeCounters, Decoder},
    detect::{
        DetectConfig,
        engine::{Routed, Router},
    },
    report::flows::write_json,
};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// A worker counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// Stable `snake_case` name.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// Datagrams handled.
    Packets => "packets",
    /// Payload bytes handled.
    Bytes => "bytes",
    /// Datagrams from the XDP ring.
    FromXdp => "from_xdp",
    /// Datagrams from the socket path.
    FromSocket => "from_socket",
    /// Datagrams from a capture file.
    FromPcap => "from_pcap",
    /// `NetFlow` v5 messages.
    V5 => "v5",
    /// `NetFlow` v9 messages.
    V9 => "v9",
    /// IPFIX messages.
    Ipfix => "ipfix",
    /// sFlow v5 datagrams (counted, not decoded).
    Sflow => "sflow",
    /// Invalid: shorter than a version field.
    InvalidRunt => "invalid_runt",
    /// Invalid: v5 length disagrees with its record count (24 + 48·count).
    InvalidV5Length => "invalid_v5_length",
    /// Invalid: shorter than the 20-byte v9 header.
    InvalidV9Short => "invalid_v9_short",
    /// Invalid: IPFIX length field disagrees with the datagram (RFC 7011 §3.1).
    InvalidIpfixLength => "invalid_ipfix_length",
    /// Invalid: unknown version.
    InvalidVersion => "invalid_version",
    /// A ring record shorter than its header says (never written by the program).
    InvalidRingRecord => "invalid_ring_record",
    /// Socket receive errors.
    SocketErrors => "socket_errors",
    /// Flow records decoded.
    Records => "records",
    /// Datagrams the decoder reported a problem with (details in the decode counters).
    DecodeErrors => "decode_errors",
    /// `--flows-out` chunks dropped because the writer fell behind.
    FlowsOutDropped => "flows_out_dropped",
    /// Records handed to detection shards.
    DetectRecords => "detect_records",
    /// Records dropped because a detection shard's queue was full.
    DetectQueueFull => "detect_queue_full",
}

/// Number of counters.
pub const NUM_COUNTERS: usize = Counter::ALL.len();

/// A worker's private counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters(pub [u64; NUM_COUNTERS]);

impl Default for Counters {
    fn default() -> Self {
        Self([0; NUM_COUNTERS])
    }
}

impl Counters {
    /// Value of one counter.
    #[must_use]
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    fn bump(&mut self, c: Counter, by: u64) {
        self.0[c as usize] += by;
    }
}

/// Counters one worker publishes and other threads read. Aligned to 128 bytes so two
/// workers' blocks never share a cache line (or an adjacent-line prefetch pair).
#[repr(align(128))]
#[derive(Debug)]
pub struct SharedCounters([AtomicU64; NUM_COUNTERS]);

impl Default for SharedCounters {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl SharedCounters {
    /// A snapshot.
    #[must_use]
    pub fn load(&self) -> Counters {
        Counters(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }

    fn store(&self, c: &Counters) {
        for (slot, v) in self.0.iter().zip(c.0) {
            slot.store(v, Ordering::Relaxed);
        }
    }
}

/// The export protocol of a datagram, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `NetFlow` v5.
    V5,
    /// `NetFlow` v9.
    V9,
    /// IPFIX.
    Ipfix,
    /// sFlow v5.
    Sflow,
}

/// Checks the header invariants each protocol states about the datagram length.
///
/// # Errors
/// The counter naming what is wrong.
pub fn classify(payload: &[u8]) -> Result<Version, Counter> {
    let be16 = |at: usize| {
        payload
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let version = be16(0).ok_or(Counter::InvalidRunt)?;
    match version {
        5 => {
            // NetFlow v5: 24-byte header, `count` 48-byte records, nothing else.
            let count = usize::from(be16(2).ok_or(Counter::InvalidV5Length)?);
            if payload.len() == 24 + 48 * count && count > 0 {
                Ok(Version::V5)
            } else {
                Err(Counter::InvalidV5Length)
            }
        }
        9 if payload.len() >= 20 => Ok(Version::V9),
        9 => Err(Counter::InvalidV9Short),
        10 => match be16(2) {
            Some(len) if usize::from(len) == payload.len() && payload.len() >= 16 => {
                Ok(Version::Ipfix)
            }
            _ => Err(Counter::InvalidIpfixLength),
        },
        // sFlow v5 starts with a 32-bit version 5 (so a 16-bit 0 here).
        0 if payload.get(0..4) == Some(&[0, 0, 0, 5]) => Ok(Version::Sflow),
        _ => Err(Counter::InvalidVersion),
    }
}

/// Where a worker sends formatted flow records: NDJSON chunks to the `--flows-out` writer.
pub type FlowSink = crossbeam_channel::Sender<Vec<u8>>;

/// Bytes of formatted records a worker gathers before handing a chunk to the writer.
const FLOW_CHUNK: usize = 64 * 1024;

/// Records a worker gathers per detection shard before handing the batch over (it sends
/// the batch once a packet's records have filled it, so a batch may hold a packet's
/// worth more).
pub const DETECT_BATCH: usize = 256;

/// A worker's side of the queues to the detection shards: one bounded queue per
/// (worker, shard) pair, so each has a single producer and a single consumer.
#[derive(Debug)]
pub struct DetectLink {
    router: Router,
    queues: Vec<crossbeam_channel::Sender<Vec<Routed>>>,
    batches: Vec<Vec<Routed>>,
}

impl DetectLink {
    /// Queues to every shard, in shard order.
    #[must_use]
    pub fn new(config: &DetectConfig, queues: Vec<crossbeam_channel::Sender<Vec<Routed>>>) -> Self {
        let batches = queues
            .iter()
            .map(|_| Vec::with_capacity(DETECT_BATCH))
            .collect();
        Self {
            router: Router::new(config, queues.len()),
            queues,
            batches,
        }
    }
}

/// One shard's worker state.
#[derive(Debug)]
pub struct Worker {
    shard: usize,
    counters: Counters,
    shared: Arc<SharedCounters>,
    packet_log: Option<BufWriter<File>>,
    line: String,
    decoder: Decoder,
    flows: Option<FlowSink>,
    flow_buf: String,
    detect: Option<DetectLink>,
}

impl Worker {
    /// A worker for `shard`, optionally logging every datagram to `packet_log_dir`.
    ///
    /// # Errors
    /// When the log file cannot be created.
    pub fn new(
        shard: usize,
        shared: Arc<SharedCounters>,
        packet_log_dir: Option<&Path>,
    ) -> std::io::Result<Self> {
        let packet_log = match packet_log_dir {
            Some(dir) => Some(BufWriter::new(File::create(
                dir.join(format!("shard-{shard}.ndjson")),
            )?)),
            None => None,
        };
        Ok(Self {
            shard,
            counters: Counters::default(),
            shared,
            packet_log,
            line: String::new(),
            decoder: Decoder::default(),
            flows: None,
            flow_buf: String::new(),
            detect: None,
        })
    }

    /// Uses `decoder` (configured, perhaps loaded from a snapshot) for this shard.
    #[must_use]
    pub fn with_decoder(mut self, decoder: Decoder) -> Self {
        self.decoder = decoder;
        self
    }

    /// Sends decoded records, as NDJSON, to `sink`.
    #[must_use]
    pub fn with_flows(mut self, sink: FlowSink) -> Self {
        self.flow_buf.reserve(FLOW_CHUNK + 4096);
        self.flows = Some(sink);
        self
    }

    /// Sends decoded records to the detection shards.
    #[must_use]
    pub fn with_detection(mut self, link: DetectLink) -> Self {
        self.detect = Some(link);
        self
    }

    /// The decoder's counters.
    #[must_use]
    pub fn decode_counters(&self) -> DecodeCounters {
        *self.decoder.counters()
    }

    /// The decoder (for snapshots).
    #[must_use]
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Handles one datagram.
    pub fn handle(&mut self, packet: &ExportPacket<'_>) {
        let c = &mut self.counters;
        c.bump(Counter::Packets, 1);
        c.bump(Counter::Bytes, packet.payload.len() as u64);
        c.bump(
            match packet.source {
                Source::Xdp => Counter::FromXdp,
                Source::Socket => Counter::FromSocket,
                Source::Pcap => Counter::FromPcap,
            },
            1,
        );
        let decodable = match classify(packet.payload) {
            Ok(Version::V5) => Some(Counter::V5),
            Ok(Version::V9) => Some(Counter::V9),
            Ok(Version::Ipfix) => Some(Counter::Ipfix),
            Ok(Version::Sflow) => {
                c.bump(Counter::Sflow, 1);
                None
            }
            Err(reason) => {
                c.bump(reason, 1);
                None
            }
        };
        if self.packet_log.is_some() {
            self.log(packet);
        }
        if let Some(version) = decodable {
            self.counters.bump(version, 1);
            self.decode(packet);
        }
    }

    fn decode(&mut self, packet: &ExportPacket<'_>) {
        let now_ms = packet.received_ns / 1_000_000;
        let mut records = 0u64;
        let flow_buf = &mut self.flow_buf;
        let writing = self.flows.is_some();
        let mut detect = self.detect.as_mut();
        let mut full = false;
        let result = self
            .decoder
            .decode(packet.exporter.ip(), now_ms, packet.payload, &mut |r| {
                records += 1;
                if writing {
                    write_json(flow_buf, r);
                }
                if let Some(link) = detect.as_deref_mut()
                    && let Some(route) = link.router.route(r)
                {
                    for k in route.shards().into_iter().flatten() {
                        link.batches[k].push(Routed {
                            record: *r,
                            sides: route.sides(k),
                        });
                        if link.batches[k].len() >= DETECT_BATCH {
                            full = true;
                        }
                    }
                }
            });
        self.counters.bump(Counter::Records, records);
        if result.is_err() {
            self.counters.bump(Counter::DecodeErrors, 1);
        }
        if full {
            self.flush_detect();
        }
        if self.flow_buf.len() >= FLOW_CHUNK {
            self.flush_flows();
        }
    }

    fn send_batch(&mut self, k: usize) {
        let Some(link) = &mut self.detect else {
            return;
        };
        if link.batches[k].is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut link.batches[k], Vec::with_capacity(DETECT_BATCH));
        let n = batch.len() as u64;
        // A full queue hands the batch back; it is dropped and counted rather than
        // stalling capture.
        if link.queues[k].try_send(batch).is_ok() {
            self.counters.bump(Counter::DetectRecords, n);
        } else {
            self.counters.bump(Counter::DetectQueueFull, n);
        }
    }

    /// Hands every partial detection batch over (on idle and at exit).
    fn flush_detect(&mut self) {
        let shards = self.detect.as_ref().map_or(0, |l| l.queues.len());
        for k in 0..shards {
            self.send_batch(k);
        }
    }

    fn flush_flows(&mut self) {
        let Some(sink) = &self.flows else {
            return;
        };
        if self.flow_buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.flow_buf, String::with_capacity(FLOW_CHUNK + 4096));
        if sink.try_send(chunk.into_bytes()).is_err() {
            self.counters.bump(Counter::FlowsOutDropped, 1);
        }
    }

    fn log(&mut self, packet: &ExportPacket<'_>) {
        self.line.clear();
        let _ = write!(
            self.line,
            "{{\"shard\":{},\"source\":\"{}\",\"exporter\":\"{}\",\"src_port\":{},\"dst_port\":{},\"ifindex\":{},\"len\":{},\"payload\":\"",
            self.shard,
            packet.source.name(),
            packet.exporter.ip(),
            packet.exporter.port(),
            packet.dst_port,
            packet.ifindex,
            packet.payload.len(),
        );
        for b in packet.payload {
            let _ = write!(self.line, "{b:02x}");
        }
        self.line.push_str("\"}\n");
        if let Some(log) = &mut self.packet_log {
            let _ = log.write_all(self.line.as_bytes());
        }
    }

    /// Counts something that happened outside [`handle`](Self::handle).
    pub fn count(&mut self, c: Counter) {
        self.counters.bump(c, 1);
    }

    /// Makes the counters visible to readers.
    pub fn publish(&self) {
        self.shared.store(&self.counters);
    }

    /// Flushes pending flow records and the packet log, and publishes the counters.
    pub fn finish(&mut self) {
        self.flush_flows();
        self.flush_detect();
        // Dropping the queues tells the shards this worker is done.
        self.detect = None;
        self.publish();
        if let Some(log) = &mut self.packet_log {
            let _ = log.flush();
        }
    }
}

/// Poll timeout of a worker with an XDP ring, in ms: the program does not wake the worker for
/// every record (see `flowguard_ebpf::config::WAKEUP_BYTES`), so records that arrive in a
/// trickle wait at most this long.
pub const RING_POLL_MS: i32 = 5;

/// Poll timeout of a socket-only worker (sockets wake it for every datagram), in ms; it only
/// bounds how long a stop request waits.
const IDLE_POLL_MS: i32 = 100;

/// What a live worker reads from.
pub struct LiveInputs {
    /// The shard's XDP ring, in XDP mode.
    pub ring: Option<RingBuf<MapData>>,
    /// The shard's socket on each port, with that port.
    pub sockets: Vec<(OwnedFd, u16)>,
    /// Add to `bpf_ktime_get_ns()` to get Unix nanoseconds.
    pub monotonic_offset_ns: u64,
    /// Test knob: sleep this long before the first read, to let rings fill.
    pub stall: Duration,
}

impl std::fmt::Debug for LiveInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveInputs")
            .field("ring", &self.ring.is_some())
            .field("sockets", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

/// Runs a live worker until `stop` is set, then drains its inputs once more and returns.
pub fn run_live(worker: &mut Worker, mut inputs: LiveInputs, stop: &AtomicBool) {
    if !inputs.stall.is_zero() {
        std::thread::sleep(inputs.stall);
    }
    let mut batch = RecvBatch::new(32);
    let timeout = if inputs.ring.is_some() {
        RING_POLL_MS
    } else {
        IDLE_POLL_MS
    };
    let mut fds: Vec<libc::pollfd> = inputs
        .ring
        .iter()
        .map(AsRawFd::as_raw_fd)
        .chain(inputs.sockets.iter().map(|(fd, _)| fd.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut moved = 0usize;
        if let Some(ring) = &mut inputs.ring {
            moved += drain_ring(worker, ring, inputs.monotonic_offset_ns);
        }
        for (fd, port) in &inputs.sockets {
            moved += drain_socket(worker, fd, *port, &mut batch);
        }
        if moved == 0 {
            worker.flush_flows();
            worker.flush_detect();
        }
        worker.publish();
        if stopping && moved == 0 {
            break;
        }
        if moved == 0 {
            // SAFETY: fds is a valid array of pollfd we own.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        }
    }
    worker.finish();
}

fn drain_ring(worker: &mut Worker, ring: &mut RingBuf<MapData>, offset_ns: u64) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match xdp::split_record(&item) {
            Some((header, payload)) => {
                let ip = if header.family == 4 {
                    std::net::IpAddr::from([
                        header.exporter[0],
                        header.exporter[1],
                        header.exporter[2],
                        header.exporter[3],
                    ])
                } else {
                    std::net::IpAddr::from(header.exporter)
                };
                worker.handle(&ExportPacket {
                    exporter: std::net::SocketAddr::new(ip, header.src_port),
                    dst_port: header.dst_port,
                    ifindex: header.ifindex,
                    received_ns: header.ktime_ns.saturating_add(offset_ns),
                    source: Source::Xdp,
                    payload,
                });
            }
            None => worker.count(Counter::InvalidRingRecord),
        }
        if n % 256 == 0 {
            worker.publish();
        }
    }
    n
}

fn drain_socket(worker: &mut Worker, fd: &OwnedFd, dst_port: u16, batch: &mut RecvBatch) -> usize {
    let mut total = 0;
    loop {
        let got = batch.recv(fd).unwrap_or_else(|_| {
            worker.count(Counter::SocketErrors);
            0
        });
        if got == 0 {
            return total;
        }
        let now = crate::capture::now_unix_ns();
        for i in 0..got {
            if let Some((exporter, payload)) = batch.get(i) {
                worker.handle(&ExportPacket {
                    exporter,
                    dst_port,
                    ifindex: 0,
                    received_ns: now,
                    source: Source::Socket,
                    payload,
                });
            }
        }
        total += got;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_checks_each_protocols_length_rule() {
        let mut v5 = vec![0u8; 24 + 48 * 2];
        v5[1] = 5;
        v5[3] = 2;
        assert_eq!(classify(&v5), Ok(Version::V5));
        assert_eq!(classify(&v5[..70]), Err(Counter::InvalidV5Length));
        let mut v9 = vec![0u8; 20];
        v9[1] = 9;
        assert_eq!(classify(&v9), Ok(Version::V9));
        assert_eq!(classify(&v9[..19]), Err(Counter::InvalidV9Short));
        let mut ipfix = vec![0u8; 16];
        ipfix[1] = 10;
        ipfix[3] = 16;
        assert_eq!(classify(&ipfix), Ok(Version::Ipfix));
        ipfix[3] = 17;
        assert_eq!(classify(&ipfix), Err(Counter::InvalidIpfixLength));
        assert_eq!(classify(&[0, 0, 0, 5, 0, 0, 0, 1]), Ok(Version::Sflow));
        assert_eq!(classify(&[7]), Err(Counter::InvalidRunt));
        assert_eq!(classify(&[0, 7, 0, 0]), Err(Counter::InvalidVersion));
    }
}
