//! The zone's proxy directory: the xDS server's view of the zone's proxies. It wires parts that
//! each do one job:
//!
//! - `auth`: the tokens proxies present (dataplane and zone tokens);
//! - `cache`: each known proxy's latest build, snapshot feed and open streams;
//! - `planner`: which proxies a store change concerns (pure);
//! - `rebuild`: building proxies' config and publishing it to the cache;
//! - `events`: the loop that follows the store, creates builtin CAs of standalone meshes,
//!   and rebuilds what the planner names, or every certificate due for renewal;
//! - `rotation`: certificate renewal times and mesh CA switches;
//! - `offline`: removing proxies disconnected past the grace period;
//! - `inspect`: the dataplane inspect API.

pub mod auth;
mod cache;
mod events;
mod inspect;
mod offline;
pub mod planner;
mod proxy;
mod rebuild;
mod rotation;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::watch;

use atoll_clock::SharedClock;
use atoll_cp::config::DpAuth;
use atoll_store::SharedStore;
use atoll_xds_server::directory::{ConnectError, ProxyDirectory, ProxySubscription};
use atoll_xds_server::metrics::XdsMetrics;

use crate::error::BuildError;
use crate::index::MeshIndex;
use cache::ProxyCache;

pub use auth::{
    PROXY_TYPE_METADATA_KEY, ProxyAuth, TOKEN_BINDING_LABEL, TOKEN_METADATA_KEY, dataplane_tags,
    parse_node_id,
};
pub use proxy::{ProxyKey, ProxyKind};

/// How the zone control plane runs.
#[derive(Debug, Clone)]
pub struct ZoneSettings {
    pub dp_auth: DpAuth,
    /// This zone's name.
    pub zone: String,
    /// Connected to a global control plane (which owns meshes, CAs and token keys).
    pub federated: bool,
    /// The wall clock (token expiry, certificate validity and rotation, offline grace):
    /// `atoll_clock::system()` in production.
    pub clock: SharedClock,
    /// How far past `exp` (or before `nbf`) a token is still accepted
    /// (`ATOLL_TOKEN_CLOCK_LEEWAY`).
    pub token_leeway: chrono::TimeDelta,
}

pub struct ZoneDirectory {
    store: SharedStore,
    index: MeshIndex,
    auth: ProxyAuth,
    cache: ProxyCache,
    metrics: XdsMetrics,
    clock: SharedClock,
    /// This zone creates its meshes' builtin CAs (standalone); a federated zone receives them.
    creates_cas: bool,
    /// Serializes rebuilds so a slow build never overwrites a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Wakes the event loop when a proxy connects, so its certificate's rotation gets scheduled.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for ZoneDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneDirectory").finish_non_exhaustive()
    }
}

/// Resolves when the control plane stops.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

impl ZoneDirectory {
    pub fn new(store: SharedStore, settings: ZoneSettings, metrics: XdsMetrics) -> Self {
        let generation = if settings.federated {
            crate::ca::Generation::FromGlobal
        } else {
            crate::ca::Generation::Allowed
        };
        Self {
            index: MeshIndex::new(
                store.clone(),
                &settings.zone,
                generation,
                settings.clock.clone(),
            ),
            auth: ProxyAuth::new(
                store.clone(),
                settings.dp_auth,
                &settings.zone,
                settings.token_leeway,
                settings.clock.clone(),
            ),
            cache: ProxyCache::new(settings.clock.clone()),
            store,
            metrics,
            clock: settings.clock,
            creates_cas: !settings.federated,
            rebuild: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The token checks (the bootstrap endpoint uses them too).
    pub fn auth(&self) -> &ProxyAuth {
        &self.auth
    }
}

impl ProxyDirectory for ZoneDirectory {
    async fn connect(&self, node: &Node) -> Result<ProxySubscription, ConnectError> {
        let proxy_type = auth::metadata_string(node, PROXY_TYPE_METADATA_KEY).unwrap_or_default();
        let kind = ProxyKind::from_proxy_type(&proxy_type).ok_or_else(|| {
            ConnectError::NotFound(format!(
                "unknown proxy type {proxy_type:?} (sidecar, ingress or egress)"
            ))
        })?;
        let token = auth::metadata_string(node, TOKEN_METADATA_KEY);
        let key = match kind {
            ProxyKind::Sidecar => {
                let (mesh, name) = parse_node_id(&node.id).ok_or_else(|| {
                    ConnectError::NotFound(format!(
                        "node id {:?} is not <mesh>.<dataplane name>",
                        node.id
                    ))
                })?;
                self.auth
                    .dataplane(mesh, name, token.as_deref(), None)
                    .await?;
                self.index
                    .refresh_dataplane(mesh, name)
                    .await
                    .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
                ProxyKey::sidecar(mesh, name)
            }
            ProxyKind::Ingress | ProxyKind::Egress => {
                self.auth
                    .zone_proxy(kind, &node.id, token.as_deref())
                    .await?;
                ProxyKey::zone_proxy(kind, &node.id)
            }
        };
        let built = self.build_for(&key).await.map_err(|e| match e {
            BuildError::MissingDataplane(k) => ConnectError::NotFound(format!(
                "{k} is not registered: start the proxy with atoll-dp, which registers it"
            )),
            e @ BuildError::MissingZoneProxy { .. } => ConnectError::NotFound(e.to_string()),
            other => ConnectError::Unavailable(other.to_string()),
        })?;
        let subscription = self
            .cache
            .admit(key, &node.id, built)
            .ok_or_else(|| ConnectError::Unavailable("directory poisoned".into()))?;
        self.wake.notify_one();
        Ok(subscription)
    }
}

#[cfg(test)]
mod tests;
