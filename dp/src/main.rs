//! atoll-dp: registers a Dataplane with the Atoll control plane, then starts and supervises its
//! Envoy. This file only wires the command line, logging, signals and the exit code.

mod bootstrap_client;
mod config;
mod dataplane;
mod envoy;
mod run;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = config::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATOLL_DP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();

    // Current-thread on purpose: Envoy is spawned from this (main) thread, and its
    // parent-death signal fires when the spawning thread ends (see envoy.rs).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config::Command::Run(args) = cli.command;
    let outcome = runtime.block_on(async {
        let shutdown = match watch_signals() {
            Ok(rx) => rx,
            Err(e) => return Err(vec![format!("cannot listen for signals: {e}")]),
        };
        run::run(args, shutdown).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(lines) => {
            for line in lines {
                eprintln!("Error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A flag that turns true on the first SIGTERM or SIGINT.
fn watch_signals() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if *tx.borrow() {
                tracing::info!("{name} received; already stopping");
            } else {
                tracing::info!("{name} received; stopping");
                let _ = tx.send(true);
            }
        }
    });
    Ok(rx)
}
