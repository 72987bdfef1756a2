//! `atoll-bench`: Atoll's benchmarks: `store`, the store and REST API at scale (put, get, list a
//! page, watch latency, API GET) on SQLite, PostgreSQL or memory; `xds-gen`, one proxy's config
//! generation in a large mesh; `floor`, push -> ACK between a minimal xDS server and one real
//! Envoy; `dataplane`, the latency two Atoll sidecars add, against two hand-configured Envoys.
//!
//! Numbers are printed, never asserted: BENCHMARKS.md keeps them with the command that made them.

mod capacity;
mod chaos;
mod controlplanes;
mod convergence;
mod dataplane;
mod floor;
mod procs;
mod sim;
mod stats;
mod store_bench;
mod xds_gen;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "atoll-bench", version, about = "Atoll benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store and REST API with many resources: put, get, list a page, watch latency, API GET.
    Store(store_bench::StoreBenchArgs),
    /// Config generation for one proxy in a large mesh (100 outbounds in 5,000 dataplanes).
    XdsGen(xds_gen::XdsGenArgs),
    /// The convergence floor: push -> ACK between a minimal delta ADS server and one Envoy.
    Floor(floor::FloorArgs),
    /// Added latency of two Atoll sidecars vs two minimal static Envoys vs direct, one run.
    Dataplane(dataplane::DataplaneArgs),
    /// Multi-zone convergence: a global CP, Z zone CPs, N simulated proxies per zone; time from
    /// a policy write on global until every concerned proxy ACKed it.
    Convergence(convergence::ConvergenceArgs),
    /// Zone CP capacity: memory, CPU and connect time for N simulated proxies.
    Capacity(capacity::CapacityArgs),
    /// Faults under cross-zone load (global killed, zone CPs restarted, partitions, PostgreSQL
    /// restarted, a poison Dataplane): failed requests, recovery time, state comparison.
    Chaos(chaos::ChaosArgs),
}

/// Resolves on Ctrl-C or SIGTERM, so the benchmark's future is dropped and its guards end every
/// process it started.
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        () = term => "terminated (SIGTERM)",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let bench = async {
            match cli.command {
                Command::Store(args) => store_bench::run(args).await,
                Command::XdsGen(args) => xds_gen::run(&args),
                Command::Floor(args) => floor::run(args).await,
                Command::Dataplane(args) => dataplane::run(args).await,
                Command::Convergence(args) => convergence::run(args).await,
                Command::Capacity(args) => capacity::run(args).await,
                Command::Chaos(args) => chaos::run(args).await,
            }
        };
        tokio::select! {
            result = bench => result,
            why = interrupted() => Err(anyhow::anyhow!("{why}: stopped every process started")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
