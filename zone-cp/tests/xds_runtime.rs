//! The zone runtime in-process (REST API, store, xDS server) with a fake Envoy: a tonic delta ADS
//! client over TLS that trusts the zone's generated xDS CA. What an operator would notice:
//! certificates rotate on the open stream before they expire, proxies gone longer than the
//! offline grace are removed (and connected ones never are), streams without a valid token are
//! refused with a reason, and a change is pushed only to the proxies it concerns.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind as PbKind};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use atoll_cp::ConfigArgs;
use atoll_cp::config::DpAuth;
use atoll_test_support::in_process::{Cp, start_standalone_zone};
use atoll_test_support::{scaled, until};

use atoll_xds::type_urls::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT as ENDPOINT, LISTENER, SECRET};

/// Every wait in these tests is bounded by this unless stated otherwise.
const LIMIT: Duration = Duration::from_secs(10);

/// A standalone zone control plane running in this process (the shared harness), and the CA
/// its fake Envoys trust.
struct Zone {
    cp: Cp,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Zone {
    type Target = Cp;

    fn deref(&self) -> &Cp {
        &self.cp
    }
}

impl Zone {
    async fn start(dp_auth: DpAuth) -> Zone {
        Zone::start_with(dp_auth, ConfigArgs::default()).await
    }

    /// Like `start`, with further settings in `args`.
    async fn start_with(dp_auth: DpAuth, args: ConfigArgs) -> Zone {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let args = ConfigArgs {
            dataplane_offline_grace: args.dataplane_offline_grace.clone().or(Some("1s".into())),
            dp_auth: Some(dp_auth),
            log_level: Some("warn".into()),
            ..args
        };
        let cp = start_standalone_zone(&data_dir, args).await;
        let ca_pem = std::fs::read_to_string(data_dir.join("xds-tls").join("ca.pem"))
            .expect("the zone wrote DATA_DIR/xds-tls/ca.pem");
        Zone {
            cp,
            ca_pem,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        self.cp.stop().await;
    }

    fn xds(&self) -> SocketAddr {
        self.cp.xds.expect("a zone has an xDS address")
    }

    async fn token(&self, name: &str, valid_for: &str) -> String {
        let (status, body) = self
            .post_text(
                "/tokens/dataplane",
                json!({"mesh": "default", "name": name, "validFor": valid_for}),
            )
            .await;
        assert_eq!(status, 200, "token: {body}");
        body.trim().to_string()
    }

    /// The `_overview` status of one dataplane, if listed.
    async fn status(&self, name: &str) -> Option<Value> {
        let (_, overview) = self.get("/meshes/default/dataplanes/_overview").await;
        overview["items"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["status"].clone())
    }

    /// Opens a delta ADS stream as Envoy would, its first request being `first` plus the node.
    async fn envoy(
        &self,
        name: &str,
        token: Option<&str>,
        first: DeltaDiscoveryRequest,
    ) -> Result<FakeEnvoy, tonic::Status> {
        self.envoy_at(self.xds(), name, token, first).await
    }

    /// Like `envoy`, dialing `xds` (a relay in front of the zone's xDS port).
    async fn envoy_at(
        &self,
        xds: SocketAddr,
        name: &str,
        token: Option<&str>,
        first: DeltaDiscoveryRequest,
    ) -> Result<FakeEnvoy, tonic::Status> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://127.0.0.1:{}", xds.port()))
            .expect("uri")
            .tls_config(tls)
            .expect("TLS config")
            .connect_timeout(LIMIT)
            .connect()
            .await
            .expect("TLS connection to the xDS port");
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(16);
        let mut metadata = Struct::default();
        if let Some(token) = token {
            metadata.fields.insert(
                "dataplane.token".into(),
                PbValue {
                    kind: Some(PbKind::StringValue(token.to_string())),
                },
            );
        }
        let node = Node {
            id: format!("default.{name}"),
            cluster: name.to_string(),
            metadata: Some(metadata),
            ..Default::default()
        };
        tx.send(DeltaDiscoveryRequest {
            node: Some(node),
            ..first
        })
        .await
        .expect("queue the first request");
        let response = tokio::time::timeout(
            LIMIT,
            client.delta_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await
        .expect("the xDS server answers the stream within 10 s")?;
        Ok(FakeEnvoy {
            requests: tx,
            responses: response.into_inner(),
            _client: client,
        })
    }
}

/// One delta ADS stream, driven by hand.
struct FakeEnvoy {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: tonic::Streaming<DeltaDiscoveryResponse>,
    _client: AggregatedDiscoveryServiceClient<Channel>,
}

impl FakeEnvoy {
    /// The next response within `limit`; `None` if none came. Panics if the stream fails or ends.
    async fn recv(&mut self, limit: Duration) -> Option<DeltaDiscoveryResponse> {
        match tokio::time::timeout(limit, self.responses.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(r),
            Ok(Ok(None)) => panic!("the control plane ended the stream"),
            Ok(Err(status)) => panic!("the stream failed: {status}"),
        }
    }

    async fn expect(&mut self, what: &str) -> DeltaDiscoveryResponse {
        self.recv(scaled(LIMIT))
            .await
            .unwrap_or_else(|| panic!("no {what} response within {:?}", scaled(LIMIT)))
    }

    async fn send(&self, req: DeltaDiscoveryRequest) {
        self.requests.send(req).await.expect("stream open");
    }

    async fn ack(&self, r: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    /// Answers with ACKs until nothing more arrives for `quiet`.
    async fn settle(&mut self, quiet: Duration) -> Vec<DeltaDiscoveryResponse> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            match self.recv(quiet).await {
                Some(r) => {
                    self.ack(&r).await;
                    seen.push(r);
                }
                None => return seen,
            }
        }
        panic!(
            "the control plane kept pushing for 10 s: {} responses",
            seen.len()
        );
    }
}

fn request(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn dataplane(name: &str, service: &str, port: u16, outbound: Option<(u16, &str)>) -> Value {
    let mut networking = json!({
        "address": "127.0.0.1",
        "inbound": [{"port": port, "servicePort": port + 1, "tags": {"kuma.io/service": service}}],
    });
    if let Some((p, target)) = outbound {
        networking["outbound"] = json!([{"port": p, "tags": {"kuma.io/service": target}}]);
    }
    json!({"type": "Dataplane", "mesh": "default", "name": name, "networking": networking})
}

async fn put_dataplane(zone: &Zone, name: &str, doc: Value) {
    zone.put(&format!("/meshes/default/dataplanes/{name}"), doc)
        .await;
}

/// notBefore and notAfter of the first certificate in `pem`: the first two UTCTime values of the
/// DER, which are the TBSCertificate's validity.
fn validity(pem: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM base64");
    let mut times = Vec::new();
    let mut i = 0;
    while i + 15 <= der.len() && times.len() < 2 {
        let body = &der[i + 2..i + 14];
        if der[i] == 0x17
            && der[i + 1] == 13
            && body.iter().all(u8::is_ascii_digit)
            && der[i + 14] == b'Z'
        {
            let text = std::str::from_utf8(body).expect("digits");
            let t = NaiveDateTime::parse_from_str(text, "%y%m%d%H%M%S")
                .expect("UTCTime")
                .and_utc();
            times.push(t);
            i += 15;
        } else {
            i += 1;
        }
    }
    assert_eq!(times.len(), 2, "no validity found in the certificate");
    (times[0], times[1])
}

/// The identity certificate PEM carried by a response, if it carries `identity_cert`.
fn identity_cert(r: &DeltaDiscoveryResponse) -> Option<(String, String)> {
    let res = r.resources.iter().find(|x| x.name == "identity_cert")?;
    let any = res.resource.as_ref()?;
    let secret = Secret::decode(any.value.as_slice()).expect("a Secret");
    let Some(secret::Type::TlsCertificate(tls)) = secret.r#type else {
        panic!("identity_cert is not a TLS certificate");
    };
    let pem = match tls.certificate_chain.and_then(|c| c.specifier) {
        Some(Specifier::InlineString(s)) => s,
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b).expect("PEM text"),
        other => panic!("unexpected certificate source {other:?}"),
    };
    Some((res.version.clone(), pem))
}

/// Certificate rotation on an open stream: with `dpCert.rotation.expiration: 4s` a new
/// `identity_cert` reaches the proxy on the same stream before the first one expires, at about
/// 80% of its lifetime (not right away, and not over and over). Nothing else changes in the mesh
/// after the proxy connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_the_open_stream_before_expiry() {
    rotation_scenario(false).await;
}

/// The same, with an unrelated change in the mesh right after the proxy connected (so the
/// control plane has woken up since the certificate was issued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_once_per_lifetime_not_continuously() {
    rotation_scenario(true).await;
}

async fn rotation_scenario(change_after_connect: bool) {
    let zone = Zone::start(DpAuth::Token).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1", "backends": [
            {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "4s"}}}
        ]}}),
    )
    .await;
    let (_, mesh) = zone.get("/meshes/default").await;
    assert_eq!(
        mesh["mtls"]["backends"][0]["dpCert"]["rotation"]["expiration"], "4s",
        "a seconds value is accepted for dpCert.rotation.expiration: {mesh}"
    );
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    let token = zone.token("web-1", "1h").await;
    let mut envoy = zone
        .envoy(
            "web-1",
            Some(&token),
            request(SECRET, &["identity_cert", "mesh_ca"]),
        )
        .await
        .expect("stream accepted");

    // The first certificate: valid for the 4 s asked (the CA truncates to the second).
    let first = envoy.expect("SDS").await;
    let received_first = Instant::now();
    let received_first_utc = Utc::now();
    envoy.ack(&first).await;
    if change_after_connect {
        put_dataplane(&zone, "other", dataplane("other", "other", 20009, None)).await;
    }
    let names: Vec<&str> = first.resources.iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.contains(&"identity_cert") && names.contains(&"mesh_ca"),
        "{names:?}"
    );
    let (first_version, first_pem) = identity_cert(&first).expect("identity_cert");
    let (_, first_not_after) = validity(&first_pem);
    let lifetime = first_not_after - received_first_utc;
    assert!(
        lifetime <= chrono::TimeDelta::seconds(4) && lifetime > chrono::TimeDelta::seconds(2),
        "the first certificate should expire ~4 s after issue, not {lifetime}"
    );

    // Follow the stream, ACKing everything, until 1.5 s past the first certificate's expiry.
    let mut updates: Vec<(Duration, DateTime<Utc>, String, DateTime<Utc>)> = Vec::new();
    let until_instant = received_first
        + (first_not_after - received_first_utc)
            .to_std()
            .unwrap_or_default()
        + Duration::from_millis(1500);
    while Instant::now() < until_instant {
        let Some(r) = envoy.recv(until_instant - Instant::now()).await else {
            break;
        };
        envoy.ack(&r).await;
        if let Some((version, pem)) = identity_cert(&r) {
            updates.push((
                received_first.elapsed(),
                Utc::now(),
                version,
                validity(&pem).1,
            ));
        }
        assert!(updates.len() < 50, "the certificate keeps being replaced");
    }
    let (at, arrived, version, not_after) = updates
        .first()
        .cloned()
        .expect("no rotated identity_cert on the stream before the first one expired");
    assert_ne!(version, first_version);
    assert!(
        arrived < first_not_after,
        "the new certificate arrived at {arrived}, after the first one expired at {first_not_after}"
    );
    assert!(
        not_after > first_not_after,
        "the new certificate lives longer"
    );
    // Rotation at ~80% of the 4 s lifetime: well after issue, not immediately.
    assert!(
        at >= Duration::from_millis(1500),
        "rotated only {at:?} after issue, far earlier than 80% of a 4 s certificate \
         (updates: {:?})",
        updates.iter().map(|u| u.0).collect::<Vec<_>>()
    );
    assert!(
        updates.len() <= 2,
        "{} certificate replacements in ~{:?}: expected one rotation per ~3.2 s",
        updates.len(),
        received_first.elapsed()
    );
    zone.stop().await;
}

/// A proxy gone longer than the offline grace (1 s here) is removed; `_overview` shows it online
/// while connected and offline after; a connected proxy is never removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_dataplanes_are_removed_after_the_grace_period() {
    let zone = Zone::start(DpAuth::Token).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    let token = zone.token("web-1", "1h").await;
    let mut envoy = zone
        .envoy("web-1", Some(&token), request(CLUSTER, &[]))
        .await
        .expect("stream accepted");
    let cds = envoy.expect("CDS").await;
    envoy.ack(&cds).await;
    let online = until(LIMIT, || async {
        zone.status("web-1")
            .await
            .is_some_and(|s| s["online"] == true)
    })
    .await;
    assert!(online.is_some(), "{:?}", zone.status("web-1").await);

    // Connected for twice the grace: still there.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, _) = zone.get("/meshes/default/dataplanes/web-1").await;
    assert_eq!(code, 200, "a connected dataplane was removed");
    assert_eq!(zone.status("web-1").await.expect("listed")["online"], true);

    drop(envoy);
    let dropped = Instant::now();
    let offline = until(LIMIT, || async {
        zone.status("web-1")
            .await
            .is_some_and(|s| s["online"] == false)
    })
    .await;
    assert!(
        offline.is_some(),
        "never shown offline before removal: {:?}",
        zone.status("web-1").await
    );
    let removed = until(LIMIT, || async {
        zone.get("/meshes/default/dataplanes/web-1").await.0 == 404
    })
    .await;
    assert!(
        removed.is_some(),
        "web-1 still there 10 s after it disconnected"
    );
    assert!(
        dropped.elapsed() >= Duration::from_secs(1),
        "removed before the 1 s grace ended"
    );
    assert!(zone.status("web-1").await.is_none(), "still in _overview");
    zone.stop().await;
}

/// A proxy whose host froze (the link forwards nothing and closes nothing) stops answering the
/// zone's HTTP/2 pings: its stream ends and `_overview` shows it offline within seconds, not when
/// TCP gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_proxy_shows_offline_within_seconds() {
    let zone = Zone::start_with(
        DpAuth::Token,
        ConfigArgs {
            xds_keepalive_interval: Some("500ms".into()),
            xds_keepalive_timeout: Some("1s".into()),
            // Kept while offline, so the test sees it offline rather than gone.
            dataplane_offline_grace: Some("1h".into()),
            ..Default::default()
        },
    )
    .await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    let token = zone.token("web-1", "1h").await;
    let relay = atoll_test_support::Relay::start(zone.xds()).await;
    let mut envoy = zone
        .envoy_at(relay.addr, "web-1", Some(&token), request(CLUSTER, &[]))
        .await
        .expect("stream accepted");
    let cds = envoy.expect("CDS").await;
    envoy.ack(&cds).await;
    let online = until(LIMIT, || async {
        zone.status("web-1")
            .await
            .is_some_and(|s| s["online"] == true)
    })
    .await;
    assert!(online.is_some(), "{:?}", zone.status("web-1").await);

    relay.freeze(true);
    // 500 ms + 1 s of keepalive; the default (no pings) left it online for as long as TCP lasts.
    let offline = until(Duration::from_secs(8), || async {
        zone.status("web-1")
            .await
            .is_some_and(|s| s["online"] == false)
    })
    .await;
    assert!(
        offline.is_some(),
        "still online 8 s after freezing: {:?}",
        zone.status("web-1").await
    );
    drop(envoy);
    zone.stop().await;
}

/// Envoy opens its new stream before the old one is closed (a reconnect through a load balancer,
/// or a stream the server sees end late): the old stream's end must not make the proxy count as
/// offline, nor get its Dataplane removed while the new stream is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_reconnected_is_not_removed_when_its_old_stream_ends() {
    let zone = Zone::start(DpAuth::Token).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    let token = zone.token("web-1", "1h").await;
    let mut old = zone
        .envoy("web-1", Some(&token), request(CLUSTER, &[]))
        .await
        .expect("first stream");
    let r = old.expect("CDS").await;
    old.ack(&r).await;
    let mut new = zone
        .envoy("web-1", Some(&token), request(CLUSTER, &[]))
        .await
        .expect("second stream");
    let r = new.expect("CDS").await;
    new.ack(&r).await;
    drop(old);
    // Well past the grace period, with the new stream still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, _) = zone.get("/meshes/default/dataplanes/web-1").await;
    let status = zone.status("web-1").await;
    assert_eq!(
        code, 200,
        "the Dataplane of a connected proxy was removed (status {status:?})"
    );
    assert_eq!(
        status.as_ref().map(|s| s["online"].clone()),
        Some(Value::Bool(true)),
        "{status:?}"
    );
    // The new stream still works: nothing pending, and it is still open.
    assert!(new.recv(Duration::from_millis(200)).await.is_none());
    zone.stop().await;
}

fn refused(result: Result<FakeEnvoy, tonic::Status>, case: &str) -> tonic::Status {
    match result {
        Ok(_) => panic!("{case}: the stream was accepted"),
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status}");
            status
        }
    }
}

/// Streams without a token, with an expired token or with another dataplane's token are refused
/// with `Unauthenticated` and a reason; a valid token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_without_a_valid_token_are_refused_with_a_reason() {
    let zone = Zone::start(DpAuth::Token).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    put_dataplane(&zone, "web-2", dataplane("web-2", "web", 20003, None)).await;
    let web2_token = zone.token("web-2", "1h").await;

    let none = refused(
        zone.envoy("web-1", None, request(CLUSTER, &[])).await,
        "no token",
    );
    assert!(
        none.message().contains("no dataplane token"),
        "{}",
        none.message()
    );

    let foreign = refused(
        zone.envoy("web-1", Some(&web2_token), request(CLUSTER, &[]))
            .await,
        "another dataplane's token",
    );
    assert!(
        foreign.message().contains("\"web-2\"") && foreign.message().contains("\"web-1\""),
        "{}",
        foreign.message()
    );

    // A token whose validity ended two minutes ago (past any clock leeway).
    let expired = atoll_cp::tokens::issue_dataplane_token(
        zone.store().as_ref(),
        "default",
        "web-1",
        None,
        None,
        Duration::from_secs(1),
        Utc::now() - chrono::TimeDelta::minutes(2),
    )
    .await
    .expect("token");
    let status = refused(
        zone.envoy("web-1", Some(&expired), request(CLUSTER, &[]))
            .await,
        "expired token",
    );
    assert!(status.message().contains("expired"), "{}", status.message());

    let garbage = refused(
        zone.envoy("web-1", Some("not-a-token"), request(CLUSTER, &[]))
            .await,
        "malformed token",
    );
    assert!(
        garbage.message().contains("invalid dataplane token"),
        "{}",
        garbage.message()
    );

    // None of these made web-1 count as connected.
    assert_eq!(zone.status("web-1").await.expect("listed")["online"], false);

    let good = zone.token("web-1", "1h").await;
    let mut envoy = zone
        .envoy("web-1", Some(&good), request(CLUSTER, &[]))
        .await
        .expect("a valid token is accepted");
    let cds = envoy.expect("CDS").await;
    assert_eq!(cds.type_url, CLUSTER);
    zone.stop().await;
}

/// A token minted with `validFor: 1s` through the REST API stops being accepted once it expired.
/// The zone runs without clock leeway (`ATOLL_TOKEN_CLOCK_LEEWAY=0s`), so that is about a second
/// after issue; with the default 30 s leeway it would be half a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_refused_once_expired() {
    let zone = Zone::start_with(
        DpAuth::Token,
        ConfigArgs {
            token_clock_leeway: Some("0s".into()),
            ..Default::default()
        },
    )
    .await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    let token = zone.token("web-1", "1s").await;
    let issued = Instant::now();
    let mut envoy = zone
        .envoy("web-1", Some(&token), request(CLUSTER, &[]))
        .await
        .expect("accepted while valid");
    envoy.expect("CDS").await;
    // Keep this first stream open: the proxy stays online, so the 1 s offline grace of this
    // zone cannot remove the dataplane between the reconnects below (which would make them
    // fail as "not registered" instead of exercising the token's expiry).
    let _online = envoy;
    let mut last = None;
    // Expiry is counted in whole seconds: refused within about 2 s; 10 s leaves room for load.
    while issued.elapsed() < scaled(Duration::from_secs(10)) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match zone
            .envoy("web-1", Some(&token), request(CLUSTER, &[]))
            .await
        {
            Ok(_) => continue,
            Err(status) => {
                last = Some(status);
                break;
            }
        }
    }
    let status = last.expect("a 1 s token was still accepted 10 s later (leeway 0 s)");
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    assert!(status.message().contains("expired"), "{}", status.message());
    eprintln!("1 s token refused {:?} after issue", issued.elapsed());
    zone.stop().await;
}

/// `ATOLL_DP_AUTH=none`: a stream without a token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_auth_none_accepts_streams_without_a_token() {
    let zone = Zone::start(DpAuth::None).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(&zone, "web-1", dataplane("web-1", "web", 20001, None)).await;
    let mut envoy = zone
        .envoy("web-1", None, request(CLUSTER, &[]))
        .await
        .expect("accepted without a token");
    let cds = envoy.expect("CDS").await;
    envoy.ack(&cds).await;
    let online = until(LIMIT, || async {
        zone.status("web-1")
            .await
            .is_some_and(|s| s["online"] == true)
    })
    .await;
    assert!(online.is_some());
    zone.stop().await;
}

fn endpoints(r: &DeltaDiscoveryResponse, cluster: &str) -> Option<usize> {
    let res = r.resources.iter().find(|x| x.name == cluster)?;
    let cla = ClusterLoadAssignment::decode(res.resource.as_ref()?.value.as_slice())
        .expect("a ClusterLoadAssignment");
    Some(cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum())
}

/// A new backend endpoint is pushed to the proxy that reaches `backend` (as a new
/// ClusterLoadAssignment) and to no other proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_pushed_only_to_the_proxies_they_concern() {
    let zone = Zone::start(DpAuth::None).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default"}),
    )
    .await;
    put_dataplane(
        &zone,
        "backend-1",
        dataplane("backend-1", "backend", 20001, None),
    )
    .await;
    put_dataplane(
        &zone,
        "web-a",
        dataplane("web-a", "web", 20003, Some((20100, "backend"))),
    )
    .await;
    put_dataplane(&zone, "other-b", dataplane("other-b", "other", 20005, None)).await;

    let mut a = zone
        .envoy("web-a", None, request(CLUSTER, &[]))
        .await
        .expect("A connects");
    let cds = a.expect("CDS").await;
    a.ack(&cds).await;
    assert!(
        cds.resources.iter().any(|r| r.name == "backend"),
        "A has the backend cluster"
    );
    a.send(request(ENDPOINT, &["backend"])).await;
    let eds = a.expect("EDS").await;
    a.ack(&eds).await;
    assert_eq!(endpoints(&eds, "backend"), Some(1), "one backend endpoint");
    a.send(request(LISTENER, &[])).await;
    a.settle(Duration::from_millis(300)).await;

    let mut b = zone
        .envoy("other-b", None, request(CLUSTER, &[]))
        .await
        .expect("B connects");
    let cds = b.expect("CDS").await;
    b.ack(&cds).await;
    b.send(request(LISTENER, &[])).await;
    b.settle(Duration::from_millis(300)).await;

    put_dataplane(
        &zone,
        "backend-2",
        dataplane("backend-2", "backend", 20007, None),
    )
    .await;
    let pushed = a.expect("EDS push after a backend was added").await;
    a.ack(&pushed).await;
    assert_eq!(
        pushed.type_url, ENDPOINT,
        "A gets endpoints, not {}",
        pushed.type_url
    );
    assert_eq!(
        endpoints(&pushed, "backend"),
        Some(2),
        "two backend endpoints"
    );
    let extra = b.recv(Duration::from_secs(1)).await;
    assert!(
        extra.is_none(),
        "B reaches no backend but got a push: {:?}",
        extra.map(|r| (r.type_url, r.resources.len()))
    );

    zone.delete("/meshes/default/dataplanes/backend-2").await;
    let pushed = a.expect("EDS push after a backend was removed").await;
    a.ack(&pushed).await;
    assert_eq!(endpoints(&pushed, "backend"), Some(1));
    assert!(
        b.recv(Duration::from_secs(1)).await.is_none(),
        "B got a push"
    );
    zone.stop().await;
}
