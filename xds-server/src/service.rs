//! The ADS gRPC service: one task per stream, feeding Envoy's requests and the proxy's snapshot
//! changes into a `DeltaSession` and writing its responses back. Pushes are driven by snapshot
//! changes (which follow store events), never by a poll.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Streaming};
use tonic::server::NamedService;
use tonic_prost::ProstDecoder;

use crate::directory::{ConnectError, ProxyDirectory, ProxySubscription};
use crate::grpc::{MAX_MESSAGE_BYTES, Outgoing, ResponseBody, encode_message};
use crate::metrics::{XdsMetrics, type_label};
use crate::session::{DeltaSession, Snapshot};

/// The gRPC service name Envoy calls.
const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const DELTA_METHOD: &str = "DeltaAggregatedResources";
const SOTW_METHOD: &str = "StreamAggregatedResources";

/// Requests are small (subscriptions, ACKs): start each stream's decode buffer small; it grows
/// for a larger message (a first request with a big node) when one comes.
const REQUEST_BUFFER_BYTES: usize = 1024;

/// The ADS service over a proxy directory.
pub struct AdsService<D> {
    directory: Arc<D>,
    metrics: XdsMetrics,
}

impl<D: ProxyDirectory> AdsService<D> {
    pub fn new(directory: Arc<D>, metrics: XdsMetrics) -> Self {
        Self { directory, metrics }
    }

    /// The gRPC server for this service, to mount with `tonic::service::Routes`.
    pub fn into_server(self) -> AdsServer<D> {
        AdsServer {
            service: Arc::new(self),
        }
    }

    async fn handle(&self, request: http::Request<Body>) -> http::Response<Body> {
        let method = request
            .uri()
            .path()
            .strip_prefix(&format!("/{SERVICE_NAME}/"))
            .unwrap_or_default();
        let outcome = match method {
            DELTA_METHOD => self.delta_aggregated_resources(request).await,
            SOTW_METHOD => Err(Status::unimplemented(
                "Atoll serves delta ADS only: set ads_config.api_type to DELTA_GRPC",
            )),
            other => Err(Status::unimplemented(format!(
                "{SERVICE_NAME} has no method {other:?}"
            ))),
        };
        match outcome {
            Ok(body) => {
                let mut response = http::Response::new(Body::new(body));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                response
            }
            Err(status) => status.into_http(),
        }
    }

    async fn delta_aggregated_resources(
        &self,
        request: http::Request<Body>,
    ) -> Result<ResponseBody, Status> {
        if let Some(encoding) = request.headers().get("grpc-encoding")
            && encoding.as_bytes() != b"identity"
        {
            return Err(Status::unimplemented(format!(
                "grpc-encoding {:?} is not supported: send uncompressed messages",
                String::from_utf8_lossy(encoding.as_bytes())
            )));
        }
        let decoder = ProstDecoder::<DeltaDiscoveryRequest>::new(BufferSettings::new(
            REQUEST_BUFFER_BYTES,
            32 * 1024,
        ));
        let mut inbound =
            Streaming::new_request(decoder, request.into_body(), None, Some(MAX_MESSAGE_BYTES));
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
        // A channel allocates its slots in blocks of 32 whatever its capacity: items are kept
        // small (encoded bytes or a status) since those blocks live as long as the stream.
        let (tx, rx) = mpsc::channel::<Outgoing>(32);
        let metrics = self.metrics.clone();
        tokio::spawn(run_stream(subscription, first, inbound, tx, metrics));
        Ok(ResponseBody::new(rx))
    }
}

/// The ADS service as a tower service that tonic's `Routes` (and axum) can mount.
pub struct AdsServer<D> {
    service: Arc<AdsService<D>>,
}

impl<D> Clone for AdsServer<D> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
        }
    }
}

impl<D> NamedService for AdsServer<D> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<D: ProxyDirectory> tower::Service<http::Request<Body>> for AdsServer<D> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}

/// Drives one stream until Envoy closes it or the response channel is gone.
async fn run_stream(
    mut sub: ProxySubscription,
    first: DeltaDiscoveryRequest,
    mut inbound: Streaming<DeltaDiscoveryRequest>,
    tx: mpsc::Sender<Outgoing>,
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
                            .send(Outgoing::End(Status::invalid_argument(e.to_string())))
                            .await;
                        break;
                    }
                }
            }
            Some(Err(status)) => {
                // A request that could not be read (not protobuf, too large): tell Envoy why.
                tracing::warn!(proxy = %sub.proxy_id, %status, "xDS stream ended: unreadable request");
                let _ = tx.send(Outgoing::End(status)).await;
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
            let item = match encode_message(&response) {
                Ok(bytes) => Outgoing::Message(bytes),
                Err(status) => {
                    tracing::error!(proxy = %sub.proxy_id, %status, "cannot send a response");
                    Outgoing::End(status)
                }
            };
            let ending = matches!(item, Outgoing::End(_));
            if tx.send(item).await.is_err() || ending {
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

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Node;

    /// A directory that refuses every proxy: these tests end before a proxy would connect.
    struct NoProxies;

    impl ProxyDirectory for NoProxies {
        async fn connect(&self, node: &Node) -> Result<ProxySubscription, ConnectError> {
            Err(ConnectError::NotFound(format!("no proxy {}", node.id)))
        }
    }

    fn service() -> AdsService<NoProxies> {
        let metrics = XdsMetrics::register(&prometheus::Registry::new()).expect("metrics");
        AdsService::new(Arc::new(NoProxies), metrics)
    }

    fn grpc_status(response: &http::Response<Body>) -> (String, String) {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        (header("grpc-status"), header("grpc-message"))
    }

    fn request(path: &str, encoding: Option<&str>) -> http::Request<Body> {
        let mut builder = http::Request::post(path).header("content-type", "application/grpc");
        if let Some(encoding) = encoding {
            builder = builder.header("grpc-encoding", encoding);
        }
        builder.body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn compressed_requests_are_refused_with_the_reason() {
        let response = service()
            .handle(request(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
                Some("gzip"),
            ))
            .await;
        let (code, message) = grpc_status(&response);
        assert_eq!(code, "12", "UNIMPLEMENTED");
        assert!(message.contains("gzip"), "{message}");
    }

    #[tokio::test]
    async fn unknown_methods_are_named_in_the_refusal() {
        let response = service()
            .handle(request(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/Fetch",
                None,
            ))
            .await;
        let (code, message) = grpc_status(&response);
        assert_eq!(code, "12", "UNIMPLEMENTED");
        assert!(message.contains("Fetch"), "{message}");
    }
}
