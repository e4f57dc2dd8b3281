//! `cargo xtask`: setup, build, run, test, lab and benchmarks for flowguard.
//!
//! Every command first runs [`setup`], which installs what is missing and is a no-op (well
//! under a second) when nothing is, so a fresh machine needs only the README's commands.

mod bench;
mod e2e;
mod fuzz;
mod lab;
mod setup;
mod soak;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the toolchain pieces, bpf-linker, Debian and PyPI packages the project needs.
    Setup,
    /// Build flowguard (release) with its eBPF object.
    Build,
    /// Build and run `flowguard run <ARGS>` as root. Without ARGS: a demo on a lab namespace.
    Run {
        /// Arguments for `flowguard run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the whole test suite, privileged end-to-end tests included.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the decoder fuzz targets (cargo-fuzz, installed if missing) for a while each.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (decode_v5, decode_v9, decode_ipfix).
        #[arg(long)]
        target: Option<String>,
    },
    /// Replay a mixed scenario with attacks for N minutes, sampling RSS, counters and
    /// findings; fails on memory growth, unaccounted loss or a missed attack.
    Soak {
        /// Wall-clock minutes.
        #[arg(long, default_value_t = 20)]
        minutes: u64,
        /// Hours of scenario event time replayed over them.
        #[arg(long, default_value_t = 6.0)]
        hours: f64,
        /// Export format (v9 or ipfix).
        #[arg(long, default_value = "ipfix")]
        format: String,
    },
    /// Manage the namespace/veth lab.
    Lab {
        #[command(subcommand)]
        action: lab::Action,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Task::Setup => setup::run(),
        Task::Build => {
            setup::run()?;
            build_flowguard(true).map(drop)
        }
        Task::Run { args } => {
            setup::run()?;
            let bin = build_flowguard(true)?;
            if args.is_empty() {
                lab::demo(&bin)
            } else {
                run_as_root(&bin, &args)
            }
        }
        Task::Test { args } => {
            setup::run()?;
            test(&args)
        }
        Task::Fuzz { seconds, target } => {
            setup::run()?;
            fuzz::run(seconds, target.as_deref())
        }
        Task::Soak {
            minutes,
            hours,
            format,
        } => {
            setup::run()?;
            soak::run(minutes, hours, &format)
        }
        Task::Lab { action } => lab::run(action),
        Task::Bench { which } => {
            setup::run()?;
            bench::run(which)
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the `flowguard` binary and returns its path.
pub fn build_flowguard(release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["build", "--package", "flowguard-user", "--bin", "flowguard"]);
    if release {
        cmd.arg("--release");
    }
    cmd.env_remove("AYA_BUILD_SKIP");
    check(&mut cmd)?;
    let bin = root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("flowguard");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

fn test(extra: &[String]) -> Result<()> {
    let bin = build_flowguard(false)?;
    let xtask = std::env::current_exe().context("locating xtask")?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .env("FLOWGUARD_BIN", &bin)
        .env("FLOWGUARD_XTASK", &xtask)
        .env("FLOWGUARD_REQUIRE_PRIVILEGED", "1");
    check(&mut cmd)?;
    // A short fuzz run of every decoder target: a crash fails the suite.
    fuzz::run(fuzz::CI_SECONDS, None)
}

fn run_as_root(bin: &Path, args: &[String]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new(bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg(bin);
        c
    };
    cmd.arg("run").args(args);
    check(&mut cmd)
}

/// Whether we are root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a command, failing with its command line if it fails.
pub fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns whether it succeeded, quietly.
pub fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
