//! The zone's proxy directory: authenticates proxies opening an xDS stream, keeps each connected
//! proxy's latest snapshot, rebuilds only the proxies a store change concerns, rotates
//! certificates before they expire, and removes dataplanes that stayed offline too long.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use chrono::Utc;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind as PbKind;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::ca::MeshCa;
use atoll_core::kinds::dataplane::DataplaneDoc;
use atoll_core::{Kind, ResourceKey};
use atoll_cp::config::DpAuth;
use atoll_cp::extension::DataplaneInspector;
use atoll_store::{ChangeEvent, ListFilter, SharedStore};
use atoll_xds_server::directory::{ConnectError, ProxyDirectory, ProxySubscription, SharedStatus};
use atoll_xds_server::metrics::XdsMetrics;
use atoll_xds_server::session::Snapshot;

use crate::index::MeshIndex;
use crate::snapshot::{ProxyBuild, build};

/// Node metadata key carrying the dataplane token (set in the bootstrap).
pub const TOKEN_METADATA_KEY: &str = "dataplane.token";
/// Node metadata key carrying the proxy type (`dataplane`, `ingress`, `egress`).
pub const PROXY_TYPE_METADATA_KEY: &str = "dataplane.proxyType";

/// What a proxy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyKind {
    /// A sidecar of a Dataplane.
    Sidecar,
    /// A ZoneIngress.
    Ingress,
    /// A ZoneEgress.
    Egress,
}

impl ProxyKind {
    /// From the bootstrap's `proxyType` (and node metadata).
    pub fn from_proxy_type(proxy_type: &str) -> Option<ProxyKind> {
        match proxy_type {
            "sidecar" | "dataplane" | "" => Some(ProxyKind::Sidecar),
            "ingress" => Some(ProxyKind::Ingress),
            "egress" => Some(ProxyKind::Egress),
            _ => None,
        }
    }

    pub fn resource_kind(self) -> Kind {
        match self {
            ProxyKind::Sidecar => Kind::Dataplane,
            ProxyKind::Ingress => Kind::ZoneIngress,
            ProxyKind::Egress => Kind::ZoneEgress,
        }
    }

    /// The zone token scope this proxy presents (zone proxies only).
    pub fn token_scope(self) -> Option<atoll_identity::Scope> {
        match self {
            ProxyKind::Sidecar => None,
            ProxyKind::Ingress => Some(atoll_identity::Scope::Ingress),
            ProxyKind::Egress => Some(atoll_identity::Scope::Egress),
        }
    }
}

/// One proxy: a sidecar `(mesh, name)`, or a zone proxy (mesh empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyKey {
    pub kind: ProxyKind,
    pub mesh: String,
    pub name: String,
}

impl ProxyKey {
    pub fn sidecar(mesh: &str, name: &str) -> Self {
        Self {
            kind: ProxyKind::Sidecar,
            mesh: mesh.to_string(),
            name: name.to_string(),
        }
    }

    pub fn zone_proxy(kind: ProxyKind, name: &str) -> Self {
        Self {
            kind,
            mesh: String::new(),
            name: name.to_string(),
        }
    }

    fn resource_key(&self) -> ResourceKey {
        ResourceKey::new(self.kind.resource_kind(), &self.mesh, &self.name)
    }
}

impl std::fmt::Display for ProxyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ProxyKind::Sidecar => write!(f, "{}.{}", self.mesh, self.name),
            ProxyKind::Ingress => write!(f, "zone ingress {}", self.name),
            ProxyKind::Egress => write!(f, "zone egress {}", self.name),
        }
    }
}

/// How the zone control plane runs.
#[derive(Debug, Clone)]
pub struct ZoneSettings {
    pub dp_auth: DpAuth,
    /// This zone's name.
    pub zone: String,
    /// Connected to a global control plane (which owns meshes, CAs and token keys).
    pub federated: bool,
}

/// One known proxy (connected now or before).
struct ProxyEntry {
    snapshots: watch::Sender<Arc<Snapshot>>,
    status: SharedStatus,
    last: Option<Arc<ProxyBuild>>,
    /// Open ADS streams of this proxy: a reconnect overlaps the old stream, so the proxy is
    /// offline only when the last one ends.
    streams: Arc<AtomicUsize>,
}

/// Held by a stream's subscription; counts the proxy's open streams.
struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shortest wait before a rotation pass, so an overdue rotation that fails to build cannot
/// spin the loop.
const MIN_ROTATION_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

pub struct ZoneDirectory {
    store: SharedStore,
    index: MeshIndex,
    dp_auth: DpAuth,
    zone: String,
    metrics: XdsMetrics,
    proxies: Mutex<HashMap<ProxyKey, ProxyEntry>>,
    /// Serializes rebuilds so a slow build never overwrites a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Wakes the run loop when a proxy connects, so its certificate's rotation gets scheduled.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for ZoneDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneDirectory").finish_non_exhaustive()
    }
}

/// Policy kinds the zone applies to outbounds only (their `to` entries), as each policy
/// package declares ([`atoll_core::policies::reach`]).
fn is_outbound_policy(kind: Kind) -> bool {
    atoll_core::policies::reach(kind).outbounds_only()
}

/// The services an outbound policy can change: the names of its `to` MeshServices, when every
/// `to` entry names one; `None` (any proxy) otherwise. A policy that does not exist (created or
/// deleted by this change) changes nothing on its side.
fn outbound_policy_services(
    view: Option<&atoll_core::matching::PolicyView>,
) -> Option<BTreeSet<String>> {
    let Some(view) = view else {
        return Some(BTreeSet::new());
    };
    view.to
        .iter()
        .map(|entry| {
            let t = &entry.target_ref;
            match (t.kind.as_str(), &t.name) {
                ("MeshService", Some(name)) => Some(name.clone()),
                _ => None,
            }
        })
        .collect()
}

/// Resolves when the control plane stops.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Splits a node id `<mesh>.<name>` (mesh names have no dots; dataplane names may).
pub fn parse_node_id(id: &str) -> Option<(&str, &str)> {
    let (mesh, name) = id.split_once('.')?;
    (!mesh.is_empty() && !name.is_empty()).then_some((mesh, name))
}

fn metadata_string(node: &Node, key: &str) -> Option<String> {
    let fields = &node.metadata.as_ref()?.fields;
    match fields.get(key)?.kind.as_ref()? {
        PbKind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// Mesh label that makes the zone refuse dataplane tokens not bound to a service.
pub const TOKEN_BINDING_LABEL: &str = "atoll.io/dataplane-token-binding";

/// Every value each tag takes on a dataplane's inbounds (and gateway), as a token binding
/// reads them.
pub fn dataplane_tags(doc: &DataplaneDoc) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(net) = &doc.networking {
        let inbound_tags = net.inbound.iter().map(|i| &i.tags);
        for tags in inbound_tags.chain(net.gateway.iter().map(|g| &g.tags)) {
            for (k, v) in tags {
                out.entry(k.clone()).or_default().insert(v.clone());
            }
        }
    }
    out
}

impl ZoneDirectory {
    pub fn new(store: SharedStore, settings: ZoneSettings, metrics: XdsMetrics) -> Self {
        if settings.dp_auth == DpAuth::None {
            tracing::warn!(
                "ATOLL_DP_AUTH=none: proxies are NOT authenticated; use this for benchmarks only"
            );
        }
        let generation = if settings.federated {
            crate::ca::Generation::FromGlobal
        } else {
            crate::ca::Generation::Allowed
        };
        Self {
            index: MeshIndex::new(store.clone(), &settings.zone, generation),
            store,
            dp_auth: settings.dp_auth,
            zone: settings.zone,
            metrics,
            proxies: Mutex::new(HashMap::new()),
            rebuild: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Checks a dataplane token for `mesh`/`name` (unless authentication is off), and its tag
    /// binding against `dataplane` (the document being registered) or, without one, the stored
    /// Dataplane: a token bound to `kuma.io/service: backend` never serves another service.
    pub async fn authenticate(
        &self,
        mesh: &str,
        name: &str,
        token: Option<&str>,
        dataplane: Option<&DataplaneDoc>,
    ) -> Result<(), ConnectError> {
        if self.dp_auth == DpAuth::None {
            return Ok(());
        }
        let token = token.ok_or_else(|| {
            ConnectError::Unauthenticated(format!(
                "dataplane {name:?} of mesh {mesh:?} presented no dataplane token"
            ))
        })?;
        let keys = atoll_cp::tokens::verification_keys(self.store.as_ref(), mesh)
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        if keys.is_empty() {
            return Err(ConnectError::Unauthenticated(format!(
                "mesh {mesh:?} has issued no dataplane tokens; generate one with `atollctl generate dataplane-token`"
            )));
        }
        let claims = atoll_identity::verify_dataplane_token(token.trim(), &keys, Utc::now())
            .map_err(|e| ConnectError::Unauthenticated(format!("invalid dataplane token: {e}")))?;
        if claims.mesh != mesh || claims.name != name {
            return Err(ConnectError::Unauthenticated(format!(
                "the dataplane token was issued for dataplane {:?} in mesh {:?}, not {name:?} in mesh {mesh:?}",
                claims.name, claims.mesh
            )));
        }
        let unavailable = |e: atoll_store::StoreError| ConnectError::Unavailable(e.to_string());
        if !claims.binds_service()
            && let Some(m) = self
                .store
                .get(&ResourceKey::global(Kind::Mesh, mesh))
                .await
                .map_err(unavailable)?
            && m.labels.get(TOKEN_BINDING_LABEL).map(String::as_str) == Some("service")
        {
            return Err(ConnectError::Unauthenticated(format!(
                "mesh {mesh:?} requires dataplane tokens bound to a service ({TOKEN_BINDING_LABEL}: service): generate one with `atollctl generate dataplane-token --name {name} --tag kuma.io/service=<service>`"
            )));
        }
        let stored;
        let dataplane = match dataplane {
            Some(d) => Some(d),
            None => {
                stored = self
                    .store
                    .get(&ResourceKey::new(Kind::Dataplane, mesh, name))
                    .await
                    .map_err(unavailable)?
                    .and_then(|r| {
                        serde_json::from_value::<DataplaneDoc>(Value::Object(r.spec)).ok()
                    });
                stored.as_ref()
            }
        };
        if let Some(dataplane) = dataplane {
            claims
                .admits_tags(&dataplane_tags(dataplane))
                .map_err(|why| {
                    ConnectError::Unauthenticated(format!(
                        "dataplane {name:?} of mesh {mesh:?}: {why}"
                    ))
                })?;
        }
        Ok(())
    }

    /// Checks the zone token of a zone ingress or egress: signed by global's zone-token key
    /// (whose public half global syncs here), for this zone, with the proxy's scope.
    pub async fn authenticate_zone_proxy(
        &self,
        kind: ProxyKind,
        name: &str,
        token: Option<&str>,
    ) -> Result<(), ConnectError> {
        if self.dp_auth == DpAuth::None {
            return Ok(());
        }
        let Some(scope) = kind.token_scope() else {
            return Err(ConnectError::Unauthenticated(format!(
                "{kind:?} is not a zone proxy"
            )));
        };
        let what = if kind == ProxyKind::Ingress {
            "zone ingress"
        } else {
            "zone egress"
        };
        let token = token.ok_or_else(|| {
            ConnectError::Unauthenticated(format!(
                "{what} {name:?} presented no zone token; generate one on global with `atollctl generate zone-token --zone {} --scope {scope}`",
                self.zone
            ))
        })?;
        let keys = atoll_cp::tokens::zone_verification_keys(self.store.as_ref())
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        if keys.is_empty() {
            return Err(ConnectError::Unauthenticated(
                "this zone has no zone-token public key yet: it arrives from the global control plane once the zone is connected".to_string(),
            ));
        }
        let claims = atoll_identity::verify_zone_token(token.trim(), &keys, Utc::now())
            .map_err(|e| ConnectError::Unauthenticated(format!("invalid zone token: {e}")))?;
        if claims.zone != self.zone {
            return Err(ConnectError::Unauthenticated(format!(
                "the zone token was issued for zone {:?}, but this is zone {:?}",
                claims.zone, self.zone
            )));
        }
        if claims.scope != scope {
            return Err(ConnectError::Unauthenticated(format!(
                "the zone token has scope {}, a {what} needs scope {scope}",
                claims.scope
            )));
        }
        Ok(())
    }

    async fn build_for(
        &self,
        key: &ProxyKey,
    ) -> Result<Arc<ProxyBuild>, crate::snapshot::BuildError> {
        let started = Instant::now();
        let built = match key.kind {
            ProxyKind::Sidecar => {
                let previous_cert = self.entry_build(key).and_then(|b| b.cert.clone());
                let state = self.index.mesh(&key.mesh).await?;
                crate::snapshot::build_to_serve(
                    &state,
                    &key.name,
                    previous_cert.as_ref(),
                    Utc::now(),
                )?
            }
            ProxyKind::Ingress => {
                crate::zone_proxies::build_ingress(&self.index, self.store.as_ref(), &key.name)
                    .await?
            }
            ProxyKind::Egress => {
                let previous = self
                    .entry_build(key)
                    .map(|b| b.mesh_certs.clone())
                    .unwrap_or_default();
                crate::zone_proxies::build_egress(
                    &self.index,
                    self.store.as_ref(),
                    &key.name,
                    &previous,
                    Utc::now(),
                )
                .await?
            }
        };
        let label = match key.kind {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Ingress => "ingress",
            ProxyKind::Egress => "egress",
        };
        self.metrics.observe_generation(label, started.elapsed());
        let mut built = built;
        built.forget_models();
        Ok(Arc::new(built))
    }

    fn entry_build(&self, key: &ProxyKey) -> Option<Arc<ProxyBuild>> {
        let proxies = self.proxies.lock().ok()?;
        proxies.get(key).and_then(|e| e.last.clone())
    }

    /// Rebuilds one proxy and publishes its snapshot if it changed.
    async fn refresh(&self, key: &ProxyKey) {
        let built = self.build_for(key).await;
        self.publish(key, built);
    }

    /// Rebuilds many proxies: sidecars in parallel on every core (a build is pure and
    /// synchronous once the mesh state is read), zone proxies one by one. With `inbound_only`
    /// (only MeshTrafficPermissions changed), sidecars rebuild just their inbound side.
    async fn refresh_all(&self, keys: Vec<ProxyKey>, inbound_only: bool) {
        let mut by_mesh: BTreeMap<String, Vec<ProxyKey>> = BTreeMap::new();
        for key in keys {
            if key.kind == ProxyKind::Sidecar {
                by_mesh.entry(key.mesh.clone()).or_default().push(key);
            } else {
                self.refresh(&key).await;
            }
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (mesh, keys) in by_mesh {
            let state = match self.index.mesh(&mesh).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(%mesh, proxies = keys.len(), error = %e, "cannot build the mesh's proxies; they keep their last config");
                    continue;
                }
            };
            let jobs: Vec<(ProxyKey, Option<Arc<ProxyBuild>>)> = keys
                .into_iter()
                .map(|key| {
                    let previous = self.entry_build(&key);
                    (key, previous)
                })
                .collect();
            let chunk = jobs.len().div_ceil(workers).max(1);
            let now = Utc::now();
            let mut handles = Vec::new();
            let mut jobs = jobs.into_iter().peekable();
            while jobs.peek().is_some() {
                let part: Vec<_> = jobs.by_ref().take(chunk).collect();
                let state = state.clone();
                handles.push(tokio::task::spawn_blocking(move || {
                    part.into_iter()
                        .map(|(key, previous)| {
                            let started = Instant::now();
                            let built = match &previous {
                                Some(previous) if inbound_only => {
                                    crate::snapshot::rebuild_inbounds(
                                        &state, &key.name, previous, now,
                                    )
                                }
                                _ => crate::snapshot::build_to_serve(
                                    &state,
                                    &key.name,
                                    previous.as_ref().and_then(|p| p.cert.as_ref()),
                                    now,
                                ),
                            }
                            .map(|mut b| {
                                // build_to_serve kept no models; an inbound rebuild made new ones.
                                b.forget_models();
                                Arc::new(b)
                            });
                            (key, built, started.elapsed())
                        })
                        .collect::<Vec<_>>()
                }));
            }
            for handle in handles {
                match handle.await {
                    Ok(results) => {
                        for (key, built, took) in results {
                            self.metrics.observe_generation("sidecar", took);
                            self.publish(&key, built);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a build worker failed; its proxies keep their config")
                    }
                }
            }
        }
    }

    /// Publishes a build's snapshot if it changed; a deleted proxy's entry is dropped (which
    /// ends its stream); a failed build leaves the last config in place.
    fn publish(&self, key: &ProxyKey, built: Result<Arc<ProxyBuild>, crate::snapshot::BuildError>) {
        match built {
            Ok(built) => {
                let Ok(mut proxies) = self.proxies.lock() else {
                    return;
                };
                if let Some(entry) = proxies.get_mut(key) {
                    let changed = entry.snapshots.borrow().version != built.snapshot.version;
                    if changed {
                        entry.snapshots.send_replace(built.snapshot.clone());
                        tracing::debug!(proxy = %key, version = %built.snapshot.version, "new snapshot");
                    }
                    entry.last = Some(built);
                }
            }
            Err(
                crate::snapshot::BuildError::MissingDataplane(_)
                | crate::snapshot::BuildError::MissingZoneProxy { .. },
            ) => {
                // Deleted: drop the entry, which ends its stream.
                if let Ok(mut proxies) = self.proxies.lock() {
                    proxies.remove(key);
                }
            }
            Err(e) => {
                tracing::error!(proxy = %key, error = %e, "cannot build proxy config; it keeps its last config")
            }
        }
    }

    /// Which known proxies a change concerns. `changed_services`: the services whose endpoints
    /// or offers a Dataplane or MeshService change touched. `policy_services`: for an outbound
    /// policy (MeshTimeout, MeshRetry, MeshCircuitBreaker) that only names MeshServices in `to`
    /// (before and after the change), those services; `None` when it may concern every proxy.
    fn affected(
        &self,
        event: &ChangeEvent,
        changed_services: &BTreeSet<String>,
        policy_services: Option<&BTreeSet<String>>,
    ) -> Vec<ProxyKey> {
        let Ok(proxies) = self.proxies.lock() else {
            return Vec::new();
        };
        let key = &event.key;
        proxies
            .iter()
            .filter(|(proxy, entry)| {
                let reaches_changed = || {
                    entry
                        .last
                        .as_ref()
                        .is_none_or(|b| !b.outbound_services.is_disjoint(changed_services))
                };
                match (proxy.kind, key.kind) {
                    // Zone proxies serve every mesh's services (the ingress) or every mesh's
                    // remote services (the egress).
                    (ProxyKind::Ingress | ProxyKind::Egress, Kind::Mesh | Kind::Secret) => true,
                    (ProxyKind::Ingress, Kind::Dataplane) => true,
                    (ProxyKind::Egress, Kind::MeshService | Kind::MeshExternalService) => true,
                    (
                        ProxyKind::Ingress | ProxyKind::Egress,
                        Kind::ZoneIngress | Kind::ZoneEgress,
                    ) => true,
                    (ProxyKind::Ingress | ProxyKind::Egress, _) => false,
                    (ProxyKind::Sidecar, Kind::Mesh) => proxy.mesh == key.name,
                    (ProxyKind::Sidecar, Kind::Dataplane) => {
                        proxy.mesh == key.mesh && (proxy.name == key.name || reaches_changed())
                    }
                    (ProxyKind::Sidecar, Kind::MeshService) => {
                        proxy.mesh == key.mesh && reaches_changed()
                    }
                    (ProxyKind::Sidecar, Kind::MeshExternalService) => proxy.mesh == key.mesh,
                    // Another zone's ingress or a local egress moved: every sidecar that
                    // reaches another zone may route differently.
                    (ProxyKind::Sidecar, Kind::ZoneIngress | Kind::ZoneEgress) => true,
                    (ProxyKind::Sidecar, kind) if is_outbound_policy(kind) => {
                        proxy.mesh == key.mesh
                            && policy_services.is_none_or(|services| {
                                entry
                                    .last
                                    .as_ref()
                                    .is_none_or(|b| !b.outbound_services.is_disjoint(services))
                            })
                    }
                    // A policy with an inbound side may select any proxy of its mesh.
                    (ProxyKind::Sidecar, kind) if atoll_core::policies::reach(kind).applies() => {
                        proxy.mesh == key.mesh
                    }
                    (ProxyKind::Sidecar, Kind::Secret) => proxy.mesh == key.mesh,
                    (ProxyKind::Sidecar, _) => false,
                }
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Follows store changes and certificate rotations until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.store.watch();
        // Zone proxies written before this subscription (by an earlier run of this zone CP, or
        // while it started) produced no event here: read them now.
        self.reload_routes().await;
        // Services each dataplane offered at its last build, to know whom its change concerns
        // even after it is deleted.
        let mut services_of: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
        loop {
            let next_rotation = self.next_rotation();
            let sleep = async {
                match next_rotation {
                    Some(at) => tokio::time::sleep(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                () = self.wake.notified() => {}
                () = sleep => {
                    self.refresh_all(self.known(), false).await;
                }
                received = events.recv() => {
                    let mut batch = Vec::new();
                    match received {
                        Ok(ev) => batch.push(ev),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "missed store events; rebuilding every proxy");
                            let _guard = self.rebuild.lock().await;
                            // The index may be stale in any way: read everything again.
                            self.index.forget_all().await;
                            self.refresh_all(self.known(), false).await;
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    // Coalesce whatever else is already queued.
                    while let Ok(ev) = events.try_recv() {
                        batch.push(ev);
                    }
                    let _guard = self.rebuild.lock().await;
                    // Services a changed MeshService stood for, and the services outbound
                    // policies named, before the change.
                    let mut offered_before: HashMap<ResourceKey, String> = HashMap::new();
                    let mut policy_before: HashMap<ResourceKey, Option<BTreeSet<String>>> = HashMap::new();
                    for ev in &batch {
                        if ev.key.kind == Kind::MeshService
                            && let Some(service) = self.index.offered_service(&ev.key).await
                        {
                            offered_before.insert(ev.key.clone(), service);
                        }
                        if is_outbound_policy(ev.key.kind) {
                            let view = self.index.policy_view(&ev.key).await;
                            policy_before.insert(ev.key.clone(), outbound_policy_services(view.as_ref()));
                        }
                    }
                    let mut routes_changed = false;
                    for ev in &batch {
                        if let Err(e) = self.index.apply(ev).await {
                            tracing::warn!(error = %e, "cannot read a changed resource; its proxies keep their config");
                        }
                        routes_changed |= matches!(ev.key.kind, Kind::ZoneIngress | Kind::ZoneEgress);
                    }
                    if routes_changed {
                        self.reload_routes().await;
                    }
                    let mut todo: BTreeSet<ProxyKey> = BTreeSet::new();
                    for ev in &batch {
                        let mut changed = BTreeSet::new();
                        if ev.key.kind == Kind::MeshService {
                            changed.extend(offered_before.get(&ev.key).cloned());
                            changed.extend(self.index.offered_service(&ev.key).await);
                        }
                        if ev.key.kind == Kind::Dataplane {
                            let k = (ev.key.mesh.clone(), ev.key.name.clone());
                            if let Some(old) = services_of.get(&k) {
                                changed.extend(old.iter().cloned());
                            }
                            if let Some(now) = self.current_services(&ev.key).await {
                                changed.extend(now.iter().cloned());
                                services_of.insert(k, now);
                            } else {
                                services_of.remove(&k);
                            }
                        }
                        let policy_services = if is_outbound_policy(ev.key.kind) {
                            let after = self.index.policy_view(&ev.key).await;
                            match (
                                policy_before.get(&ev.key).cloned().flatten(),
                                outbound_policy_services(after.as_ref()),
                            ) {
                                (Some(mut before), Some(after)) => {
                                    before.extend(after);
                                    Some(before)
                                }
                                _ => None,
                            }
                        } else {
                            None
                        };
                        todo.extend(self.affected(ev, &changed, policy_services.as_ref()));
                    }
                    let inbound_only = batch
                        .iter()
                        .all(|ev| atoll_core::policies::reach(ev.key.kind).inbounds_only());
                    self.metrics
                        .unusable
                        .set(i64::try_from(self.index.unusable_count().await).unwrap_or(i64::MAX));
                    self.refresh_all(todo.into_iter().collect(), inbound_only).await;
                }
            }
        }
    }

    async fn reload_routes(&self) {
        if let Err(e) = self.index.reload_routes().await {
            tracing::warn!(error = %e, "cannot read the zone proxies; sidecars keep their routes to other zones");
        }
    }

    async fn current_services(&self, key: &ResourceKey) -> Option<BTreeSet<String>> {
        let state = self.index.mesh(&key.mesh).await.ok()?;
        state.dataplanes.get(&key.name).map(|d| d.services.clone())
    }

    fn known(&self) -> Vec<ProxyKey> {
        self.proxies
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How long until the earliest certificate rotation.
    fn next_rotation(&self) -> Option<std::time::Duration> {
        let proxies = self.proxies.lock().ok()?;
        let at = proxies
            .values()
            .filter_map(|e| e.last.as_ref())
            .flat_map(|b| b.certs())
            .map(|c| atoll_identity::rotation_at(&c.issued))
            .min()?;
        Some(
            (at - Utc::now())
                .to_std()
                .unwrap_or_default()
                .max(MIN_ROTATION_WAIT),
        )
    }

    /// Drives CA switches (`index::plan_ca_switch`): a mesh moves to the next step once every
    /// connected proxy holding a certificate of the mesh has ACKed a snapshot built on the
    /// current step, or after `max_wait` (a proxy that never answers must not hold the mesh's
    /// CA back forever; it is named in the log).
    pub async fn drive_ca_switches(
        self: Arc<Self>,
        max_wait: std::time::Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                _ = tick.tick() => {}
            }
            for (mesh, since) in self.index.ca_switches().await {
                let Ok(state) = self.index.mesh(&mesh).await else {
                    continue;
                };
                let Some(current) = state.ca.as_ref() else {
                    continue;
                };
                let behind = self.behind_on_ca(&mesh, current);
                if !behind.is_empty() && since.elapsed() < max_wait {
                    continue;
                }
                if !behind.is_empty() {
                    tracing::warn!(%mesh, proxies = ?behind, waited = ?max_wait, "mesh CA switch goes on without these proxies' ACK");
                }
                let _guard = self.rebuild.lock().await;
                if self.index.advance_ca(&mesh).await {
                    let keys: Vec<ProxyKey> = self
                        .known()
                        .into_iter()
                        .filter(|k| k.kind == ProxyKind::Egress || k.mesh == mesh)
                        .collect();
                    self.refresh_all(keys, false).await;
                }
            }
        }
    }

    /// The connected proxies of `mesh` that have not ACKed a snapshot built on `ca`.
    fn behind_on_ca(&self, mesh: &str, ca: &MeshCa) -> Vec<String> {
        let Ok(proxies) = self.proxies.lock() else {
            return Vec::new();
        };
        proxies
            .iter()
            .filter(|(_, e)| e.streams.load(Ordering::SeqCst) > 0)
            .filter_map(|(key, e)| {
                let build = e.last.as_ref()?;
                let cert = match key.kind {
                    ProxyKind::Sidecar if key.mesh == mesh => build.cert.as_ref(),
                    ProxyKind::Egress => build.mesh_certs.get(mesh),
                    _ => None,
                }?;
                let acked = e
                    .status
                    .lock()
                    .ok()
                    .and_then(|s| s.last_acked_version.clone())
                    .is_some_and(|v| v == e.snapshots.borrow().version);
                (!cert.matches(ca) || !acked).then(|| key.to_string())
            })
            .collect()
    }

    /// Removes dataplanes and zone proxies whose proxy has been disconnected for longer than
    /// `grace`.
    pub async fn collect_offline(
        self: Arc<Self>,
        grace: std::time::Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let period = (grace / 4).clamp(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(60),
        );
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                () = tokio::time::sleep(period) => {}
            }
            let expired: Vec<ProxyKey> = self
                .proxies
                .lock()
                .map(|p| {
                    p.iter()
                        .filter(|(_, e)| {
                            e.streams.load(Ordering::SeqCst) == 0
                                && e.status.lock().is_ok_and(|s| {
                                    s.disconnected_at.is_some_and(|at| {
                                        SystemTime::now().duration_since(at).unwrap_or_default()
                                            > grace
                                    }) && s
                                        .connected_since
                                        .is_some_and(|c| s.disconnected_at.is_some_and(|d| d >= c))
                                })
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            for proxy in expired {
                let key = proxy.resource_key();
                match self.store.delete(&key, None).await {
                    Ok(()) | Err(atoll_store::StoreError::NotFound(_)) => {
                        tracing::info!(resource = %key, ?grace, "removed a proxy that stayed offline past the grace period");
                        if let Ok(mut p) = self.proxies.lock() {
                            p.remove(&proxy);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(resource = %key, error = %e, "cannot remove an offline proxy")
                    }
                }
            }
        }
    }

    fn status_json(entry: &ProxyEntry) -> Value {
        let build = entry.last.as_deref();
        let s = entry.status.lock().map(|s| s.clone()).unwrap_or_default();
        let online = entry.streams.load(Ordering::SeqCst) > 0;
        let time = |t: Option<SystemTime>| {
            t.map(|t| {
                chrono::DateTime::<Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
        };
        json!({
            "online": online,
            "connectedSince": time(s.connected_since),
            "disconnectedAt": time(s.disconnected_at),
            "lastSentVersion": s.last_sent_version,
            "lastAckedVersion": s.last_acked_version,
            "lastNack": s.last_nack.as_ref().map(|(v, m)| json!({"version": v, "message": m})),
            "responsesSent": s.responses_sent,
            "certificateExpiry": build.and_then(|b| b.cert.as_ref()).map(|c| c.issued.not_after.to_rfc3339()),
        })
    }
}

impl ProxyDirectory for ZoneDirectory {
    async fn connect(&self, node: &Node) -> Result<ProxySubscription, ConnectError> {
        let proxy_type = metadata_string(node, PROXY_TYPE_METADATA_KEY).unwrap_or_default();
        let kind = ProxyKind::from_proxy_type(&proxy_type).ok_or_else(|| {
            ConnectError::NotFound(format!(
                "unknown proxy type {proxy_type:?} (sidecar, ingress or egress)"
            ))
        })?;
        let token = metadata_string(node, TOKEN_METADATA_KEY);
        let key = match kind {
            ProxyKind::Sidecar => {
                let (mesh, name) = parse_node_id(&node.id).ok_or_else(|| {
                    ConnectError::NotFound(format!(
                        "node id {:?} is not <mesh>.<dataplane name>",
                        node.id
                    ))
                })?;
                self.authenticate(mesh, name, token.as_deref(), None)
                    .await?;
                self.index
                    .refresh_dataplane(mesh, name)
                    .await
                    .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
                ProxyKey::sidecar(mesh, name)
            }
            ProxyKind::Ingress | ProxyKind::Egress => {
                self.authenticate_zone_proxy(kind, &node.id, token.as_deref())
                    .await?;
                ProxyKey::zone_proxy(kind, &node.id)
            }
        };
        let built = self.build_for(&key).await.map_err(|e| match e {
            crate::snapshot::BuildError::MissingDataplane(k) => ConnectError::NotFound(format!(
                "{k} is not registered: start the proxy with atoll-dp, which registers it"
            )),
            e @ crate::snapshot::BuildError::MissingZoneProxy { .. } => {
                ConnectError::NotFound(e.to_string())
            }
            other => ConnectError::Unavailable(other.to_string()),
        })?;
        let mut proxies = self
            .proxies
            .lock()
            .map_err(|_| ConnectError::Unavailable("directory poisoned".into()))?;
        let entry = proxies.entry(key).or_insert_with(|| ProxyEntry {
            snapshots: watch::channel(built.snapshot.clone()).0,
            status: SharedStatus::default(),
            last: None,
            streams: Arc::new(AtomicUsize::new(0)),
        });
        entry.streams.fetch_add(1, Ordering::SeqCst);
        let guard = StreamGuard(entry.streams.clone());
        entry.snapshots.send_replace(built.snapshot.clone());
        entry.last = Some(built);
        let subscription = Ok(ProxySubscription {
            proxy_id: node.id.clone(),
            snapshots: entry.snapshots.subscribe(),
            status: entry.status.clone(),
            connection: Some(Box::new(guard)),
        });
        drop(proxies);
        self.wake.notify_one();
        subscription
    }
}

#[async_trait]
impl DataplaneInspector for ZoneDirectory {
    async fn overview(&self, mesh: &str) -> Value {
        let list = self
            .store
            .list(&ListFilter::in_mesh(Kind::Dataplane, mesh))
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        let mut items: Vec<Value> = {
            let proxies = self.proxies.lock().ok();
            list
            .iter()
            .map(|dp| {
                let entry = proxies
                    .as_ref()
                    .and_then(|p| p.get(&ProxyKey::sidecar(mesh, &dp.name)));
                let status = match entry {
                    Some(e) => Self::status_json(e),
                    None => json!({"online": false}),
                };
                json!({"mesh": mesh, "name": dp.name, "dataplane": dp.to_value(), "status": status})
            })
            .collect()
        };
        for item in &mut items {
            let name = item["name"].as_str().unwrap_or_default().to_string();
            if let Some(why) = self.index.unusable(mesh, &name).await {
                item["status"]["problems"] = json!([why]);
            }
        }
        json!({"total": items.len(), "items": items})
    }

    async fn config(&self, mesh: &str, name: &str) -> Option<Value> {
        // Kept builds hold only the encoded resources: render a fresh build, with the
        // certificate the proxy has (same inputs, same resources and versions).
        let previous = self.entry_build(&ProxyKey::sidecar(mesh, name));
        let cert = previous.as_ref().and_then(|b| b.cert.as_ref());
        build(&self.index, mesh, name, cert, Utc::now())
            .await
            .ok()
            .map(|b| b.config_json())
    }

    async fn rules(&self, mesh: &str, name: &str) -> Option<Value> {
        // Kept builds do not hold the rules view: render a fresh build (see `config`).
        let previous = self.entry_build(&ProxyKey::sidecar(mesh, name));
        let cert = previous.as_ref().and_then(|b| b.cert.as_ref());
        build(&self.index, mesh, name, cert, Utc::now())
            .await
            .ok()
            .map(|b| b.rules_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(to: serde_json::Value) -> atoll_core::matching::PolicyView {
        let mut r = atoll_core::Resource::new(Kind::MeshTimeout, "default", "t");
        r.spec.insert(
            "spec".into(),
            json!({"targetRef": {"kind": "Mesh"}, "to": to}),
        );
        atoll_core::matching::PolicyView::from_resource(&r).expect("view")
    }

    #[test]
    fn an_outbound_policy_naming_services_concerns_only_their_clients() {
        let named = timeout(json!([
            {"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {"idleTimeout": "1s"}},
            {"targetRef": {"kind": "MeshService", "name": "db"}, "default": {"idleTimeout": "2s"}},
        ]));
        assert_eq!(
            outbound_policy_services(Some(&named)),
            Some(["backend".to_string(), "db".to_string()].into())
        );
        let mesh_wide = timeout(json!([
            {"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s"}},
        ]));
        assert_eq!(outbound_policy_services(Some(&mesh_wide)), None);
        // Created or deleted: the missing side names nothing.
        assert_eq!(outbound_policy_services(None), Some(BTreeSet::new()));
        assert!(is_outbound_policy(Kind::MeshRetry));
        assert!(!is_outbound_policy(Kind::MeshTrafficPermission));
    }

    #[test]
    fn node_ids_split_at_the_first_dot() {
        assert_eq!(parse_node_id("default.web-1"), Some(("default", "web-1")));
        assert_eq!(
            parse_node_id("default.redis.kuma-demo"),
            Some(("default", "redis.kuma-demo"))
        );
        assert_eq!(parse_node_id("nodot"), None);
        assert_eq!(parse_node_id(".x"), None);
    }
}
