//! The ADS gRPC service: one task per stream, feeding Envoy's requests and the proxy's snapshot
//! changes into a `DeltaSession` and writing its responses back. Pushes are driven by snapshot
//! changes (which follow store events), never by a poll.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// What the response stream carries.
type StreamItem = Result<DeltaDiscoveryResponse, Status>;
use tonic::{Request, Response, Status, Streaming};

use crate::directory::{ConnectError, ProxyDirectory, ProxySubscription};
use crate::metrics::{XdsMetrics, type_label};
use crate::session::{DeltaSession, Snapshot};

/// The ADS service over a proxy directory.
pub struct AdsService<D> {
    directory: Arc<D>,
    metrics: XdsMetrics,
}

impl<D: ProxyDirectory> AdsService<D> {
    pub fn new(directory: Arc<D>, metrics: XdsMetrics) -> Self {
        Self { directory, metrics }
    }

    /// The tonic server wrapping this service. Envoy's config can be large: allow 64 MiB
    /// messages instead of tonic's 4 MiB default.
    pub fn into_server(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<D: ProxyDirectory> AggregatedDiscoveryService for AdsService<D> {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        _request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "Atoll serves delta ADS only: set ads_config.api_type to DELTA_GRPC",
        ))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before its first request"))?;
        let node = first
            .node
            .clone()
            .ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let subscription = self.directory.connect(&node).await.map_err(|e| {
            tracing::warn!(node = %node.id, error = %e, "refused an xDS stream");
            match e {
                ConnectError::Unauthenticated(m) => Status::unauthenticated(m),
                ConnectError::NotFound(m) => Status::not_found(m),
                ConnectError::Unavailable(m) => Status::unavailable(m),
            }
        })?;
        tracing::info!(proxy = %subscription.proxy_id, "xDS stream opened");
        // Boxed items: a channel allocates its slots in blocks of 32 whatever its capacity, and
        // an unboxed response with its Status is ~200 bytes a slot, ~6 KiB a stream kept for
        // as long as the proxy is connected.
        let (tx, rx) = mpsc::channel::<Box<StreamItem>>(32);
        let metrics = self.metrics.clone();
        tokio::spawn(run_stream(subscription, first, inbound, tx, metrics));
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|item| *item),
        )))
    }
}

/// Drives one stream until Envoy closes it or the response channel is gone.
async fn run_stream(
    mut sub: ProxySubscription,
    first: DeltaDiscoveryRequest,
    mut inbound: Streaming<DeltaDiscoveryRequest>,
    tx: mpsc::Sender<Box<StreamItem>>,
    metrics: XdsMetrics,
) {
    metrics.connected.inc();
    if let Ok(mut s) = sub.status.lock() {
        s.connected_since = Some(SystemTime::now());
        s.disconnected_at = None;
    }
    let mut session = DeltaSession::new();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut next = Some(Ok(first));
    loop {
        let responses = match next.take() {
            Some(Ok(req)) => {
                let snapshot: Arc<Snapshot> = sub.snapshots.borrow_and_update().clone();
                match session.handle_request(&req, &snapshot) {
                    Ok(outcome) => {
                        let label = type_label(&req.type_url);
                        let waited = sent_at.remove(&req.response_nonce).map(|t| t.elapsed());
                        if let Some(version) = &outcome.acked {
                            if let Ok(mut st) = sub.status.lock() {
                                st.last_acked_version = Some(version.clone());
                            }
                            metrics.acks.with_label_values(&[label]).inc();
                            if let Some(w) = waited {
                                metrics
                                    .push_to_ack
                                    .with_label_values(&[label])
                                    .observe(w.as_secs_f64());
                            }
                            tracing::debug!(proxy = %sub.proxy_id, r#type = label, %version, "ACK");
                        }
                        if let Some((version, message)) = &outcome.nacked {
                            if let Ok(mut st) = sub.status.lock() {
                                st.last_nack = Some((version.clone(), message.clone()));
                            }
                            metrics.nacks.with_label_values(&[label]).inc();
                            tracing::warn!(proxy = %sub.proxy_id, r#type = label, %version, %message, "Envoy rejected config (NACK)");
                        }
                        outcome.responses
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Box::new(Err(Status::invalid_argument(e.to_string()))))
                            .await;
                        break;
                    }
                }
            }
            Some(Err(status)) => {
                tracing::info!(proxy = %sub.proxy_id, %status, "xDS stream ended with an error");
                break;
            }
            None => {
                let snapshot = sub.snapshots.borrow_and_update().clone();
                session.on_snapshot(&snapshot)
            }
        };
        for response in responses {
            metrics
                .pushes
                .with_label_values(&[type_label(&response.type_url)])
                .inc();
            sent_at.insert(response.nonce.clone(), Instant::now());
            if let Ok(mut st) = sub.status.lock() {
                st.last_sent_version = Some(response.system_version_info.clone());
                st.responses_sent += 1;
            }
            if tx.send(Box::new(Ok(response))).await.is_err() {
                break;
            }
        }
        record_status(&sub, &session);
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(req)) => next = Some(Ok(req)),
                Ok(None) => break,
                Err(status) => next = Some(Err(status)),
            },
            changed = sub.snapshots.changed() => {
                if changed.is_err() {
                    // The directory dropped the proxy (e.g. it was deleted): end the stream.
                    break;
                }
            }
        }
    }
    metrics.connected.dec();
    if let Ok(mut s) = sub.status.lock() {
        s.disconnected_at = Some(SystemTime::now());
    }
    tracing::info!(proxy = %sub.proxy_id, "xDS stream closed");
}

fn record_status(sub: &ProxySubscription, session: &DeltaSession) {
    if let Ok(mut s) = sub.status.lock() {
        s.per_type = session
            .status()
            .iter()
            .map(|(t, st)| (t.clone(), st.clone()))
            .collect();
    }
}
