//! Fuzzes the decoder with version-5 datagrams (see `common.rs` for the input layout).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::run(data, 5));
