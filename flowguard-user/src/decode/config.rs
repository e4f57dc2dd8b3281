//! Decoder limits and timeouts.

use serde::{Deserialize, Serialize};

/// Limits and timeouts of a [`super::Decoder`]. Every limit is counted when hit (see
/// [`super::DecodeCounters`]).
///
/// The defaults suit a collector with a few hundred exporters per worker: at most
/// 4 MiB of templates per exporter and 64 MiB of queued data in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecoderConfig {
    /// Distinct exporters with state; packets from further exporters are refused
    /// (`exporter_limit`). Exporters with no templates, sampling or pending data are
    /// forgotten after `exporter_idle_ms` without packets.
    pub max_exporters: usize,
    /// How long an exporter left with nothing but counters is kept (its counters stay in
    /// the decoder's totals when it goes).
    pub exporter_idle_ms: u64,
    /// Observation domains (v9 source ids) per exporter (`domain_limit`).
    pub max_domains_per_exporter: usize,
    /// Templates per exporter over all its domains; the least recently defined or
    /// refreshed one is evicted beyond it (`template_limit`, `templates_evicted`).
    pub max_templates_per_exporter: usize,
    /// Bytes of templates per exporter, by [`super::template::Template::footprint`]; same
    /// eviction.
    pub max_template_bytes_per_exporter: usize,
    /// Fields one template may declare (`template_too_many_fields`). RFC 7011 allows
    /// 65,535; real templates have under a hundred.
    pub max_fields_per_template: u16,
    /// Sampler ids per domain (`sampler_limit`).
    pub max_samplers_per_domain: usize,
    /// Bytes of data sets waiting for their template, per (exporter, domain)
    /// (`pending_overflow`).
    pub max_pending_bytes_per_domain: usize,
    /// Bytes waiting in all (`pending_overflow`).
    pub max_pending_bytes_total: usize,
    /// A template not refreshed for this long is dropped (`templates_expired`). RFC 7011
    /// §8.4 has UDP exporters resend templates periodically and collectors expire them
    /// after a lifetime of at least three refresh periods; 30 min covers the common
    /// 10-minute refresh. The clock is the caller's `now_ms` (capture time when reading a
    /// pcap).
    pub template_ttl_ms: u64,
    /// A data set still without its template after this long is dropped
    /// (`pending_expired`). Exporters resend templates every few minutes at most.
    pub pending_timeout_ms: u64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_exporters: 4096,
            exporter_idle_ms: 2 * 60 * 60 * 1000,
            max_domains_per_exporter: 256,
            max_templates_per_exporter: 4096,
            max_template_bytes_per_exporter: 4 << 20,
            max_fields_per_template: 512,
            max_samplers_per_domain: 256,
            max_pending_bytes_per_domain: 256 << 10,
            max_pending_bytes_total: 64 << 20,
            template_ttl_ms: 30 * 60 * 1000,
            pending_timeout_ms: 5 * 60 * 1000,
        }
    }
}
