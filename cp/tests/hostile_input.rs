//! What one request may make the API allocate is bounded: bodies over the limit get 413 before
//! they are read whole, YAML nesting and alias expansion are refused with the reason, deep JSON
//! is an error and not a stack overflow; a large but reasonable document still applies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use atoll_cp::Mode;
use atoll_cp::api::{ApiState, router_with_body_limit};
use atoll_cp::metrics::Metrics;
use atoll_store::{MemoryStore, SharedStore};

const LIMIT: usize = 256 * 1024;

fn app() -> (axum::Router, SharedStore) {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let state = Arc::new(ApiState {
        store: store.clone(),
        mode: Mode::Zone,
        zone: "default".into(),
        instance_id: "test".into(),
        admin_token: "t".into(),
        auth: Default::default(),
        metrics: Metrics::new().expect("metrics"),
        inspector: Default::default(),
        zone_inspector: Default::default(),
        global_address: None,
        clock: atoll_clock::system(),
        token_leeway: atoll_identity::token::LEEWAY,
    });
    (router_with_body_limit(state, LIMIT), store)
}

fn put(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::put(path)
        .header("content-type", content_type)
        .body(body.into())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn mesh(app: &axum::Router) {
    let (s, b) = call(
        app,
        put(
            "/meshes/default",
            "application/json",
            r#"{"type":"Mesh","name":"default"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn stored(store: &SharedStore) -> u64 {
    store
        .list(&atoll_store::ListFilter::all(
            atoll_core::Kind::MeshTrafficPermission,
        ))
        .await
        .expect("list")
        .total
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_naming_the_limit() {
    let (app, store) = app();
    mesh(&app).await;
    let padding = "x".repeat(LIMIT);
    let doc = json!({"type": "MeshTrafficPermission", "name": "big", "mesh": "default",
        "labels": {"padding": padding},
        "spec": {"targetRef": {"kind": "Mesh"}}});
    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/big",
            "application/json",
            doc.to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["title"], "Request body too large", "{b}");
    let details = b["details"].as_str().unwrap_or_default();
    assert!(
        details.contains(&format!("{LIMIT} bytes")) && details.contains("ATOLL_MAX_BODY_SIZE"),
        "{b}"
    );
    // A body sent in chunks with no Content-Length is cut at the limit too.
    let chunks = futures::stream::iter(
        (0..LIMIT / 1024 + 2).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])),
    );
    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/big",
            "application/yaml",
            Body::from_stream(chunks),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(stored(&store).await, 0);
}

#[tokio::test]
async fn yaml_bombs_and_deep_nesting_are_refused_with_the_reason() {
    let (app, store) = app();
    mesh(&app).await;
    let mut bomb = String::from(
        "type: MeshTrafficPermission\nname: bomb\nmesh: default\nlabels: {}\na: &a [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb += &format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        );
    }
    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/bomb",
            "application/yaml",
            bomb,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["details"].as_str().unwrap_or_default().contains("alias"),
        "{b}"
    );

    let deep_yaml = format!(
        "type: MeshTrafficPermission\nname: deep\nmesh: default\nspec: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/deep",
            "application/yaml",
            deep_yaml,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["details"].as_str().unwrap_or_default().contains("depth"),
        "{b}"
    );

    let deep_json = format!(
        r#"{{"type": "MeshTrafficPermission", "name": "deep", "mesh": "default", "spec": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/deep",
            "application/json",
            deep_json,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["details"]
            .as_str()
            .unwrap_or_default()
            .contains("nested deeper than 128 levels"),
        "{b}"
    );

    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/bad",
            "application/yaml",
            vec![b't', b'y', b'p', b'e', b':', b' ', 0xff, 0xfe, b'\n'],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(stored(&store).await, 0, "nothing stored");
}

#[tokio::test]
async fn a_large_reasonable_document_still_applies() {
    let (app, store) = app();
    mesh(&app).await;
    // 2,000 `from` entries: about 190 KiB of YAML, within the limit and the node budget.
    let mut yaml = String::from(
        "type: MeshTrafficPermission\nname: many\nmesh: default\nspec:\n  targetRef:\n    kind: Mesh\n  from:\n",
    );
    for i in 0..2000 {
        yaml += &format!(
            "  - targetRef:\n      kind: MeshService\n      name: client-{i}\n    default:\n      action: Allow\n"
        );
    }
    assert!(yaml.len() > 100_000 && yaml.len() < LIMIT);
    let (s, b) = call(
        &app,
        put(
            "/meshes/default/meshtrafficpermissions/many",
            "application/yaml",
            yaml,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(stored(&store).await, 1);
}
