//! The global's KDS handler: authenticates each zone call with its zone token, registers the
//! Zone on its first successful connect, and runs one engine loop per stream: a `Sender` of
//! global's kinds on `GlobalToZoneSync`, a `Receiver` storing the zone's resources on
//! `ZoneToGlobalSync`. Resources relayed between zones need nothing more: what zone A sends is
//! in the store, and the store watch feeding zone B's sender carries it (the sender never sends
//! a zone what came from that zone).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::BoxFuture;
use tonic::{Request, Response, Status, Streaming};

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_cp::tokens::zone_verification_keys;
use atoll_identity::{Scope, verify_zone_token};
use atoll_kds::Party;
use atoll_kds::engine::{ReceiverConfig, SenderConfig};
use atoll_kds::sync::{SyncError, run_receiver, run_sender};
use atoll_kds::transport::{KdsHandler, MessageStream, credentials};
use atoll_store::{SharedStore, StoreError};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};

/// Which streams of a zone are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneLink {
    pub global_to_zone: usize,
    pub zone_to_global: usize,
}

impl ZoneLink {
    pub fn online(&self) -> bool {
        self.global_to_zone > 0 && self.zone_to_global > 0
    }
}

/// The zones' connection status, in memory (per global instance).
#[derive(Debug, Clone, Default)]
pub struct ZoneStatus(Arc<Mutex<BTreeMap<String, ZoneLink>>>);

impl ZoneStatus {
    /// Zone name -> open streams.
    pub fn snapshot(&self) -> BTreeMap<String, ZoneLink> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn change(&self, zone: &str, g2z: bool, delta: isize) {
        if let Ok(mut m) = self.0.lock() {
            let link = m.entry(zone.to_string()).or_default();
            let n = if g2z {
                &mut link.global_to_zone
            } else {
                &mut link.zone_to_global
            };
            *n = n.saturating_add_signed(delta);
        }
    }
}

/// The handler behind `atoll.kds.v1.KdsSync` on global.
#[derive(Clone)]
pub struct GlobalKds {
    store: SharedStore,
    shutdown: watch::Receiver<bool>,
    status: ZoneStatus,
}

impl GlobalKds {
    pub fn new(store: SharedStore, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            store,
            shutdown,
            status: ZoneStatus::default(),
        }
    }

    pub fn status(&self) -> ZoneStatus {
        self.status.clone()
    }

    /// Checks the call's zone token; registers the zone. Refusals are logged here and sent to
    /// the zone as `Unauthenticated` with the reason.
    async fn authenticate<T>(&self, request: &Request<T>, stream: &str) -> Result<String, Status> {
        let refuse = |zone: &str, reason: String| {
            tracing::warn!(zone, stream, %reason, "refused a zone's KDS connection");
            Status::unauthenticated(reason)
        };
        let (zone, token) =
            credentials(request).map_err(|s| refuse("?", s.message().to_string()))?;
        let keys = zone_verification_keys(&*self.store)
            .await
            .map_err(|e| Status::internal(format!("reading the zone token keys: {e}")))?;
        let claims = verify_zone_token(&token, &keys, Utc::now())
            .map_err(|e| refuse(&zone, format!("zone token refused: {e}")))?;
        if claims.zone != zone {
            return Err(refuse(
                &zone,
                format!(
                    "the zone token is for zone {:?}, but this control plane says it is zone {zone:?}",
                    claims.zone
                ),
            ));
        }
        if claims.scope != Scope::Cp {
            return Err(refuse(
                &zone,
                format!(
                    "the zone token has scope {:?}; a zone control plane needs scope cp",
                    claims.scope
                ),
            ));
        }
        register_zone(&self.store, &zone)
            .await
            .map_err(|e| Status::internal(format!("registering zone {zone:?}: {e}")))?;
        Ok(zone)
    }

    fn spawn_loop<F>(&self, zone: String, g2z: bool, run: F)
    where
        F: std::future::Future<Output = Result<(), SyncError>> + Send + 'static,
    {
        let status = self.status.clone();
        let mut shutdown = self.shutdown.clone();
        let stream = if g2z {
            "GlobalToZoneSync"
        } else {
            "ZoneToGlobalSync"
        };
        status.change(&zone, g2z, 1);
        tracing::info!(zone, stream, "zone connected (KDS)");
        tokio::spawn(async move {
            tokio::select! {
                r = run => match r {
                    Ok(()) | Err(SyncError::Ended) => tracing::info!(zone, stream, "zone disconnected (KDS)"),
                    Err(e) => tracing::warn!(zone, stream, error = %e, "zone's KDS stream ended"),
                },
                _ = shutdown.wait_for(|s| *s) => {}
            }
            status.change(&zone, g2z, -1);
        });
    }
}

/// Creates the Zone resource on a zone's first successful connect (an existing one, possibly
/// disabled by the operator, is left as it is).
async fn register_zone(store: &SharedStore, zone: &str) -> Result<(), StoreError> {
    let key = ResourceKey::global(Kind::Zone, zone);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let mut r = Resource::new(Kind::Zone, "", zone);
    r.spec.insert("enabled".into(), Value::Bool(true));
    match store.create(r).await {
        Ok(_) => {
            tracing::info!(zone, "registered a new zone");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn outgoing<T: Send + 'static>(rx: mpsc::UnboundedReceiver<T>) -> MessageStream<T> {
    Box::pin(UnboundedReceiverStream::new(rx).map(Ok))
}

impl KdsHandler for GlobalKds {
    fn global_to_zone(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> BoxFuture<Response<MessageStream<DeltaDiscoveryResponse>>, Status> {
        let this = self.clone();
        Box::pin(async move {
            let zone = this.authenticate(&request, "GlobalToZoneSync").await?;
            let (tx, rx) = mpsc::unbounded_channel();
            let config = SenderConfig::new(Party::Global, Party::zone(zone.clone()));
            let run = run_sender(this.store.clone(), config, request.into_inner(), tx);
            this.spawn_loop(zone, true, run);
            Ok(Response::new(outgoing(rx)))
        })
    }

    fn zone_to_global(
        &self,
        request: Request<Streaming<DeltaDiscoveryResponse>>,
    ) -> BoxFuture<Response<MessageStream<DeltaDiscoveryRequest>>, Status> {
        let this = self.clone();
        Box::pin(async move {
            let zone = this.authenticate(&request, "ZoneToGlobalSync").await?;
            let (tx, rx) = mpsc::unbounded_channel();
            let config = ReceiverConfig::new(Party::Global, Party::zone(zone.clone()));
            let run = run_receiver(this.store.clone(), config, request.into_inner(), tx);
            this.spawn_loop(zone, false, run);
            Ok(Response::new(outgoing(rx)))
        })
    }
}
