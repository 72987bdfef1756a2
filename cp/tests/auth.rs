//! API authentication and authorization through the router: user tokens, groups and RBAC rules,
//! revocation, the loopback-is-admin setting, and Secrets that stay unreadable without the role.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use atoll_cp::Mode;
use atoll_cp::api::{ApiState, router};
use atoll_cp::auth::{AuthSettings, RbacPolicy};
use atoll_cp::metrics::Metrics;
use atoll_store::{MemoryStore, SharedStore};

const ADMIN: &str = "test-admin-token";
const REMOTE: &str = "192.0.2.10:40000";
const LOOPBACK: &str = "127.0.0.1:40000";

fn app_with(auth: AuthSettings) -> axum::Router {
    let store: SharedStore = Arc::new(MemoryStore::new());
    router(Arc::new(ApiState {
        store,
        mode: Mode::Global,
        zone: "default".into(),
        instance_id: "test-1".into(),
        admin_token: ADMIN.into(),
        auth,
        metrics: Metrics::new().expect("metrics"),
        inspector: Default::default(),
        zone_inspector: Default::default(),
        global_address: None,
        clock: atoll_clock::system(),
        token_leeway: atoll_identity::token::LEEWAY,
    }))
}

/// One request from `from`, with `token` as bearer when given.
async fn call(
    app: &axum::Router,
    from: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let peer: SocketAddr = from.parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(peer));
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

async fn admin(app: &axum::Router, method: &str, path: &str, body: Value) -> Value {
    let (s, b) = call(app, REMOTE, Some(ADMIN), method, path, Some(body)).await;
    assert!(s.is_success(), "{method} {path}: {s} {b}");
    b
}

async fn user_token(app: &axum::Router, name: &str, groups: &[&str]) -> String {
    let body = json!({"name": name, "groups": groups, "validFor": "1h"});
    admin(app, "POST", "/tokens/user", body)
        .await
        .as_str()
        .expect("token text")
        .to_string()
}

async fn seed(app: &axum::Router) {
    for mesh in ["a", "b"] {
        admin(
            app,
            "PUT",
            &format!("/meshes/{mesh}"),
            json!({"type": "Mesh", "name": mesh}),
        )
        .await;
        admin(
            app,
            "PUT",
            &format!("/meshes/{mesh}/secrets/db-password"),
            json!({"type": "Secret", "name": "db-password", "mesh": mesh, "data": "c2VjcmV0"}),
        )
        .await;
    }
    admin(
        app,
        "PUT",
        "/global-secrets/license",
        json!({"type": "GlobalSecret", "name": "license", "data": "c2VjcmV0"}),
    )
    .await;
}

fn details(body: &Value) -> &str {
    body["details"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn user_tokens_authenticate_and_the_default_rules_allow_reads_but_not_secrets() {
    let app = app_with(AuthSettings::default());
    seed(&app).await;
    let alice = user_token(&app, "alice", &["team-a"]).await;

    let (s, b) = call(&app, REMOTE, Some(&alice), "GET", "/meshes/a", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Refusals name the user, the groups, the action and the kind.
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&alice),
        "GET",
        "/meshes/a/secrets/db-password",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let text = details(&b);
    for part in [
        "\"alice\"",
        "team-a",
        "mesh-system:authenticated",
        "read Secret",
        "mesh \"a\"",
    ] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    let doc = json!({"type": "Mesh", "name": "c"});
    let (s, b) = call(&app, REMOTE, Some(&alice), "PUT", "/meshes/c", Some(doc)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(details(&b).contains("may not write Mesh"), "{b}");
    let (s, b) = call(&app, REMOTE, Some(&alice), "DELETE", "/meshes/a", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let body = json!({"name": "mallory", "groups": ["mesh-system:admin"]});
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&alice),
        "POST",
        "/tokens/user",
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(details(&b).contains("generate-user-token"), "{b}");
    let body = json!({"mesh": "a", "name": "web-1"});
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&alice),
        "POST",
        "/tokens/dataplane",
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        details(&b).contains("generate-dataplane-token in mesh \"a\""),
        "{b}"
    );

    // Secrets stay unreadable for users and anonymous callers through every path, lists too.
    for path in [
        "/meshes/a/secrets",
        "/secrets",
        "/global-secrets",
        "/global-secrets/license",
        "/global-secrets/user-token-signing-key",
        "/global-secrets/user-token-revocations",
    ] {
        for token in [Some(alice.as_str()), None] {
            let (s, b) = call(&app, REMOTE, token, "GET", path, None).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{path} {token:?}: {b}");
        }
    }
    let (s, b) = call(&app, REMOTE, None, "GET", "/meshes", None).await;
    assert_eq!(s, StatusCode::OK, "anonymous reads stay open: {b}");
    let (s, b) = call(&app, REMOTE, None, "GET", "/meshes/a/secrets", None).await;
    assert!(details(&b).contains("mesh-system:anonymous"), "{s} {b}");

    // A user token that names the admin group is an admin (only admins mint tokens).
    let ops = user_token(&app, "ops", &["mesh-system:admin"]).await;
    let (s, b) = call(&app, REMOTE, Some(&ops), "GET", "/meshes/a/secrets", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 1);

    // Invalid and forged tokens are refused, never taken as anonymous.
    for bad in [
        "not-a-token",
        &format!("{alice}x"),
        &alice[..alice.len() - 3],
    ] {
        let (s, b) = call(&app, REMOTE, Some(bad), "GET", "/meshes", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}: {b}");
    }
    let other = app_with(AuthSettings::default());
    let foreign = user_token(&other, "alice", &["mesh-system:admin"]).await;
    let (s, b) = call(&app, REMOTE, Some(&foreign), "GET", "/meshes", None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "another control plane's token: {b}"
    );
}

#[tokio::test]
async fn user_token_requests_are_checked_field_by_field() {
    let app = app_with(AuthSettings::default());
    let body = json!({"name": "", "groups": ["ok", ""], "validFor": "soon"});
    let (s, b) = call(
        &app,
        REMOTE,
        Some(ADMIN),
        "POST",
        "/tokens/user",
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields: Vec<&str> = b["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["name", "groups[1]", "validFor"], "{b}");
    // Nothing was minted, so no signing key was created either.
    let (s, _) = call(
        &app,
        REMOTE,
        Some(ADMIN),
        "GET",
        "/global-secrets/user-token-signing-key",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revoked_and_rotated_user_tokens_are_refused_on_the_next_request() {
    let app = app_with(AuthSettings::default());
    seed(&app).await;
    let alice = user_token(&app, "alice", &["team-a"]).await;
    let bob = user_token(&app, "bob", &[]).await;
    let carol = user_token(&app, "carol", &[]).await;
    for t in [&alice, &bob, &carol] {
        let (s, b) = call(&app, REMOTE, Some(t), "GET", "/meshes", None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    // A user cannot revoke; an admin revokes by token or by id.
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&bob),
        "POST",
        "/tokens/user/_revoke",
        Some(json!({"token": alice})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let b = admin(
        &app,
        "POST",
        "/tokens/user/_revoke",
        json!({"token": alice}),
    )
    .await;
    let jti = b["revoked"].as_str().expect("id").to_string();
    let (s, b) = call(&app, REMOTE, Some(&alice), "GET", "/meshes", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        details(&b).contains("revoked") && details(&b).contains(&jti),
        "{b}"
    );
    let b = admin(&app, "POST", "/tokens/user/_revoke", json!({"jti": jti})).await;
    assert_eq!(b["alreadyRevoked"], true);
    // The list is Kuma's GlobalSecret, readable by admins.
    let list = admin(
        &app,
        "GET",
        "/global-secrets/user-token-revocations",
        Value::Null,
    )
    .await;
    assert!(list["data"].is_string(), "{list}");
    // Bob is untouched; a bad revocation request names what is wrong and changes nothing.
    let (s, b) = call(
        &app,
        REMOTE,
        Some(ADMIN),
        "POST",
        "/tokens/user/_revoke",
        Some(json!({"token": "garbage"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["causes"][0]["field"], "token", "{b}");
    let (s, b) = call(
        &app,
        REMOTE,
        Some(ADMIN),
        "POST",
        "/tokens/user/_revoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = call(&app, REMOTE, Some(&bob), "GET", "/meshes", None).await;
    assert_eq!(s, StatusCode::OK);

    // The signing key is a system secret: not writable through the API, rotated explicitly,
    // which invalidates every user token it signed.
    let doc = json!({"type": "GlobalSecret", "name": "user-token-signing-key", "data": "eA=="});
    let (s, b) = call(
        &app,
        REMOTE,
        Some(ADMIN),
        "PUT",
        "/global-secrets/user-token-signing-key",
        Some(doc),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&bob),
        "POST",
        "/tokens/user/_rotate-signing-key",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    admin(&app, "POST", "/tokens/user/_rotate-signing-key", json!({})).await;
    for t in [&bob, &carol] {
        let (s, b) = call(&app, REMOTE, Some(t), "GET", "/meshes", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let dave = user_token(&app, "dave", &[]).await;
    let (s, _) = call(&app, REMOTE, Some(&dave), "GET", "/meshes", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn loopback_is_admin_by_default_and_anonymous_when_turned_off() {
    let on = app_with(AuthSettings::default());
    let doc = json!({"type": "Mesh", "name": "m"});
    let (s, b) = call(&on, LOOPBACK, None, "PUT", "/meshes/m", Some(doc.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let off = app_with(AuthSettings {
        loopback_admin: false,
        ..AuthSettings::default()
    });
    let (s, b) = call(&off, LOOPBACK, None, "PUT", "/meshes/m", Some(doc.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(details(&b).contains("mesh-system:anonymous"), "{b}");
    let (s, _) = call(&off, LOOPBACK, None, "GET", "/global-secrets", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&off, LOOPBACK, None, "GET", "/meshes", None).await;
    assert_eq!(s, StatusCode::OK, "anonymous reads as configured");
    let (s, b) = call(&off, LOOPBACK, Some(ADMIN), "PUT", "/meshes/m", Some(doc)).await;
    assert_eq!(s, StatusCode::CREATED, "the admin token still works: {b}");
}

#[tokio::test]
async fn a_rule_file_grants_groups_rights_per_kind_and_mesh() {
    let rules = RbacPolicy::parse(
        r#"
rules:
- groups: [team-a]
  actions: [read, write, generate-dataplane-token]
  meshes: [a]
  exceptKinds: [Secret]
- groups: [mesh-system:authenticated]
  actions: [read]
  kinds: [Mesh]
"#,
        "rules.yaml",
    )
    .expect("valid rules");
    let app = app_with(AuthSettings {
        loopback_admin: true,
        rbac: rules,
    });
    seed(&app).await;
    let alice = user_token(&app, "alice", &["team-a"]).await;
    let bob = user_token(&app, "bob", &["team-b"]).await;
    let timeout = |mesh: &str| {
        json!({"type": "MeshTimeout", "name": "t", "mesh": mesh, "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "20s"}}]}})
    };
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&alice),
        "PUT",
        "/meshes/a/meshtimeouts/t",
        Some(timeout("a")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&alice),
        "PUT",
        "/meshes/b/meshtimeouts/t",
        Some(timeout("b")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        details(&b).contains("write MeshTimeout in mesh \"b\""),
        "{b}"
    );
    assert!(
        details(&b).contains("rules.yaml"),
        "names where the rules come from: {b}"
    );
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&alice),
        "POST",
        "/tokens/dataplane",
        Some(json!({"mesh": "a", "name": "web-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = call(
        &app,
        REMOTE,
        Some(&alice),
        "POST",
        "/tokens/dataplane",
        Some(json!({"mesh": "b", "name": "web-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, REMOTE, Some(&alice), "GET", "/meshes/a/secrets", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "exceptKinds holds");

    // Bob only reads Meshes; the file replaced the defaults, so anonymous reads are gone.
    let (s, _) = call(&app, REMOTE, Some(&bob), "GET", "/meshes/a", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &app,
        REMOTE,
        Some(&bob),
        "GET",
        "/meshes/a/meshtimeouts",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = call(&app, REMOTE, None, "GET", "/meshes", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The admin token cannot be locked out by a file.
    let (s, _) = call(&app, REMOTE, Some(ADMIN), "GET", "/meshes/b/secrets", None).await;
    assert_eq!(s, StatusCode::OK);
}
