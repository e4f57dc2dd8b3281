//! Per-packet decode errors and the counters that record them.
//!
//! A bad packet is counted by reason (and by exporter, in [`super::Decoder`]) and
//! skipped; it never stops a worker. [`DecodeError`] is small and `Copy` so returning it
//! costs nothing on the hot path.

use serde::{Deserialize, Serialize};

/// Why (part of) an export packet could not be decoded.
///
/// Records decoded before the error was found have already been emitted; set-level errors
/// only skip that set (or template), packet-level errors skip the rest of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is shorter than the message header of its version.
    #[error("truncated header: {len} bytes, version {version} needs {needed}")]
    TruncatedHeader {
        /// Version field (0 when not even that was present).
        version: u16,
        /// Bytes available.
        len: u32,
        /// Bytes the header needs.
        needed: u16,
    },
    /// The version field is not 5, 9 or 10, or not the one the caller asked for.
    #[error("unsupported version {version}")]
    BadVersion {
        /// Version field as read.
        version: u16,
    },
    /// IPFIX message length (RFC 7011 §3.1) is larger than the datagram, or smaller than
    /// the header.
    #[error("message length {declared} does not fit the {actual}-byte datagram")]
    MessageLength {
        /// Length field of the header.
        declared: u16,
        /// Datagram length.
        actual: u32,
    },
    /// v5 header count claims more records than the datagram holds (or more than 30).
    #[error("v5 header says {count} records but only {present} fit")]
    TruncatedRecords {
        /// Count field of the header.
        count: u16,
        /// Whole records present.
        present: u16,
    },
    /// A set (flowset) runs past the end of the message: the datagram was cut, or the
    /// set length lies. The sets after it cannot be found.
    #[error("set {set_id} of length {length} is truncated: {remaining} bytes left")]
    TruncatedSet {
        /// Set id (0 when not even the set header was complete).
        set_id: u16,
        /// Length field of the set header (0 when incomplete).
        length: u16,
        /// Bytes left in the message, including the set header.
        remaining: u16,
    },
    /// A set length is shorter than its own 4-byte header (RFC 7011 §3.3.2), so the sets
    /// after it cannot be found.
    #[error("set {set_id} has length {length}, shorter than its header")]
    BadSetLength {
        /// Set id.
        set_id: u16,
        /// Length field of the set header.
        length: u16,
    },
    /// A template declares more fields than `DecoderConfig::max_fields_per_template`.
    #[error("template {template_id} declares {field_count} fields, over the limit")]
    TemplateTooManyFields {
        /// Template id.
        template_id: u16,
        /// Declared field count.
        field_count: u16,
    },
    /// A template record runs past the end of its set.
    #[error("template {template_id} runs past the end of its set")]
    TemplateTruncated {
        /// Template id.
        template_id: u16,
    },
    /// A template has a field of length 0; the field is ignored, and a template whose
    /// records would be 0 bytes long is rejected.
    #[error("template {template_id} has zero-length field {field_id}")]
    ZeroLengthField {
        /// Template id.
        template_id: u16,
        /// Information element id of the field.
        field_id: u16,
    },
    /// Template id below 256 (RFC 7011 §3.4.1, RFC 3954 §5.2).
    #[error("invalid template id {template_id}")]
    InvalidTemplateId {
        /// Template id.
        template_id: u16,
    },
    /// v9 options template whose scope or option length is not a multiple of 4, or IPFIX
    /// options template whose scope count is 0 or above its field count.
    #[error("malformed options template {template_id}")]
    BadOptionsTemplate {
        /// Template id.
        template_id: u16,
    },
    /// A data record runs past the end of its set: a variable-length field claims more
    /// bytes than remain, or non-zero bytes too short for a record are left over (padding
    /// must be zeros, RFC 7011 §3.3.1).
    #[error("field of template {template_id} runs past the end of its set")]
    FieldPastEnd {
        /// Template id.
        template_id: u16,
    },
    /// The exporter is at `max_templates_per_exporter` or `max_template_bytes_per_exporter`
    /// (an older template was evicted), or the template was rejected outright.
    #[error("template limit reached for template {template_id}")]
    TemplateLimit {
        /// Template id that triggered the limit.
        template_id: u16,
    },
    /// Data arrived before its template and the pending queue is full.
    #[error("pending queue full, data set for template {template_id} dropped")]
    PendingOverflow {
        /// Template id the data set refers to.
        template_id: u16,
    },
    /// More distinct exporters than `max_exporters`.
    #[error("exporter limit reached")]
    ExporterLimit,
    /// More observation domains for one exporter than `max_domains_per_exporter`.
    #[error("observation domain limit reached for domain {observation_domain_id}")]
    DomainLimit {
        /// Domain that could not be added.
        observation_domain_id: u32,
    },
    /// More samplers in one domain than `max_samplers_per_domain`.
    #[error("sampler limit reached")]
    SamplerLimit,
}

/// Counters of what the decoder saw and rejected, by reason.
///
/// The decoder keeps one set in total and one per exporter. They are plain `u64`s: a
/// worker owns its decoder, so nothing here is shared between threads. Use
/// [`DecodeCounters::merge`] to add up several workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[expect(missing_docs, reason = "each field is documented by its group comment")]
pub struct DecodeCounters {
    // --- traffic ---
    /// Export packets handed to the decoder.
    pub packets: u64,
    /// Flow records emitted (including replayed ones).
    pub records: u64,
    /// Options data records consumed (sampling, system init time).
    pub options_records: u64,
    /// Data templates received (new or refreshed).
    pub templates: u64,
    /// Options templates received (new or refreshed).
    pub options_templates: u64,
    /// Template withdrawals honoured (RFC 7011 §8.1); withdraw-all counts once.
    pub template_withdrawals: u64,
    /// Templates dropped because they were not refreshed within the TTL.
    pub templates_expired: u64,
    /// Templates evicted to respect the per-exporter limits.
    pub templates_evicted: u64,
    /// Data sets that arrived before their template.
    pub missing_template: u64,
    /// Data sets queued to wait for their template.
    pub pending_buffered: u64,
    /// Queued data sets decoded after their template arrived.
    pub pending_replayed: u64,
    /// Queued data sets dropped because their template did not come within the timeout.
    pub pending_expired: u64,
    /// Reserved set ids (v9 2–255, IPFIX 4–255) skipped.
    pub unknown_set_id: u64,
    /// IPFIX records with sysUpTime times but no systemInitTimeMilliseconds known; their
    /// times fall back to the export time.
    pub uptime_without_init: u64,
    // --- errors, one per DecodeError variant ---
    pub truncated_header: u64,
    pub bad_version: u64,
    pub message_length: u64,
    pub truncated_records: u64,
    pub truncated_set: u64,
    pub bad_set_length: u64,
    pub template_too_many_fields: u64,
    pub template_truncated: u64,
    pub zero_length_field: u64,
    pub invalid_template_id: u64,
    pub bad_options_template: u64,
    pub field_past_end: u64,
    pub template_limit: u64,
    pub pending_overflow: u64,
    pub exporter_limit: u64,
    pub domain_limit: u64,
    pub sampler_limit: u64,
}

impl DecodeCounters {
    /// Counts one error under its reason.
    pub fn count_error(&mut self, error: &DecodeError) {
        let slot = match error {
            DecodeError::TruncatedHeader { .. } => &mut self.truncated_header,
            DecodeError::BadVersion { .. } => &mut self.bad_version,
            DecodeError::MessageLength { .. } => &mut self.message_length,
            DecodeError::TruncatedRecords { .. } => &mut self.truncated_records,
            DecodeError::TruncatedSet { .. } => &mut self.truncated_set,
            DecodeError::BadSetLength { .. } => &mut self.bad_set_length,
            DecodeError::TemplateTooManyFields { .. } => &mut self.template_too_many_fields,
            DecodeError::TemplateTruncated { .. } => &mut self.template_truncated,
            DecodeError::ZeroLengthField { .. } => &mut self.zero_length_field,
            DecodeError::InvalidTemplateId { .. } => &mut self.invalid_template_id,
            DecodeError::BadOptionsTemplate { .. } => &mut self.bad_options_template,
            DecodeError::FieldPastEnd { .. } => &mut self.field_past_end,
            DecodeError::TemplateLimit { .. } => &mut self.template_limit,
            DecodeError::PendingOverflow { .. } => &mut self.pending_overflow,
            DecodeError::ExporterLimit => &mut self.exporter_limit,
            DecodeError::DomainLimit { .. } => &mut self.domain_limit,
            DecodeError::SamplerLimit => &mut self.sampler_limit,
        };
        *slot += 1;
    }

    /// Total of all error counters.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.truncated_header
            + self.bad_version
            + self.message_length
            + self.truncated_records
            + self.truncated_set
            + self.bad_set_length
            + self.template_too_many_fields
            + self.template_truncated
            + self.zero_length_field
            + self.invalid_template_id
            + self.bad_options_template
            + self.field_past_end
            + self.template_limit
            + self.pending_overflow
            + self.exporter_limit
            + self.domain_limit
            + self.sampler_limit
    }

    /// Adds `other` into `self`, field by field (for merging workers or exporters).
    pub fn merge(&mut self, other: &Self) {
        macro_rules! add {
            ($($f:ident),* $(,)?) => { $( self.$f += other.$f; )* };
        }
        add!(
            packets,
            records,
            options_records,
            templates,
            options_templates,
            template_withdrawals,
            templates_expired,
            templates_evicted,
            missing_template,
            pending_buffered,
            pending_replayed,
            pending_expired,
            unknown_set_id,
            uptime_without_init,
            truncated_header,
            bad_version,
            message_length,
            truncated_records,
            truncated_set,
            bad_set_length,
            template_too_many_fields,
            template_truncated,
            zero_length_field,
            invalid_template_id,
            bad_options_template,
            field_past_end,
            template_limit,
            pending_overflow,
            exporter_limit,
            domain_limit,
            sampler_limit,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_copy() {
        fn is_copy<T: Copy>() {}
        is_copy::<DecodeError>();
        assert!(std::mem::size_of::<DecodeError>() <= 12);
    }

    #[test]
    fn merge_adds_every_field() {
        let mut a = DecodeCounters {
            records: 2,
            bad_version: 1,
            ..Default::default()
        };
        let b = DecodeCounters {
            records: 3,
            sampler_limit: 4,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.records, 5);
        assert_eq!(a.bad_version, 1);
        assert_eq!(a.sampler_limit, 4);
        assert_eq!(a.errors(), 5);
    }
}
