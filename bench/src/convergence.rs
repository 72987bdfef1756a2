//! `convergence`: how fast a change written on the global control plane reaches every proxy it
//! concerns, in every zone. A real `atoll-global-cp` and Z real `atoll-zone-cp` linked over KDS
//! (zone tokens minted on global), a Mesh with builtin mTLS and an allow-all
//! MeshTrafficPermission written on global, N Dataplanes registered in each zone through its REST
//! API, and N simulated proxies per zone (delta ADS over TLS, see `sim`). Then C changes on
//! global, one at a time, alternating:
//!
//! - a MeshTimeout for one service with a connection timeout unique to the change (concerns the
//!   proxies with an outbound to that service: their cluster's `connect_timeout` must show it);
//! - the mesh-wide MeshTrafficPermission flipped between Allow and Deny (concerns every proxy:
//!   its inbound RBAC must admit, or refuse, everyone).
//!
//! Each change is timed from just before its PUT on global to the moment the last concerned
//! proxy, in any zone, sent the ACK of a response after which its config shows the change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::controlplanes::{
    ControlPlane, GlobalLink, MESH, Stores, dataplane, mesh_doc, permission_doc, service_name,
    timeout_doc,
};
use crate::sim::{Fleet, Marker, ProxyControl, ProxySpec, launch};
use crate::stats::Samples;

#[derive(Debug, Args)]
pub struct ConvergenceArgs {
    /// Zone control planes.
    #[arg(long, default_value_t = 2)]
    zones: usize,
    /// Simulated proxies (and Dataplanes) per zone.
    #[arg(long, default_value_t = 100)]
    dataplanes_per_zone: usize,
    /// Services in the mesh (each proxy has 2-5 outbounds to others).
    #[arg(long, default_value_t = 50)]
    services: usize,
    /// Changes made on global, alternating MeshTimeout and MeshTrafficPermission.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Store of every control plane: sqlite, postgres or memory.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Proxies sharing one TLS connection (Envoy has its own: 1).
    #[arg(long, default_value_t = 1)]
    proxies_per_connection: usize,
    /// Proxies between opening their stream and their full config at any moment, per zone.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Pause between changes, so each is timed alone.
    #[arg(long, default_value_t = 200)]
    pause_ms: u64,
    /// Give up on a change after this many seconds.
    #[arg(long, default_value_t = 60)]
    change_timeout_s: u64,
    /// Give up on start-up (registration, connection) after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_s: u64,
    /// The convergence floor's p50 (push -> ACK, `atoll-bench floor`, BENCHMARKS.md), ms.
    #[arg(long, default_value_t = 1.552)]
    floor_p50_ms: f64,
    /// The floor's p99, ms.
    #[arg(long, default_value_t = 2.277)]
    floor_p99_ms: f64,
    /// After the timed changes, check that a proxy's NACK reaches the zone CP's status API.
    #[arg(long)]
    nack_check: bool,
}

pub async fn run(args: ConvergenceArgs) -> Result<()> {
    if args.zones == 0 || args.dataplanes_per_zone == 0 || args.services < 3 {
        bail!("--zones and --dataplanes-per-zone must be positive, --services at least 3");
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    let stores = Stores::new(&args.store, args.zones + 1).await?;
    let result = measure(&args, dir.path(), &stores).await;
    stores.finish().await;
    result
}

/// One zone: its control plane and its proxies.
struct Zone {
    cp: ControlPlane,
    specs: Vec<Arc<ProxySpec>>,
    controls: Vec<Arc<ProxyControl>>,
}

async fn measure(args: &ConvergenceArgs, dir: &std::path::Path, stores: &Stores) -> Result<()> {
    let limit = Duration::from_secs(args.timeout_s);
    let started = Instant::now();
    let mut global = ControlPlane::start_global(dir, stores.url(0)).await?;
    let kds_ca = global.data_dir.join("kds-tls").join("ca.pem");
    wait_file(&kds_ca, Duration::from_secs(30)).await?;
    eprintln!("global CP up (pid {})", global.pid());

    let mut zones = Vec::new();
    for z in 1..=args.zones {
        let name = format!("zone-{z}");
        let token = global.zone_token(&name).await?;
        let cp = ControlPlane::start_zone(
            dir,
            &name,
            stores.url(z),
            Some(GlobalLink {
                zone: name.clone(),
                kds_port: global.kds_port,
                ca_file: kds_ca.clone(),
                token: &token,
            }),
        )
        .await?;
        eprintln!("{name} CP up (pid {})", cp.pid());
        zones.push(Zone {
            cp,
            specs: Vec::new(),
            controls: Vec::new(),
        });
    }

    global.put(&format!("/meshes/{MESH}"), &mesh_doc()).await?;
    global
        .put(
            &format!("/meshes/{MESH}/meshtrafficpermissions/bench-all"),
            &permission_doc(true),
        )
        .await?;
    for zone in &mut zones {
        zone.cp
            .wait_until(
                &format!("/meshes/{MESH}"),
                "the mesh from global",
                Duration::from_secs(60),
                |_| true,
            )
            .await?;
        zone.cp
            .wait_until(
                &format!("/meshes/{MESH}/meshtrafficpermissions"),
                "the MeshTrafficPermission from global",
                Duration::from_secs(60),
                |v| v["total"].as_u64().unwrap_or(0) >= 1,
            )
            .await?;
    }
    eprintln!("every zone has the mesh and its MeshTrafficPermission");

    for (z, zone) in zones.iter_mut().enumerate() {
        let (docs, specs): (Vec<_>, Vec<_>) = (0..args.dataplanes_per_zone)
            .map(|i| dataplane(z + 1, i, args.services))
            .unzip();
        zone.cp.register_dataplanes(&docs, 8).await?;
        zone.specs = specs.into_iter().map(Arc::new).collect();
    }
    let ticks = crate::controlplanes::clock_ticks();
    for zone in &mut zones {
        let busy = zone.cp.wait_quiet(ticks, limit).await?;
        eprintln!("{} idle again after {busy:.1} s", zone.cp.name);
    }
    let busy = global.wait_quiet(ticks, limit).await?;
    eprintln!("global idle again after {busy:.1} s");

    let fleet = Arc::new(Fleet::default());
    let mut tasks = tokio::task::JoinSet::new();
    let total: usize = zones.iter().map(|z| z.specs.len()).sum();
    let connect_from = fleet.now_us();
    for zone in &mut zones {
        let ca_pem = zone.cp.xds_ca_pem()?;
        eprintln!(
            "{}: connecting {} simulated proxies ...",
            zone.cp.name,
            zone.specs.len()
        );
        zone.controls = launch(
            &mut tasks,
            &fleet,
            &zone.specs,
            zone.cp.xds_port,
            &ca_pem,
            args.proxies_per_connection,
            args.connect_concurrency,
        )
        .await?;
    }
    let connected = fleet
        .wait_ready(total, connect_from, limit.saturating_sub(started.elapsed()))
        .await;
    check_all(&mut global, &mut zones)?;
    let connect_s = connected?;
    eprintln!(
        "all {total} proxies have their full config ({connect_s:.2} s after the first connected)"
    );

    let change_limit = Duration::from_secs(args.change_timeout_s);
    let mut samples = Samples::default();
    let (mut timeout_samples, mut permission_samples) = (Samples::default(), Samples::default());
    let mut allow = true;
    for k in 1..=args.changes {
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        let (marker, path, doc, what) = if k % 2 == 1 {
            let service = service_name((k / 2) % args.services);
            let ms = 1000 + k as u64;
            (
                Marker::ConnectTimeout {
                    service: service.clone(),
                    ms,
                },
                format!("/meshes/{MESH}/meshtimeouts/bench-timeout-{service}"),
                timeout_doc(&service, ms),
                format!("MeshTimeout {service} connectionTimeout={ms}ms"),
            )
        } else {
            allow = !allow;
            (
                Marker::InboundAllows(allow),
                format!("/meshes/{MESH}/meshtrafficpermissions/bench-all"),
                permission_doc(allow),
                format!(
                    "MeshTrafficPermission {}",
                    if allow { "Allow" } else { "Deny" }
                ),
            )
        };
        let concerned: usize = zones
            .iter()
            .flat_map(|z| z.specs.iter())
            .filter(|s| s.concerned_by(&marker))
            .count();
        let exp = fleet.expect(marker);
        let written_at = fleet.now_us();
        global.put(&path, &doc).await?;
        let put_ms = (fleet.now_us() - written_at) as f64 / 1e3;
        let waited = fleet
            .wait_for(&exp, concerned, written_at, change_limit)
            .await;
        if waited.is_err() {
            check_all(&mut global, &mut zones)?;
        }
        let ms = waited?;
        eprintln!(
            "change {k}/{}: {what}: {concerned} proxies ACKed it in {ms:.1} ms (PUT {put_ms:.1} ms)",
            args.changes
        );
        let d = Duration::from_secs_f64(ms / 1e3);
        samples.push(d);
        if k % 2 == 1 {
            timeout_samples.push(d);
        } else {
            permission_samples.push(d);
        }
    }
    check_all(&mut global, &mut zones)?;

    if args.nack_check {
        nack_check(&global, &mut zones).await?;
    }

    let (reconnects, why) = fleet.reconnects();
    if reconnects > 0 {
        println!(
            "reconnects: {reconnects} (the first: {})",
            why.unwrap_or_default()
        );
    }
    println!(
        "setup: {} zones, {} proxies each, {} services; connect: {connect_s:.2} s; {} responses, {} NACKs sent",
        args.zones,
        args.dataplanes_per_zone,
        args.services,
        fleet.responses(),
        fleet.nacks()
    );
    if timeout_samples.len() > 0 {
        println!("{}", timeout_samples.line("MeshTimeout (1 svc)"));
    }
    if permission_samples.len() > 0 {
        println!("{}", permission_samples.line("MTP flip (all)"));
    }
    let (p50, p99, max) = (
        samples.percentile_us(50.0) / 1e3,
        samples.percentile_us(99.0) / 1e3,
        samples.percentile_us(100.0) / 1e3,
    );
    println!(
        "ratio to the floor (push -> ACK, one Envoy, p50 {:.3} ms / p99 {:.3} ms): p50 {:.1}x, p99 {:.1}x",
        args.floor_p50_ms,
        args.floor_p99_ms,
        p50 / args.floor_p50_ms,
        p99 / args.floor_p99_ms
    );
    println!(
        "convergence zones={} dataplanes={total} changes={} p50_ms={p50:.1} p99_ms={p99:.1} max_ms={max:.1}",
        args.zones,
        samples.len()
    );
    tasks.abort_all();
    Ok(())
}

/// An error naming any control plane that exited.
fn check_all(global: &mut ControlPlane, zones: &mut [Zone]) -> Result<()> {
    global.check_alive()?;
    for z in zones {
        z.cp.check_alive()?;
    }
    Ok(())
}

async fn wait_file(path: &std::path::Path, limit: Duration) -> Result<()> {
    let started = Instant::now();
    while !path.is_file() {
        if started.elapsed() > limit {
            bail!("{} did not appear within {limit:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Arms the first proxy of zone 1 to NACK its next clusters, changes a MeshTimeout it is
/// concerned by, and waits until the zone CP's dataplane status shows the NACK.
async fn nack_check(global: &ControlPlane, zones: &mut [Zone]) -> Result<()> {
    let zone = zones.first_mut().context("no zone")?;
    let spec = zone.specs.first().context("no proxy")?.clone();
    let control = zone.controls.first().context("no proxy")?.clone();
    let service = spec
        .outbound_services
        .first()
        .context("the proxy has no outbound")?;
    let name = spec
        .node_id
        .strip_prefix(&format!("{MESH}."))
        .unwrap_or(&spec.node_id)
        .to_string();
    control
        .nack_next_cluster
        .store(true, std::sync::atomic::Ordering::SeqCst);
    global
        .put(
            &format!("/meshes/{MESH}/meshtimeouts/bench-timeout-{service}"),
            &timeout_doc(service, 4999),
        )
        .await?;
    zone.cp
        .wait_until(
            &format!("/meshes/{MESH}/dataplanes/_overview"),
            &format!("the NACK of {name}"),
            Duration::from_secs(30),
            |v| {
                v["items"].as_array().is_some_and(|items| {
                    items.iter().any(|i| {
                        i["name"] == name.as_str()
                            && i["status"]["lastNack"]["message"]
                                .as_str()
                                .is_some_and(|m| m.contains("NACK on demand"))
                    })
                })
            },
        )
        .await?;
    println!(
        "nack check: the NACK of {name} shows in {}'s dataplane status",
        zone.cp.name
    );
    Ok(())
}
