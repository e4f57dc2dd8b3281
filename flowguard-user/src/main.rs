//! The `flowguard` binary: parse flags, validate, dispatch, and report errors as
//! `flowguard: <what>: <why>`.
use std::process::ExitCode;

use clap::Parser as _;
use flowguard::cli::{Cli, Command};

fn main() -> ExitCode {
    // Before anything else: the process may be replaced by itself on huge pages.
    flowguard::hugepages::restart_if_due();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => args
            .validate()
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                flowguard::run::run(&config, flowguard::detect::standard_detectors).map(drop)
            }),
        Command::Decode(args) => flowguard::run::decode_files(&args).map(drop),
        Command::Replay(args) => flowguard::replay::replay(&args).map(|t| {
            eprintln!(
                "flowguard: replayed {} packets, {} bytes, {} records in {:.2}s ({} send retries)",
                t.packets, t.bytes, t.records, t.seconds, t.retries
            );
        }),
        Command::Scenario(args) => flowguard::scenario::run(&args),
        Command::Analyze(args) => {
            flowguard::analyze::analyze(&args, flowguard::detect::standard_detectors).map(drop)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut msg = format!("flowguard: {err}");
            for cause in err.chain().skip(1) {
                msg.push_str(": ");
                msg.push_str(&cause.to_string());
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
