//! How a control plane binary adds its own parts to the shared runtime (the zone control plane's
//! xDS server, the global's KDS server) without the shared crate depending on them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use atoll_store::{SharedStore, StoreError};

use crate::config::Config;

/// What an extension gets at start-up.
pub struct ExtensionContext {
    pub config: Config,
    pub store: SharedStore,
    /// The control plane's Prometheus registry, for the extension's own metrics.
    pub registry: prometheus::Registry,
    /// Connection metrics to pass to `listener::serve` for the extension's listeners.
    pub connections: crate::listener::ConnectionMetrics,
    /// Set this to serve the dataplane inspect endpoints of the REST API.
    pub inspector: Arc<OnceLock<Arc<dyn DataplaneInspector>>>,
    /// Set this to serve the zone overviews and zone deletion of the REST API (global).
    pub zone_inspector: Arc<OnceLock<Arc<dyn ZoneInspector>>>,
    /// This control plane's instance id (as `GET /` shows it).
    pub instance_id: String,
    /// Becomes true when the control plane stops.
    pub shutdown: watch::Receiver<bool>,
}

/// Starts an extension; it returns the tasks the control plane awaits when stopping.
pub type StartHook = Box<
    dyn FnOnce(
            ExtensionContext,
        ) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<JoinHandle<()>>>> + Send>>
        + Send,
>;

/// Live dataplane information for the REST API (`_overview`, `_config`, `_rules`).
#[async_trait]
pub trait DataplaneInspector: Send + Sync {
    /// Status of every dataplane of a mesh: name -> status object (online, versions, NACK, cert
    /// expiry).
    async fn overview(&self, mesh: &str) -> Value;
    /// The generated Envoy configuration of one dataplane, as JSON; `None` if unknown.
    async fn config(&self, mesh: &str, name: &str) -> Option<Value>;
    /// The merged policies per inbound/outbound of one dataplane; `None` if unknown.
    async fn rules(&self, mesh: &str, name: &str) -> Option<Value>;
}

/// Live zone information and zone deletion for the global's REST API (`/zones/_overview`,
/// `DELETE /zones/{name}`), filled in by the global control plane's KDS server.
#[async_trait]
pub trait ZoneInspector: Send + Sync {
    /// The zone's insight as Kuma's `ZoneInsight` JSON: `online`, and `subscriptions` (one per
    /// connection, latest last) with connect and disconnect times, instance ids, version and
    /// per-kind counters. A zone this control plane has not seen gets no subscriptions.
    fn insight(&self, zone: &str) -> Value;

    /// Deletes the Zone and every resource it owned, unless it is connected.
    async fn delete_zone(&self, zone: &str) -> Result<ZoneDeletion, ZoneDeleteError>;
}

/// What deleting a zone removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneDeletion {
    /// Resources the zone owned (synced from it), now deleted.
    pub resources_removed: usize,
}

/// Why a zone was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum ZoneDeleteError {
    #[error("zone {0:?} not found")]
    NotFound(String),
    /// Refused: the zone is connected; its resources would come straight back.
    #[error(
        "zone {zone:?} is online{}: stop its zone control plane, or set enabled: false on the Zone to disconnect it, then delete it",
        since.as_deref().map(|s| format!(" (connected since {s})")).unwrap_or_default()
    )]
    Online { zone: String, since: Option<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}
