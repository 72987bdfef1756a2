//! How a control plane binary adds its own parts to the shared runtime (the zone control plane's
//! xDS server, later the global's KDS server) without the shared crate depending on them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use atoll_store::SharedStore;

use crate::config::Config;

/// What an extension gets at start-up.
pub struct ExtensionContext {
    pub config: Config,
    pub store: SharedStore,
    /// The control plane's Prometheus registry, for the extension's own metrics.
    pub registry: prometheus::Registry,
    /// Set this to serve the dataplane inspect endpoints of the REST API.
    pub inspector: Arc<OnceLock<Arc<dyn DataplaneInspector>>>,
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
