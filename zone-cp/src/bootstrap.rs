//! `POST /bootstrap` on the xDS port: atoll-dp presents its Dataplane and token; the zone control
//! plane checks both, registers (creates or updates) the Dataplane, and answers the Envoy
//! bootstrap that points Envoy's delta ADS stream back here.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use atoll_core::kinds::dataplane::DataplaneDoc;
use atoll_core::{FieldPath, Kind, Resource, ResourceKey, Violations};
use atoll_xds::bootstrap::{BootstrapParams, bootstrap};
use atoll_xds_server::directory::ConnectError;

use crate::directory::{ProxyKind, ZoneDirectory, ZoneSettings};

/// Envoy's admin port when the Dataplane names none (Kuma's default).
pub const DEFAULT_ADMIN_PORT: u16 = 9901;

pub struct BootstrapState {
    pub directory: Arc<ZoneDirectory>,
    pub store: atoll_store::SharedStore,
    /// The CA of the xDS server's certificate, given to Envoy to verify the control plane.
    pub xds_ca_pem: String,
    pub xds_port: u16,
    pub settings: ZoneSettings,
    /// Largest request body accepted (`ATOLL_MAX_BODY_SIZE`).
    pub max_body_bytes: usize,
}

fn error(
    status: StatusCode,
    title: &str,
    details: impl Into<String>,
    causes: &Violations,
) -> Response {
    let mut body = json!({"title": title, "details": details.into()});
    if !causes.is_empty() {
        body["causes"] = serde_json::to_value(&causes.violations).unwrap_or(Value::Null);
    }
    (status, Json(body)).into_response()
}

/// The answer to a proxy the directory did not admit.
fn refused(title: &str, e: &ConnectError) -> Response {
    let status = match e {
        ConnectError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ConnectError::NotFound(_) => StatusCode::NOT_FOUND,
        ConnectError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, title, e.to_string(), &Violations::new())
}

pub async fn handle(
    State(state): State<Arc<BootstrapState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let none = Violations::new();
    let body = match atoll_cp::api::read_body(&headers, body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(e @ atoll_cp::api::BodyError::TooLarge { .. }) => {
            return error(e.status(), "Request body too large", e.to_string(), &none);
        }
        Err(e) => return error(e.status(), "Bad request", e.to_string(), &none),
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad request",
                format!("the body must be JSON: {e}"),
                &none,
            );
        }
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
    let proxy_type = text("proxyType").unwrap_or_else(|| "sidecar".into());
    let Some(proxy_kind) = ProxyKind::from_proxy_type(&proxy_type) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Unsupported proxy type",
            format!("proxy type {proxy_type:?} is unknown: use sidecar, ingress or egress"),
            &none,
        );
    };
    let Some(document) = request.get("dataplane").cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "the body has no `dataplane` document",
            &none,
        );
    };
    let (resource, _warnings) = match Resource::from_value_with_warnings(document) {
        Ok(r) => r,
        Err(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid dataplane",
                format!("{} violation(s): {v}", v.len()),
                &v,
            );
        }
    };
    if resource.kind != proxy_kind.resource_kind() {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid dataplane",
            format!(
                "proxy type {proxy_type} needs a {}, got a {}",
                proxy_kind.resource_kind(),
                resource.kind
            ),
            &none,
        );
    }
    if proxy_kind != ProxyKind::Sidecar {
        return zone_proxy(&state, proxy_kind, resource, &headers, &request).await;
    }
    let (mesh, name) = (resource.mesh.clone(), resource.name.clone());
    let doc: DataplaneDoc = match serde_json::from_value(Value::Object(resource.spec.clone())) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid dataplane",
                e.to_string(),
                &none,
            );
        }
    };
    if let Err(e) = state
        .directory
        .auth()
        .dataplane(&mesh, &name, text("token").as_deref(), Some(&doc))
        .await
    {
        return refused("Dataplane not admitted", &e);
    }
    match state
        .store
        .get(&ResourceKey::global(Kind::Mesh, &mesh))
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            let mut v = Violations::new();
            v.add(
                &FieldPath::root().field("mesh"),
                format!("mesh {mesh:?} does not exist"),
            );
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid dataplane",
                format!("mesh {mesh:?} does not exist"),
                &v,
            );
        }
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                e.to_string(),
                &none,
            );
        }
    }
    if let Err(e) = register(&state, resource).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Dataplane not registered",
            e.to_string(),
            &none,
        );
    }
    let networking = doc.networking.unwrap_or_default();
    let service = networking
        .inbound
        .iter()
        .find_map(|i| i.tags.get(atoll_core::labels::SERVICE_TAG).cloned())
        .unwrap_or_else(|| name.clone());
    // atoll-dp may pick the admin port (several Envoys share a host); else the Dataplane's.
    let admin_port = request
        .get("adminPort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .or_else(|| {
            networking
                .admin
                .and_then(|a| a.port)
                .and_then(|p| u16::try_from(p).ok())
        })
        .unwrap_or(DEFAULT_ADMIN_PORT);
    let host = xds_host(&headers);
    let params = BootstrapParams {
        mesh: mesh.clone(),
        name: name.clone(),
        service,
        proxy_type: "dataplane".into(),
        xds_host: host,
        xds_port: state.xds_port,
        ca_cert_pem: Some(state.xds_ca_pem.clone()),
        token: text("token"),
        admin_port,
    };
    tracing::info!(%mesh, %name, "dataplane bootstrapped");
    (
        StatusCode::OK,
        Json(json!({"bootstrap": bootstrap(&params)})),
    )
        .into_response()
}

/// The host atoll-dp reached this server by: Envoy dials the same.
fn xds_host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(host, _)| host)
                .trim_matches(['[', ']'])
                .to_string()
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Admits and registers a zone ingress or egress, and answers its bootstrap.
async fn zone_proxy(
    state: &BootstrapState,
    kind: ProxyKind,
    mut resource: Resource,
    headers: &HeaderMap,
    request: &Value,
) -> Response {
    let none = Violations::new();
    let name = resource.name.clone();
    let token = request.get("token").and_then(Value::as_str);
    if let Err(e) = state.directory.auth().zone_proxy(kind, &name, token).await {
        return refused("Zone proxy not admitted", &e);
    }
    // The zone proxy serves this zone, whatever its file says.
    let zone = state.settings.zone.clone();
    match resource.spec.get("zone").and_then(Value::as_str) {
        Some(z) if !z.is_empty() && z != zone => {
            let mut v = Violations::new();
            v.add(
                &FieldPath::root().field("zone"),
                format!("this control plane serves zone {zone:?}"),
            );
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid zone proxy",
                format!(
                    "the {} names zone {z:?}, but this is zone {zone:?}",
                    resource.kind
                ),
                &v,
            );
        }
        _ => {
            resource.spec.insert("zone".into(), Value::String(zone));
        }
    }
    let admin_port = request
        .get("adminPort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .or_else(|| {
            resource
                .spec
                .get("networking")
                .and_then(|n| n.pointer("/admin/port"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        })
        .unwrap_or(DEFAULT_ADMIN_PORT);
    let kind_name = resource.kind;
    if let Err(e) = register(state, resource).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Zone proxy not registered",
            e.to_string(),
            &none,
        );
    }
    let params = BootstrapParams {
        mesh: String::new(),
        name: name.clone(),
        service: name.clone(),
        proxy_type: if kind == ProxyKind::Ingress {
            "ingress".into()
        } else {
            "egress".into()
        },
        xds_host: xds_host(headers),
        xds_port: state.xds_port,
        ca_cert_pem: Some(state.xds_ca_pem.clone()),
        token: token.map(str::to_string),
        admin_port,
    };
    tracing::info!(kind = %kind_name, %name, "zone proxy bootstrapped");
    (
        StatusCode::OK,
        Json(json!({"bootstrap": bootstrap(&params)})),
    )
        .into_response()
}

async fn register(
    state: &BootstrapState,
    mut resource: Resource,
) -> Result<(), atoll_store::StoreError> {
    for _ in 0..3 {
        match state.store.get(&resource.key()).await? {
            Some(current) => {
                if current.spec == resource.spec && current.labels == resource.labels {
                    return Ok(());
                }
                match state.store.update(resource.clone(), current.version).await {
                    Ok(_) => return Ok(()),
                    Err(atoll_store::StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            None => {
                resource.version = 0;
                match state.store.create(resource.clone()).await {
                    Ok(_) => return Ok(()),
                    Err(atoll_store::StoreError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(atoll_store::StoreError::Backend(
        "the dataplane kept changing while registering it".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_cp::config::DpAuth;
    use atoll_identity::Scope;

    fn state() -> Arc<BootstrapState> {
        let store: atoll_store::SharedStore = Arc::new(atoll_store::MemoryStore::new());
        let settings = ZoneSettings {
            dp_auth: DpAuth::Token,
            zone: "zone-1".into(),
            federated: false,
            clock: atoll_clock::system(),
            token_leeway: atoll_identity::token::LEEWAY,
        };
        let metrics = atoll_xds_server::metrics::XdsMetrics::register(&prometheus::Registry::new())
            .expect("metrics");
        Arc::new(BootstrapState {
            directory: Arc::new(ZoneDirectory::new(store.clone(), settings.clone(), metrics)),
            store,
            xds_ca_pem: "CA".into(),
            xds_port: 5678,
            settings,
            max_body_bytes: 64 * 1024,
        })
    }

    async fn token(state: &BootstrapState, zone: &str, scope: Scope) -> String {
        atoll_cp::tokens::issue_zone_token(
            state.store.as_ref(),
            zone,
            scope,
            std::time::Duration::from_secs(3600),
            chrono::Utc::now(),
        )
        .await
        .expect("minted")
    }

    fn ingress(zone: Option<&str>) -> Value {
        let mut doc = json!({"type": "ZoneIngress", "name": "ingress-1",
            "networking": {"address": "127.0.0.1", "port": 10001,
                           "advertisedAddress": "10.0.0.1", "advertisedPort": 10001}});
        if let Some(zone) = zone {
            doc["zone"] = json!(zone);
        }
        doc
    }

    async fn call(state: &Arc<BootstrapState>, body: Value) -> (StatusCode, Value) {
        let resp = handle(
            State(state.clone()),
            HeaderMap::new(),
            axum::body::Body::from(body.to_string()),
        )
        .await;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn zone_proxies_are_refused_with_the_reason_and_nothing_registered() {
        let state = state();
        let cp = token(&state, "zone-1", Scope::Cp).await;
        let egress = token(&state, "zone-1", Scope::Egress).await;
        let other_zone = token(&state, "zone-2", Scope::Ingress).await;
        let valid = token(&state, "zone-1", Scope::Ingress).await;
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (
                json!({"proxyType": "gateway", "dataplane": ingress(None)}),
                StatusCode::BAD_REQUEST,
                "proxy type \"gateway\" is unknown",
            ),
            (
                json!({"proxyType": "ingress", "token": valid,
                       "dataplane": {"type": "ZoneEgress", "name": "egress-1",
                                     "networking": {"address": "127.0.0.1", "port": 10002}}}),
                StatusCode::BAD_REQUEST,
                "needs a ZoneIngress",
            ),
            (
                json!({"proxyType": "ingress", "dataplane": ingress(None)}),
                StatusCode::UNAUTHORIZED,
                "presented no zone token",
            ),
            (
                json!({"proxyType": "ingress", "token": cp, "dataplane": ingress(None)}),
                StatusCode::UNAUTHORIZED,
                "needs scope ingress",
            ),
            (
                json!({"proxyType": "ingress", "token": egress, "dataplane": ingress(None)}),
                StatusCode::UNAUTHORIZED,
                "needs scope ingress",
            ),
            (
                json!({"proxyType": "ingress", "token": other_zone, "dataplane": ingress(None)}),
                StatusCode::UNAUTHORIZED,
                "issued for zone \"zone-2\"",
            ),
            (
                json!({"proxyType": "ingress", "token": "not.a.jwt", "dataplane": ingress(None)}),
                StatusCode::UNAUTHORIZED,
                "invalid zone token",
            ),
            (
                json!({"proxyType": "ingress", "token": valid, "dataplane": ingress(Some("zone-2"))}),
                StatusCode::BAD_REQUEST,
                "names zone \"zone-2\"",
            ),
        ];
        for (body, status, reason) in cases {
            let (got, answer) = call(&state, body.clone()).await;
            assert_eq!(got, status, "{body} -> {answer}");
            assert!(
                answer["details"]
                    .as_str()
                    .is_some_and(|d| d.contains(reason)),
                "{body} -> {answer}, expected {reason:?}"
            );
        }
        let registered = state
            .store
            .list(&atoll_store::ListFilter::all(Kind::ZoneIngress))
            .await
            .expect("list");
        assert!(
            registered.items.is_empty(),
            "a refused ingress was registered"
        );
    }

    #[tokio::test]
    async fn an_admitted_ingress_is_registered_in_this_zone_and_gets_its_bootstrap() {
        let state = state();
        let valid = token(&state, "zone-1", Scope::Ingress).await;
        let (status, answer) = call(
            &state,
            json!({"proxyType": "ingress", "token": valid, "dataplane": ingress(None)}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let node = &answer["bootstrap"]["node"];
        assert_eq!(node["id"], "ingress-1", "{node}");
        assert_eq!(node["metadata"]["dataplane.proxyType"], "ingress", "{node}");
        let stored = state
            .store
            .get(&ResourceKey::global(Kind::ZoneIngress, "ingress-1"))
            .await
            .expect("get")
            .expect("registered");
        assert_eq!(stored.spec["zone"], "zone-1", "stamped with this zone");
    }

    fn sidecar(name: &str, service: &str) -> Value {
        json!({"type": "Dataplane", "mesh": "default", "name": name, "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 18080, "servicePort": 8080, "tags": {"kuma.io/service": service}}]}})
    }

    async fn dataplane_token(state: &BootstrapState, name: &str, service: Option<&str>) -> String {
        let tags = service.map(|s| {
            std::collections::BTreeMap::from([("kuma.io/service".to_string(), vec![s.to_string()])])
        });
        atoll_cp::tokens::issue_dataplane_token(
            state.store.as_ref(),
            "default",
            name,
            None,
            tags,
            std::time::Duration::from_secs(3600),
            chrono::Utc::now(),
        )
        .await
        .expect("minted")
    }

    /// A token bound to `kuma.io/service: backend` registers a backend and nothing else; a
    /// mesh labelled to require bound tokens refuses an unbound one. Nothing refused is stored.
    #[tokio::test]
    async fn a_token_for_one_service_cannot_serve_another() {
        let state = state();
        let mut mesh = Resource::new(Kind::Mesh, "", "default");
        state.store.create(mesh.clone()).await.expect("mesh");
        let bound = dataplane_token(&state, "dp-1", Some("backend")).await;
        let stored = |name: &'static str| {
            let store = state.store.clone();
            async move {
                store
                    .get(&ResourceKey::new(Kind::Dataplane, "default", name))
                    .await
                    .expect("get")
            }
        };

        let (status, body) = call(
            &state,
            json!({"proxyType": "dataplane", "token": bound, "dataplane": sidecar("dp-1", "web")}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["details"]
                .as_str()
                .unwrap_or_default()
                .contains("\"web\""),
            "{body}"
        );
        assert!(stored("dp-1").await.is_none(), "nothing registered");

        let (status, body) = call(
            &state,
            json!({"proxyType": "dataplane", "token": bound, "dataplane": sidecar("dp-1", "backend")}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The same check holds when the proxy connects for xDS: against the stored Dataplane.
        let directory = &state.directory;
        assert!(
            directory
                .auth()
                .dataplane("default", "dp-1", Some(&bound), None)
                .await
                .is_ok()
        );

        // A mesh may require every token to be bound to a service.
        let unbound = dataplane_token(&state, "dp-2", None).await;
        let (status, body) = call(
            &state,
            json!({"proxyType": "dataplane", "token": unbound, "dataplane": sidecar("dp-2", "web")}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "unbound tokens are accepted by default: {body}"
        );
        mesh.labels.insert(
            crate::directory::TOKEN_BINDING_LABEL.into(),
            "service".into(),
        );
        let current = state
            .store
            .get(&ResourceKey::global(Kind::Mesh, "default"))
            .await
            .expect("get")
            .expect("mesh");
        state
            .store
            .update(mesh, current.version)
            .await
            .expect("label");
        let (status, body) = call(
            &state,
            json!({"proxyType": "dataplane", "token": unbound, "dataplane": sidecar("dp-2", "web")}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["details"]
                .as_str()
                .unwrap_or_default()
                .contains("--tag kuma.io/service="),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_413_and_nothing_registered() {
        let state = state();
        let token = token(&state, "zone-1", Scope::Ingress).await;
        let mut doc = ingress(None);
        doc["labels"] = json!({"padding": "x".repeat(100 * 1024)});
        let (status, answer) = call(
            &state,
            json!({"proxyType": "ingress", "token": token, "dataplane": doc}),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        let details = answer["details"].as_str().unwrap_or_default();
        assert!(
            details.contains("65536 bytes") && details.contains("ATOLL_MAX_BODY_SIZE"),
            "{answer}"
        );
        let stored = state
            .store
            .list(&atoll_store::ListFilter::all(Kind::ZoneIngress))
            .await
            .expect("list");
        assert_eq!(stored.total, 0, "nothing registered");
    }
}
