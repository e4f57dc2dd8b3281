//! Zero-copy views of the wire units, in the manner of smoltcp's `wire` module.
//!
//! Each view wraps a buffer `T: AsRef<[u8]>`. `new_checked` verifies that the buffer is
//! long enough for every fixed field; after that **no accessor can panic**, because each
//! reads at a constant offset inside the checked length. `new_unchecked` skips the
//! check and is only for buffers the caller has already measured. Field offsets live in a
//! private `mod field` in each file.

pub mod ipfix;
pub mod set;
pub mod v5;
pub mod v9;

/// The buffer is shorter than the fixed part of the wire unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {len} bytes is shorter than the {needed}-byte header")]
pub struct Truncated {
    /// Bytes available.
    pub len: usize,
    /// Bytes needed.
    pub needed: usize,
}

/// Reads a big-endian `u16` at a fixed offset. Callers pass offsets inside a length
/// checked by `new_checked`; the fallback value is never observed there.
#[inline]
pub(crate) fn be_u16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Reads a big-endian `u32` at a fixed offset (see [`be_u16`]).
#[inline]
pub(crate) fn be_u32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Reads an unsigned big-endian integer of 1 to 8 bytes (RFC 7011 §6.2 reduced-size
/// encoding). Longer fields keep their low 8 bytes.
#[inline]
pub(crate) fn be_uint(bytes: &[u8]) -> u64 {
    // The common widths get a single load; the fold is for odd reduced sizes.
    match bytes.len() {
        1 => bytes.first().copied().map_or(0, u64::from),
        2 => <[u8; 2]>::try_from(bytes).map_or(0, |b| u64::from(u16::from_be_bytes(b))),
        4 => <[u8; 4]>::try_from(bytes).map_or(0, |b| u64::from(u32::from_be_bytes(b))),
        8 => <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes),
        _ => {
            let tail = bytes.len().saturating_sub(8);
            bytes
                .get(tail..)
                .unwrap_or_default()
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        }
    }
}

/// Version of an export message (first two bytes of every format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// NetFlow v5 (Cisco, fixed records).
    V5,
    /// NetFlow v9 (RFC 3954).
    V9,
    /// IPFIX (RFC 7011, version 10).
    Ipfix,
    /// Anything else.
    Unknown(u16),
}

impl From<u16> for Version {
    fn from(v: u16) -> Self {
        match v {
            5 => Self::V5,
            9 => Self::V9,
            10 => Self::Ipfix,
            other => Self::Unknown(other),
        }
    }
}

impl From<Version> for u16 {
    fn from(v: Version) -> Self {
        match v {
            Version::V5 => 5,
            Version::V9 => 9,
            Version::Ipfix => 10,
            Version::Unknown(other) => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be_uint_reduced_sizes() {
        assert_eq!(be_uint(&[]), 0);
        assert_eq!(be_uint(&[1]), 1);
        assert_eq!(be_uint(&[1, 2, 3]), 0x01_0203);
        assert_eq!(be_uint(&[9, 0, 0, 0, 0, 0, 0, 0, 0x10]), 0x10);
        assert_eq!(be_u16(&[1], 0), 0);
        assert_eq!(Version::from(10), Version::Ipfix);
        assert_eq!(u16::from(Version::Unknown(7)), 7);
    }
}
