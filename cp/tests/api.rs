//! REST API behaviour through the router (no socket): paths, pagination, validation errors,
//! write authorization.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use atoll_cp::Mode;
use atoll_cp::api::{ApiState, router};
use atoll_cp::metrics::Metrics;
use atoll_store::{MemoryStore, SharedStore};

const TOKEN: &str = "test-admin-token";

fn app() -> (axum::Router, SharedStore) {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let state = Arc::new(ApiState {
        store: store.clone(),
        mode: Mode::Global,
        zone: "default".into(),
        instance_id: "test-1".into(),
        admin_token: TOKEN.into(),
        auth: Default::default(),
        metrics: Metrics::new().expect("metrics"),
        inspector: Default::default(),
        zone_inspector: Default::default(),
        global_address: None,
        clock: atoll_clock::system(),
        token_leeway: atoll_identity::token::LEEWAY,
    });
    (router(state), store)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, body)
}

fn put(path: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::put(path)
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// The fields an error's causes name.
fn cause_fields(body: &Value) -> Vec<&str> {
    body["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

async fn create_mesh(app: &axum::Router, name: &str) {
    let (s, b) = call(
        app,
        put(
            &format!("/meshes/{name}"),
            "application/json",
            &json!({"type": "Mesh", "name": name}).to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

#[tokio::test]
async fn put_yaml_then_get_returns_it_with_server_metadata() {
    let (app, _) = app();
    create_mesh(&app, "m").await;
    let yaml = "type: MeshTimeout\nname: n\nmesh: m\nspec:\n  targetRef:\n    kind: Mesh\n  to:\n  - targetRef:\n      kind: Mesh\n    default:\n      idleTimeout: 20s\n";
    let (s, b) = call(
        &app,
        put("/meshes/m/meshtimeouts/n", "application/yaml", yaml),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = call(&app, get("/meshes/m/meshtimeouts/n")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["spec"]["to"][0]["default"]["idleTimeout"], "20s");
    assert_eq!(b["version"], 1);
    assert!(
        b["creationTime"].is_string() && b["modificationTime"].is_string(),
        "{b}"
    );
    // A second PUT updates and bumps the version.
    let (s, b) = call(
        &app,
        put("/meshes/m/meshtimeouts/n", "application/yaml", yaml),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], 2);
}

#[tokio::test]
async fn invalid_write_gets_400_with_every_violation_and_stores_nothing() {
    let (app, store) = app();
    create_mesh(&app, "m").await;
    let doc = json!({"type": "MeshTimeout", "name": "bad", "mesh": "m", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "20 seconds", "connectionTimeout": "soon"}}]
    }});
    let (s, b) = call(
        &app,
        put(
            "/meshes/m/meshtimeouts/bad",
            "application/json",
            &doc.to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields = cause_fields(&b);
    assert!(fields.contains(&"spec.to[0].default.idleTimeout"), "{b}");
    assert!(
        fields.contains(&"spec.to[0].default.connectionTimeout"),
        "{b}"
    );
    let page = store
        .list(&atoll_store::ListFilter::all(atoll_core::Kind::MeshTimeout))
        .await
        .expect("list");
    assert_eq!(page.total, 0);
}

/// Documents the API used to accept and store (issue: a poison Dataplane, an ingress at "NaN",
/// a Secret that is not base64, an empty policy, `mtls: []`): each is refused with the field
/// named, and nothing is stored.
#[tokio::test]
async fn malformed_resources_are_refused_with_the_field_named() {
    let (app, store) = app();
    create_mesh(&app, "m").await;
    let cases = [
        (
            "/meshes/m/dataplanes/d",
            json!({"type": "Dataplane", "mesh": "m", "name": "d", "networking": {}}),
            "networking.address",
        ),
        (
            "/meshes/m/dataplanes/d",
            json!({"type": "Dataplane", "mesh": "m", "name": "d", "networking": {
                "address": "backend.example", "inbound": [{"port": 1, "servicePort": 2,
                "tags": {"kuma.io/service": "b"}}]}}),
            "networking.address",
        ),
        (
            "/zoneingresses/z",
            json!({"type": "ZoneIngress", "name": "z", "networking": {"address": "NaN", "port": 10001}}),
            "networking.address",
        ),
        (
            "/zoneingresses/z",
            json!({"type": "ZoneIngress", "name": "z", "networking": {"address": null, "port": 10001}}),
            "networking.address",
        ),
        (
            "/meshes/m/secrets/s",
            json!({"type": "Secret", "mesh": "m", "name": "s", "data": "not base64!"}),
            "data",
        ),
        (
            "/meshes/m/meshretries/r",
            json!({"type": "MeshRetry", "mesh": "m", "name": "r", "spec": {}}),
            "spec",
        ),
        (
            "/meshes/other",
            json!({"type": "Mesh", "name": "other", "mtls": []}),
            "mtls",
        ),
    ];
    for (path, doc, field) in cases {
        let (s, b) = call(&app, put(path, "application/json", &doc.to_string())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{doc} -> {b}");
        let fields = cause_fields(&b);
        assert!(fields.contains(&field), "{doc}: expected {field} in {b}");
        let (s, _) = call(&app, get(path)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{doc} must not be stored");
    }
    let meshes = store
        .list(&atoll_store::ListFilter::all(atoll_core::Kind::Mesh))
        .await
        .expect("list");
    assert_eq!(meshes.total, 1, "only mesh m");
}

/// Token signing keys and builtin CA material are the control plane's: the generic API can
/// neither overwrite nor delete them; a signing key is rotated explicitly, which invalidates
/// the tokens it signed.
#[tokio::test]
async fn system_secrets_are_not_writable_and_signing_keys_rotate_explicitly() {
    let (app, store) = app();
    create_mesh(&app, "m").await;
    let (s, b) = call(
        &app,
        Request::post("/tokens/dataplane")
            .body(Body::from(
                json!({"mesh": "m", "name": "web-1"}).to_string(),
            ))
            .expect("request"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let token = b
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| b.to_string());
    let keys = atoll_cp::tokens::verification_keys(store.as_ref(), "m")
        .await
        .expect("keys");
    assert!(
        atoll_identity::verify_dataplane_token(
            &token,
            &keys,
            chrono::Utc::now(),
            atoll_identity::token::LEEWAY
        )
        .is_ok()
    );

    let bogus = json!({"type": "Secret", "mesh": "m", "name": "dataplane-token-signing-key", "data": "aGVsbG8="});
    for (path, doc) in [
        (
            "/meshes/m/secrets/dataplane-token-signing-key",
            bogus.clone(),
        ),
        (
            "/meshes/m/secrets/m.ca-builtin-key-ca-1",
            json!({"type": "Secret", "mesh": "m", "name": "m.ca-builtin-key-ca-1", "data": "aGVsbG8="}),
        ),
        (
            "/global-secrets/zone-token-signing-key",
            json!({"type": "GlobalSecret", "name": "zone-token-signing-key", "data": "aGVsbG8="}),
        ),
    ] {
        let (s, b) = call(&app, put(path, "application/json", &doc.to_string())).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {b}");
        assert!(
            b["details"]
                .as_str()
                .unwrap_or_default()
                .contains("manages it"),
            "{b}"
        );
        let (s, b) = call(
            &app,
            Request::delete(path).body(Body::empty()).expect("request"),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {b}");
    }
    // The key is intact: the token still verifies.
    let keys = atoll_cp::tokens::verification_keys(store.as_ref(), "m")
        .await
        .expect("keys");
    assert!(
        atoll_identity::verify_dataplane_token(
            &token,
            &keys,
            chrono::Utc::now(),
            atoll_identity::token::LEEWAY
        )
        .is_ok()
    );

    let (s, b) = call(
        &app,
        Request::post("/tokens/dataplane/_rotate-signing-key")
            .body(Body::from(json!({"mesh": "m"}).to_string()))
            .expect("request"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["kid"].is_string(), "{b}");
    let keys = atoll_cp::tokens::verification_keys(store.as_ref(), "m")
        .await
        .expect("keys");
    assert!(
        atoll_identity::verify_dataplane_token(
            &token,
            &keys,
            chrono::Utc::now(),
            atoll_identity::token::LEEWAY
        )
        .is_err(),
        "a token of the rotated key must stop verifying"
    );
}

#[tokio::test]
async fn missing_mesh_unknown_kind_and_path_mismatch_are_refused() {
    let (app, _) = app();
    let doc = json!({"type": "MeshTimeout", "name": "t", "mesh": "nope", "spec": {"targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s"}}]}});
    let (s, b) = call(
        &app,
        put(
            "/meshes/nope/meshtimeouts/t",
            "application/json",
            &doc.to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["causes"][0]["field"], "mesh");
    assert!(
        b["causes"][0]["message"]
            .as_str()
            .expect("msg")
            .contains("nope"),
        "{b}"
    );

    let (s, b) = call(&app, get("/meshes/default/meshtimeoutz")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        b["details"]
            .as_str()
            .expect("details")
            .contains("meshtimeoutz"),
        "{b}"
    );

    create_mesh(&app, "m").await;
    let doc = json!({"type": "MeshRetry", "name": "other", "mesh": "m", "spec": {
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 2}}}]}});
    let (s, b) = call(
        &app,
        put(
            "/meshes/m/meshtimeouts/t",
            "application/json",
            &doc.to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields = cause_fields(&b);
    assert!(fields.contains(&"type") && fields.contains(&"name"), "{b}");

    let (s, _) = call(
        &app,
        put("/meshes/m/meshtimeouts/t", "application/json", "{not json"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lists_paginate_with_total_and_next() {
    let (app, _) = app();
    create_mesh(&app, "m").await;
    for i in 0..25 {
        let doc =
            json!({"type": "Secret", "name": format!("s-{i:02}"), "mesh": "m", "data": "YWJj"});
        let (s, b) = call(
            &app,
            put(
                &format!("/meshes/m/secrets/s-{i:02}"),
                "application/json",
                &doc.to_string(),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, b) = call(&app, get("/meshes/m/secrets?size=10&offset=20")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 25);
    assert_eq!(b["items"].as_array().expect("items").len(), 5);
    assert_eq!(b["items"][0]["name"], "s-20");
    assert!(b["next"].is_null());
    let (_, b) = call(&app, get("/meshes/m/secrets?size=10")).await;
    assert!(
        b["next"]
            .as_str()
            .expect("next")
            .ends_with("/meshes/m/secrets?offset=10&size=10"),
        "{b}"
    );
    let (s, _) = call(&app, get("/meshes/m/secrets?size=0")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = call(&app, get("/meshes")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["total"], 1);
}

#[tokio::test]
async fn list_filters_decode_their_query() {
    let (app, _) = app();
    create_mesh(&app, "m").await;
    for name in ["web-a", "web-b", "db-a"] {
        let doc = json!({"type": "Secret", "name": name, "mesh": "m", "data": "YWJj"});
        let (s, b) = call(
            &app,
            put(
                &format!("/meshes/m/secrets/{name}"),
                "application/json",
                &doc.to_string(),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // `%65` is `e`: the prefix is `web-`.
    let (s, b) = call(&app, get("/meshes/m/secrets?namePrefix=w%65b-&size=10")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 2, "{b}");
    let (s, b) = call(&app, get("/meshes/m/secrets?offset=x")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["details"].as_str().expect("details").contains("offset"),
        "{b}"
    );
}

#[tokio::test]
async fn deleting_a_mesh_removes_its_resources() {
    let (app, store) = app();
    create_mesh(&app, "m").await;
    let doc = json!({"type": "Secret", "name": "s", "mesh": "m", "data": "YWJj"});
    call(
        &app,
        put("/meshes/m/secrets/s", "application/json", &doc.to_string()),
    )
    .await;
    let (s, _) = call(
        &app,
        Request::delete("/meshes/m")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let page = store
        .list(&atoll_store::ListFilter::all(atoll_core::Kind::Secret))
        .await
        .expect("list");
    assert_eq!(page.total, 0);
    let (s, _) = call(
        &app,
        Request::delete("/meshes/m")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn remote_writes_need_the_admin_token() {
    let (app, _) = app();
    let remote: SocketAddr = "192.0.2.10:40000".parse().expect("addr");
    let mesh = json!({"type": "Mesh", "name": "m"}).to_string();
    let mut req = put("/meshes/m", "application/json", &mesh);
    req.extensions_mut().insert(ConnectInfo(remote));
    let (s, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    let mut req = put("/meshes/m", "application/json", &mesh);
    req.extensions_mut().insert(ConnectInfo(remote));
    req.headers_mut()
        .insert("authorization", "Bearer wrong".parse().expect("header"));
    let (s, _) = call(&app, req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let mut req = put("/meshes/m", "application/json", &mesh);
    req.extensions_mut().insert(ConnectInfo(remote));
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let (s, b) = call(&app, req).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Reads are open, except secrets.
    let mut req = get("/meshes/m");
    req.extensions_mut().insert(ConnectInfo(remote));
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
    let mut req = get("/meshes/m/secrets");
    req.extensions_mut().insert(ConnectInfo(remote));
    assert_eq!(call(&app, req).await.0, StatusCode::FORBIDDEN);

    let loopback: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut req = Request::delete("/meshes/m")
        .body(Body::empty())
        .expect("req");
    req.extensions_mut().insert(ConnectInfo(loopback));
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn stale_version_in_the_document_is_a_conflict() {
    let (app, _) = app();
    create_mesh(&app, "m").await;
    let doc = |v: i64| {
        json!({"type": "Secret", "name": "s", "mesh": "m", "data": "YWJj", "version": v})
            .to_string()
    };
    let (s, _) = call(
        &app,
        put("/meshes/m/secrets/s", "application/json", &doc(0)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &app,
        put("/meshes/m/secrets/s", "application/json", &doc(1)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &app,
        put("/meshes/m/secrets/s", "application/json", &doc(1)),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
}

#[tokio::test]
async fn index_reports_mode_and_instance() {
    let (app, _) = app();
    let (s, b) = call(&app, get("/")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["mode"], "global");
    assert_eq!(b["instanceId"], "test-1");
    assert!(b["version"].is_string());
}

#[tokio::test]
async fn global_issues_zone_tokens_that_verify_and_name_their_zone() {
    let (app, store) = app();
    let req = Request::post("/tokens/zone")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"zone": "zone-1", "scope": "cp", "validFor": "1h"}).to_string(),
        ))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .expect("body");
    let token = String::from_utf8(bytes.to_vec()).expect("utf8");
    let keys = atoll_cp::tokens::zone_verification_keys(store.as_ref())
        .await
        .expect("keys");
    let claims = atoll_identity::verify_zone_token(
        &token,
        &keys,
        chrono::Utc::now(),
        atoll_identity::token::LEEWAY,
    )
    .expect("verifies");
    assert_eq!(claims.zone, "zone-1");
    assert_eq!(claims.scope, atoll_identity::Scope::Cp);
    // A zone token is not a dataplane token.
    assert!(
        atoll_identity::verify_dataplane_token(
            &token,
            &keys,
            chrono::Utc::now(),
            atoll_identity::token::LEEWAY
        )
        .is_err()
    );

    let bad = Request::post("/tokens/zone")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"zone": "", "scope": "admin"}).to_string(),
        ))
        .expect("request");
    let (s, b) = call(&app, bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields = cause_fields(&b);
    assert_eq!(fields, ["zone", "scope"], "{b}");
}

#[tokio::test]
async fn dataplane_tokens_need_an_existing_mesh_and_a_name() {
    let (app, _) = app();
    let req = |body: Value| {
        Request::post("/tokens/dataplane")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let (s, b) = call(&app, req(json!({"mesh": "nope", "name": "web-1"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    create_mesh(&app, "default").await;
    let (s, b) = call(&app, req(json!({"mesh": "default", "validFor": "soon"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = call(
        &app,
        req(json!({"mesh": "default", "name": "web-1", "validFor": "1h"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn synced_resources_are_changed_only_where_they_were_created() {
    let zone_store: SharedStore = Arc::new(MemoryStore::new());
    let zone = router(Arc::new(ApiState {
        store: zone_store.clone(),
        mode: Mode::Zone,
        zone: "east".into(),
        instance_id: "z".into(),
        admin_token: TOKEN.into(),
        auth: Default::default(),
        metrics: Metrics::new().expect("metrics"),
        inspector: Default::default(),
        zone_inspector: Default::default(),
        global_address: Some("grpcs://global.example:5685".into()),
        clock: atoll_clock::system(),
        token_leeway: atoll_identity::token::LEEWAY,
    }));
    // What KDS stored: a Mesh that came from global.
    let mut synced = atoll_core::Resource::new(atoll_core::Kind::Mesh, "", "default");
    synced
        .labels
        .insert("kuma.io/origin".into(), "global".into());
    zone_store.create(synced).await.expect("stored");
    let (s, b) = call(
        &zone,
        put(
            "/meshes/default",
            "application/json",
            &json!({"type": "Mesh", "name": "default"}).to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["details"]
            .as_str()
            .expect("details")
            .contains("global.example"),
        "{b}"
    );
    let (s, _) = call(
        &zone,
        Request::delete("/meshes/default")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // And on global, what came from a zone.
    let (global, global_store) = app();
    create_mesh(&global, "default").await;
    let mut dp = atoll_core::Resource::from_value(json!({"type": "Dataplane", "mesh": "default", "name": "web-1-abc",
        "labels": {"kuma.io/origin": "zone", "kuma.io/zone": "east"},
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}))
        .expect("valid");
    dp.version = 0;
    global_store.create(dp).await.expect("stored");
    let (s, b) = call(
        &global,
        Request::delete("/meshes/default/dataplanes/web-1-abc")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["details"].as_str().expect("details").contains("east"),
        "{b}"
    );
}

/// A zone inspector standing in for the global's KDS server: "east" is online.
struct FakeZones {
    deleted: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl atoll_cp::extension::ZoneInspector for FakeZones {
    fn insight(&self, zone: &str) -> Value {
        json!({"online": zone == "east", "subscriptions": [{"id": "s/1", "zoneInstanceId": format!("{zone}-cp")}]})
    }

    async fn delete_zone(
        &self,
        zone: &str,
    ) -> Result<atoll_cp::extension::ZoneDeletion, atoll_cp::extension::ZoneDeleteError> {
        if zone == "east" {
            return Err(atoll_cp::extension::ZoneDeleteError::Online {
                zone: zone.into(),
                since: Some("2026-01-01T00:00:00Z".into()),
            });
        }
        if let Ok(mut d) = self.deleted.lock() {
            d.push(zone.to_string());
        }
        Ok(atoll_cp::extension::ZoneDeletion {
            resources_removed: 2,
        })
    }
}

fn state(mode: Mode, store: SharedStore) -> ApiState {
    ApiState {
        store,
        mode,
        zone: "east".into(),
        instance_id: "i".into(),
        admin_token: TOKEN.into(),
        auth: Default::default(),
        metrics: Metrics::new().expect("metrics"),
        inspector: Default::default(),
        zone_inspector: Default::default(),
        global_address: Some("grpcs://global.example:5685".into()),
        clock: atoll_clock::system(),
        token_leeway: atoll_identity::token::LEEWAY,
    }
}

#[tokio::test]
async fn zone_overviews_combine_the_zone_and_its_insight() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let state = state(Mode::Global, store);
    let zones = Arc::new(FakeZones {
        deleted: Default::default(),
    });
    assert!(state.zone_inspector.set(zones.clone()).is_ok());
    let app = router(Arc::new(state));
    for (name, enabled) in [("east", true), ("west", false)] {
        let doc = json!({"type": "Zone", "name": name, "enabled": enabled}).to_string();
        let (s, b) = call(
            &app,
            put(&format!("/zones/{name}"), "application/json", &doc),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, list) = call(&app, get("/zones/_overview?size=1")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2);
    assert!(list["next"].as_str().is_some(), "{list}");
    let east = &list["items"][0];
    assert_eq!(east["type"], "ZoneOverview");
    assert_eq!(east["name"], "east");
    assert_eq!(east["zone"], json!({"enabled": true}));
    assert_eq!(east["zoneInsight"]["online"], true);
    assert_eq!(
        east["zoneInsight"]["subscriptions"][0]["zoneInstanceId"],
        "east-cp"
    );
    assert!(east["creationTime"].is_string(), "{east}");

    let (s, west) = call(&app, get("/zones/west/_overview")).await;
    assert_eq!(s, StatusCode::OK, "{west}");
    assert_eq!(west["zone"]["enabled"], false);
    assert_eq!(west["zoneInsight"]["online"], false);
    let (s, b) = call(&app, get("/zones/south/_overview")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["details"].as_str().unwrap_or_default().contains("south"),
        "{b}"
    );

    // An online zone is not deleted; the answer says which zone and what to do.
    let delete = |path: &str| Request::delete(path).body(Body::empty()).expect("request");
    let (s, b) = call(&app, delete("/zones/east")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let details = b["details"].as_str().unwrap_or_default();
    assert!(details.contains("\"east\" is online"), "{b}");
    assert!(details.contains("enabled: false"), "{b}");
    let (s, b) = call(&app, delete("/zones/west")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["resourcesRemoved"], 2);
    assert_eq!(*zones.deleted.lock().expect("lock"), ["west"]);
}

#[tokio::test]
async fn zone_overviews_without_kds_and_on_a_zone_control_plane() {
    // A global without a KDS server: zones are listed, none online.
    let store: SharedStore = Arc::new(MemoryStore::new());
    let app = router(Arc::new(state(Mode::Global, store)));
    let doc = json!({"type": "Zone", "name": "east"}).to_string();
    let (s, _) = call(&app, put("/zones/east", "application/json", &doc)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, list) = call(&app, get("/zones/_overview")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["zone"]["enabled"], true);
    assert_eq!(
        list["items"][0]["zoneInsight"],
        json!({"online": false, "subscriptions": []})
    );

    // A zone control plane points at global.
    let zone = router(Arc::new(state(Mode::Zone, Arc::new(MemoryStore::new()))));
    for path in ["/zones/_overview", "/zones/east/_overview"] {
        let (s, b) = call(&zone, get(path)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {b}");
        let details = b["details"].as_str().unwrap_or_default();
        assert!(
            details.contains("zone \"east\"") && details.contains("global.example:5685"),
            "{b}"
        );
    }
}

#[tokio::test]
async fn turning_mtls_off_on_a_multi_zone_mesh_is_accepted_with_a_warning() {
    let (app, _) = app();
    let with_mtls = json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "builtin"}]}});
    let (s, b) = call(
        &app,
        put(
            "/meshes/default",
            "application/json",
            &with_mtls.to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = call(
        &app,
        put(
            "/zones/zone-1",
            "application/json",
            &json!({"type": "Zone", "name": "zone-1"}).to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // What the README's tour used to paste: the same Mesh without mtls.
    let resp = app
        .clone()
        .oneshot(put(
            "/meshes/default",
            "application/json",
            &json!({"type": "Mesh", "name": "default"}).to_string(),
        ))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("299 - \"mtls.enabledBackend: this change turns mTLS off"),
        "{warnings:?}"
    );
}
