//! `capacity`: what N proxies cost one zone control plane. A standalone `atoll-zone-cp` (builtin
//! mTLS, an allow-all MeshTrafficPermission), N Dataplanes registered through its REST API, then
//! N simulated proxies (delta ADS over TLS, see `sim`) connecting at once. Measured: the zone
//! CP's resident memory after all are connected minus before (idle, nothing registered), the CPU
//! seconds it spent while they connected, and the time until every proxy ACKed its first full
//! config (clusters, endpoints, secrets with its certificate, listeners).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::controlplanes::{
    ControlPlane, MESH, Stores, clock_ticks, cpu_seconds, dataplane, mesh_doc, permission_doc,
    rss_bytes,
};
use crate::sim::{Fleet, launch};

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Simulated proxies (and Dataplanes).
    #[arg(long, default_value_t = 1000)]
    dataplanes: usize,
    /// Services in the mesh (each proxy has 2-5 outbounds to others).
    #[arg(long, default_value_t = 50)]
    services: usize,
    /// Store of the zone CP: sqlite, postgres or memory.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Proxies sharing one TLS connection (Envoy has its own: 1).
    #[arg(long, default_value_t = 1)]
    proxies_per_connection: usize,
    /// Proxies between opening their stream and their full config at any moment.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

pub async fn run(args: CapacityArgs) -> Result<()> {
    if args.dataplanes == 0 || args.services < 3 {
        bail!("--dataplanes must be positive and --services at least 3");
    }
    let limit = Duration::from_secs(args.timeout_s);
    let ticks = clock_ticks();
    let dir = tempfile::tempdir().context("temporary directory")?;
    let stores = Stores::new(&args.store, 1).await?;
    let result = measure(&args, dir.path(), &stores, limit, ticks).await;
    stores.finish().await;
    result
}

async fn measure(
    args: &CapacityArgs,
    dir: &std::path::Path,
    stores: &Stores,
    limit: Duration,
    ticks: f64,
) -> Result<()> {
    let mut zone = ControlPlane::start_zone(dir, "zone-1", stores.url(0), None).await?;
    let pid = zone.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_bytes(pid)?;
    eprintln!(
        "zone CP pid {pid} up; idle RSS {:.1} MiB",
        idle_rss as f64 / 1048576.0
    );

    zone.put(&format!("/meshes/{MESH}"), &mesh_doc()).await?;
    zone.put(
        &format!("/meshes/{MESH}/meshtrafficpermissions/bench-all"),
        &permission_doc(true),
    )
    .await?;
    let (docs, specs): (Vec<_>, Vec<_>) = (0..args.dataplanes)
        .map(|i| dataplane(1, i, args.services))
        .unzip();
    zone.register_dataplanes(&docs, 8).await?;
    let busy = zone.wait_quiet(ticks, limit).await?;
    eprintln!("zone CP idle again {busy:.1} s after the last registration");
    let registered_rss = rss_bytes(pid)?;
    eprintln!(
        "RSS with {} dataplanes registered, none connected: {:.1} MiB",
        args.dataplanes,
        registered_rss as f64 / 1048576.0
    );

    let ca_pem = zone.xds_ca_pem()?;
    let fleet = Arc::new(Fleet::default());
    let specs: Vec<_> = specs.into_iter().map(Arc::new).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let cpu_before = cpu_seconds(pid, ticks)?;
    let started_us = fleet.now_us();
    let started = Instant::now();
    eprintln!("connecting {} simulated proxies ...", specs.len());
    launch(
        &mut tasks,
        &fleet,
        &specs,
        zone.xds_port,
        &ca_pem,
        args.proxies_per_connection,
        args.connect_concurrency,
    )
    .await?;
    let waited = fleet
        .wait_ready(
            specs.len(),
            started_us,
            limit.saturating_sub(started.elapsed()),
        )
        .await;
    zone.check_alive()?;
    let connect_all_s = waited?;
    let cpu_connect = cpu_seconds(pid, ticks)? - cpu_before;
    eprintln!(
        "all {} proxies have their full config after {connect_all_s:.2} s ({} responses)",
        specs.len(),
        fleet.responses()
    );
    // Let allocations settle (the last responses, freed buffers) before reading the RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet.check()?;
    zone.check_alive()?;
    let rss = rss_bytes(pid)?;
    let cpu_total = cpu_seconds(pid, ticks)?;
    let added = rss.saturating_sub(idle_rss);
    let per_dp_kb = added as f64 / 1024.0 / specs.len() as f64;
    println!(
        "zone CP RSS: idle {:.1} MiB, {} dataplanes registered {:.1} MiB, all connected {:.1} MiB",
        idle_rss as f64 / 1048576.0,
        specs.len(),
        registered_rss as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
    let (reconnects, why) = fleet.reconnects();
    if reconnects > 0 {
        println!(
            "reconnects: {reconnects} (the first: {})",
            why.unwrap_or_default()
        );
    }
    println!(
        "per proxy: {per_dp_kb:.1} KiB over idle ({:.1} KiB of it after registration); CPU {cpu_connect:.2} s while connecting, {cpu_total:.2} s since start",
        rss.saturating_sub(registered_rss) as f64 / 1024.0 / specs.len() as f64
    );
    println!(
        "capacity dataplanes={} zone_cp_rss_mb={:.1} rss_per_dp_kb={per_dp_kb:.1} connect_all_s={connect_all_s:.2} cpu_s={cpu_connect:.2}",
        specs.len(),
        added as f64 / 1048576.0
    );
    tasks.abort_all();
    drop(zone);
    Ok(())
}
