//! Set (v9 "flowset") header view and template record parsing.
//!
//! Every v9 flowset and IPFIX set starts with a 4-byte header (RFC 3954 §5.2, RFC 7011
//! §3.3.2): set id and length, the length covering the header. Set ids:
//!
//! | id      | v9                        | IPFIX                     |
//! |---------|---------------------------|---------------------------|
//! | 0       | template flowset          | reserved                  |
//! | 1       | options template flowset  | reserved                  |
//! | 2       | reserved                  | template set              |
//! | 3       | reserved                  | options template set      |
//! | 4–255   | reserved                  | reserved                  |
//! | ≥ 256   | data flowset (template id)| data set (template id)    |
//!
//! Template records are parsed with nom: they are rare (once per refresh), and
//! each has a variable number of field specifiers.

use nom::{IResult, Parser, number::complete::be_u16, number::complete::be_u32};
use serde::{Deserialize, Serialize};

use super::{Truncated, be_u16 as load_u16};
use crate::decode::error::DecodeError;

mod field {
    pub const SET_ID: usize = 0;
    pub const LENGTH: usize = 2;
    pub const HEADER_LEN: usize = 4;
}

/// Length of a set header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// v9 template flowset id.
pub const V9_TEMPLATE: u16 = 0;
/// v9 options template flowset id.
pub const V9_OPTIONS_TEMPLATE: u16 = 1;
/// IPFIX template set id.
pub const IPFIX_TEMPLATE: u16 = 2;
/// IPFIX options template set id.
pub const IPFIX_OPTIONS_TEMPLATE: u16 = 3;
/// Smallest data set id (= smallest template id).
pub const MIN_DATA_SET_ID: u16 = 256;
/// Field length that marks an IPFIX variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 65535;

/// View of a set header.
#[derive(Clone, Copy, Debug)]
pub struct SetHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SetHeader<T> {
    /// Wraps `buffer`, failing if it is shorter than [`HEADER_LEN`].
    ///
    /// # Errors
    /// [`Truncated`] when the buffer is too short.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        Ok(Self { buffer })
    }

    /// Set id (see the module table).
    pub fn set_id(&self) -> u16 {
        load_u16(self.buffer.as_ref(), field::SET_ID)
    }

    /// Set length in bytes, header included.
    pub fn length(&self) -> u16 {
        load_u16(self.buffer.as_ref(), field::LENGTH)
    }
}

/// One field specifier of a template (RFC 7011 §3.2, RFC 3954 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Information element id, without the enterprise bit.
    pub id: u16,
    /// Field length; [`VARIABLE_LENGTH`] for IPFIX variable-length fields.
    pub length: u16,
    /// Private enterprise number, 0 for IANA elements. Enterprise-specific elements are
    /// never interpreted, only skipped by length.
    pub enterprise: u32,
}

/// One record of a template or options template set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateItem {
    /// A (re)definition.
    Template {
        /// Template id (≥ 256).
        template_id: u16,
        /// Leading fields that are scope fields (0 for data templates).
        scope_field_count: u16,
        /// Fields in order.
        fields: Vec<FieldSpec>,
        /// Options template (v9 flowset 1 / IPFIX set 3).
        options: bool,
    },
    /// An IPFIX template withdrawal (field count 0, RFC 7011 §8.1). `template_id` 2 or 3
    /// withdraws every data or options template of the domain.
    Withdraw {
        /// Template id, or the set id for withdraw-all.
        template_id: u16,
        /// From an options template set.
        options: bool,
    },
}

/// Flavour of template set to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateSetKind {
    /// v9 flowset 0.
    V9Template,
    /// v9 flowset 1.
    V9Options,
    /// IPFIX set 2.
    IpfixTemplate,
    /// IPFIX set 3.
    IpfixOptions,
}

impl TemplateSetKind {
    /// The kind for a set id of the given version (`ipfix` true for version 10).
    #[must_use]
    pub fn from_set_id(set_id: u16, ipfix: bool) -> Option<Self> {
        match (set_id, ipfix) {
            (V9_TEMPLATE, false) => Some(Self::V9Template),
            (V9_OPTIONS_TEMPLATE, false) => Some(Self::V9Options),
            (IPFIX_TEMPLATE, true) => Some(Self::IpfixTemplate),
            (IPFIX_OPTIONS_TEMPLATE, true) => Some(Self::IpfixOptions),
            _ => None,
        }
    }

    fn min_record(self) -> usize {
        match self {
            Self::V9Template | Self::IpfixTemplate | Self::IpfixOptions => 4,
            Self::V9Options => 6,
        }
    }
}

/// Iterator over the template records of one set body (after the set header).
///
/// It stops at padding: fewer bytes than the smallest template record header, or only
/// zero bytes left (RFC 7011 §3.3.1, RFC 3954 §5.3). After an error it yields `None`,
/// because the next record's start can no longer be known.
#[derive(Debug)]
pub struct TemplateRecords<'a> {
    rest: &'a [u8],
    kind: TemplateSetKind,
    max_fields: u16,
    done: bool,
}

impl<'a> TemplateRecords<'a> {
    /// Parses `body` as a set of `kind`, refusing templates with more than `max_fields`
    /// fields before allocating anything for them.
    #[must_use]
    pub fn new(body: &'a [u8], kind: TemplateSetKind, max_fields: u16) -> Self {
        Self {
            rest: body,
            kind,
            max_fields,
            done: false,
        }
    }
}

type NomResult<'a, O> = IResult<&'a [u8], O>;

fn field_spec(ipfix: bool) -> impl Fn(&[u8]) -> NomResult<'_, FieldSpec> {
    move |i| {
        let (i, (raw_id, length)) = (be_u16, be_u16).parse(i)?;
        // RFC 7011 §3.2: the top bit of the element id is the enterprise bit, and a 4-byte
        // enterprise number follows. v9 has no such bit (RFC 3954 §5.2).
        if ipfix && raw_id & 0x8000 != 0 {
            let (i, enterprise) = be_u32(i)?;
            Ok((
                i,
                FieldSpec {
                    id: raw_id & 0x7fff,
                    length,
                    enterprise,
                },
            ))
        } else {
            Ok((
                i,
                FieldSpec {
                    id: raw_id,
                    length,
                    enterprise: 0,
                },
            ))
        }
    }
}

fn fields(i: &[u8], count: u16, ipfix: bool) -> NomResult<'_, Vec<FieldSpec>> {
    nom::multi::count(field_spec(ipfix), usize::from(count)).parse(i)
}

impl TemplateRecords<'_> {
    fn parse_one(&mut self) -> Result<TemplateItem, DecodeError> {
        let input = self.rest;
        let truncated = |template_id| DecodeError::TemplateTruncated { template_id };
        let (i, (template_id, second)) = (be_u16, be_u16)
            .parse(input)
            .map_err(|_: nom::Err<nom::error::Error<&[u8]>>| truncated(0))?;
        let (rest, item) = match self.kind {
            TemplateSetKind::V9Template | TemplateSetKind::IpfixTemplate => {
                let ipfix = self.kind == TemplateSetKind::IpfixTemplate;
                if second == 0 && ipfix {
                    (
                        i,
                        TemplateItem::Withdraw {
                            template_id,
                            options: false,
                        },
                    )
                } else {
                    self.check_count(template_id, second)?;
                    let (i, fields) =
                        fields(i, second, ipfix).map_err(|_| truncated(template_id))?;
                    (
                        i,
                        TemplateItem::Template {
                            template_id,
                            scope_field_count: 0,
                            fields,
                            options: false,
                        },
                    )
                }
            }
            TemplateSetKind::V9Options => {
                // RFC 3954 §6.1: scope and option lengths are in bytes, 4 per field.
                let (i, option_len) =
                    be_u16::<_, nom::error::Error<&[u8]>>(i).map_err(|_| truncated(template_id))?;
                let scope_len = second;
                if scope_len % 4 != 0 || option_len % 4 != 0 {
                    return Err(DecodeError::BadOptionsTemplate { template_id });
                }
                let count = u32::from(scope_len / 4) + u32::from(option_len / 4);
                let count = u16::try_from(count).unwrap_or(u16::MAX);
                self.check_count(template_id, count)?;
                let (i, fields) = fields(i, count, false).map_err(|_| truncated(template_id))?;
                (
                    i,
                    TemplateItem::Template {
                        template_id,
                        scope_field_count: scope_len / 4,
                        fields,
                        options: true,
                    },
                )
            }
            TemplateSetKind::IpfixOptions => {
                if second == 0 {
                    (
                        i,
                        TemplateItem::Withdraw {
                            template_id,
                            options: true,
                        },
                    )
                } else {
                    let (i, scope_field_count) = be_u16::<_, nom::error::Error<&[u8]>>(i)
                        .map_err(|_| truncated(template_id))?;
                    // RFC 7011 §3.4.2.2: the scope field count MUST NOT be zero.
                    if scope_field_count == 0 || scope_field_count > second {
                        return Err(DecodeError::BadOptionsTemplate { template_id });
                    }
                    self.check_count(template_id, second)?;
                    let (i, fields) =
                        fields(i, second, true).map_err(|_| truncated(template_id))?;
                    (
                        i,
                        TemplateItem::Template {
                            template_id,
                            scope_field_count,
                            fields,
                            options: true,
                        },
                    )
                }
            }
        };
        self.rest = rest;
        Ok(item)
    }

    fn check_count(&self, template_id: u16, field_count: u16) -> Result<(), DecodeError> {
        if field_count > self.max_fields {
            return Err(DecodeError::TemplateTooManyFields {
                template_id,
                field_count,
            });
        }
        Ok(())
    }
}

impl Iterator for TemplateRecords<'_> {
    type Item = Result<TemplateItem, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done
            || self.rest.len() < self.kind.min_record()
            || self.rest.iter().all(|&b| b == 0)
        {
            return None;
        }
        let item = self.parse_one();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_set_header() {
        let h = SetHeader::new_checked(&[1u8, 0, 0, 12][..]).unwrap();
        assert_eq!(h.set_id(), 256);
        assert_eq!(h.length(), 12);
        assert!(SetHeader::new_checked(&[1u8, 0, 0][..]).is_err());
    }

    #[test]
    fn ipfix_template_with_enterprise_and_padding() {
        let body = [
            1, 0, 0, 2, // template 256, 2 fields
            0, 8, 0, 4, // sourceIPv4Address
            0x80, 1, 0xff, 0xff, 0, 0, 0x75, 0x30, // enterprise 30000 IE 1, variable
            0, 0, // padding
        ];
        let items: Vec<_> =
            TemplateRecords::new(&body, TemplateSetKind::IpfixTemplate, 100).collect();
        assert_eq!(
            items,
            vec![Ok(TemplateItem::Template {
                template_id: 256,
                scope_field_count: 0,
                fields: vec![
                    FieldSpec {
                        id: 8,
                        length: 4,
                        enterprise: 0
                    },
                    FieldSpec {
                        id: 1,
                        length: VARIABLE_LENGTH,
                        enterprise: 30000
                    },
                ],
                options: false,
            })]
        );
    }

    #[test]
    fn v9_options_template() {
        let body = [
            1, 4, 0, 4, 0, 8, // template 260, scope 4 bytes, options 8 bytes
            0, 1, 0, 4, // scope System
            0, 34, 0, 4, 0, 35, 0, 1, // SAMPLING_INTERVAL, SAMPLING_ALGORITHM
            0, 0, // padding
        ];
        let items: Vec<_> = TemplateRecords::new(&body, TemplateSetKind::V9Options, 100).collect();
        assert_eq!(items.len(), 1);
        let Ok(TemplateItem::Template {
            template_id: 260,
            scope_field_count: 1,
            fields,
            options: true,
        }) = &items[0]
        else {
            panic!("{items:?}");
        };
        assert_eq!(fields.len(), 3);
        let bad = [1, 4, 0, 3, 0, 8, 0, 0, 0, 0];
        let items: Vec<_> = TemplateRecords::new(&bad, TemplateSetKind::V9Options, 100).collect();
        assert_eq!(
            items,
            vec![Err(DecodeError::BadOptionsTemplate { template_id: 260 })]
        );
    }

    #[test]
    fn withdrawals_and_errors() {
        let body = [1, 0, 0, 0, 0, 2, 0, 0];
        let items: Vec<_> =
            TemplateRecords::new(&body, TemplateSetKind::IpfixTemplate, 100).collect();
        assert_eq!(
            items,
            vec![
                Ok(TemplateItem::Withdraw {
                    template_id: 256,
                    options: false
                }),
                Ok(TemplateItem::Withdraw {
                    template_id: 2,
                    options: false
                })
            ]
        );
        // Declared 65,535 fields: refused before parsing, and the iterator stops.
        let body = [1, 0, 0xff, 0xff, 0, 8, 0, 4, 1, 1, 0, 1];
        let items: Vec<_> = TemplateRecords::new(&body, TemplateSetKind::V9Template, 512).collect();
        assert_eq!(
            items,
            vec![Err(DecodeError::TemplateTooManyFields {
                template_id: 256,
                field_count: 65535
            })]
        );
        // Fields run past the end of the set.
        let body = [1, 0, 0, 3, 0, 8, 0, 4];
        let items: Vec<_> =
            TemplateRecords::new(&body, TemplateSetKind::IpfixTemplate, 512).collect();
        assert_eq!(
            items,
            vec![Err(DecodeError::TemplateTruncated { template_id: 256 })]
        );
        // Options with scope count above field count.
        let body = [1, 0, 0, 1, 0, 2, 0, 8, 0, 4];
        let items: Vec<_> =
            TemplateRecords::new(&body, TemplateSetKind::IpfixOptions, 512).collect();
        assert_eq!(
            items,
            vec![Err(DecodeError::BadOptionsTemplate { template_id: 256 })]
        );
    }
}
