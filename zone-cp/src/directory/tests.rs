//! The directory over an in-memory store, driven with tokio's paused time and a clock that
//! follows it: certificate renewal, offline removal and CA switches happen at the times they
//! are due, checked in milliseconds of real time and without sleeping through them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use envoy_types::pb::envoy::config::core::v3::Node;
use serde_json::{Value, json};
use tokio::sync::watch;

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_cp::config::DpAuth;
use atoll_store::{MemoryStore, SharedStore};
use atoll_xds_server::directory::{ConnectError, ProxyDirectory, ProxySubscription};
use atoll_xds_server::metrics::XdsMetrics;

use super::{ProxyKey, ZoneDirectory, ZoneSettings};

/// A standalone zone's directory, its store, and the switch that stops its tasks.
struct Zone {
    directory: Arc<ZoneDirectory>,
    store: SharedStore,
    stop: watch::Sender<bool>,
}

impl Zone {
    fn new() -> Zone {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let settings = ZoneSettings {
            dp_auth: DpAuth::None,
            zone: "zone-1".into(),
            federated: false,
            clock: atoll_clock::TokioClock::new().shared(),
            token_leeway: atoll_identity::token::LEEWAY,
        };
        let metrics = XdsMetrics::register(&prometheus::Registry::new()).expect("metrics");
        Zone {
            directory: Arc::new(ZoneDirectory::new(store.clone(), settings, metrics)),
            store,
            stop: watch::channel(false).0,
        }
    }

    /// Starts the event loop (changes, renewals) and waits until it has read the store.
    async fn run(&self) {
        tokio::spawn(self.directory.clone().run(self.stop.subscribe()));
        // Let the loop subscribe and create the CAs of meshes already stored.
        settle().await;
    }

    /// A running zone with a mesh without mTLS, a Dataplane for each of `names` (each its own
    /// service), and the collector of offline proxies.
    async fn collecting_offline(grace: Duration, names: &[&str]) -> Zone {
        let zone = Zone::new();
        zone.put(Kind::Mesh, "", "default", json!({})).await;
        for (port, name) in (8080..).zip(names) {
            zone.put(Kind::Dataplane, "default", name, dataplane(name, port))
                .await;
        }
        zone.run().await;
        tokio::spawn(
            zone.directory
                .clone()
                .collect_offline(grace, zone.stop.subscribe()),
        );
        zone
    }

    async fn put(&self, kind: Kind, mesh: &str, name: &str, spec: Value) {
        let mut r = Resource::new(kind, mesh, name);
        if let Value::Object(m) = spec {
            r.spec = m;
        }
        let key = ResourceKey::new(kind, mesh, name);
        match self.store.get(&key).await.expect("get") {
            Some(current) => self.store.update(r, current.version).await.map(|_| ()),
            None => self.store.create(r).await.map(|_| ()),
        }
        .expect("stored");
    }

    async fn exists(&self, kind: Kind, mesh: &str, name: &str) -> bool {
        self.store
            .get(&ResourceKey::new(kind, mesh, name))
            .await
            .expect("get")
            .is_some()
    }

    async fn connect(&self, name: &str) -> Result<ProxySubscription, ConnectError> {
        let node = Node {
            id: format!("default.{name}"),
            ..Node::default()
        };
        self.directory.connect(&node).await
    }

    /// When the certificate the directory last built for `name` expires.
    fn cert_expiry(&self, name: &str) -> DateTime<Utc> {
        self.directory
            .cache
            .last_build(&ProxyKey::sidecar("default", name))
            .and_then(|b| b.cert.as_ref().map(|c| c.issued.not_after))
            .expect("a certificate")
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Whether `check` holds within a minute of paused time, looked at every 100 ms (builds run on
/// blocking threads, which hold paused time back while they work).
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Lets spawned tasks run what they can without moving time.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn mesh(backends: &[&str], enabled: &str, dp_cert: &str) -> Value {
    let backends: Vec<Value> = backends
        .iter()
        .map(|b| json!({"name": b, "type": "builtin", "dpCert": {"rotation": {"expiration": dp_cert}}}))
        .collect();
    json!({"mtls": {"enabledBackend": enabled, "backends": backends}})
}

fn dataplane(service: &str, port: u16) -> Value {
    json!({"networking": {"address": "10.0.0.1", "inbound": [
        {"port": port, "tags": {"kuma.io/service": service}}]}})
}

/// Waits for the next snapshot of `sub` (within `limit` of paused time) and says how much
/// paused time passed.
async fn next_snapshot(sub: &mut ProxySubscription, limit: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    tokio::time::timeout(limit, sub.snapshots.changed())
        .await
        .ok()?
        .ok()?;
    Some(started.elapsed())
}

/// A 1-hour certificate is renewed on the open stream at 80% of its lifetime (Kuma's rule),
/// once per lifetime: the renewed one is not replaced again until its own renewal time.
#[tokio::test(start_paused = true)]
async fn certificates_are_renewed_once_at_four_fifths_of_their_lifetime() {
    let zone = Zone::new();
    zone.put(Kind::Mesh, "", "default", mesh(&["ca-1"], "ca-1", "1h"))
        .await;
    zone.put(Kind::Dataplane, "default", "web-1", dataplane("web", 8080))
        .await;
    zone.run().await;
    let mut sub = zone.connect("web-1").await.expect("connects");
    let first = zone.cert_expiry("web-1");

    let renewal = Duration::from_secs(48 * 60);
    let took = next_snapshot(&mut sub, Duration::from_secs(2 * 3600))
        .await
        .expect("renewed before expiry");
    assert!(
        took >= renewal - Duration::from_secs(1) && took <= renewal + Duration::from_secs(1),
        "renewed after {took:?}, not at 48 min"
    );
    let second = zone.cert_expiry("web-1");
    assert!(second > first, "a new certificate: {first} then {second}");

    // Nothing more until the new certificate's own renewal time.
    let took = next_snapshot(&mut sub, Duration::from_secs(2 * 3600))
        .await
        .expect("renewed again");
    assert!(
        took >= renewal - Duration::from_secs(1),
        "renewed again after only {took:?}"
    );
    assert!(zone.cert_expiry("web-1") > second);
}

/// A Dataplane whose proxy stays disconnected past the grace period is removed from the store;
/// one that is still connected, or disconnected for less, is not.
#[tokio::test(start_paused = true)]
async fn proxies_offline_past_the_grace_period_are_removed() {
    let grace = Duration::from_secs(3600);
    let zone = Zone::collecting_offline(grace, &["gone", "stays"]).await;
    let gone = zone.connect("gone").await.expect("connects");
    let _stays = zone.connect("stays").await.expect("connects");
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(gone);

    tokio::time::sleep(grace - Duration::from_secs(60)).await;
    assert!(
        zone.exists(Kind::Dataplane, "default", "gone").await,
        "removed before the grace period ended"
    );
    // The collector looks every quarter of the grace period (at most every minute).
    tokio::time::sleep(Duration::from_secs(3 * 60)).await;
    assert!(
        !zone.exists(Kind::Dataplane, "default", "gone").await,
        "still stored past the grace period"
    );
    assert!(
        zone.exists(Kind::Dataplane, "default", "stays").await,
        "a connected proxy was removed"
    );
}

/// A proxy that reconnected before its old stream ended is online: the old stream ending does
/// not start its grace period.
#[tokio::test(start_paused = true)]
async fn a_reconnected_proxy_is_not_removed_when_its_old_stream_ends() {
    let grace = Duration::from_secs(60);
    let zone = Zone::collecting_offline(grace, &["web-1"]).await;
    let old = zone.connect("web-1").await.expect("connects");
    let _new = zone.connect("web-1").await.expect("reconnects");
    drop(old);
    tokio::time::sleep(grace * 5).await;
    assert!(zone.exists(Kind::Dataplane, "default", "web-1").await);
}

/// A standalone zone creates a mesh's builtin CA when it sees the Mesh, not when a proxy's
/// config is built: before that, a proxy is refused with the reason, and nothing is written.
#[tokio::test(start_paused = true)]
async fn a_builtin_ca_is_created_when_the_mesh_is_seen_not_by_a_build() {
    let zone = Zone::new();
    zone.put(Kind::Mesh, "", "default", mesh(&["ca-1"], "ca-1", "1h"))
        .await;
    zone.put(Kind::Dataplane, "default", "web-1", dataplane("web", 8080))
        .await;
    let refused = zone.connect("web-1").await.expect_err("no CA yet");
    assert!(
        matches!(&refused, ConnectError::Unavailable(why) if why.contains("not stored yet")),
        "{refused:?}"
    );
    let cert = atoll_cp::mesh_ca::cert_secret_name("default", "ca-1");
    assert!(!zone.exists(Kind::Secret, "default", &cert).await);

    zone.run().await;
    assert!(zone.exists(Kind::Secret, "default", &cert).await);
    zone.connect("web-1")
        .await
        .expect("connects once the CA is stored");

    // A backend added later is created from its change event.
    zone.put(
        Kind::Mesh,
        "",
        "default",
        mesh(&["ca-1", "ca-2"], "ca-1", "1h"),
    )
    .await;
    let second = atoll_cp::mesh_ca::cert_secret_name("default", "ca-2");
    assert!(eventually(|| zone.exists(Kind::Secret, "default", &second)).await);

    // A deleted CA Secret is created again.
    zone.store
        .delete(&ResourceKey::new(Kind::Secret, "default", &second), None)
        .await
        .expect("deleted");
    assert!(eventually(|| zone.exists(Kind::Secret, "default", &second)).await);
}

/// A CA switch waits for the proxies' ACKs, but a proxy that never answers holds each step
/// back only for the maximum wait.
#[tokio::test(start_paused = true)]
async fn a_ca_switch_goes_on_after_the_maximum_wait_without_an_ack() {
    let max_wait = Duration::from_secs(60);
    let zone = Zone::new();
    zone.put(Kind::Mesh, "", "default", mesh(&["ca-1"], "ca-1", "24h"))
        .await;
    zone.put(Kind::Dataplane, "default", "web-1", dataplane("web", 8080))
        .await;
    zone.run().await;
    tokio::spawn(
        zone.directory
            .clone()
            .drive_ca_switches(max_wait, zone.stop.subscribe()),
    );
    // Connected, and never ACKs anything.
    let mut sub = zone.connect("web-1").await.expect("connects");
    let issuer = |zone: &Zone| {
        zone.directory
            .cache
            .last_build(&ProxyKey::sidecar("default", "web-1"))
            .and_then(|b| b.cert.as_ref().map(|c| c.issued.cert_chain_pem.clone()))
            .expect("certificate")
    };
    let first = issuer(&zone);

    zone.put(Kind::Mesh, "", "default", mesh(&["ca-2"], "ca-2", "24h"))
        .await;
    // First step at once: both roots trusted, same certificate.
    next_snapshot(&mut sub, Duration::from_secs(1))
        .await
        .expect("trusts both roots");
    assert_eq!(issuer(&zone), first);
    // The next step waits for the ACK that never comes, then goes on.
    let took = next_snapshot(&mut sub, Duration::from_secs(600))
        .await
        .expect("moves to the new issuer");
    assert!(
        took >= max_wait - Duration::from_secs(1),
        "went on after {took:?} without an ACK"
    );
    assert_ne!(issuer(&zone), first, "a certificate of the new CA");
}
