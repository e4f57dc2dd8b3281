//! Templates compiled into flat field tables.
//!
//! A template arrives rarely and describes millions of records, so all the work happens
//! once, here: each field specifier becomes `(offset, length, Ie)`, elements the decoder
//! ignores are dropped from the table, and a template of fixed-length fields gets a fixed
//! record length. Records of such a template decode with direct loads at constant offsets.
//! Only templates with IPFIX variable-length fields (RFC 7011 §7) take the slow path that
//! walks every field.

use serde::{Deserialize, Serialize};

use super::error::DecodeError;
use super::ie::{Ie, RawRecord};
use super::layout::Layout;
use super::wire::set::{FieldSpec, VARIABLE_LENGTH};

/// One entry of a compiled field table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledField {
    /// Byte offset in the record (fixed-length templates only; 0 otherwise).
    pub offset: u16,
    /// Field length, or [`VARIABLE_LENGTH`].
    pub length: u16,
    /// What the field is.
    pub ie: Ie,
}

/// A template as received, kept so that it can be snapshotted and recompiled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// Template id.
    pub template_id: u16,
    /// Export version (9 or 10): v9 scope fields use their own numbering.
    pub version: u16,
    /// Options template.
    pub options: bool,
    /// Leading scope fields.
    pub scope_field_count: u16,
    /// Field specifiers in order.
    pub fields: Vec<FieldSpec>,
}

/// A compiled template.
#[derive(Clone, Debug)]
pub struct Template {
    /// The template as received.
    pub spec: TemplateSpec,
    /// Fixed record length, or the minimum (variable-length fields count 1 byte) when
    /// `variable` is set.
    pub record_len: usize,
    /// True when some field is variable-length, forcing the field-by-field walk.
    pub variable: bool,
    /// Fixed templates: only the fields the decoder uses, with offsets. Variable
    /// templates: every field in order, unknown ones included, since each must be walked.
    pub fields: Vec<CompiledField>,
    /// Fixed data templates whose fields need no per-record decisions: each record field's
    /// place, so records decode with one load per field ([`Layout`]). `None` sends records
    /// through `fields` and [`RawRecord`].
    pub layout: Option<Layout>,
    /// Time of the last definition or refresh (caller's clock, ms).
    pub last_seen_ms: u64,
    /// Insertion number, used to find the oldest template for eviction.
    pub generation: u64,
}

/// Result of compiling: the template, and the first zero-length field if there was one
/// (those fields are ignored, but counted).
pub type Compiled = (Template, Option<DecodeError>);

impl Template {
    /// Compiles `spec`.
    ///
    /// # Errors
    /// [`DecodeError::ZeroLengthField`] when every field is zero-length, so that a record
    /// would be 0 bytes long and a data set could never be walked.
    pub fn compile(spec: TemplateSpec, now_ms: u64) -> Result<Compiled, DecodeError> {
        let template_id = spec.template_id;
        let ipfix = spec.version == 10;
        let variable = ipfix && spec.fields.iter().any(|f| f.length == VARIABLE_LENGTH);
        let mut zero = None;
        let mut fields = Vec::new();
        let mut offset: usize = 0;
        for (i, f) in spec.fields.iter().enumerate() {
            // RFC 3954 §6.1: v9 scope field types (System, Interface, Line Card, Cache,
            // Template) are a numbering of their own, so they are never elements.
            let is_v9_scope = !ipfix && spec.options && i < usize::from(spec.scope_field_count);
            let ie = if is_v9_scope {
                Ie::Unknown(f.id)
            } else {
                Ie::new(f.id, f.enterprise)
            };
            if f.length == 0 {
                // Cisco sends the v9 `System` scope with length 0: harmless, and too
                // common to count as an error.
                if !is_v9_scope {
                    zero.get_or_insert(DecodeError::ZeroLengthField {
                        template_id,
                        field_id: f.id,
                    });
                }
                continue;
            }
            let on_wire = if ipfix && f.length == VARIABLE_LENGTH {
                1
            } else {
                usize::from(f.length)
            };
            if variable {
                fields.push(CompiledField {
                    offset: 0,
                    length: f.length,
                    ie,
                });
            } else if !ie.is_unknown() && u16::try_from(offset + on_wire).is_ok() {
                // Offsets past 65,535 cannot occur in a UDP datagram; a template that
                // claims them simply never matches a data set (record_len is too big).
                fields.push(CompiledField {
                    offset: u16::try_from(offset).unwrap_or(u16::MAX),
                    length: f.length,
                    ie,
                });
            }
            offset += on_wire;
        }
        if offset == 0 {
            return Err(zero.unwrap_or(DecodeError::ZeroLengthField {
                template_id,
                field_id: 0,
            }));
        }
        fields.shrink_to_fit();
        let layout = if variable || spec.options {
            None
        } else {
            Layout::new(&fields, offset)
        };
        Ok((
            Self {
                spec,
                record_len: offset,
                variable,
                fields,
                layout,
                last_seen_ms: now_ms,
                generation: 0,
            },
            zero,
        ))
    }

    /// Bytes this template costs in the cache, by the cache's own accounting (struct,
    /// both field tables and a fixed allowance for the hash-map slot).
    #[must_use]
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + 32
            + self.fields.capacity() * std::mem::size_of::<CompiledField>()
            + self.spec.fields.capacity() * std::mem::size_of::<FieldSpec>()
    }

    /// Decodes one record at the start of `data` into `out` and returns its length.
    ///
    /// Returns `Ok(None)` when fewer bytes than a record remain: that is set padding
    /// (RFC 7011 §3.3.1).
    ///
    /// # Errors
    /// [`DecodeError::FieldPastEnd`] when a variable-length field claims more bytes than
    /// remain.
    #[inline]
    pub fn decode_record(
        &self,
        data: &[u8],
        out: &mut RawRecord,
    ) -> Result<Option<usize>, DecodeError> {
        if data.len() < self.record_len {
            return Ok(None);
        }
        if !self.variable {
            let Some(rec) = data.get(..self.record_len) else {
                return Ok(None);
            };
            for f in &self.fields {
                let start = usize::from(f.offset);
                if let Some(v) = rec.get(start..start + usize::from(f.length)) {
                    out.apply(f.ie, v);
                }
            }
            return Ok(Some(self.record_len));
        }
        self.decode_variable(data, out).map(Some)
    }

    /// The slow path: walk each field, reading RFC 7011 §7 length prefixes (one byte,
    /// or 255 followed by a 16-bit length).
    fn decode_variable(&self, data: &[u8], out: &mut RawRecord) -> Result<usize, DecodeError> {
        let past_end = DecodeError::FieldPastEnd {
            template_id: self.spec.template_id,
        };
        let mut at = 0usize;
        for f in &self.fields {
            let len = if f.length == VARIABLE_LENGTH {
                let first = *data.get(at).ok_or(past_end)?;
                at += 1;
                if first == 255 {
                    let hi = *data.get(at).ok_or(past_end)?;
                    let lo = *data.get(at + 1).ok_or(past_end)?;
                    at += 2;
                    usize::from(u16::from_be_bytes([hi, lo]))
                } else {
                    usize::from(first)
                }
            } else {
                usize::from(f.length)
            };
            let v = data.get(at..at + len).ok_or(past_end)?;
            if !f.ie.is_unknown() {
                out.apply(f.ie, v);
            }
            at += len;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: u16, fields: &[(u16, u16)]) -> TemplateSpec {
        TemplateSpec {
            template_id: 300,
            version,
            options: false,
            scope_field_count: 0,
            fields: fields
                .iter()
                .map(|&(id, length)| FieldSpec {
                    id,
                    length,
                    enterprise: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn fixed_template_drops_unknown_fields() {
        let (t, zero) = Template::compile(spec(9, &[(8, 4), (999, 3), (1, 4)]), 0).unwrap();
        assert!(zero.is_none());
        assert!(!t.variable);
        assert_eq!(t.record_len, 11);
        assert_eq!(t.fields.len(), 2);
        assert_eq!(
            t.fields[1],
            CompiledField {
                offset: 7,
                length: 4,
                ie: Ie::OctetDeltaCount
            }
        );
        let mut r = RawRecord::EMPTY;
        let data = [10, 0, 0, 1, 9, 9, 9, 0, 0, 1, 0, 0xee];
        assert_eq!(t.decode_record(&data, &mut r), Ok(Some(11)));
        assert_eq!(r.bytes, 256);
        assert_eq!(t.decode_record(&data[..10], &mut r), Ok(None));
    }

    #[test]
    fn variable_length_fields() {
        let (t, _) = Template::compile(
            spec(10, &[(999, VARIABLE_LENGTH), (1, 2), (82, VARIABLE_LENGTH)]),
            0,
        )
        .unwrap();
        assert!(t.variable);
        assert_eq!(t.record_len, 4);
        // short form (2 bytes), then long form 255 + u16 (3 bytes).
        let data = [2, 0xaa, 0xbb, 0, 7, 255, 0, 3, 1, 2, 3];
        let mut r = RawRecord::EMPTY;
        assert_eq!(t.decode_record(&data, &mut r), Ok(Some(11)));
        assert_eq!(r.bytes, 7);
        assert_eq!(
            t.decode_record(&data[..10], &mut r),
            Err(DecodeError::FieldPastEnd { template_id: 300 })
        );
    }

    #[test]
    fn zero_length_fields() {
        let (t, zero) = Template::compile(spec(9, &[(8, 0), (1, 4)]), 0).unwrap();
        assert_eq!(
            zero,
            Some(DecodeError::ZeroLengthField {
                template_id: 300,
                field_id: 8
            })
        );
        assert_eq!(t.record_len, 4);
        assert_eq!(
            Template::compile(spec(9, &[(8, 0)]), 0).unwrap_err(),
            DecodeError::ZeroLengthField {
                template_id: 300,
                field_id: 8
            }
        );
    }

    #[test]
    fn v9_scope_fields_are_not_elements() {
        let mut s = spec(9, &[(1, 4), (34, 4)]);
        s.options = true;
        s.scope_field_count = 1;
        let (t, _) = Template::compile(s, 0).unwrap();
        assert_eq!(
            t.fields,
            vec![CompiledField {
                offset: 4,
                length: 4,
                ie: Ie::SamplingInterval
            }]
        );
    }
}
