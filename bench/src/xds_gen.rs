//! Config generation for one proxy in a large mesh: a proxy with `--outbounds` outbounds in a
//! mesh of `--dataplanes` dataplanes (each service has 5 instances), mesh mTLS on. Measures the
//! pure build (index -> Envoy resources) with the proxy's certificate reused, as on a config
//! change, and the first build (which issues the certificate). Run at two mesh sizes in one
//! process to show the cost follows the proxy, not the mesh.

use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde_json::json;

use atoll_core::Resource;
use atoll_core::kinds::dataplane::DataplaneDoc;
use atoll_core::kinds::mesh::MeshDoc;
use atoll_core::matching::PolicyView;
use atoll_zone_cp::ca::MeshCa;
use atoll_zone_cp::index::{DataplaneEntry, MeshState};
use atoll_zone_cp::snapshot::{build_from, build_to_serve, rebuild_inbounds};

use crate::stats::Samples;

#[derive(Debug, Clone, Args)]
pub struct XdsGenArgs {
    /// Dataplanes in the mesh.
    #[arg(long, default_value_t = 5_000)]
    dataplanes: usize,
    /// Outbounds of the measured proxy.
    #[arg(long, default_value_t = 100)]
    outbounds: usize,
    /// Builds measured per mesh size.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

const INSTANCES_PER_SERVICE: usize = 5;

fn dataplane(i: usize, outbounds: usize, services: usize) -> DataplaneEntry {
    let service = format!("svc-{}", i / INSTANCES_PER_SERVICE);
    let outbound: Vec<_> = (0..outbounds)
        .map(|k| {
            json!({"port": 20000 + k, "tags": {"kuma.io/service": format!("svc-{}", (i / INSTANCES_PER_SERVICE + 1 + k) % services)}})
        })
        .collect();
    let doc: DataplaneDoc = serde_json::from_value(json!({
        "networking": {
            "address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
            "inbound": [{"port": 10000, "servicePort": 8080, "tags": {"kuma.io/service": service.clone(), "kuma.io/protocol": "http"}}],
            "outbound": outbound,
        }
    }))
    .unwrap_or_else(|e| panic!("benchmark dataplane is valid: {e}"));
    DataplaneEntry {
        labels: Default::default(),
        doc,
        services: [service].into_iter().collect(),
    }
}

fn mesh(dataplanes: usize, outbounds: usize, ca: &MeshCa) -> anyhow::Result<MeshState> {
    let doc: MeshDoc = serde_json::from_value(json!({
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
    }))?;
    let mut state = MeshState::new("default", doc, Some(ca.clone()));
    let services = dataplanes.div_ceil(INSTANCES_PER_SERVICE);
    for i in 0..dataplanes {
        // Only the measured proxy (0) has outbounds; the others only offer their service.
        let out = if i == 0 { outbounds } else { 2 };
        state.upsert_dataplane(&format!("dp-{i}"), dataplane(i, out, services));
    }
    let mtp = Resource::from_value(json!({
        "type": "MeshTrafficPermission", "mesh": "default", "name": "allow-all",
        "spec": {"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}
    }))
    .map_err(|v| anyhow::anyhow!("{v}"))?;
    let view = PolicyView::from_resource(&mtp).map_err(|v| anyhow::anyhow!("{v}"))?;
    state.policies.upsert(view);
    Ok(state)
}

pub fn run(args: &XdsGenArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let bundle = atoll_identity::generate_root_ca(
        "default",
        std::time::Duration::from_secs(86400 * 365),
        now,
    )
    .context("generating a CA")?;
    let ca = MeshCa {
        backend: "ca-1".into(),
        trust_pem: bundle.cert_pem.clone(),
        bundle,
        mode: atoll_xds::context::MtlsMode::Strict,
        dp_cert_validity: std::time::Duration::from_secs(86400),
    };
    println!(
        "xds-gen benchmark: proxy with {} outbounds; mesh sizes {} and {} dataplanes; {} samples",
        args.outbounds,
        args.dataplanes / 10,
        args.dataplanes,
        args.samples
    );
    let mut p50s = Vec::new();
    for size in [args.dataplanes / 10, args.dataplanes] {
        let state = mesh(
            size.max(args.outbounds * INSTANCES_PER_SERVICE + 1),
            args.outbounds,
            &ca,
        )?;
        let started = Instant::now();
        let first = build_from(&state, "dp-0", None, now).context("first build")?;
        let first_time = started.elapsed();
        let resources: usize = first.snapshot.resources.values().map(|m| m.len()).sum();
        let mut samples = Samples::default();
        for _ in 0..args.samples {
            let t = Instant::now();
            // As the zone CP builds a proxy it serves (no inspect views).
            let built =
                build_to_serve(&state, "dp-0", first.cert.as_ref(), now).context("build")?;
            samples.push(t.elapsed());
            std::hint::black_box(built);
        }
        println!(
            "mesh of {:>6} dataplanes: {resources} resources; first build (issues the certificate) {:.1} ms",
            state.dataplanes.len(),
            first_time.as_secs_f64() * 1e3
        );
        println!(
            "{}",
            samples.line(&format!("rebuild @{}", state.dataplanes.len()))
        );
        // What a MeshTrafficPermission change costs: the inbound side only, from a build kept
        // as the zone CP keeps it (snapshot only).
        let mut kept = first.clone();
        kept.forget_models();
        let mut inbound = Samples::default();
        for _ in 0..args.samples {
            let t = Instant::now();
            let built = rebuild_inbounds(&state, "dp-0", &kept, now).context("inbound rebuild")?;
            inbound.push(t.elapsed());
            std::hint::black_box(built);
        }
        println!(
            "{}",
            inbound.line(&format!("inbounds @{}", state.dataplanes.len()))
        );
        p50s.push(samples.percentile_us(50.0));
    }
    if let [small, large] = p50s[..] {
        println!(
            "xds-gen outbounds={} dataplanes={} p50_us={large:.0} ratio_to_small_mesh={:.2}",
            args.outbounds,
            args.dataplanes,
            large / small.max(1.0)
        );
    }
    Ok(())
}
