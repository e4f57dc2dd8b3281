//! NetFlow v9 packet header view (RFC 3954 §5.1).
//!
//! ```text
//!  0                   1                   2                   3
//! |       Version Number          |            Count              |
//! |                           sysUpTime                           |
//! |                           UNIX Secs                           |
//! |                       Sequence Number                         |
//! |                        Source ID                              |
//! ```
//!
//! `Count` is the number of records (template and data) in the packet; exporters get
//! it wrong often enough that the decoder walks the flowsets by length instead.

use super::{Truncated, be_u16, be_u32};

mod field {
    pub const VERSION: usize = 0;
    pub const COUNT: usize = 2;
    pub const SYS_UPTIME: usize = 4;
    pub const UNIX_SECS: usize = 8;
    pub const SEQUENCE: usize = 12;
    pub const SOURCE_ID: usize = 16;
    pub const HEADER_LEN: usize = 20;
}

/// Length of the v9 header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// View of the v9 packet header.
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

    /// Version field (9).
    pub fn version(&self) -> u16 {
        be_u16(self.b(), field::VERSION)
    }
    /// Records in the packet (advisory).
    pub fn count(&self) -> u16 {
        be_u16(self.b(), field::COUNT)
    }
    /// Milliseconds since the device booted.
    pub fn sys_uptime(&self) -> u32 {
        be_u32(self.b(), field::SYS_UPTIME)
    }
    /// Export time, seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u32 {
        be_u32(self.b(), field::UNIX_SECS)
    }
    /// Sequence number of export packets.
    pub fn sequence(&self) -> u32 {
        be_u32(self.b(), field::SEQUENCE)
    }
    /// Exporter observation domain (RFC 3954 "Source ID").
    pub fn source_id(&self) -> u32 {
        be_u32(self.b(), field::SOURCE_ID)
    }
    /// The flowsets after the header.
    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header() {
        let b = [
            0, 9, 0, 3, 0, 0, 0, 10, 0x5f, 0, 0, 1, 0, 0, 0, 42, 0, 0, 1, 0, 0xaa,
        ];
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(h.version(), 9);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sys_uptime(), 10);
        assert_eq!(h.unix_secs(), 0x5f00_0001);
        assert_eq!(h.sequence(), 42);
        assert_eq!(h.source_id(), 256);
        assert_eq!(h.payload(), &[0xaa]);
        assert!(Header::new_checked(&b[..19]).is_err());
    }
}
