//! Builds the kernel programs in `flowguard-ebpf` for `bpfel-unknown-none` with aya-build and
//! leaves the object in `OUT_DIR/flowguard`, where `capture::xdp` embeds it with
//! `include_bytes_aligned!`.
//!
//! This needs the nightly toolchain's `rust-src` and `bpf-linker`; `cargo xtask setup`
//! installs both. With `AYA_BUILD_SKIP=1` (for `cargo check`/clippy on a machine without
//! them) an empty object is written instead, and loading it fails at run time with a
//! message that names the setup command.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out_dir.join("flowguard");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        if !object.exists() {
            fs::write(&object, []).context("write placeholder eBPF object")?;
        }
        return Ok(());
    }
    if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker is not installed; run `cargo xtask setup` first (it installs the \
             nightly rust-src component and bpf-linker built against rustc's LLVM)"
        ));
    }
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../flowguard-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "flowguard-ebpf",
            root_dir: ebpf_dir,
            no_default_features: true,
            features: &["ebpf"],
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs (run `cargo xtask setup` if the toolchain is missing)")
}

fn which_bpf_linker() -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}
