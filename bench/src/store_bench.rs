//! The store benchmark: fill a store with N resources, then measure single-resource gets, page
//! lists, updates, the latency from a write to its change event, and GETs through the REST API.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use tokio::net::TcpListener;

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_cp::{Config, ConfigArgs, ControlPlane, Mode};
use atoll_store::ListFilter;

use crate::stats::Samples;

#[derive(Debug, Clone, Args)]
pub struct StoreBenchArgs {
    /// `sqlite`, `postgres` or `memory`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// How many resources to store before measuring.
    #[arg(long, default_value_t = 100_000)]
    resources: usize,
    /// Measurements per operation.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Concurrent writers while filling the store.
    #[arg(long, default_value_t = 4)]
    writers: usize,
}

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a scratch data directory")?;
    match args.backend.as_str() {
        "sqlite" => {
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            bench(&args, &url, dir.path()).await
        }
        "memory" => bench(&args, "memory", dir.path()).await,
        "postgres" => {
            // ATOLL_TEST_POSTGRES_URL names a role with CREATEDB: the benchmark creates its own
            // database there and drops it afterwards.
            let outcome = Arc::new(std::sync::Mutex::new(None));
            let slot = outcome.clone();
            let args2 = args.clone();
            let data_dir = dir.path().to_path_buf();
            atoll_test_support::postgres::with_postgres_database("bench", move |url| async move {
                let r = bench(&args2, &url, &data_dir)
                    .await
                    .map_err(|e| format!("{e:#}"));
                if let Ok(mut s) = slot.lock() {
                    *s = Some(r);
                }
            })
            .await;
            let result = outcome.lock().ok().and_then(|mut s| s.take());
            match result {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => bail!(e),
                None => bail!(
                    "PostgreSQL benchmark did not run: set ATOLL_TEST_POSTGRES_URL (see .ci/pg-setup.sh)"
                ),
            }
        }
        other => bail!("unknown backend {other:?}: use sqlite, postgres or memory"),
    }
}

fn timeout_doc(i: usize) -> Resource {
    let mut r = Resource::new(Kind::MeshTimeout, "default", format!("timeout-{i:06}"));
    r.labels.insert("team".into(), format!("team-{}", i % 50));
    let spec = json!({
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{
                "targetRef": {"kind": "MeshService", "name": format!("backend-{}", i % 1000)},
                "default": {"idleTimeout": "20s", "connectionTimeout": "2s", "http": {"requestTimeout": "5s"}}
            }]
        }
    });
    if let serde_json::Value::Object(m) = spec {
        r.spec = m;
    }
    r
}

async fn bench(args: &StoreBenchArgs, url: &str, data_dir: &Path) -> anyhow::Result<()> {
    let store = atoll_store::open(url, data_dir)
        .await
        .context("opening the store")?;
    println!(
        "store benchmark: backend={} resources={} samples={} writers={}",
        args.backend, args.resources, args.samples, args.writers
    );
    store
        .create(Resource::new(Kind::Mesh, "", "default"))
        .await
        .context("creating mesh default")?;

    // Fill, with progress.
    let started = Instant::now();
    let mut puts = Samples::default();
    let per_writer = args.resources.div_ceil(args.writers.max(1));
    let mut tasks = Vec::new();
    for w in 0..args.writers.max(1) {
        let store = store.clone();
        let total = args.resources;
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let from = w * per_writer;
            let to = ((w + 1) * per_writer).min(total);
            for i in from..to {
                let t = Instant::now();
                store.create(timeout_doc(i)).await?;
                s.push(t.elapsed());
                if w == 0 && (i - from).is_multiple_of((per_writer / 10).max(1)) {
                    eprintln!("  filling: {}%", (i - from) * 100 / (to - from).max(1));
                }
            }
            Ok::<_, atoll_store::StoreError>(s)
        }));
    }
    for t in tasks {
        puts.extend(t.await.context("writer task")??);
    }
    let fill = started.elapsed();
    println!(
        "fill                   n={} in {:.1}s ({:.0} puts/s with {} writers)",
        args.resources,
        fill.as_secs_f64(),
        args.resources as f64 / fill.as_secs_f64(),
        args.writers
    );
    println!("{}", puts.line("put (create)"));

    let n = args.resources.max(1);
    let pick = |k: usize| (k.wrapping_mul(7919) + 13) % n;

    let mut gets = Samples::default();
    for k in 0..args.samples {
        let key = ResourceKey::new(
            Kind::MeshTimeout,
            "default",
            format!("timeout-{:06}", pick(k)),
        );
        let t = Instant::now();
        let r = store.get(&key).await?;
        gets.push(t.elapsed());
        if r.is_none() {
            bail!("{key} missing");
        }
    }
    println!("{}", gets.line("get"));

    for (label, deep) in [
        ("list first page (100)", false),
        ("list page @random", true),
    ] {
        let mut lists = Samples::default();
        for k in 0..args.samples.min(500) {
            let offset = if deep {
                (pick(k) / 100 * 100) as u64
            } else {
                0
            };
            let t = Instant::now();
            let page = store
                .list(&ListFilter {
                    offset,
                    limit: Some(100),
                    ..ListFilter::in_mesh(Kind::MeshTimeout, "default")
                })
                .await?;
            lists.push(t.elapsed());
            if page.total as usize != args.resources {
                bail!("list total {} != {}", page.total, args.resources);
            }
        }
        println!("{}", lists.line(label));
    }

    let mut updates = Samples::default();
    let mut watch = Samples::default();
    let mut events = store.watch();
    for k in 0..args.samples.min(1000) {
        let key = ResourceKey::new(
            Kind::MeshTimeout,
            "default",
            format!("timeout-{:06}", pick(k)),
        );
        let current = store.get(&key).await?.context("resource vanished")?;
        let version = current.version;
        let t = Instant::now();
        let updated = store.update(current, version).await?;
        updates.push(t.elapsed());
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .context("no change event within 5 s")?
                .context("watch channel closed")?;
            if ev.key == key && ev.version == updated.version {
                watch.push(t.elapsed());
                break;
            }
        }
    }
    println!("{}", updates.line("update"));
    println!("{}", watch.line("write -> watch event"));
    drop(store);

    // The REST API on the same store: a GET's client-side round trip over loopback, and the
    // server-side time the control plane records.
    let cp_args = ConfigArgs {
        data_dir: Some(data_dir.to_path_buf()),
        store: Some(url.to_string()),
        ..Default::default()
    };
    let config = Config::resolve(Mode::Global, &cp_args)?;
    let api = TcpListener::bind("127.0.0.1:0").await?;
    let diag = TcpListener::bind("127.0.0.1:0").await?;
    let cp = ControlPlane::start(config, api, diag).await?;
    let http = reqwest::Client::new();
    let mut api_gets = Samples::default();
    for k in 0..args.samples {
        let url = format!(
            "http://{}/meshes/default/meshtimeouts/timeout-{:06}",
            cp.api_address,
            pick(k)
        );
        let t = Instant::now();
        let resp = http.get(&url).send().await?;
        let ok = resp.status().is_success();
        let _ = resp.bytes().await?;
        api_gets.push(t.elapsed());
        if !ok {
            bail!("GET {url} failed");
        }
    }
    println!("{}", api_gets.line("API GET (round trip)"));
    let metrics = http
        .get(format!("http://{}/metrics", cp.diagnostics_address))
        .send()
        .await?
        .text()
        .await?;
    if let Some(mean) = server_mean_us(&metrics) {
        println!(
            "API GET server time    mean_us={mean:.1} (from atoll_api_request_duration_seconds)"
        );
    }
    cp.stop().await;
    Ok(())
}

/// Mean server time of single-resource GETs, from the control plane's histogram.
fn server_mean_us(metrics: &str) -> Option<f64> {
    let find = |suffix: &str| {
        metrics.lines().find_map(|l| {
            let rest = l.strip_prefix(&format!("atoll_api_request_duration_seconds_{suffix}{{"))?;
            if !rest.contains("route=\"/meshes/{mesh}/{kind}/{name}\"")
                || !rest.contains("method=\"GET\"")
            {
                return None;
            }
            l.rsplit_once(' ')?.1.parse::<f64>().ok()
        })
    };
    let sum = find("sum")?;
    let count = find("count")?;
    (count > 0.0).then(|| sum / count * 1e6)
}
