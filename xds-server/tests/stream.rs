//! The ADS service over real TLS and gRPC on loopback, with a directory fed by hand: a proxy is
//! refused without credentials, gets its snapshot, ACKs it, and receives a pushed change.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use atoll_test_support::raw_grpc::RawCodec;

use atoll_cp::listener::server_tls_config;
use atoll_xds_server::directory::{ConnectError, ProxyDirectory, ProxySubscription, SharedStatus};
use atoll_xds_server::metrics::XdsMetrics;
use atoll_xds_server::service::AdsService;
use atoll_xds_server::session::{CLUSTER, Snapshot, SnapshotResource};

struct HandDirectory {
    snapshots: watch::Sender<Arc<Snapshot>>,
    status: SharedStatus,
}

impl ProxyDirectory for HandDirectory {
    async fn connect(&self, node: &Node) -> Result<ProxySubscription, ConnectError> {
        if node.id != "default.web" {
            return Err(ConnectError::Unauthenticated(format!(
                "unknown proxy {}",
                node.id
            )));
        }
        Ok(ProxySubscription {
            proxy_id: node.id.clone(),
            snapshots: self.snapshots.subscribe(),
            status: self.status.clone(),
            connection: None,
        })
    }
}

fn snapshot(version: &str, cluster_version: &str) -> Arc<Snapshot> {
    let mut s = Snapshot {
        version: version.into(),
        ..Default::default()
    };
    s.resources.entry(CLUSTER.into()).or_default().insert(
        "backend".into(),
        SnapshotResource {
            version: cluster_version.into(),
            resource: std::sync::Arc::new(Any {
                type_url: CLUSTER.into(),
                value: vec![],
            }),
        },
    );
    Arc::new(s)
}

#[tokio::test]
async fn stream_authenticates_serves_acks_and_pushes() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let tls = server_tls_config(&cert.pem(), &key.serialize_pem()).expect("tls");

    let (snapshots, _) = watch::channel(snapshot("v1", "1"));
    let status = SharedStatus::default();
    let directory = Arc::new(HandDirectory {
        snapshots: snapshots.clone(),
        status: status.clone(),
    });
    let metrics = XdsMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let app = tonic::service::Routes::new(AdsService::new(directory, metrics).into_server())
        .into_axum_router();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = atoll_cp::listener::ListenerSettings {
        name: "xds",
        tls: Some(tls),
        handshake_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 100,
        max_connections_setting: "ATOLL_XDS_MAX_CONNECTIONS",
        keepalive: None,
        drain: Duration::ZERO,
    };
    let connections = atoll_cp::listener::ConnectionMetrics::register(&prometheus::Registry::new())
        .expect("metrics");
    let server = tokio::spawn(atoll_cp::listener::serve(
        listener,
        app,
        settings,
        connections,
        async {
            let _ = stop_rx.await;
        },
    ));

    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(cert.pem()))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    let mut client = AggregatedDiscoveryServiceClient::new(channel.clone());

    // An unknown node is refused with the directory's reason.
    let (tx, rx) = mpsc::channel(4);
    tx.send(first_request("default.intruder"))
        .await
        .expect("send");
    let refused = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await;
    let err = refused.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("default.intruder"));

    // The known proxy gets its clusters, ACKs, then receives a pushed change.
    let (tx, rx) = mpsc::channel(4);
    tx.send(first_request("default.web")).await.expect("send");
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("a response");
    assert_eq!(first.resources[0].name, "backend");
    assert_eq!(first.system_version_info, "v1");
    tx.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await
    .expect("ack");

    snapshots.send_replace(snapshot("v2", "2"));
    let pushed = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("pushed in time")
        .expect("ok")
        .expect("a response");
    assert_eq!(pushed.system_version_info, "v2");
    assert_eq!(pushed.resources[0].version, "2");
    let acked = status_of(&status, |s| s.last_acked_version.clone());
    assert_eq!(acked.as_deref(), Some("v1"));
    assert!(status_of(&status, |s| s.connected_since).is_some());

    // Envoy closing its side ends the stream with OK trailers.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("ended in time");
    assert!(matches!(end, Ok(None)), "{end:?}");

    // A first request without the node is refused with the reason.
    let (tx, rx) = mpsc::channel(4);
    tx.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        ..Default::default()
    })
    .await
    .expect("send");
    let err = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect_err("no node");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("node"), "{}", err.message());

    // State-of-the-world ADS says what to configure instead.
    let (_tx, rx) = mpsc::channel(1);
    let err = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect_err("SotW");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("DELTA_GRPC"), "{}", err.message());

    // Bytes that are not a DeltaDiscoveryRequest: refused with the reason, first or later in a
    // stream, and the server goes on serving.
    let err = raw_stream(&channel, vec![vec![0xff, 0xff, 0xff]])
        .await
        .expect_err("garbage first message");
    assert!(err.message().contains("decode"), "{err:?}");
    let good_first = first_request("default.web").encode_to_vec();
    let mut raw = raw_stream(&channel, vec![good_first, vec![0xff, 0xff, 0xff]])
        .await
        .expect("a valid first request opens the stream");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match raw.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("ended in time");
    let err = ended.expect_err("the garbage ends the stream with an error");
    assert!(err.message().contains("decode"), "{err:?}");
    let (tx, rx) = mpsc::channel(4);
    tx.send(first_request("default.web")).await.expect("send");
    let mut again = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("still serving")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), again.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("a response");
    assert_eq!(first.type_url, CLUSTER);
    drop(tx);

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

/// A proxy's first request: its node and a wildcard CDS subscription.
fn first_request(node_id: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node {
            id: node_id.into(),
            ..Default::default()
        }),
        type_url: CLUSTER.into(),
        ..Default::default()
    }
}

/// Opens a delta ADS stream that sends `messages` as they are (no protobuf encoding), then
/// stays open.
async fn raw_stream(
    channel: &tonic::transport::Channel,
    messages: Vec<Vec<u8>>,
) -> Result<tonic::Streaming<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel(messages.len() + 1);
    for m in messages {
        tx.send(m).await.expect("queue");
    }
    // Kept open (leaked into the task) so the stream does not end on its own.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(tx);
    });
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
    );
    grpc.streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

fn status_of<T>(
    status: &SharedStatus,
    f: impl Fn(&atoll_xds_server::directory::StreamStatus) -> T,
) -> T {
    let guard = status.lock().unwrap_or_else(|e| e.into_inner());
    f(&guard)
}
