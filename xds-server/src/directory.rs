//! The seam between the gRPC service and the control plane: the service authenticates each new
//! stream's proxy and follows its snapshots through a `ProxyDirectory`, so it can be tested with
//! a directory fed by hand.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::watch;

use crate::session::{Snapshot, TypeStatus};

/// Why a proxy may not open a stream.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad, expired or foreign credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The proxy is not known or its resource is invalid.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Per-proxy stream status, shared between the stream and the inspect API.
#[derive(Debug, Clone, Default)]
pub struct StreamStatus {
    pub connected_since: Option<SystemTime>,
    pub disconnected_at: Option<SystemTime>,
    pub last_sent_version: Option<String>,
    pub last_acked_version: Option<String>,
    /// The last NACK: snapshot version and Envoy's error text.
    pub last_nack: Option<(String, String)>,
    pub per_type: Vec<(String, TypeStatus)>,
    pub responses_sent: u64,
}

pub type SharedStatus = Arc<Mutex<StreamStatus>>;

/// A connected proxy's feed of snapshots. Dropping it tells the directory the stream ended.
#[derive(Debug)]
pub struct ProxySubscription {
    /// `<mesh>.<name>`, for logs and metrics.
    pub proxy_id: String,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub status: SharedStatus,
    /// Dropped with the subscription when the stream ends: the directory's guard, which tells
    /// it this stream is gone (e.g. decrements the proxy's open-stream count).
    pub connection: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// What the xDS service needs from the control plane.
pub trait ProxyDirectory: Send + Sync + 'static {
    /// Authenticates the proxy named by `node` (its id and metadata) and subscribes to its
    /// snapshots.
    fn connect(
        &self,
        node: &Node,
    ) -> impl std::future::Future<Output = Result<ProxySubscription, ConnectError>> + Send;
}
