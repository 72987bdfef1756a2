//! `floor`: the physical floor of config convergence. A minimal delta ADS server (plain gRPC
//! over loopback, no TLS, no control plane behind it) and one real Envoy; after Envoy's start-up
//! exchange, N pushes of a changing cluster, each timed from the moment the response is handed
//! to the gRPC stream to the moment Envoy's ACK for its nonce arrives.
//!
//! Nothing Atoll-specific is on this path: whatever Atoll's convergence costs beyond this number
//! is the control plane's.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use futures::Stream;
use prost::{Message, Name};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::procs::{ChildGuard, envoy_binary, envoy_command, free_port, log_tail};
use crate::stats::Samples;

use atoll_xds::type_urls::{CLUSTER as CLUSTER_TYPE, LISTENER as LISTENER_TYPE};

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Number of timed pushes.
    #[arg(long, default_value_t = 200)]
    pushes: usize,
    /// Pause between pushes (lets Envoy settle, so pushes are timed one at a time).
    #[arg(long, default_value = "10", value_name = "MS")]
    pause_ms: u64,
}

type Stream2Envoy = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;
type Accepted = (Streaming<DeltaDiscoveryRequest>, Stream2Envoy);

/// The ADS service: hands the first stream to the benchmark, which speaks the protocol inline.
struct FloorAds {
    accepted: Mutex<Option<oneshot::Sender<Accepted>>>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for FloorAds {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        _request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("delta only"))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let sender = self
            .accepted
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .take()
            .ok_or_else(|| Status::unavailable("one stream only"))?;
        let (tx, rx) = mpsc::channel(16);
        let _ = sender.send((request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn cluster(version: usize, backend_port: u16) -> Resource {
    let c = Cluster {
        name: "floor".into(),
        // The change pushed each time: the connect timeout (1 s + version ms).
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: ((version % 1000) * 1_000_000) as i32,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: "floor".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(AddressKind::SocketAddress(SocketAddress {
                                address: "127.0.0.1".into(),
                                port_specifier: Some(PortSpecifier::PortValue(backend_port.into())),
                                ..Default::default()
                            })),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    Resource {
        name: "floor".into(),
        version: format!("v{version}"),
        resource: Some(Any {
            type_url: Cluster::type_url(),
            value: c.encode_to_vec(),
        }),
        ..Default::default()
    }
}

fn response(type_url: &str, resources: Vec<Resource>, nonce: String) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: nonce.clone(),
        type_url: type_url.into(),
        resources,
        nonce,
        ..Default::default()
    }
}

/// Envoy's bootstrap: delta ADS (CDS and LDS) from a plain-gRPC cluster at `xds_port`.
pub fn ads_bootstrap(xds_port: u16, admin_port: u16) -> serde_json::Value {
    json!({
        "node": {"id": "floor", "cluster": "floor"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}
        },
        "static_resources": {"clusters": [{
            "name": "xds",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            },
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}
            }}]}]}
        }]}
    })
}

/// The next request from Envoy, bounded in time.
async fn next_request(
    inbound: &mut Streaming<DeltaDiscoveryRequest>,
    limit: Duration,
) -> Result<DeltaDiscoveryRequest> {
    match tokio::time::timeout(limit, inbound.message()).await {
        Err(_) => bail!("no request from Envoy within {limit:?}"),
        Ok(Err(status)) => bail!("the ADS stream failed: {status}"),
        Ok(Ok(None)) => bail!("Envoy closed the ADS stream"),
        Ok(Ok(Some(req))) => {
            if let Some(err) = &req.error_detail {
                bail!("Envoy rejected {} (NACK): {}", req.type_url, err.message);
            }
            Ok(req)
        }
    }
}

pub async fn run(args: FloorArgs) -> Result<()> {
    let envoy = envoy_binary()?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the ADS port")?;
    let xds_port = listener.local_addr()?.port();
    let (accepted_tx, accepted_rx) = oneshot::channel();
    let service = FloorAds {
        accepted: Mutex::new(Some(accepted_tx)),
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(service))
            .serve_with_incoming(
                // Without TCP_NODELAY, Nagle + delayed ACK stalled every 6th push by ~33 ms.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    let _server_guard = AbortOnDrop(server);

    let bootstrap = dir.path().join("floor-envoy.json");
    std::fs::write(
        &bootstrap,
        ads_bootstrap(xds_port, free_port()?).to_string(),
    )?;
    let log = dir.path().join("floor-envoy.log");
    let mut envoy = ChildGuard::spawn(
        envoy_command(&envoy, &bootstrap, free_port()?),
        "envoy",
        &log,
        Duration::from_secs(5),
    )?;

    let (mut inbound, tx) = tokio::time::timeout(Duration::from_secs(20), accepted_rx)
        .await
        .map_err(|_| {
            let _ = envoy.check_alive();
            anyhow::anyhow!(
                "Envoy did not connect within 20 s; its log:\n{}",
                log_tail(&log, 4000)
            )
        })?
        .context("the ADS server stopped")?;
    let send = |resp: DeltaDiscoveryResponse| {
        let tx = tx.clone();
        async move {
            tx.send(Ok(resp))
                .await
                .map_err(|_| anyhow::anyhow!("the ADS stream is gone"))
        }
    };

    // Start-up: answer the first CDS and LDS requests, wait for both ACKs.
    let started = Instant::now();
    let (mut cds_acked, mut lds_acked) = (false, false);
    while !(cds_acked && lds_acked) {
        let req = next_request(&mut inbound, Duration::from_secs(10)).await?;
        match (req.type_url.as_str(), req.response_nonce.as_str()) {
            (CLUSTER_TYPE, "") => {
                send(response(
                    CLUSTER_TYPE,
                    vec![cluster(0, xds_port)],
                    "c0".into(),
                ))
                .await?
            }
            (LISTENER_TYPE, "") => send(response(LISTENER_TYPE, vec![], "l0".into())).await?,
            (CLUSTER_TYPE, "c0") => cds_acked = true,
            (LISTENER_TYPE, "l0") => lds_acked = true,
            _ => {}
        }
    }
    println!(
        "start-up exchange (CDS + LDS, both ACKed): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let mut samples = Samples::default();
    let mut slow = Vec::new();
    for i in 1..=args.pushes {
        let nonce = format!("p{i}");
        let resp = response(CLUSTER_TYPE, vec![cluster(i, xds_port)], nonce.clone());
        let sent = Instant::now();
        send(resp).await?;
        loop {
            let req = next_request(&mut inbound, Duration::from_secs(10)).await?;
            if req.type_url == CLUSTER_TYPE && req.response_nonce == nonce {
                let took = sent.elapsed();
                if took > Duration::from_millis(10) {
                    slow.push(format!("#{i} {:.1} ms", took.as_secs_f64() * 1e3));
                }
                samples.push(took);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    envoy.check_alive()?;
    println!("{}", samples.line("push -> ACK"));
    if !slow.is_empty() {
        println!("pushes over 10 ms: {}", slow.join(", "));
    }
    println!(
        "floor pushes={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        samples.len(),
        samples.percentile_us(50.0) / 1e3,
        samples.percentile_us(99.0) / 1e3,
        samples.percentile_us(100.0) / 1e3
    );
    Ok(())
}

/// Aborts a spawned task when dropped.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
