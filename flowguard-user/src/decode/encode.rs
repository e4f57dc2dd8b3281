//! Encoding [`FlowRecord`]s as NetFlow v5, NetFlow v9 and IPFIX export packets.
//!
//! Replay, scenarios and tests need export traffic whose content is known exactly. The
//! [`Encoder`] turns records into datagrams the way a plain exporter would:
//!
//! - v5: 24-byte header and 48-byte records (IPv4 only; IPv6 records are skipped and
//!   counted). One packet carries one sampling interval in its header, so a change of
//!   interval starts a new packet.
//! - v9 (RFC 3954) and IPFIX (RFC 7011): one data template for IPv4 and one for IPv6,
//!   plus an options template announcing samplers. v9 uses `FLOW_SAMPLER_ID` (48) with
//!   `FLOW_SAMPLER_RANDOM_INTERVAL` (50); IPFIX uses `selectorId` (302) as scope with the
//!   RFC 5477 pair `samplingPacketInterval` = 1 / `samplingPacketSpace` = N − 1. Data
//!   records name their sampler; unsampled records name sampler 0, which is never
//!   announced, so the decoder applies interval 1.
//!
//! Templates (and the options template) go in the first packet and then every
//! `template_refresh_packets` packets; options data goes in every packet that has sampled
//! records, ahead of the data, so a decoder that starts listening mid-stream learns the
//! rate before the data that needs it. Sets are padded to 4 bytes (RFC 3954 §5.3).
//!
//! [`MessageBuilder`] is the low-level writer underneath, public so that tests can build
//! unusual packets (variable-length fields, enterprise elements, hostile lengths).

use std::collections::HashMap;
use std::net::IpAddr;

use super::ie::unix_ms_to_ntp;
use super::record::FlowRecord;
use super::wire::set::{self, FieldSpec};
use super::wire::{ipfix, v5, v9};

/// Export format to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// NetFlow v5.
    V5,
    /// NetFlow v9.
    V9,
    /// IPFIX.
    Ipfix,
}

/// Encoder settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Format to produce.
    pub format: Format,
    /// Flow records per packet (v5 caps it at 30).
    pub records_per_packet: usize,
    /// v9 source id / IPFIX observation domain id. For v5, the low 16 bits give
    /// `engine_type << 8 | engine_id`.
    pub observation_domain_id: u32,
    /// Exporter boot time, Unix ms, for sysUpTime-relative times (v5, v9). `None`: one
    /// day before the first export time.
    pub boot_unix_ms: Option<u64>,
    /// Resend templates every this many packets (0: only in the first packet).
    pub template_refresh_packets: u64,
    /// Template id for IPv4 records.
    pub template_id_v4: u16,
    /// Template id for IPv6 records.
    pub template_id_v6: u16,
    /// Options template id for the sampler table.
    pub options_template_id: u16,
}

impl EncoderConfig {
    /// Defaults for `format`: 30 records per v5 packet, 24 for v9 and IPFIX (what
    /// common exporters fit in a 1500-byte MTU), templates 256/257/258 refreshed every
    /// 20 packets.
    #[must_use]
    pub fn new(format: Format) -> Self {
        Self {
            format,
            records_per_packet: if format == Format::V5 { 30 } else { 24 },
            observation_domain_id: 0,
            boot_unix_ms: None,
            template_refresh_packets: 20,
            template_id_v4: 256,
            template_id_v6: 257,
            options_template_id: 258,
        }
    }
}

/// What one call of [`Encoder::encode`] produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeSummary {
    /// Packets appended.
    pub packets: usize,
    /// Records encoded.
    pub records: usize,
    /// Records the format cannot carry (IPv6 in v5).
    pub skipped: usize,
}

const fn f(id: u16, length: u16) -> FieldSpec {
    FieldSpec {
        id,
        length,
        enterprise: 0,
    }
}

/// Fields of the data templates after the addresses. 22/21 (sysUpTime) for v9,
/// 152/153 (milliseconds) for IPFIX are put in by [`data_fields`].
const COMMON: [FieldSpec; 9] = [
    f(7, 2),
    f(11, 2),
    f(4, 1),
    f(6, 1),
    f(1, 8),
    f(2, 8),
    f(10, 4),
    f(14, 4),
    f(61, 1),
];

fn data_fields(format: Format, v6: bool) -> Vec<FieldSpec> {
    let mut v = if v6 {
        vec![f(27, 16), f(28, 16)]
    } else {
        vec![f(8, 4), f(12, 4)]
    };
    v.extend_from_slice(&COMMON);
    if format == Format::Ipfix {
        v.extend_from_slice(&[f(152, 8), f(153, 8)]);
        v.push(f(if v6 { 139 } else { 32 }, 2));
        v.push(f(302, 4));
    } else {
        v.extend_from_slice(&[f(22, 4), f(21, 4)]);
        v.push(f(if v6 { 139 } else { 32 }, 2));
        v.push(f(48, 2));
    }
    v
}

/// Time reference of one packet.
#[derive(Clone, Copy)]
struct Clock {
    boot_ms: u64,
}

impl Clock {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "sysUpTime is a wrapping 32-bit counter (RFC 3954 §5.1)"
    )]
    fn uptime(self, unix_ms: u64) -> u32 {
        unix_ms.wrapping_sub(self.boot_ms) as u32
    }
}

/// Produces export packets from records. See the module docs.
#[derive(Debug)]
pub struct Encoder {
    config: EncoderConfig,
    packets: u64,
    /// v5: flows sent; v9: packets sent; IPFIX: data records sent (RFC 7011 §3.1).
    sequence: u32,
    boot_ms: Option<u64>,
    samplers: HashMap<u32, u32>,
}

impl Encoder {
    /// An encoder with `config`.
    #[must_use]
    pub fn new(config: EncoderConfig) -> Self {
        Self {
            boot_ms: config.boot_unix_ms,
            config,
            packets: 0,
            sequence: 0,
            samplers: HashMap::new(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Encodes `records` into packets appended to `out`, all with export time
    /// `export_unix_ms`. Records must not start more than 24 days before the export time
    /// in v5/v9 (sysUpTime differences are 32-bit).
    pub fn encode(
        &mut self,
        records: &[FlowRecord],
        export_unix_ms: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> EncodeSummary {
        let boot_ms = *self
            .boot_ms
            .get_or_insert(export_unix_ms.saturating_sub(86_400_000));
        let clock = Clock { boot_ms };
        let mut summary = EncodeSummary::default();
        let per_packet = match self.config.format {
            Format::V5 => self
                .config
                .records_per_packet
                .clamp(1, usize::from(v5::MAX_RECORDS)),
            _ => self.config.records_per_packet.max(1),
        };
        let mut batch: Vec<FlowRecord> = Vec::with_capacity(per_packet);
        for r in records {
            if self.config.format == Format::V5 {
                if !r.src_addr.is_ipv4() || !r.dst_addr.is_ipv4() {
                    summary.skipped += 1;
                    continue;
                }
                // One v5 header holds one sampling interval.
                if batch
                    .first()
                    .is_some_and(|b| b.sampling_interval != r.sampling_interval)
                {
                    self.flush(&batch, export_unix_ms, clock, out, &mut summary);
                    batch.clear();
                }
            }
            batch.push(*r);
            if batch.len() == per_packet {
                self.flush(&batch, export_unix_ms, clock, out, &mut summary);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.flush(&batch, export_unix_ms, clock, out, &mut summary);
        }
        summary
    }

    fn flush(
        &mut self,
        batch: &[FlowRecord],
        export_ms: u64,
        clock: Clock,
        out: &mut Vec<Vec<u8>>,
        summary: &mut EncodeSummary,
    ) {
        let packet = match self.config.format {
            Format::V5 => self.v5_packet(batch, export_ms, clock),
            Format::V9 | Format::Ipfix => self.template_packet(batch, export_ms, clock),
        };
        out.push(packet);
        self.packets += 1;
        summary.packets += 1;
        summary.records += batch.len();
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "v5 fields are 16/32-bit by definition; values are clamped first"
    )]
    fn v5_packet(&mut self, batch: &[FlowRecord], export_ms: u64, clock: Clock) -> Vec<u8> {
        let mut b = Vec::with_capacity(v5::HEADER_LEN + batch.len() * v5::RECORD_LEN);
        let interval = batch.first().map_or(1, |r| r.sampling_interval).min(0x3fff);
        // Top 2 bits: mode 1 (deterministic) when sampled, 0 otherwise.
        let sampling = if interval > 1 {
            0x4000 | interval as u16
        } else {
            0
        };
        let domain = self.config.observation_domain_id;
        b.extend_from_slice(&5u16.to_be_bytes());
        b.extend_from_slice(&(batch.len() as u16).to_be_bytes());
        b.extend_from_slice(&clock.uptime(export_ms).to_be_bytes());
        b.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
        b.extend_from_slice(&(((export_ms % 1000) * 1_000_000) as u32).to_be_bytes());
        b.extend_from_slice(&self.sequence.to_be_bytes());
        b.push((domain >> 8) as u8);
        b.push(domain as u8);
        b.extend_from_slice(&sampling.to_be_bytes());
        for r in batch {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (r.src_addr, r.dst_addr) else {
                continue;
            };
            b.extend_from_slice(&src.octets());
            b.extend_from_slice(&dst.octets());
            b.extend_from_slice(&[0; 4]); // nexthop
            b.extend_from_slice(&(r.input_interface.min(0xffff) as u16).to_be_bytes());
            b.extend_from_slice(&(r.output_interface.min(0xffff) as u16).to_be_bytes());
            b.extend_from_slice(&(r.raw_packets.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            b.extend_from_slice(&(r.raw_bytes.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            b.extend_from_slice(&clock.uptime(r.start_ms).to_be_bytes());
            b.extend_from_slice(&clock.uptime(r.end_ms).to_be_bytes());
            b.extend_from_slice(&r.src_port.to_be_bytes());
            b.extend_from_slice(&r.dst_port.to_be_bytes());
            b.extend_from_slice(&[0, r.tcp_flags, r.protocol, 0]); // pad1, flags, prot, tos
            b.extend_from_slice(&[0; 8]); // src_as, dst_as, masks, pad2
        }
        self.sequence = self.sequence.wrapping_add(batch.len() as u32);
        b
    }

    fn sampler_id(&mut self, interval: u32) -> u32 {
        if interval <= 1 {
            return 0;
        }
        let next = u32::try_from(self.samplers.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        *self.samplers.entry(interval).or_insert(next)
    }

    /// Writes the data templates and the sampler options template.
    fn write_templates(&self, m: &mut MessageBuilder) {
        let cfg = &self.config;
        let ipfix = cfg.format == Format::Ipfix;
        m.begin_set(if ipfix {
            set::IPFIX_TEMPLATE
        } else {
            set::V9_TEMPLATE
        });
        m.template(cfg.template_id_v4, &data_fields(cfg.format, false));
        m.template(cfg.template_id_v6, &data_fields(cfg.format, true));
        m.end_set();
        m.begin_set(if ipfix {
            set::IPFIX_OPTIONS_TEMPLATE
        } else {
            set::V9_OPTIONS_TEMPLATE
        });
        if ipfix {
            m.options_template(
                cfg.options_template_id,
                &[f(302, 4)],
                &[f(304, 2), f(305, 4), f(306, 4)],
            );
        } else {
            m.options_template(
                cfg.options_template_id,
                &[f(1, 4)],
                &[f(48, 2), f(49, 1), f(50, 4)],
            );
        }
        m.end_set();
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "header fields are 32-bit by definition"
    )]
    fn template_packet(&mut self, batch: &[FlowRecord], export_ms: u64, clock: Clock) -> Vec<u8> {
        let ipfix = self.config.format == Format::Ipfix;
        let cfg = &self.config;
        let export_secs = (export_ms / 1000) as u32;
        let mut m = if ipfix {
            MessageBuilder::ipfix(export_secs, self.sequence, cfg.observation_domain_id)
        } else {
            // v9 export time is whole seconds, so sysUpTime is taken at that second: the
            // decoder's unix_secs·1000 − sysUpTime then lands exactly on the boot time.
            MessageBuilder::v9(
                clock.uptime(u64::from(export_secs) * 1000),
                export_secs,
                self.sequence,
                cfg.observation_domain_id,
            )
        };
        let refresh = self.packets == 0
            || (self.config.template_refresh_packets > 0
                && self
                    .packets
                    .is_multiple_of(self.config.template_refresh_packets));
        let (t4, t6, topt) = (
            cfg.template_id_v4,
            cfg.template_id_v6,
            cfg.options_template_id,
        );
        let format = cfg.format;
        if refresh {
            self.write_templates(&mut m);
        }
        // Sampler table for the intervals of this packet.
        let mut intervals: Vec<u32> = batch
            .iter()
            .map(|r| r.sampling_interval)
            .filter(|&i| i > 1)
            .collect();
        intervals.sort_unstable();
        intervals.dedup();
        let mut data_records = 0u32;
        if !intervals.is_empty() {
            m.begin_set(topt);
            for &n in &intervals {
                let id = self.sampler_id(n);
                if ipfix {
                    m.record(
                        &[
                            &id.to_be_bytes()[..],
                            &1u16.to_be_bytes(),
                            &1u32.to_be_bytes(),
                            &(n - 1).to_be_bytes(),
                        ]
                        .concat(),
                    );
                } else {
                    let sys = 0u32.to_be_bytes();
                    m.record(
                        &[&sys[..], &(id as u16).to_be_bytes(), &[2], &n.to_be_bytes()].concat(),
                    );
                }
                data_records += 1;
            }
            m.end_set();
        }
        for (v6, tid) in [(false, t4), (true, t6)] {
            let fields = data_fields(format, v6);
            let mut open = false;
            for r in batch.iter().filter(|r| r.src_addr.is_ipv6() == v6) {
                if !open {
                    m.begin_set(tid);
                    open = true;
                }
                let sampler = self.sampler_id(r.sampling_interval);
                let mut rec = Vec::with_capacity(64);
                for spec in &fields {
                    put_field(&mut rec, spec.id, r, clock, sampler);
                }
                m.record(&rec);
                data_records += 1;
            }
            if open {
                m.end_set();
            }
        }
        self.sequence = if ipfix {
            self.sequence.wrapping_add(data_records)
        } else {
            self.sequence.wrapping_add(1)
        };
        m.finish()
    }
}

/// Writes one field of `r` for element `id`, in the length the encoder's templates use.
#[expect(
    clippy::cast_possible_truncation,
    reason = "sampler ids and interfaces fit their template lengths"
)]
fn put_field(b: &mut Vec<u8>, id: u16, r: &FlowRecord, clock: Clock, sampler: u32) {
    let addr = |b: &mut Vec<u8>, a: IpAddr| match a {
        IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
    };
    match id {
        8 | 27 => addr(b, r.src_addr),
        12 | 28 => addr(b, r.dst_addr),
        7 => b.extend_from_slice(&r.src_port.to_be_bytes()),
        11 => b.extend_from_slice(&r.dst_port.to_be_bytes()),
        4 => b.push(r.protocol),
        6 => b.push(r.tcp_flags),
        1 => b.extend_from_slice(&r.raw_bytes.to_be_bytes()),
        2 => b.extend_from_slice(&r.raw_packets.to_be_bytes()),
        10 => b.extend_from_slice(&r.input_interface.to_be_bytes()),
        14 => b.extend_from_slice(&r.output_interface.to_be_bytes()),
        61 => b.push(r.direction.to_wire().unwrap_or(0xff)),
        22 => b.extend_from_slice(&clock.uptime(r.start_ms).to_be_bytes()),
        21 => b.extend_from_slice(&clock.uptime(r.end_ms).to_be_bytes()),
        152 => b.extend_from_slice(&r.start_ms.to_be_bytes()),
        153 => b.extend_from_slice(&r.end_ms.to_be_bytes()),
        154 | 156 => b.extend_from_slice(&unix_ms_to_ntp(r.start_ms).to_be_bytes()),
        155 | 157 => b.extend_from_slice(&unix_ms_to_ntp(r.end_ms).to_be_bytes()),
        32 | 139 => b.extend_from_slice(&r.icmp_type_code.to_be_bytes()),
        48 => b.extend_from_slice(&(sampler as u16).to_be_bytes()),
        302 => b.extend_from_slice(&sampler.to_be_bytes()),
        _ => {}
    }
}

/// Low-level writer of v9 and IPFIX messages: header, sets, template records and raw
/// data records, with lengths and counts patched in by [`MessageBuilder::end_set`] and
/// [`MessageBuilder::finish`].
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    ipfix: bool,
    set_start: Option<usize>,
    records: u16,
}

impl MessageBuilder {
    /// A v9 packet (RFC 3954 §5.1 header).
    #[must_use]
    pub fn v9(sys_uptime: u32, unix_secs: u32, sequence: u32, source_id: u32) -> Self {
        let mut buf = Vec::with_capacity(1500);
        buf.extend_from_slice(&9u16.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        for v in [sys_uptime, unix_secs, sequence, source_id] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        debug_assert_eq!(buf.len(), v9::HEADER_LEN);
        Self {
            buf,
            ipfix: false,
            set_start: None,
            records: 0,
        }
    }

    /// An IPFIX message (RFC 7011 §3.1 header).
    #[must_use]
    pub fn ipfix(export_time: u32, sequence: u32, observation_domain_id: u32) -> Self {
        let mut buf = Vec::with_capacity(1500);
        buf.extend_from_slice(&10u16.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        for v in [export_time, sequence, observation_domain_id] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        debug_assert_eq!(buf.len(), ipfix::HEADER_LEN);
        Self {
            buf,
            ipfix: true,
            set_start: None,
            records: 0,
        }
    }

    /// Opens a set (closing any open one).
    pub fn begin_set(&mut self, set_id: u16) {
        self.end_set();
        self.set_start = Some(self.buf.len());
        self.buf.extend_from_slice(&set_id.to_be_bytes());
        self.buf.extend_from_slice(&0u16.to_be_bytes());
    }

    /// Closes the open set: pads it with zeros to a multiple of 4 bytes and writes its
    /// length.
    pub fn end_set(&mut self) {
        let Some(start) = self.set_start.take() else {
            return;
        };
        while !(self.buf.len() - start).is_multiple_of(4) {
            self.buf.push(0);
        }
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        if let Some(slot) = self.buf.get_mut(start + 2..start + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }

    fn put_spec(&mut self, s: FieldSpec) {
        if self.ipfix && s.enterprise != 0 {
            self.buf.extend_from_slice(&(s.id | 0x8000).to_be_bytes());
            self.buf.extend_from_slice(&s.length.to_be_bytes());
            self.buf.extend_from_slice(&s.enterprise.to_be_bytes());
        } else {
            self.buf.extend_from_slice(&s.id.to_be_bytes());
            self.buf.extend_from_slice(&s.length.to_be_bytes());
        }
    }

    /// Writes a template record into the open template set. The field count is written
    /// as `fields.len()`; an empty list is an IPFIX withdrawal (RFC 7011 §8.1).
    pub fn template(&mut self, template_id: u16, fields: &[FieldSpec]) {
        self.buf.extend_from_slice(&template_id.to_be_bytes());
        self.buf.extend_from_slice(
            &u16::try_from(fields.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for s in fields {
            self.put_spec(*s);
        }
        self.records += 1;
    }

    /// Writes an options template record into the open options template set, in the v9
    /// (byte lengths, RFC 3954 §6.1) or IPFIX (field counts, RFC 7011 §3.4.2.2) layout.
    pub fn options_template(
        &mut self,
        template_id: u16,
        scope: &[FieldSpec],
        options: &[FieldSpec],
    ) {
        self.buf.extend_from_slice(&template_id.to_be_bytes());
        let n = |k: usize| u16::try_from(k).unwrap_or(u16::MAX);
        if self.ipfix {
            self.buf
                .extend_from_slice(&n(scope.len() + options.len()).to_be_bytes());
            self.buf.extend_from_slice(&n(scope.len()).to_be_bytes());
        } else {
            self.buf
                .extend_from_slice(&n(scope.len() * 4).to_be_bytes());
            self.buf
                .extend_from_slice(&n(options.len() * 4).to_be_bytes());
        }
        for s in scope.iter().chain(options) {
            self.put_spec(*s);
        }
        self.records += 1;
    }

    /// Appends one encoded data record to the open set.
    pub fn record(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.records += 1;
    }

    /// Appends raw bytes (anything: hostile tests use it for broken sets).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Closes the open set and patches the v9 record count or the IPFIX length.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        self.end_set();
        let word = if self.ipfix {
            u16::try_from(self.buf.len()).unwrap_or(u16::MAX)
        } else {
            self.records
        };
        if let Some(slot) = self.buf.get_mut(2..4) {
            slot.copy_from_slice(&word.to_be_bytes());
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::record::Direction;
    use crate::decode::{Decoder, DecoderConfig};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const EXPORT_MS: u64 = 1_700_000_000_000;

    fn arb_record(v6_ok: bool) -> impl Strategy<Value = FlowRecord> {
        let addr = move || {
            prop_oneof![
                any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            ]
            .prop_filter("v4 only", move |a| v6_ok || a.is_ipv4())
        };
        let intervals = prop_oneof![Just(1u32), Just(10), Just(100), 2u32..5000];
        (
            addr(),
            any::<[u8; 16]>(),
            any::<(u16, u16, u8, u8, u16)>(),
            any::<(u32, u32)>(),
            intervals,
            0u64..20 * 86_400_000,
            0u64..3_600_000,
            any::<(u16, u16)>(),
            0u8..3,
        )
            .prop_map(
                move |(
                    src,
                    dst,
                    (sp, dp, proto, flags, icmp),
                    (b, p),
                    interval,
                    age,
                    dur,
                    (i, o),
                    dir,
                )| {
                    let dst = match src {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3])),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(dst)),
                    };
                    let mut r = FlowRecord {
                        src_addr: src,
                        dst_addr: dst,
                        src_port: sp,
                        dst_port: dp,
                        protocol: proto,
                        tcp_flags: flags,
                        icmp_type_code: icmp,
                        direction: [Direction::Ingress, Direction::Egress, Direction::Unknown]
                            [usize::from(dir)],
                        start_ms: EXPORT_MS - age - dur,
                        end_ms: EXPORT_MS - age,
                        input_interface: u32::from(i),
                        output_interface: u32::from(o),
                        ..FlowRecord::default()
                    };
                    r.set_counts(u64::from(b), u64::from(p), interval);
                    r
                },
            )
    }

    /// What `format` carries of `r`, with the fields the decoder sets from context.
    fn expected(
        format: Format,
        r: &FlowRecord,
        exporter: IpAddr,
        domain: u32,
        template_id: u16,
    ) -> FlowRecord {
        let mut e = *r;
        e.exporter = exporter;
        e.observation_domain_id = domain;
        match format {
            Format::V5 => {
                e.version = 5;
                e.template_id = 0;
                e.direction = Direction::Unknown;
                e.icmp_type_code = if matches!(r.protocol, 1 | 58) {
                    r.dst_port
                } else {
                    0
                };
                e.input_interface &= 0xffff;
                e.output_interface &= 0xffff;
                let interval = r.sampling_interval.min(0x3fff);
                e.set_counts(r.raw_bytes, r.raw_packets, interval);
                e.observation_domain_id = domain & 0xffff;
            }
            Format::V9 => {
                e.version = 9;
                e.template_id = template_id;
            }
            Format::Ipfix => {
                e.version = 10;
                e.template_id = template_id;
            }
        }
        e
    }

    fn round_trip(format: Format, records: &[FlowRecord], per_packet: usize, refresh: u64) {
        let exporter = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut cfg = EncoderConfig::new(format);
        cfg.records_per_packet = per_packet;
        cfg.template_refresh_packets = refresh;
        cfg.observation_domain_id = 0x0102;
        let mut enc = Encoder::new(cfg.clone());
        let mut packets = Vec::new();
        let summary = enc.encode(records, EXPORT_MS, &mut packets);
        let mut dec = Decoder::new(DecoderConfig::default());
        let mut got = Vec::new();
        for p in &packets {
            dec.decode_into(exporter, EXPORT_MS, p, &mut got).unwrap();
        }
        let mut want: Vec<FlowRecord> = records
            .iter()
            .filter(|r| format != Format::V5 || r.src_addr.is_ipv4())
            .map(|r| {
                let tid = if r.src_addr.is_ipv6() {
                    cfg.template_id_v6
                } else {
                    cfg.template_id_v4
                };
                expected(format, r, exporter, cfg.observation_domain_id, tid)
            })
            .collect();
        assert_eq!(summary.records, want.len());
        // v9/IPFIX put v4 and v6 in separate sets of a packet, so compare as multisets.
        let key = |r: &FlowRecord| format!("{r:?}");
        want.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(got, want);
        assert_eq!(dec.counters().errors(), 0, "{:?}", dec.counters());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn v5_round_trip(records in proptest::collection::vec(arb_record(false), 0..80), per in 1usize..31) {
            round_trip(Format::V5, &records, per, 0);
        }

        #[test]
        fn v9_round_trip(records in proptest::collection::vec(arb_record(true), 0..80), per in 1usize..40, refresh in 0u64..4) {
            round_trip(Format::V9, &records, per, refresh);
        }

        #[test]
        fn ipfix_round_trip(records in proptest::collection::vec(arb_record(true), 0..80), per in 1usize..40, refresh in 0u64..4) {
            round_trip(Format::Ipfix, &records, per, refresh);
        }
    }

    #[test]
    fn v5_skips_ipv6_and_splits_on_sampling() {
        let mut a = FlowRecord {
            src_addr: Ipv4Addr::new(10, 0, 0, 1).into(),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2).into(),
            ..FlowRecord::default()
        };
        a.start_ms = EXPORT_MS;
        a.end_ms = EXPORT_MS;
        let mut b = a;
        b.sampling_interval = 10;
        let c = FlowRecord {
            src_addr: Ipv6Addr::LOCALHOST.into(),
            dst_addr: Ipv6Addr::LOCALHOST.into(),
            ..a
        };
        let mut enc = Encoder::new(EncoderConfig::new(Format::V5));
        let mut out = Vec::new();
        let s = enc.encode(&[a, b, c, a], EXPORT_MS, &mut out);
        assert_eq!(
            s,
            EncodeSummary {
                packets: 3,
                records: 3,
                skipped: 1
            }
        );
    }
}
