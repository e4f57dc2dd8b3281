//! NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) decoding into [`FlowRecord`]s.
//!
//! One [`Decoder`] per worker owns every template, sampling rate and pending data set
//! of the exporters hashed to that worker: no locks, no shared state. A worker calls
//! [`Decoder::decode`] for each datagram with the exporter's address and its own clock,
//! and receives records through a callback, so the hot path allocates nothing.
//!
//! The template rules (DESIGN.md, "Templates: where collectors fail"):
//! - templates are keyed by (exporter IP, v9 source id / IPFIX observation domain,
//!   template id), v9 data and options templates share one id space;
//! - each template is compiled into a flat field table on arrival ([`template`]);
//! - options data carries sampling per (exporter, domain, sampler id) and
//!   `systemInitTimeMilliseconds`; bytes and packets are scaled, raw values kept;
//! - data before its template waits in a bounded per-(exporter, domain) queue and is
//!   replayed when the template arrives, also later in the same packet;
//! - IPFIX withdrawal (RFC 7011 §8.1), refresh, TTL (§8.4); variable-length fields (§7);
//!   the enterprise bit (§3.2); set padding (§3.3.1); unknown elements skipped;
//! - the cache can be saved and loaded ([`Decoder::save_snapshot`]);
//! - every limit is in [`DecoderConfig`] and every hit counted in [`DecodeCounters`],
//!   in total and per exporter.
//!
//! Times: v5/v9 first/last are sysUpTime-relative and become
//! `export_ms − (sysUpTime − first)`, with the difference taken as a signed 32-bit
//! value so that an uptime wrap (every 49.7 days) or a record a few ms "in the future"
//! comes out right. IPFIX takes, in order of preference: absolute
//! `flowStart/End{Seconds,Milliseconds,Microseconds,Nanoseconds}` (150–157; micro/nano in
//! NTP format, §6.1.9), `flowStart/EndDeltaMicroseconds` (158/159, before the export
//! time), then `flowStart/EndSysUpTime` (22/21) plus `systemInitTimeMilliseconds` (160)
//! from the record or from options data. Without 160, sysUpTime times cannot be placed,
//! so they fall back to the export time and `uptime_without_init` counts it. A record with
//! no time at all gets the export time; one with only a start or only an end uses it for
//! both.

#![expect(
    clippy::doc_markdown,
    reason = "NetFlow, IPFIX and element names are protocol names, not code"
)]

pub mod cache;
pub mod config;
pub mod encode;
pub mod error;
pub mod ie;
pub mod layout;
pub mod record;
pub mod snapshot;
pub mod template;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use cache::{ExportCtx, ExporterState, Pending};
pub use config::DecoderConfig;
pub use error::{DecodeCounters, DecodeError};
use ie::RawRecord;
use layout::{Clocks, Layout};
pub use record::{Direction, FlowRecord};
pub use snapshot::SnapshotError;
use template::{Template, TemplateSpec};
use wire::set::{SetHeader, TemplateItem, TemplateRecords, TemplateSetKind};
use wire::{Version, ipfix, set, v5, v9};

/// What one call of [`Decoder::decode`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Export version of the packet (5, 9 or 10).
    pub version: u16,
    /// Flow records emitted, including replayed ones.
    pub records: u32,
    /// Templates and options templates stored.
    pub templates: u32,
    /// Data sets queued to wait for their template.
    pub pending: u32,
    /// Queued data sets replayed because their template arrived.
    pub replayed: u32,
}

/// Cache sizes by the decoder's own accounting (see [`template::Template::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Exporters with state.
    pub exporters: usize,
    /// (exporter, domain) pairs with state.
    pub domains: usize,
    /// Templates stored.
    pub templates: usize,
    /// Bytes of templates stored.
    pub template_bytes: usize,
    /// Data sets waiting for their template.
    pub pending_sets: usize,
    /// Bytes of data sets waiting.
    pub pending_bytes: usize,
}

/// Sweep expired templates and pending sets at most this often (caller's clock).
const SWEEP_INTERVAL_MS: u64 = 1000;

/// The per-worker decoder. See the module docs for the rules it implements.
#[derive(Debug)]
pub struct Decoder {
    core: Core,
    exporters: HashMap<IpAddr, ExporterState>,
    counters: DecodeCounters,
    last_sweep_ms: u64,
}

/// The decoder state that is not per exporter, split off so that an exporter's state and
/// this can be borrowed at once.
#[derive(Debug)]
struct Core {
    config: DecoderConfig,
    pending_bytes: usize,
    generation: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

/// Per-packet working state: the counters of this packet (merged into the exporter's and
/// the total at the end), the first error, and the summary.
struct PacketCtx {
    counters: DecodeCounters,
    first_error: Option<DecodeError>,
    summary: Summary,
    now_ms: u64,
    exporter: IpAddr,
}

impl PacketCtx {
    fn error(&mut self, e: DecodeError) {
        self.counters.count_error(&e);
        self.first_error.get_or_insert(e);
    }
}

impl Decoder {
    /// A decoder with the given limits.
    #[must_use]
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            core: Core {
                config,
                pending_bytes: 0,
                generation: 0,
            },
            exporters: HashMap::new(),
            counters: DecodeCounters::default(),
            last_sweep_ms: 0,
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn config(&self) -> &DecoderConfig {
        &self.core.config
    }

    /// Counters over all exporters since the decoder was made.
    #[must_use]
    pub fn counters(&self) -> &DecodeCounters {
        &self.counters
    }

    /// Counters of one exporter (while it has state; idle exporters are forgotten after
    /// the template TTL, their counts staying in [`Decoder::counters`]).
    #[must_use]
    pub fn exporter_counters(&self, exporter: IpAddr) -> Option<&DecodeCounters> {
        self.exporters.get(&exporter).map(|e| &e.counters)
    }

    /// Counters of every exporter with state.
    pub fn exporters(&self) -> impl Iterator<Item = (IpAddr, &DecodeCounters)> {
        self.exporters.iter().map(|(ip, e)| (*ip, &e.counters))
    }

    /// Current cache sizes.
    #[must_use]
    pub fn cache_usage(&self) -> CacheUsage {
        let mut u = CacheUsage {
            exporters: self.exporters.len(),
            pending_bytes: self.core.pending_bytes,
            ..CacheUsage::default()
        };
        for e in self.exporters.values() {
            u.domains += e.domains.len();
            u.templates += e.template_count;
            u.template_bytes += e.template_bytes;
            u.pending_sets += e.domains.values().map(|d| d.pending.len()).sum::<usize>();
        }
        u
    }

    /// Decodes one export datagram from `exporter` (v5, v9 or IPFIX, told apart by the
    /// version field) and calls `out` for every flow record, including data that waited
    /// for a template arriving in this packet.
    ///
    /// `now_ms` is the caller's clock in Unix ms (receive time, or capture time when
    /// reading a file); it drives template TTL and pending timeouts only. Record times
    /// come from the packet.
    ///
    /// # Errors
    /// The first problem found. The packet has still been decoded as far as possible —
    /// records before (and, for set-level problems, after) it have been emitted — and
    /// every problem has been counted by reason, in total and for the exporter.
    pub fn decode<F: FnMut(&FlowRecord)>(
        &mut self,
        exporter: IpAddr,
        now_ms: u64,
        payload: &[u8],
        out: &mut F,
    ) -> Result<Summary, DecodeError> {
        if now_ms.saturating_sub(self.last_sweep_ms) >= SWEEP_INTERVAL_MS
            || now_ms < self.last_sweep_ms
        {
            self.expire(now_ms);
        }
        let mut cx = PacketCtx {
            counters: DecodeCounters {
                packets: 1,
                ..DecodeCounters::default()
            },
            first_error: None,
            summary: Summary::default(),
            now_ms,
            exporter,
        };
        // Length first: the key is only hashed twice when the exporter cap is reached.
        if self.exporters.len() >= self.core.config.max_exporters
            && !self.exporters.contains_key(&exporter)
        {
            cx.error(DecodeError::ExporterLimit);
            self.counters.merge(&cx.counters);
            return Err(DecodeError::ExporterLimit);
        }
        let state = self.exporters.entry(exporter).or_default();
        state.last_seen_ms = now_ms;
        self.core.decode_packet(state, &mut cx, payload, out);
        state.counters.merge(&cx.counters);
        self.counters.merge(&cx.counters);
        match cx.first_error {
            Some(e) => Err(e),
            None => Ok(cx.summary),
        }
    }

    /// Decodes into a caller-owned `Vec` (not cleared first), for callers that batch.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    pub fn decode_into(
        &mut self,
        exporter: IpAddr,
        now_ms: u64,
        payload: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<Summary, DecodeError> {
        self.decode(exporter, now_ms, payload, &mut |r: &FlowRecord| {
            out.push(*r);
        })
    }

    /// Decodes a run of datagrams from one exporter, in order, through this decoder's
    /// cache (for benchmarks and for files: templates in earlier payloads serve later
    /// ones). Returns records emitted and packets that reported an error.
    pub fn decode_batch<'a, F: FnMut(&FlowRecord)>(
        &mut self,
        exporter: IpAddr,
        now_ms: u64,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        out: &mut F,
    ) -> (u64, u64) {
        let (mut records, mut errors) = (0, 0);
        let mut count = |r: &FlowRecord| {
            records += 1;
            out(r);
        };
        for p in payloads {
            if self.decode(exporter, now_ms, p, &mut count).is_err() {
                errors += 1;
            }
        }
        (records, errors)
    }

    /// Drops templates past their TTL, pending data past its timeout, and exporters left
    /// with nothing. [`Decoder::decode`] calls it at most once a second of `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        self.last_sweep_ms = now_ms;
        let config = &self.core.config;
        let mut freed = 0;
        let counters = &mut self.counters;
        self.exporters.retain(|_, e| {
            let mut c = DecodeCounters::default();
            freed += e.sweep(now_ms, config, &mut c);
            e.counters.merge(&c);
            counters.merge(&c);
            !(e.is_idle() && now_ms.saturating_sub(e.last_seen_ms) > config.exporter_idle_ms)
        });
        self.core.pending_bytes -= freed;
    }

    /// The sampling interval the decoder would apply to a data record of (exporter,
    /// domain) that names `sampler_id` (or none), from options data seen so far; `None`
    /// when that domain has no state.
    #[must_use]
    pub fn sampling_interval(
        &self,
        exporter: IpAddr,
        observation_domain_id: u32,
        sampler_id: Option<u64>,
    ) -> Option<u32> {
        self.exporters
            .get(&exporter)
            .and_then(|e| e.domains.get(&observation_domain_id))
            .map(|d| d.sampling.interval_for(sampler_id))
    }
}

impl Core {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    fn decode_packet<F: FnMut(&FlowRecord)>(
        &mut self,
        state: &mut ExporterState,
        cx: &mut PacketCtx,
        payload: &[u8],
        out: &mut F,
    ) {
        let Some(&[a, b]) = payload.get(..2) else {
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            return cx.error(DecodeError::TruncatedHeader {
                version: 0,
                len,
                needed: 2,
            });
        };
        let version = u16::from_be_bytes([a, b]);
        cx.summary.version = version;
        match Version::from(version) {
            Version::V5 => decode_v5(cx, payload, out),
            Version::V9 => match v9::Header::new_checked(payload) {
                Ok(h) => {
                    let ctx = ExportCtx {
                        version: 9,
                        export_ms: u64::from(h.unix_secs()) * 1000,
                        sys_uptime_ms: Some(h.sys_uptime()),
                        observation_domain_id: h.source_id(),
                    };
                    self.decode_sets(state, cx, ctx, h.payload(), out);
                }
                Err(e) => cx.error(truncated_header(9, e)),
            },
            Version::Ipfix => match ipfix::Header::new_checked(payload) {
                Ok(h) => {
                    let declared = usize::from(h.length());
                    // RFC 7011 §3.1: Length is the whole message. Shorter than the header or
                    // longer than the datagram means the sets cannot be trusted.
                    if declared < ipfix::HEADER_LEN || declared > payload.len() {
                        let actual = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                        return cx.error(DecodeError::MessageLength {
                            declared: h.length(),
                            actual,
                        });
                    }
                    let ctx = ExportCtx {
                        version: 10,
                        export_ms: u64::from(h.export_time()) * 1000,
                        sys_uptime_ms: None,
                        observation_domain_id: h.observation_domain_id(),
                    };
                    self.decode_sets(state, cx, ctx, h.payload(), out);
                }
                Err(e) => cx.error(truncated_header(10, e)),
            },
            Version::Unknown(version) => cx.error(DecodeError::BadVersion { version }),
        }
    }

    /// Walks the sets of a v9 or IPFIX message (RFC 3954 §5, RFC 7011 §3.3).
    fn decode_sets<F: FnMut(&FlowRecord)>(
        &mut self,
        state: &mut ExporterState,
        cx: &mut PacketCtx,
        ctx: ExportCtx,
        body: &[u8],
        out: &mut F,
    ) {
        let ipfix = ctx.version == 10;
        let mut rest = body;
        while !rest.is_empty() {
            let remaining = u16::try_from(rest.len()).unwrap_or(u16::MAX);
            let Ok(h) = SetHeader::new_checked(rest) else {
                // A few zero bytes after the last flowset are padding some v9 exporters add.
                if rest.iter().any(|&b| b != 0) {
                    cx.error(DecodeError::TruncatedSet {
                        set_id: 0,
                        length: 0,
                        remaining,
                    });
                }
                return;
            };
            let (set_id, length) = (h.set_id(), h.length());
            let len = usize::from(length);
            if len < set::HEADER_LEN {
                return cx.error(DecodeError::BadSetLength { set_id, length });
            }
            if len > rest.len() {
                return cx.error(DecodeError::TruncatedSet {
                    set_id,
                    length,
                    remaining,
                });
            }
            let body = rest.get(set::HEADER_LEN..len).unwrap_or_default();
            rest = rest.get(len..).unwrap_or_default();
            if let Some(kind) = TemplateSetKind::from_set_id(set_id, ipfix) {
                self.template_set(state, cx, ctx, kind, body, out);
            } else if set_id >= set::MIN_DATA_SET_ID {
                self.data_set(state, cx, ctx, set_id, body, out);
            } else {
                cx.counters.unknown_set_id += 1;
            }
        }
    }

    fn template_set<F: FnMut(&FlowRecord)>(
        &mut self,
        state: &mut ExporterState,
        cx: &mut PacketCtx,
        ctx: ExportCtx,
        kind: TemplateSetKind,
        body: &[u8],
        out: &mut F,
    ) {
        let domain = ctx.observation_domain_id;
        for item in TemplateRecords::new(body, kind, self.config.max_fields_per_template) {
            match item {
                Err(e) => cx.error(e),
                Ok(TemplateItem::Withdraw {
                    template_id,
                    options,
                }) => {
                    // RFC 7011 §8.1: id 2 (set 2) or 3 (set 3) withdraws all of that kind.
                    if template_id == set::IPFIX_TEMPLATE
                        || template_id == set::IPFIX_OPTIONS_TEMPLATE
                    {
                        state.remove_all(domain, options);
                        cx.counters.template_withdrawals += 1;
                    } else if template_id < set::MIN_DATA_SET_ID {
                        cx.error(DecodeError::InvalidTemplateId { template_id });
                    } else if state.remove_template(domain, template_id) {
                        cx.counters.template_withdrawals += 1;
                    }
                }
                Ok(TemplateItem::Template {
                    template_id,
                    scope_field_count,
                    fields,
                    options,
                }) => {
                    if template_id < set::MIN_DATA_SET_ID {
                        cx.error(DecodeError::InvalidTemplateId { template_id });
                        continue;
                    }
                    let spec = TemplateSpec {
                        template_id,
                        version: ctx.version,
                        options,
                        scope_field_count,
                        fields,
                    };
                    if self.store_template(state, cx, domain, spec) {
                        if options {
                            cx.counters.options_templates += 1;
                        } else {
                            cx.counters.templates += 1;
                        }
                        cx.summary.templates += 1;
                        self.replay(state, cx, domain, template_id, out);
                    }
                }
            }
        }
    }

    /// Compiles and stores a template (or refreshes an identical one). Returns whether
    /// the template is now in the cache.
    fn store_template(
        &mut self,
        state: &mut ExporterState,
        cx: &mut PacketCtx,
        domain: u32,
        spec: TemplateSpec,
    ) -> bool {
        let template_id = spec.template_id;
        let generation = self.next_generation();
        let same = state
            .domains
            .get(&domain)
            .and_then(|d| d.templates.get(&template_id))
            .is_some_and(|t| t.spec == spec);
        if same {
            return state.touch_template(domain, template_id, generation, cx.now_ms);
        }
        let (template, zero) = match Template::compile(spec, cx.now_ms) {
            Ok(c) => c,
            Err(e) => {
                cx.error(e);
                return false;
            }
        };
        if let Some(e) = zero {
            cx.error(e);
        }
        match state.insert_template(domain, template, generation, &self.config) {
            Ok(outcome) => {
                if outcome.evicted > 0 {
                    cx.counters.templates_evicted += outcome.evicted as u64;
                    cx.error(DecodeError::TemplateLimit { template_id });
                }
                !outcome.rejected
            }
            Err(e) => {
                cx.error(e);
                false
            }
        }
    }

    /// Decodes data sets that waited for `template_id` in `domain`.
    fn replay<F: FnMut(&FlowRecord)>(
        &mut self,
        state: &mut ExporterState,
        cx: &mut PacketCtx,
        domain: u32,
        template_id: u16,
        out: &mut F,
    ) {
        let Some(d) = state.domains.get_mut(&domain) else {
            return;
        };
        if !d.pending.iter().any(|p| p.template_id == template_id) {
            return;
        }
        let (ready, keep): (Vec<Pending>, Vec<Pending>) = d
            .pending
            .drain(..)
            .partition(|p| p.template_id == template_id);
        d.pending = keep.into();
        for p in ready {
            d.pending_bytes -= p.data.len();
            self.pending_bytes -= p.data.len();
            if cx.now_ms.saturating_sub(p.received_ms) > self.config.pending_timeout_ms {
                cx.counters.pending_expired += 1;
                continue;
            }
            cx.counters.pending_replayed += 1;
            cx.summary.replayed += 1;
            decode_data(
                d,
                cx,
                p.ctx,
                template_id,
                &p.data,
                self.config.max_samplers_per_domain,
                out,
            );
        }
    }

    fn data_set<F: FnMut(&FlowRecord)>(
        &mut self,
        state: &mut ExporterState,
        cx: &mut PacketCtx,
        ctx: ExportCtx,
        template_id: u16,
        body: &[u8],
        out: &mut F,
    ) {
        let domain = ctx.observation_domain_id;
        let ttl = self.config.template_ttl_ms;
        // One lookup of the domain and one of the template per data set: they are most of
        // the per-set cost.
        if let Some(d) = state.domains.get_mut(&domain)
            && let cache::DomainState {
                templates,
                sampling,
                system_init_ms,
                ..
            } = d
            && let Some(t) = templates.get(&template_id)
            && cx.now_ms.saturating_sub(t.last_seen_ms) <= ttl
        {
            decode_with(
                t,
                sampling,
                system_init_ms,
                cx,
                ctx,
                body,
                self.config.max_samplers_per_domain,
                out,
            );
            return;
        }
        // Data before its template: queue it, within the per-domain and total caps.
        cx.counters.missing_template += 1;
        if body.is_empty() {
            return;
        }
        let overflow = DecodeError::PendingOverflow { template_id };
        if self.pending_bytes + body.len() > self.config.max_pending_bytes_total {
            return cx.error(overflow);
        }
        let d = match state.domain_mut(domain, &self.config) {
            Ok(d) => d,
            Err(e) => return cx.error(e),
        };
        if d.pending_bytes + body.len() > self.config.max_pending_bytes_per_domain {
            return cx.error(overflow);
        }
        d.pending.push_back(Pending {
            template_id,
            received_ms: cx.now_ms,
            ctx,
            data: body.into(),
        });
        d.pending_bytes += body.len();
        self.pending_bytes += body.len();
        cx.counters.pending_buffered += 1;
        cx.summary.pending += 1;
    }
}

fn truncated_header(version: u16, e: wire::Truncated) -> DecodeError {
    DecodeError::TruncatedHeader {
        version,
        len: u32::try_from(e.len).unwrap_or(u32::MAX),
        needed: u16::try_from(e.needed).unwrap_or(u16::MAX),
    }
}

/// Decodes the records of one data set with its (present) template.
fn decode_data<F: FnMut(&FlowRecord)>(
    d: &mut cache::DomainState,
    cx: &mut PacketCtx,
    ctx: ExportCtx,
    template_id: u16,
    body: &[u8],
    max_samplers: usize,
    out: &mut F,
) {
    let cache::DomainState {
        templates,
        sampling,
        system_init_ms,
        ..
    } = d;
    let Some(t) = templates.get(&template_id) else {
        return;
    };
    decode_with(
        t,
        sampling,
        system_init_ms,
        cx,
        ctx,
        body,
        max_samplers,
        out,
    );
}

/// Decodes the records of one data set with template `t`, the domain's sampling and
/// `systemInitTimeMilliseconds` (which options records update).
#[expect(
    clippy::too_many_arguments,
    reason = "the borrowed parts of one DomainState, split so the template is looked up once"
)]
fn decode_with<F: FnMut(&FlowRecord)>(
    t: &Template,
    sampling: &mut cache::Sampling,
    system_init_ms: &mut Option<u64>,
    cx: &mut PacketCtx,
    ctx: ExportCtx,
    body: &[u8],
    max_samplers: usize,
    out: &mut F,
) {
    let template_id = t.spec.template_id;
    let mut rest = body;
    let mut rec = FlowRecord {
        exporter: cx.exporter,
        observation_domain_id: ctx.observation_domain_id,
        version: ctx.version,
        template_id,
        ..FlowRecord::default()
    };
    if let Some(layout) = &t.layout {
        let clocks = layout.clocks(ctx.export_ms, ctx.sys_uptime_ms, *system_init_ms);
        let records = body.chunks_exact(t.record_len);
        return decode_fixed(layout, records, sampling, &clocks, cx, &mut rec, out);
    }
    while !rest.is_empty() {
        let mut raw = RawRecord::EMPTY;
        let n = match t.decode_record(rest, &mut raw) {
            Ok(Some(n)) => n,
            // Fewer bytes than a record: padding, which must be zeros (RFC 7011 §3.3.1).
            // Anything else is a record cut short.
            Ok(None) => {
                if rest.iter().any(|&b| b != 0) {
                    cx.error(DecodeError::FieldPastEnd { template_id });
                }
                break;
            }
            Err(e) => return cx.error(e),
        };
        rest = rest.get(n..).unwrap_or_default();
        if t.spec.options {
            cx.counters.options_records += 1;
            if let Some(init) = raw.system_init_ms {
                *system_init_ms = Some(init);
            }
            if let Some(rate) = raw.sampling_factor() {
                match raw.sampler_id {
                    Some(id)
                        if sampling.samplers.contains_key(&id)
                            || sampling.samplers.len() < max_samplers =>
                    {
                        sampling.samplers.insert(id, rate);
                    }
                    Some(_) => cx.error(DecodeError::SamplerLimit),
                    None => sampling.default = Some(rate),
                }
            }
            continue;
        }
        let interval = raw
            .sampling_factor()
            .unwrap_or_else(|| sampling.interval_for(raw.sampler_id));
        fill_record(&mut rec, &raw, interval);
        let (start, end, unresolved) = resolve_times(&raw, &ctx, *system_init_ms);
        if unresolved {
            cx.counters.uptime_without_init += 1;
        }
        rec.start_ms = start;
        rec.end_ms = end;
        cx.counters.records += 1;
        cx.summary.records += 1;
        out(&rec);
    }
}

/// Decodes the records of a data set whose template has a [`Layout`]: the same records,
/// counters and errors as the general loop in [`decode_data`], with the per-field
/// decisions taken once per template and the sampling lookup once per sampler.
///
/// Kept out of line: as its own small function the loop keeps the layout in registers
/// instead of spilling it around the general path's code.
#[inline(never)]
fn decode_fixed<F: FnMut(&FlowRecord)>(
    layout: &Layout,
    mut records: std::slice::ChunksExact<'_, u8>,
    sampling: &cache::Sampling,
    clocks: &Clocks,
    cx: &mut PacketCtx,
    rec: &mut FlowRecord,
    out: &mut F,
) {
    // Sampling state changes only with options data, never inside a data set, so the
    // interval of a sampler id is looked up once per run of records naming it.
    let mut last: Option<(Option<u64>, u32)> = None;
    for r in &mut records {
        let interval = if let Some(own) = layout.record_sampling(r) {
            own
        } else {
            let id = layout.sampler_id(r);
            match last {
                Some((seen, interval)) if seen == id => interval,
                _ => {
                    let interval = sampling.interval_for(id);
                    last = Some((id, interval));
                    interval
                }
            }
        };
        if layout.fill(r, clocks, interval, rec) {
            cx.counters.uptime_without_init += 1;
        }
        cx.counters.records += 1;
        cx.summary.records += 1;
        out(rec);
    }
    // Fewer bytes than a record: padding, which must be zeros (RFC 7011 §3.3.1).
    if records.remainder().iter().any(|&b| b != 0) {
        cx.error(DecodeError::FieldPastEnd {
            template_id: rec.template_id,
        });
    }
}

fn fill_record(rec: &mut FlowRecord, raw: &RawRecord, interval: u32) {
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    rec.src_addr = raw.src_addr.unwrap_or(unspecified);
    rec.dst_addr = raw.dst_addr.unwrap_or(unspecified);
    rec.src_port = raw.src_port;
    rec.dst_port = raw.dst_port;
    rec.protocol = raw.protocol;
    rec.tcp_flags = raw.tcp_flags;
    rec.icmp_type_code = match (raw.icmp_type_code, raw.icmp_type, raw.icmp_code) {
        (Some(tc), _, _) => tc,
        (None, None, None) => 0,
        (None, t, c) => u16::from(t.unwrap_or(0)) << 8 | u16::from(c.unwrap_or(0)),
    };
    let mut packets = raw.packets;
    // Packet-sampling exporters (IE 315, e.g. Juniper, ipfixprobe's L2 mode) send the
    // frame instead of layer-3 fields: one record is one sampled packet.
    if let Some(f) = raw
        .frame
        .filter(|_| raw.src_addr.is_none() && raw.dst_addr.is_none())
    {
        rec.src_addr = f.src_addr;
        rec.dst_addr = f.dst_addr;
        rec.protocol = f.protocol;
        rec.src_port = f.src_port;
        rec.dst_port = f.dst_port;
        rec.icmp_type_code = f.icmp_type_code;
        if !raw.has_packets() {
            packets = 1;
        }
    }
    // Exporters without an ICMP element put type << 8 | code in the destination port
    // (the v5 convention, kept by many v9/IPFIX exporters).
    if rec.icmp_type_code == 0 && matches!(rec.protocol, 1 | 58) && rec.src_port == 0 {
        rec.icmp_type_code = rec.dst_port;
    }
    rec.direction = raw.direction;
    rec.input_interface = raw.input_interface;
    rec.output_interface = raw.output_interface;
    rec.set_counts(raw.bytes, packets, interval);
}

/// Absolute time of a sysUpTime-relative timestamp: `export − (uptime − t)`, the
/// difference read as signed 32-bit so that uptime wrap-around and small clock skew
/// both work (RFC 3954 §5.1 sysUpTime is a 32-bit millisecond counter).
#[must_use]
pub fn uptime_to_unix_ms(export_ms: u64, sys_uptime_ms: u32, t_ms: u32) -> u64 {
    #[expect(clippy::cast_possible_wrap, reason = "the signed reading is the point")]
    let age = i64::from(sys_uptime_ms.wrapping_sub(t_ms) as i32);
    export_ms.saturating_add_signed(-age)
}

/// Start and end in Unix ms, and whether sysUpTime times had to fall back.
fn resolve_times(raw: &RawRecord, ctx: &ExportCtx, domain_init: Option<u64>) -> (u64, u64, bool) {
    let mut unresolved = false;
    let init = raw.system_init_ms.or(domain_init);
    let mut from_uptime = |up: u32| {
        if let Some(init) = init {
            Some(init.saturating_add(u64::from(up)))
        } else if let Some(sys) = ctx.sys_uptime_ms {
            Some(uptime_to_unix_ms(ctx.export_ms, sys, up))
        } else {
            unresolved = true;
            None
        }
    };
    let delta = |us: u64| ctx.export_ms.saturating_sub(us / 1000);
    let start = raw
        .start_ms
        .or_else(|| raw.start_delta_us.map(delta))
        .or_else(|| raw.start_uptime_ms.and_then(&mut from_uptime));
    let end = raw
        .end_ms
        .or_else(|| raw.end_delta_us.map(delta))
        .or_else(|| raw.end_uptime_ms.and_then(&mut from_uptime));
    let (s, e) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(t), None) | (None, Some(t)) => (t, t),
        // Event records (NAT translations, RFC 8158 §2) carry only an observation time.
        (None, None) => {
            let t = raw.observation_ms.unwrap_or(ctx.export_ms);
            (t, t)
        }
    };
    (s, e, unresolved)
}

/// Decodes a NetFlow v5 datagram (stateless: v5 has no templates).
fn decode_v5<F: FnMut(&FlowRecord)>(cx: &mut PacketCtx, payload: &[u8], out: &mut F) {
    let h = match v5::Header::new_checked(payload) {
        Ok(h) => h,
        Err(e) => return cx.error(truncated_header(5, e)),
    };
    let count = h.count();
    let body = payload.get(v5::HEADER_LEN..).unwrap_or_default();
    let present = u16::try_from(body.len() / v5::RECORD_LEN).unwrap_or(u16::MAX);
    if count > present {
        cx.error(DecodeError::TruncatedRecords { count, present });
    }
    let export_ms = u64::from(h.unix_secs()) * 1000 + u64::from(h.unix_nsecs() / 1_000_000);
    let uptime = h.sys_uptime();
    let mut rec = FlowRecord {
        exporter: cx.exporter,
        observation_domain_id: h.observation_domain_id(),
        version: 5,
        template_id: 0,
        ..FlowRecord::default()
    };
    let interval = u32::from(h.sampling_interval());
    for chunk in body.chunks_exact(v5::RECORD_LEN).take(usize::from(count)) {
        let Ok(r) = v5::Record::new_checked(chunk) else {
            break;
        };
        rec.src_addr = IpAddr::V4(r.srcaddr());
        rec.dst_addr = IpAddr::V4(r.dstaddr());
        rec.src_port = r.srcport();
        rec.dst_port = r.dstport();
        rec.protocol = r.prot();
        rec.tcp_flags = r.tcp_flags();
        // v5 has no ICMP field; exporters put type << 8 | code in the destination port.
        rec.icmp_type_code = if matches!(rec.protocol, 1 | 58) {
            rec.dst_port
        } else {
            0
        };
        rec.input_interface = u32::from(r.input());
        rec.output_interface = u32::from(r.output());
        rec.set_counts(u64::from(r.d_octets()), u64::from(r.d_pkts()), interval);
        rec.start_ms = uptime_to_unix_ms(export_ms, uptime, r.first());
        rec.end_ms = uptime_to_unix_ms(export_ms, uptime, r.last());
        cx.counters.records += 1;
        cx.summary.records += 1;
        out(&rec);
    }
}
