//! Record layouts: every [`FlowRecord`] field resolved to one place in the record, once
//! per template.
//!
//! The general path ([`RawRecord::apply`](super::ie::RawRecord::apply), then
//! `fill_record` and `resolve_times`) answers the same questions for every record: which
//! of several byte counters wins, which time element is preferred, whether ICMP comes as
//! type/code or split, whether the record states its own sampling rate. For a
//! fixed-length data template every one of those answers depends only on *which* fields
//! the template has, never on their values, so [`Layout::new`] settles them when the
//! template arrives. Decoding a record is then one load per `FlowRecord` field at a fixed
//! offset, straight into the record (DESIGN.md, "Hot path").
//!
//! Templates whose outcome does depend on values keep the general path (`Layout::new`
//! returns `None`): options templates (they update sampling state), variable-length
//! fields (offsets move per record), `dataLinkFrameSection` (315, a frame parsed per
//! record), and more than one address element for the source or the destination (an
//! unspecified address never replaces a real one, so which wins depends on the bytes).
//!
//! The layout must give exactly what the general path gives; `tests` checks that on
//! random templates and records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ie::{Ie, ntp_to_unix_ms, sampling_factor};
use super::record::{Direction, FlowRecord};
use super::template::CompiledField;

/// Where one value sits in a record, as an 8-byte big-endian window, a right shift and
/// a mask: `(window >> shift) & mask`.
///
/// The window ends at the value's last byte, or is the record's first 8 bytes for a
/// value that ends before byte 8 (layouts are only made for records of at least 8 bytes,
/// so either window is inside the record). Every width of the RFC 7011 §6.2 reduced-size
/// encoding then loads without a branch on the width, and a value longer than 8 bytes
/// keeps its low 8 bytes, as [`be_uint`](super::wire::be_uint) does. An absent value has
/// mask 0 and reads as 0, also without a branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    window: u16,
    shift: u8,
    mask: u64,
}

impl Slot {
    const ABSENT: Self = Self {
        window: 0,
        shift: 0,
        mask: 0,
    };

    /// The slot of a field of `len` bytes at `offset` (`len` > 0).
    fn new(offset: u16, len: u16) -> Self {
        let end = offset + len;
        let window = end.saturating_sub(8);
        let width = len.min(8);
        Self {
            window,
            // Bytes of the window after the value; only non-zero for a window at byte 0.
            #[expect(clippy::cast_possible_truncation, reason = "at most 8 * 7")]
            shift: ((window + 8 - end) * 8) as u8,
            mask: u64::MAX >> (64 - 8 * u32::from(width)),
        }
    }

    fn is_present(self) -> bool {
        self.mask != 0
    }

    /// The value as an unsigned integer, 0 when absent. The window lies inside the
    /// record length the caller checked, so the range check never fails; it stays
    /// because it costs one predictable branch and keeps this safe.
    #[inline]
    fn load(self, rec: &[u8]) -> u64 {
        let at = usize::from(self.window);
        let window = rec
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        (window >> self.shift) & self.mask
    }

    #[inline]
    fn get(self, rec: &[u8]) -> Option<u64> {
        self.is_present().then(|| self.load(rec))
    }
}

/// The one address element of a direction. Elements of any length but 4 or 16 are
/// never read as addresses (`RawRecord::apply` ignores them), so they are left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrSlot {
    Absent,
    V4(Slot),
    /// The two halves of the address.
    V6(Slot, Slot),
}

impl AddrSlot {
    fn from_field(offset: u16, len: u16) -> Self {
        match len {
            4 => Self::V4(Slot::new(offset, 4)),
            16 => Self::V6(Slot::new(offset, 8), Slot::new(offset + 8, 8)),
            _ => Self::Absent,
        }
    }

    #[inline]
    #[expect(clippy::cast_possible_truncation, reason = "a 4-byte slot")]
    fn load(self, rec: &[u8]) -> IpAddr {
        match self {
            Self::V4(s) => IpAddr::V4(Ipv4Addr::from(s.load(rec) as u32)),
            Self::V6(hi, lo) => IpAddr::V6(Ipv6Addr::from(
                u128::from(hi.load(rec)) << 64 | u128::from(lo.load(rec)),
            )),
            // `fill_record` uses 0.0.0.0 for a missing address.
            Self::Absent => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

/// The time element a start or end comes from, in the general path's order of
/// preference: an absolute time, else a delta before export, else sysUpTime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeSource {
    None,
    /// `flowStart/EndSeconds` (150/151).
    Seconds(Slot),
    /// `flowStart/EndMilliseconds` (152/153).
    Milliseconds(Slot),
    /// `flowStart/End{Micro,Nano}seconds` (154–157), NTP format.
    Ntp(Slot),
    /// `flowStart/EndDeltaMicroseconds` (158/159).
    DeltaMicroseconds(Slot),
    /// `flowStart/EndSysUpTime` (22/21).
    SysUpTime(Slot),
}

/// How the three time elements of one end (start or end) of the flow were offered.
#[derive(Clone, Copy, Default)]
struct TimeFields {
    absolute: Option<TimeSource>,
    delta: Option<Slot>,
    uptime: Option<Slot>,
}

impl TimeFields {
    fn resolve(self) -> TimeSource {
        self.absolute
            .or(self.delta.map(TimeSource::DeltaMicroseconds))
            .or(self.uptime.map(TimeSource::SysUpTime))
            .unwrap_or(TimeSource::None)
    }
}

/// ICMP type and code: the combined element wins over the split ones; absent parts are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Icmp {
    TypeCode(Slot),
    Split { icmp_type: Slot, icmp_code: Slot },
}

/// A counter offered by several elements: the lowest rank wins, the later field among
/// equal ranks (as `RawRecord::set_bytes` and friends decide).
#[derive(Clone, Copy)]
struct Ranked {
    slot: Slot,
    rank: u8,
}

impl Ranked {
    const NONE: Self = Self {
        slot: Slot::ABSENT,
        rank: u8::MAX,
    };

    fn offer(&mut self, rank: u8, slot: Slot) {
        if rank <= self.rank {
            *self = Self { slot, rank };
        }
    }
}

/// Sampling elements in a data record: rare, so kept out of line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RecordSampling {
    sampling_interval: Slot,
    sampler_random_interval: Slot,
    packet_interval: Slot,
    packet_space: Slot,
    sampling_size: Slot,
    sampling_population: Slot,
}

/// Clocks of the message a data set came in, for its records' times.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clocks {
    /// Export time, Unix ms.
    export_ms: u64,
    uptime: UptimeBase,
}

/// Where sysUpTime-relative times are placed from, settled once per data set: the
/// choice depends only on the template and the message, not on the record.
#[derive(Clone, Copy, Debug)]
enum UptimeBase {
    /// The template carries `systemInitTimeMilliseconds` (160): each record's own.
    PerRecord,
    /// `systemInitTimeMilliseconds` the domain learned from options data.
    Init(u64),
    /// The v9 header's sysUpTime, at the export time.
    Header(u32),
    /// Neither (IPFIX without 160): such times cannot be placed.
    Unresolved,
}

/// Where each [`FlowRecord`] field of a fixed-length data template is (see the module
/// docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    src_addr: AddrSlot,
    dst_addr: AddrSlot,
    src_port: Slot,
    dst_port: Slot,
    protocol: Slot,
    tcp_flags: Slot,
    direction: Slot,
    bytes: Slot,
    packets: Slot,
    input_interface: Slot,
    output_interface: Slot,
    icmp: Icmp,
    start: TimeSource,
    end: TimeSource,
    system_init: Slot,
    sampler_id: Slot,
    sampling: Option<RecordSampling>,
}

impl Layout {
    /// The layout of a fixed-length data template whose used fields are `fields` (in
    /// template order, with offsets, as [`Template::compile`](super::template::Template::compile)
    /// tabled them), or `None` when the general path must decode it (module docs).
    #[must_use]
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per element, mirroring RawRecord::apply arm for arm"
    )]
    pub(crate) fn new(fields: &[CompiledField], record_len: usize) -> Option<Self> {
        // Windows are 8 bytes (see `Slot`); shorter records are rare enough for the
        // general path.
        if record_len < 8 {
            return None;
        }
        let mut src_addr = None;
        let mut dst_addr = None;
        let [
            mut src_port,
            mut dst_port,
            mut protocol,
            mut tcp_flags,
            mut direction,
        ] = [Slot::ABSENT; 5];
        let [mut icmp_type_code, mut icmp_type, mut icmp_code] = [Slot::ABSENT; 3];
        let [mut system_init, mut sampler_id] = [Slot::ABSENT; 2];
        let [mut bytes, mut packets, mut input, mut output] = [Ranked::NONE; 4];
        let (mut start, mut end) = (TimeFields::default(), TimeFields::default());
        let mut sampling: Option<RecordSampling> = None;
        for f in fields {
            let s = Slot::new(f.offset, f.length);
            // Every arm mirrors one arm of `RawRecord::apply`.
            match f.ie {
                Ie::OctetDeltaCount => bytes.offer(0, s),
                Ie::PostOctetDeltaCount => bytes.offer(1, s),
                Ie::OctetTotalCount => bytes.offer(2, s),
                Ie::InitiatorOctets => bytes.offer(3, s),
                Ie::DataLinkFrameSize => bytes.offer(4, s),
                Ie::PacketDeltaCount => packets.offer(0, s),
                Ie::PostPacketDeltaCount => packets.offer(1, s),
                Ie::PacketTotalCount => packets.offer(2, s),
                Ie::InitiatorPackets => packets.offer(3, s),
                Ie::IngressInterface => input.offer(0, s),
                Ie::IngressPhysicalInterface => input.offer(1, s),
                Ie::EgressInterface => output.offer(0, s),
                Ie::EgressPhysicalInterface => output.offer(1, s),
                Ie::ProtocolIdentifier => protocol = s,
                Ie::TcpControlBits => tcp_flags = s,
                Ie::SourceTransportPort => src_port = s,
                Ie::DestinationTransportPort => dst_port = s,
                Ie::FlowDirection => direction = s,
                Ie::SourceIpv4Address | Ie::SourceIpv6Address => {
                    offer_addr(&mut src_addr, f.offset, f.length)?;
                }
                Ie::DestinationIpv4Address | Ie::DestinationIpv6Address => {
                    offer_addr(&mut dst_addr, f.offset, f.length)?;
                }
                Ie::IcmpTypeCodeIpv4 | Ie::IcmpTypeCodeIpv6 => icmp_type_code = s,
                Ie::IcmpTypeIpv4 | Ie::IcmpTypeIpv6 => icmp_type = s,
                Ie::IcmpCodeIpv4 | Ie::IcmpCodeIpv6 => icmp_code = s,
                Ie::FlowStartSeconds => start.absolute = Some(TimeSource::Seconds(s)),
                Ie::FlowEndSeconds => end.absolute = Some(TimeSource::Seconds(s)),
                Ie::FlowStartMilliseconds => start.absolute = Some(TimeSource::Milliseconds(s)),
                Ie::FlowEndMilliseconds => end.absolute = Some(TimeSource::Milliseconds(s)),
                Ie::FlowStartMicroseconds | Ie::FlowStartNanoseconds => {
                    start.absolute = Some(TimeSource::Ntp(s));
                }
                Ie::FlowEndMicroseconds | Ie::FlowEndNanoseconds => {
                    end.absolute = Some(TimeSource::Ntp(s));
                }
                Ie::FlowStartDeltaMicroseconds => start.delta = Some(s),
                Ie::FlowEndDeltaMicroseconds => end.delta = Some(s),
                Ie::FlowStartSysUpTime => start.uptime = Some(s),
                Ie::FlowEndSysUpTime => end.uptime = Some(s),
                Ie::SystemInitTimeMilliseconds => system_init = s,
                Ie::SamplerId | Ie::SelectorId => sampler_id = s,
                Ie::SamplingInterval => sampling.get_or_insert_default().sampling_interval = s,
                Ie::SamplerRandomInterval => {
                    sampling.get_or_insert_default().sampler_random_interval = s;
                }
                Ie::SamplingPacketInterval => sampling.get_or_insert_default().packet_interval = s,
                Ie::SamplingPacketSpace => sampling.get_or_insert_default().packet_space = s,
                Ie::SamplingSize => sampling.get_or_insert_default().sampling_size = s,
                Ie::SamplingPopulation => {
                    sampling.get_or_insert_default().sampling_population = s;
                }
                // A frame is parsed per record, and its addresses apply only when the
                // record has none: the general path handles it.
                Ie::DataLinkFrameSection => return None,
                // Event records (NAT logging, RFC 8158) are rare; their observation time
                // stands in for flow times only when those are absent: general path.
                Ie::ObservationTimeSeconds
                | Ie::ObservationTimeMilliseconds
                | Ie::ObservationTimeMicroseconds
                | Ie::ObservationTimeNanoseconds => return None,
                Ie::SamplingAlgorithm
                | Ie::SamplerMode
                | Ie::SelectorAlgorithm
                | Ie::Unknown(_) => {}
            }
        }
        Some(Self {
            src_addr: src_addr.unwrap_or(AddrSlot::Absent),
            dst_addr: dst_addr.unwrap_or(AddrSlot::Absent),
            src_port,
            dst_port,
            protocol,
            tcp_flags,
            direction,
            bytes: bytes.slot,
            packets: packets.slot,
            input_interface: input.slot,
            output_interface: output.slot,
            icmp: if icmp_type_code.is_present() {
                Icmp::TypeCode(icmp_type_code)
            } else {
                Icmp::Split {
                    icmp_type,
                    icmp_code,
                }
            },
            start: start.resolve(),
            end: end.resolve(),
            system_init,
            sampler_id,
            sampling,
        })
    }

    /// The clocks for one data set of this template, from the message's export time and
    /// sysUpTime (v9 only) and the domain's `systemInitTimeMilliseconds`, in the order of
    /// preference `resolve_times` uses.
    pub(crate) fn clocks(
        &self,
        export_ms: u64,
        sys_uptime_ms: Option<u32>,
        domain_init_ms: Option<u64>,
    ) -> Clocks {
        let uptime = if self.system_init.is_present() {
            UptimeBase::PerRecord
        } else if let Some(init) = domain_init_ms {
            UptimeBase::Init(init)
        } else if let Some(sys) = sys_uptime_ms {
            UptimeBase::Header(sys)
        } else {
            UptimeBase::Unresolved
        };
        Clocks { export_ms, uptime }
    }

    /// The sampler the record names (`samplerId` 48 / `selectorId` 302), if the template
    /// has one.
    #[inline]
    pub(crate) fn sampler_id(&self, rec: &[u8]) -> Option<u64> {
        self.sampler_id.get(rec)
    }

    /// The one-out-of-N factor the record states itself, as
    /// [`RawRecord::sampling_factor`](super::ie::RawRecord::sampling_factor).
    #[inline]
    pub(crate) fn record_sampling(&self, rec: &[u8]) -> Option<u32> {
        let s = self.sampling.as_ref()?;
        sampling_factor(
            s.sampling_interval.get(rec),
            s.sampler_random_interval.get(rec),
            s.packet_interval.get(rec),
            s.packet_space.get(rec),
            s.sampling_size.get(rec),
            s.sampling_population.get(rec),
        )
    }

    /// Fills every per-record field of `out` from `rec`, one record of the template's
    /// length. Returns true when a sysUpTime time could not be placed (no
    /// `systemInitTimeMilliseconds` and no header sysUpTime), which the caller counts.
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "narrowing is the wire semantics of each element, as in RawRecord::apply"
    )]
    pub(crate) fn fill(
        &self,
        rec: &[u8],
        clocks: &Clocks,
        interval: u32,
        out: &mut FlowRecord,
    ) -> bool {
        out.src_addr = self.src_addr.load(rec);
        out.dst_addr = self.dst_addr.load(rec);
        out.src_port = self.src_port.load(rec) as u16;
        out.dst_port = self.dst_port.load(rec) as u16;
        out.protocol = self.protocol.load(rec) as u8;
        // tcpControlBits grew to 16 bits (RFC 7125); the classic flags are the low byte.
        out.tcp_flags = self.tcp_flags.load(rec) as u8;
        let icmp = match self.icmp {
            Icmp::TypeCode(s) => s.load(rec) as u16,
            Icmp::Split {
                icmp_type,
                icmp_code,
            } => u16::from(icmp_type.load(rec) as u8) << 8 | u16::from(icmp_code.load(rec) as u8),
        };
        // Exporters without an ICMP element put type << 8 | code in the destination port.
        out.icmp_type_code = if icmp == 0 && matches!(out.protocol, 1 | 58) && out.src_port == 0 {
            out.dst_port
        } else {
            icmp
        };
        out.direction = self
            .direction
            .get(rec)
            .map_or(Direction::Unknown, Direction::from_wire);
        out.input_interface = self.input_interface.load(rec) as u32;
        out.output_interface = self.output_interface.load(rec) as u32;
        out.set_counts(self.bytes.load(rec), self.packets.load(rec), interval);

        let mut unresolved = false;
        let start = self.time(self.start, rec, clocks, &mut unresolved);
        let end = self.time(self.end, rec, clocks, &mut unresolved);
        (out.start_ms, out.end_ms) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (Some(t), None) | (None, Some(t)) => (t, t),
            (None, None) => (clocks.export_ms, clocks.export_ms),
        };
        unresolved
    }

    /// One end of the flow in Unix ms, as `resolve_times` computes it.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "left to itself LLVM calls this twice per record: 10% more instructions"
    )]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "flowStart/EndSysUpTime are 32-bit, as in RawRecord::apply"
    )]
    fn time(
        &self,
        t: TimeSource,
        rec: &[u8],
        clocks: &Clocks,
        unresolved: &mut bool,
    ) -> Option<u64> {
        match t {
            TimeSource::None => None,
            TimeSource::Seconds(s) => Some(s.load(rec).saturating_mul(1000)),
            TimeSource::Milliseconds(s) => Some(s.load(rec)),
            TimeSource::Ntp(s) => Some(ntp_to_unix_ms(s.load(rec))),
            TimeSource::DeltaMicroseconds(s) => {
                Some(clocks.export_ms.saturating_sub(s.load(rec) / 1000))
            }
            TimeSource::SysUpTime(s) => {
                let up = s.load(rec) as u32;
                match clocks.uptime {
                    UptimeBase::PerRecord => {
                        Some(self.system_init.load(rec).saturating_add(u64::from(up)))
                    }
                    UptimeBase::Init(init) => Some(init.saturating_add(u64::from(up))),
                    UptimeBase::Header(sys) => {
                        Some(super::uptime_to_unix_ms(clocks.export_ms, sys, up))
                    }
                    UptimeBase::Unresolved => {
                        *unresolved = true;
                        None
                    }
                }
            }
        }
    }
}

/// Takes the address element of one direction; a second one makes the template take the
/// general path (`None`), since which address wins then depends on the values.
fn offer_addr(slot: &mut Option<AddrSlot>, offset: u16, len: u16) -> Option<()> {
    let a = AddrSlot::from_field(offset, len);
    if a == AddrSlot::Absent {
        return Some(());
    }
    if slot.is_some() {
        return None;
    }
    *slot = Some(a);
    Some(())
}

#[cfg(test)]
mod tests {
    //! The layout path against the general path, on random templates and records: every
    //! record, counter and error must be the same.

    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::super::cache::{DomainState, ExportCtx};
    use super::super::error::DecodeCounters;
    use super::super::template::{Template, TemplateSpec};
    use super::super::wire::set::FieldSpec;
    use super::super::{FlowRecord, PacketCtx, Summary, decode_data};

    /// Every element the decoder interprets, a few it ignores, and an unknown one.
    const IDS: &[u16] = &[
        1, 2, 4, 6, 7, 8, 10, 11, 12, 14, 21, 22, 23, 24, 27, 28, 32, 34, 35, 48, 49, 50, 61, 85,
        86, 139, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 176, 177, 178, 179, 231,
        252, 253, 298, 302, 304, 305, 306, 309, 310, 312, 999,
    ];
    const LENGTHS: &[u16] = &[0, 1, 2, 3, 4, 4, 4, 5, 8, 8, 9, 16, 16];

    fn arb_fields() -> impl Strategy<Value = Vec<FieldSpec>> {
        proptest::collection::vec(
            (
                proptest::sample::select(IDS),
                proptest::sample::select(LENGTHS),
            )
                .prop_map(|(id, length)| FieldSpec {
                    id,
                    length,
                    enterprise: 0,
                }),
            1..14,
        )
    }

    fn run(
        t: &Template,
        domain: &DomainState,
        ctx: ExportCtx,
        body: &[u8],
    ) -> (
        Vec<FlowRecord>,
        DecodeCounters,
        Option<super::super::DecodeError>,
    ) {
        let mut d = DomainState {
            sampling: domain.sampling.clone(),
            system_init_ms: domain.system_init_ms,
            ..DomainState::default()
        };
        d.templates.insert(t.spec.template_id, t.clone());
        let mut cx = PacketCtx {
            counters: DecodeCounters::default(),
            first_error: None,
            summary: Summary::default(),
            now_ms: 0,
            exporter: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        };
        let mut out = Vec::new();
        decode_data(
            &mut d,
            &mut cx,
            ctx,
            t.spec.template_id,
            body,
            256,
            &mut |r: &FlowRecord| out.push(*r),
        );
        (out, cx.counters, cx.first_error)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn layout_decodes_like_the_general_path(
            fields in arb_fields(),
            ipfix in any::<bool>(),
            records in proptest::collection::vec(any::<u8>(), 0..400),
            sys_uptime in proptest::option::of(any::<u32>()),
            domain_init in proptest::option::of(0u64..1 << 42),
            default_rate in proptest::option::of(0u32..100),
            samplers in proptest::collection::vec((0u64..3, 0u32..100), 0..3),
            small in any::<bool>(),
        ) {
            let spec = TemplateSpec {
                template_id: 300,
                version: if ipfix { 10 } else { 9 },
                options: false,
                scope_field_count: 0,
                fields,
            };
            let Ok((fast, _)) = Template::compile(spec, 0) else {
                return Ok(());
            };
            let general = Template { layout: None, ..fast.clone() };
            // Small values make zeros, ICMP protocols and sampler ids likely.
            let body: Vec<u8> = if small {
                records.iter().map(|b| b % 4).collect()
            } else {
                records
            };
            let mut domain = DomainState {
                system_init_ms: domain_init,
                ..DomainState::default()
            };
            domain.sampling.default = default_rate;
            domain.sampling.samplers.extend(samplers);
            let ctx = ExportCtx {
                version: fast.spec.version,
                export_ms: 1_700_000_000_000,
                sys_uptime_ms: if ipfix { None } else { sys_uptime },
                observation_domain_id: 7,
            };
            prop_assert_eq!(
                run(&fast, &domain, ctx, &body),
                run(&general, &domain, ctx, &body)
            );
        }
    }

    #[test]
    fn common_templates_get_a_layout() {
        let f = |id, length| FieldSpec {
            id,
            length,
            enterprise: 0,
        };
        let spec = |fields: Vec<FieldSpec>| TemplateSpec {
            template_id: 300,
            version: 10,
            options: false,
            scope_field_count: 0,
            fields,
        };
        let fields = vec![
            f(8, 4),
            f(12, 4),
            f(7, 2),
            f(11, 2),
            f(4, 1),
            f(1, 8),
            f(2, 8),
            f(152, 8),
            f(153, 8),
        ];
        let (t, _) = Template::compile(spec(fields.clone()), 0).unwrap();
        assert!(t.layout.is_some());
        // Both address families in one template: which wins depends on the values.
        let mut both = fields.clone();
        both.push(f(27, 16));
        assert!(Template::compile(spec(both), 0).unwrap().0.layout.is_none());
        // A sampled frame is parsed per record.
        let mut frame = fields;
        frame.push(f(315, 64));
        assert!(
            Template::compile(spec(frame), 0)
                .unwrap()
                .0
                .layout
                .is_none()
        );
    }
}
