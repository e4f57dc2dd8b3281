//! `cargo xtask fuzz`: the decoder fuzz targets in `fuzz/` under cargo-fuzz (libFuzzer).
//!
//! `cargo xtask test` runs each target for [`CI_SECONDS`]; a longer hunt is
//! `cargo xtask fuzz --seconds 3600`. Crashes land in `fuzz/artifacts/<target>/` and fail the
//! run.

use std::process::Command;

use anyhow::Result;

use crate::{check, quiet_ok, root};

/// Seconds per target in the test suite.
pub const CI_SECONDS: u64 = 20;

/// The targets, one per decoder.
pub const TARGETS: &[&str] = &["decode_v5", "decode_v9", "decode_ipfix"];

pub fn run(seconds: u64, only: Option<&str>) -> Result<()> {
    if !quiet_ok(Command::new("cargo").args(["fuzz", "--version"])) {
        eprintln!("setup: installing cargo-fuzz");
        check(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        eprintln!("fuzz: {target} for {seconds}s");
        check(
            Command::new("cargo")
                .current_dir(root().join("fuzz"))
                // The fuzz crate links the flowguard library only; it needs no eBPF object.
                .env("AYA_BUILD_SKIP", "1")
                .args([
                    "+nightly",
                    "fuzz",
                    "run",
                    target,
                    "--",
                    &format!("-max_total_time={seconds}"),
                ]),
        )?;
    }
    Ok(())
}
