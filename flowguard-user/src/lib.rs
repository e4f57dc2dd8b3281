//! flowguard: a security-focused `NetFlow` v5 / v9 / IPFIX collector.
//!
//! The data path is `capture` (XDP ring buffers, `SO_REUSEPORT` sockets, pcap files) →
//! `worker` (one pinned thread per shard) → `decode` (templates and records) → detection.
//! See ARCHITECTURE.md for how the pieces fit.
#![deny(missing_docs)]

pub mod analyze;
pub mod capture;
pub mod cli;
pub mod decode;
pub mod detect;
pub mod hugepages;
pub mod replay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod worker;
