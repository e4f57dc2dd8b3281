//! From pending records to export packets: 1:N packet sampling, exporter fields, batching
//! into packets in export-time order, and encoding.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::decode::Direction;
use crate::decode::encode::{Encoder, EncoderConfig};

use super::config::{ScenarioConfig, ScenarioFormat};
use super::flow::Pending;
use super::rng::Rng;
use super::{Batch, Label};

/// The collector every packet is addressed to.
pub const COLLECTOR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Exporter addresses: the edge router, and the core switch (when there are two).
pub const EXPORTERS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)];
/// The exporters' UDP source ports.
pub const EXPORTER_PORTS: [u16; 2] = [50_002, 50_003];
/// The exporters' observation domain (v9 source id) ids.
pub const DOMAINS: [u32; 2] = [1, 2];
/// Record bytes a packet carries at most (a 1500-byte MTU, less headers and templates).
const PACKET_RECORD_BYTES: usize = 1400;

/// Thins every record's packets Binomial(packets, 1/n); records with no sampled packet
/// are dropped, bytes are scaled in proportion, and `sampling_interval` becomes `n`.
pub fn sample(pending: &mut Vec<Pending>, n: u32, seed: u64) {
    if n <= 1 {
        return;
    }
    let mut rng = Rng::fork(seed, "sampling");
    let p = 1.0 / f64::from(n);
    pending.retain_mut(|pe| {
        let r = &mut pe.rec;
        let k = rng.binomial(r.raw_packets, p);
        if k == 0 {
            return false;
        }
        // k ≤ packets, so the share fits a u64.
        let bytes =
            u64::try_from(u128::from(r.raw_bytes) * u128::from(k) / u128::from(r.raw_packets))
                .unwrap_or(u64::MAX);
        r.set_counts(bytes.max(k * 28), k, n);
        true
    });
}

/// Bytes one record takes in a data set of `format`.
fn record_len(format: ScenarioFormat, v6: bool) -> usize {
    match (format, v6) {
        (ScenarioFormat::V5, _) => 48,
        (ScenarioFormat::V9, false) => 51,
        (ScenarioFormat::V9, true) => 75,
        (ScenarioFormat::Ipfix, false) => 61,
        (ScenarioFormat::Ipfix, true) => 85,
    }
}

/// Fills in the fields the decoder will report for the exporter and format, so that the
/// generated records equal the decoded ones.
fn finish_record(pe: &mut Pending, format: ScenarioFormat) {
    let r = &mut pe.rec;
    r.exporter = IpAddr::V4(EXPORTERS[pe.exporter]);
    r.observation_domain_id = DOMAINS[pe.exporter];
    r.version = format.version();
    r.template_id = match format {
        ScenarioFormat::V5 => 0,
        _ if r.src_addr.is_ipv6() => 257,
        _ => 256,
    };
    if format == ScenarioFormat::V5 {
        r.direction = Direction::Unknown;
        r.input_interface = r.input_interface.min(0xffff);
        r.output_interface = r.output_interface.min(0xffff);
    }
}

/// Orders records per exporter by the time they become ready, cuts them into packets (full
/// at 20..=max records or ~1400 bytes, or flushed `export_flush_ms` after the first
/// record waited), and interleaves the exporters' packets by export time.
#[must_use]
pub fn batch(
    mut pending: Vec<Pending>,
    cfg: &ScenarioConfig,
) -> (Vec<crate::decode::FlowRecord>, Vec<Label>, Vec<Batch>) {
    for pe in &mut pending {
        finish_record(pe, cfg.format);
    }
    pending.sort_by_key(|pe| (pe.exporter, pe.ready_ms));
    let mut rng = Rng::fork(cfg.seed, "batching");
    let max = if cfg.format == ScenarioFormat::V5 {
        30
    } else {
        cfg.max_records_per_packet
    };
    // (export_ms, exporter, records)
    let mut packets: Vec<Packet> = Vec::new();
    let mut cur: Vec<Pending> = Vec::new();
    let mut cur_bytes = 0usize;
    let mut target = 0usize;
    for pe in pending {
        if let Some(first) = cur.first()
            && (first.exporter != pe.exporter || pe.ready_ms > first.ready_ms + cfg.export_flush_ms)
        {
            // The flush timer fires `export_flush_ms` after the first record waited.
            let at = first.ready_ms + cfg.export_flush_ms;
            flush(&mut cur, at, &mut packets);
        }
        if cur.is_empty() {
            cur_bytes = 0;
            #[expect(clippy::cast_possible_truncation, reason = "max ≤ 200")]
            {
                target = rng.range(20, max as u64) as usize;
            }
        }
        cur_bytes += record_len(cfg.format, pe.rec.src_addr.is_ipv6());
        let ready = pe.ready_ms;
        cur.push(pe);
        if cur.len() >= target || cur_bytes + 85 > PACKET_RECORD_BYTES {
            flush(&mut cur, ready, &mut packets);
        }
    }
    if let Some(last) = cur.last().map(|l| l.ready_ms) {
        flush(&mut cur, last, &mut packets);
    }
    packets.sort_by_key(|p| (p.0, p.1));
    // The encoder writes a packet's IPv4 set before its IPv6 set; keep that order so the
    // records read back in exactly this order.
    for p in &mut packets {
        p.2.sort_by_key(|pe| pe.rec.src_addr.is_ipv6());
    }
    let mut records = Vec::new();
    let mut labels = Vec::new();
    let mut batches = Vec::with_capacity(packets.len());
    for (at, exporter, recs) in packets {
        let first = records.len();
        for pe in recs {
            records.push(pe.rec);
            labels.push(pe.label);
        }
        batches.push(Batch {
            exporter,
            export_ms: at,
            records: first..records.len(),
        });
    }
    (records, labels, batches)
}

type Packet = (u64, usize, Vec<Pending>);

/// Sends what `cur` holds as one packet at `at`.
fn flush(cur: &mut Vec<Pending>, at: u64, out: &mut Vec<Packet>) {
    if let Some(first) = cur.first() {
        let exporter = first.exporter;
        out.push((at, exporter, std::mem::take(cur)));
    }
}

/// One export datagram.
#[derive(Clone, Debug)]
pub struct Datagram {
    /// Capture time (ns since the Unix epoch).
    pub ts_ns: u64,
    /// Exporter address and port.
    pub src: SocketAddr,
    /// Collector address and port.
    pub dst: SocketAddr,
    /// The NetFlow/IPFIX message.
    pub payload: Vec<u8>,
}

/// Encodes the batches, one datagram per batch, through one encoder per exporter.
#[must_use]
pub fn encode(
    cfg: &ScenarioConfig,
    records: &[crate::decode::FlowRecord],
    batches: &[Batch],
) -> Vec<Datagram> {
    let mut encoders: Vec<Encoder> = (0..2)
        .map(|i| {
            let mut c = EncoderConfig::new(cfg.format.encoder_format());
            c.records_per_packet = 1000;
            c.observation_domain_id = DOMAINS[i];
            // Booted three days before the scenario (sysUpTime stays far from wrapping).
            c.boot_unix_ms = Some(cfg.start_ms().saturating_sub(3 * 86_400_000 + 12_345));
            c.template_refresh_packets = 20;
            Encoder::new(c)
        })
        .collect();
    let dst = SocketAddr::new(IpAddr::V4(COLLECTOR), cfg.format.collector_port());
    let mut out = Vec::with_capacity(batches.len());
    let mut buf = Vec::new();
    for b in batches {
        buf.clear();
        encoders[b.exporter].encode(&records[b.records.clone()], b.export_ms, &mut buf);
        let src = SocketAddr::new(
            IpAddr::V4(EXPORTERS[b.exporter]),
            EXPORTER_PORTS[b.exporter],
        );
        for (i, payload) in buf.drain(..).enumerate() {
            out.push(Datagram {
                ts_ns: b.export_ms * 1_000_000 + 150_000 + i as u64 * 1000,
                src,
                dst,
                payload,
            });
        }
    }
    out
}
