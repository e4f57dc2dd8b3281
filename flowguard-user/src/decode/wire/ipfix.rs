//! IPFIX message header view (RFC 7011 §3.1).
//!
//! ```text
//! |       Version Number          |            Length             |
//! |                           Export Time                         |
//! |                       Sequence Number                         |
//! |                    Observation Domain ID                      |
//! ```
//!
//! `Length` covers the whole message including this header; sets are walked within it.

use super::{Truncated, be_u16, be_u32};

mod field {
    pub const VERSION: usize = 0;
    pub const LENGTH: usize = 2;
    pub const EXPORT_TIME: usize = 4;
    pub const SEQUENCE: usize = 8;
    pub const OBSERVATION_DOMAIN_ID: usize = 12;
    pub const HEADER_LEN: usize = 16;
}

/// Length of the IPFIX message header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// View of the IPFIX message header.
#[derive(Clone, Copy, Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
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

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version field (10).
    pub fn version(&self) -> u16 {
        be_u16(self.b(), field::VERSION)
    }
    /// Total message length in bytes, header included.
    pub fn length(&self) -> u16 {
        be_u16(self.b(), field::LENGTH)
    }
    /// Export time, seconds since the Unix epoch.
    pub fn export_time(&self) -> u32 {
        be_u32(self.b(), field::EXPORT_TIME)
    }
    /// Sequence number: data records sent so far in this domain, modulo 2^32.
    pub fn sequence_number(&self) -> u32 {
        be_u32(self.b(), field::SEQUENCE)
    }
    /// Observation domain id.
    pub fn observation_domain_id(&self) -> u32 {
        be_u32(self.b(), field::OBSERVATION_DOMAIN_ID)
    }
    /// The sets after the header, bounded by `length` when it fits the buffer.
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.length()).min(self.b().len());
        self.b().get(HEADER_LEN..end).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header() {
        let b = [
            0, 10, 0, 18, 0x60, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 7, 0xaa, 0xbb, 0xcc,
        ];
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(h.version(), 10);
        assert_eq!(h.length(), 18);
        assert_eq!(h.export_time(), 0x6000_0000);
        assert_eq!(h.sequence_number(), 5);
        assert_eq!(h.observation_domain_id(), 7);
        // Length 18 excludes the trailing 0xcc.
        assert_eq!(h.payload(), &[0xaa, 0xbb]);
        assert!(Header::new_checked(&b[..15]).is_err());
    }
}
