//! Every manifest of Kuma's documentation (../shared/conformance/kuma-docs) applied through the
//! REST API, after what it refers to exists (its mesh; the Secrets a provided CA names, holding a
//! real CA certificate and key), is accepted and reads back with the same content.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

use atoll_core::format::parse_documents;
use atoll_cp::Mode;
use atoll_cp::api::{ApiState, router};
use atoll_cp::metrics::Metrics;
use atoll_store::{MemoryStore, SharedStore};

fn app() -> axum::Router {
    let store: SharedStore = Arc::new(MemoryStore::new());
    router(Arc::new(ApiState {
        store,
        mode: Mode::Global,
        zone: "default".into(),
        instance_id: "t".into(),
        admin_token: "t".into(),
        auth: Default::default(),
        metrics: Metrics::new().expect("metrics"),
        inspector: Default::default(),
        zone_inspector: Default::default(),
        global_address: None,
    }))
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn path_of(doc: &Value) -> String {
    let kind =
        atoll_core::Kind::from_name(doc["type"].as_str().expect("type")).expect("known kind");
    let name = doc["name"].as_str().expect("name");
    match kind {
        atoll_core::Kind::Mesh => format!("/meshes/{name}"),
        k if k.is_mesh_scoped() => format!(
            "/meshes/{}/{}/{name}",
            doc.get("mesh").and_then(Value::as_str).unwrap_or("default"),
            k.plural()
        ),
        k => format!("/{}/{name}", k.plural()),
    }
}

fn secret(mesh: &str, name: &str, pem: &str) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(pem);
    json!({"type": "Secret", "name": name, "mesh": mesh, "data": data})
}

const CA_CERT: &str = include_str!("testdata/ca-cert.pem");
const CA_KEY: &str = include_str!("testdata/ca-key.pem");

/// Creates the mesh (plain) and the secrets a document refers to.
async fn prerequisites(app: &axum::Router, doc: &Value) {
    let mesh = if doc["type"] == "Mesh" {
        doc["name"].as_str().unwrap_or("default").to_string()
    } else {
        doc.get("mesh")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    };
    let (s, _) = call(app, "GET", &format!("/meshes/{mesh}"), None).await;
    if s == StatusCode::NOT_FOUND {
        let (s, b) = call(
            app,
            "PUT",
            &format!("/meshes/{mesh}"),
            Some(&json!({"type": "Mesh", "name": mesh})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    for backend in doc
        .pointer("/mtls/backends")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (field, pem) in [("cert", CA_CERT), ("key", CA_KEY)] {
            if let Some(name) = backend
                .pointer(&format!("/conf/{field}/secret"))
                .and_then(Value::as_str)
            {
                let (s, b) = call(
                    app,
                    "PUT",
                    &format!("/meshes/{mesh}/secrets/{name}"),
                    Some(&secret(&mesh, name, pem)),
                )
                .await;
                assert!(s.is_success(), "{b}");
            }
        }
    }
}

#[tokio::test]
async fn every_documented_manifest_applies_through_the_api_and_reads_back() {
    let Some(dir) = atoll_test_support::kuma_docs_corpus() else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .flatten()
        .flat_map(|k| {
            std::fs::read_dir(k.path())
                .expect("kind dir")
                .flatten()
                .map(|f| f.path())
        })
        .collect();
    files.sort();
    assert!(files.len() > 200);
    let mut failures = Vec::new();
    for file in &files {
        let app = app();
        let text = std::fs::read_to_string(file).expect("read");
        for doc in parse_documents(&text).expect("corpus parses") {
            prerequisites(&app, &doc).await;
            let path = path_of(&doc);
            let (s, b) = call(&app, "PUT", &path, Some(&doc)).await;
            if !s.is_success() {
                failures.push(format!("{}: {s} {b}", file.display()));
                continue;
            }
            let (s, mut back) = call(&app, "GET", &path, None).await;
            assert_eq!(s, StatusCode::OK);
            for server_set in ["creationTime", "modificationTime", "version"] {
                assert!(
                    back.get(server_set).is_some(),
                    "{} lacks {server_set}",
                    file.display()
                );
                back.as_object_mut().expect("object").remove(server_set);
            }
            let mut expected = doc.clone();
            if back.get("mesh").is_some() && doc.get("mesh").is_none() {
                expected["mesh"] = "default".into();
            }
            atoll_test_support::quote_tag_scalars(&mut expected);
            if back != expected {
                failures.push(format!(
                    "{}: read back differs:\n{back}\n{expected}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn provided_ca_needs_existing_well_formed_secrets() {
    let app = app();
    call(
        &app,
        "PUT",
        "/meshes/m",
        Some(&json!({"type": "Mesh", "name": "m"})),
    )
    .await;
    let mesh = json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "ca-1", "backends": [
        {"name": "ca-1", "type": "provided", "conf": {"cert": {"secret": "c"}, "key": {"secret": "k"}}}
    ]}});
    let (s, b) = call(&app, "PUT", "/meshes/m", Some(&mesh)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields: Vec<&str> = b["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "mtls.backends[0].conf.cert.secret",
            "mtls.backends[0].conf.key.secret"
        ],
        "{b}"
    );

    // Present but holding the wrong thing: a key where the certificate should be.
    call(
        &app,
        "PUT",
        "/meshes/m/secrets/c",
        Some(&secret("m", "c", CA_KEY)),
    )
    .await;
    call(
        &app,
        "PUT",
        "/meshes/m/secrets/k",
        Some(&secret("m", "k", CA_KEY)),
    )
    .await;
    let (s, b) = call(&app, "PUT", "/meshes/m", Some(&mesh)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["causes"][0]["field"], "mtls.backends[0].conf.cert.secret",
        "{b}"
    );
    assert!(
        b["causes"][0]["message"]
            .as_str()
            .expect("msg")
            .contains("certificate"),
        "{b}"
    );
    let (_, stored) = call(&app, "GET", "/meshes/m", None).await;
    assert!(
        stored.get("mtls").is_none(),
        "a refused write changed the mesh: {stored}"
    );

    call(
        &app,
        "PUT",
        "/meshes/m/secrets/c",
        Some(&secret("m", "c", CA_CERT)),
    )
    .await;
    let (s, b) = call(&app, "PUT", "/meshes/m", Some(&mesh)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn accepted_quirks_come_back_as_warning_headers() {
    let app = app();
    call(
        &app,
        "PUT",
        "/meshes/default",
        Some(&json!({"type": "Mesh", "name": "default"})),
    )
    .await;
    let doc = json!({"type": "MeshTimeout", "name": "t", "mesh": "default", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend", "_port": 8080}, "default": {"idleTimeout": "5s"}}]
    }});
    let req = Request::put("/meshes/default/meshtimeouts/t")
        .header("content-type", "application/json")
        .body(Body::from(doc.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("299 - \"spec.to[0].targetRef._port: ignored"),
        "{warnings:?}"
    );
}
