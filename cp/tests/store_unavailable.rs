//! While PostgreSQL is away, the API answers 503 with `Retry-After` once the store timeout has
//! passed, instead of holding requests for a fixed 10 s. The store reaches the machine's real
//! PostgreSQL through a TCP relay the test cuts (the shared server itself is never stopped).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use atoll_cp::Mode;
use atoll_cp::api::{ApiState, router};
use atoll_cp::metrics::Metrics;
use atoll_store::{PostgresStore, SharedStore, StoreOptions};
use atoll_test_support::postgres::with_postgres_database;

/// Forwards connections from a local port to `target` until cut.
struct Relay {
    address: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let address = listener.local_addr().expect("relay address");
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tracked.lock().unwrap_or_else(|e| e.into_inner()).push(task);
            }
        });
        Relay {
            address,
            accept,
            connections,
        }
    }

    /// The database goes away: open connections drop and new ones are refused.
    fn cut(&self) {
        self.accept.abort();
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            c.abort();
        }
    }
}

/// `url` with its `host:port` replaced by `address`, and the address it named.
async fn through(url: &str, address: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (credentials, rest) = rest.rsplit_once('@').expect("credentials in the test URL");
    let (host_port, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let target = tokio::net::lookup_host(host_port)
        .await
        .expect("resolve the database")
        .next()
        .expect("an address");
    (format!("{scheme}://{credentials}@{address}/{tail}"), target)
}

/// The address of the database `url` names.
async fn database_address(url: &str) -> SocketAddr {
    through(url, SocketAddr::from(([127, 0, 0, 1], 0))).await.1
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn put_mesh(name: &str) -> Request<Body> {
    let mut req = Request::put(format!("/meshes/{name}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"type": "Mesh", "name": name}).to_string(),
        ))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_503_with_retry_after_within_the_store_timeout_while_the_database_is_away() {
    with_postgres_database("api_503_while_the_database_is_away", |url| async move {
        let relay = Relay::start(database_address(&url).await).await;
        let (relayed, _) = through(&url, relay.address).await;
        let store_timeout = Duration::from_millis(500);
        let store: SharedStore = Arc::new(
            PostgresStore::connect_with(
                &relayed,
                &StoreOptions {
                    timeout: store_timeout,
                },
            )
            .await
            .expect("connect through the relay"),
        );
        let app = router(Arc::new(ApiState {
            store,
            mode: Mode::Global,
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
        }));
        let (status, retry_after, body) = call(&app, put_mesh("before")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(retry_after, None);

        relay.cut();
        let started = Instant::now();
        let (status, retry_after, body) = call(&app, put_mesh("during")).await;
        let waited = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["title"], "Store unavailable", "{body}");
        assert_eq!(retry_after.as_deref(), Some("5"), "{body}");
        // Bounded by the setting (500 ms here), far from the 10 s it used to take; the margin
        // is for a loaded machine.
        assert!(
            waited < Duration::from_secs(5),
            "the write waited {waited:?} with a store timeout of {store_timeout:?}"
        );
        let (status, retry_after, _) = call(
            &app,
            Request::get("/meshes")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("5"));
    })
    .await;
}
