//! `cargo xtask setup`: install what is missing, idempotently.
//!
//! * the nightly toolchain's `rust-src` (for `-Z build-std=core` on `bpfel-unknown-none`);
//! * bpf-linker 0.13 built against rustc's own LLVM: a prefix directory whose `lib/` holds
//!   `libLLVM.so` and the versioned `libLLVM.so.<ver>-rust-…`, both symlinked into the
//!   nightly sysroot (without the versioned link the linker cannot find libLLVM at run
//!   time);
//! * Debian packages the tests use as peers and oracles;
//! * PyPI packages (scapy, netflow).
//!
//! Each step checks first and skips when done.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{check, quiet_ok};

/// Debian packages: exporters, reference decoders, peers, capture and lab tools.
const DEBIAN: &[(&str, &str)] = &[
    ("tshark", "/usr/bin/tshark"),
    ("softflowd", "/usr/sbin/softflowd"),
    ("nfdump", "/usr/bin/nfcapd"),
    ("tcpreplay", "/usr/bin/tcpreplay"),
    ("tcpdump", "/usr/bin/tcpdump"),
    ("bpftool", "/usr/sbin/bpftool"),
    ("iproute2", "/usr/sbin/ip"),
];

/// PyPI packages, by import name.
const PYPI: &[(&str, &str)] = &[("scapy", "scapy"), ("netflow", "netflow")];

pub fn run() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian()?;
    pypi()?;
    Ok(())
}

fn rust_src() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        bail!("the nightly toolchain is missing: run `rustup toolchain install nightly`");
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(());
    }
    eprintln!("setup: installing rust-src for nightly");
    check(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> Result<()> {
    if quiet_ok(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    let sysroot = String::from_utf8(
        Command::new("rustc")
            .args(["+nightly", "--print", "sysroot"])
            .output()?
            .stdout,
    )?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let versioned = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))?;
    // "libLLVM.so.22.1-rust-1.97.0-nightly" → LLVM major 22.
    let major: String = versioned["libLLVM.so.".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let prefix = cache_dir().join(format!("llvm-prefix-{major}"));
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)?;
    for name in ["libLLVM.so", versioned.as_str()] {
        let link = plib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&versioned), &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
    }
    eprintln!("setup: building bpf-linker against rustc's LLVM {major} (about a minute)");
    check(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                "^0.13",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !quiet_ok(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker installed but does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
        .join(".cache/flowguard")
}

fn debian() -> Result<()> {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(_, bin)| !Path::new(bin).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: apt-get install {}", missing.join(" "));
    let sudo = !crate::is_root();
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    check(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    check(&mut install)
}

fn pypi() -> Result<()> {
    let missing: Vec<&str> = PYPI
        .iter()
        .filter(|(_, module)| {
            !quiet_ok(Command::new("python3").args(["-c", &format!("import {module}")]))
        })
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: pip install {}", missing.join(" "));
    check(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(&missing),
    )
}
