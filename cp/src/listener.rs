//! The accept loop every control-plane listener shares (REST API, xDS, KDS): one axum router
//! over HTTP/1.1 and HTTP/2 on one port, with TLS or without, and the limits that keep a slow or
//! hostile client from holding the control plane's connections:
//!
//! - a cap on open connections: one beyond it is closed at once, logged and counted;
//! - a handshake deadline: a connection that has not finished TLS (on a plain listener: sent its
//!   HTTP/1 request headers) in time is closed;
//! - an idle timeout: a connection with no request or stream in flight for that long is closed
//!   (a request counts until its response body is done, so a gRPC stream counts while open);
//! - HTTP/2 keepalive: a peer that has sent nothing for an interval is pinged, and its connection
//!   closed, ending its streams, when the ping is not answered in time. This is what notices a
//!   frozen zone or Envoy within seconds instead of when TCP gives up.
//!
//! Each request carries `axum::extract::ConnectInfo<SocketAddr>` with the client's address.
//! [`server_tls_config`] builds the TLS side (ring, ALPN h2 and http/1.1) from PEM text.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Keepalive;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate PEM holds no certificate: {0}")]
    Certificate(String),
    #[error("the private key PEM holds no usable key: {0}")]
    Key(String),
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS server configuration (ring provider, ALPN h2 and http/1.1) from PEM text.
pub fn server_tls_config(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How one listener serves its connections.
#[derive(Clone)]
pub struct ListenerSettings {
    /// The listener's name in logs and metrics: `api`, `xds`, `kds`.
    pub name: &'static str,
    /// TLS, or plain HTTP when `None`.
    pub tls: Option<Arc<ServerConfig>>,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// The setting that sets `max_connections`, named in the log line of a refusal.
    pub max_connections_setting: &'static str,
    /// HTTP/2 keepalive pings; none when `None`.
    pub keepalive: Option<Keepalive>,
    /// At shutdown, how long open connections get to finish their requests before they are cut.
    pub drain: Duration,
}

impl std::fmt::Debug for ListenerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSettings")
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

/// Connection metrics of every listener, by `listener` label.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    closed: IntCounterVec,
}

impl ConnectionMetrics {
    /// Registers the metrics (once per registry).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new("connections_open", "Open connections by listener"),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "Connections closed at accept because the listener was at its cap",
            ),
            &["listener"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "connections_timed_out_total",
                "Connections closed by the server for a timeout (handshake, idle)",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        Ok(Self {
            open,
            refused,
            closed,
        })
    }
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown` completes; then
/// stops accepting, asks open connections to finish (HTTP/2 GOAWAY, HTTP/1 close after the
/// current response) and cuts those still open after `settings.drain`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    settings: ListenerSettings,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    let name = settings.name;
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let refused = metrics.refused.with_label_values(&[name]);
    let mut refusals = RefusalLog::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, say: pause instead of spinning on the error.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(tcp);
                    refused.inc();
                    refusals.refused(&settings, peer);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let conn = Connection {
                    settings: settings.clone(),
                    metrics: metrics.clone(),
                    peer,
                    stop: stop_rx.clone(),
                };
                let app = app.clone();
                connections.spawn(async move {
                    conn.run(tcp, app).await;
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(settings.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// Logs refusals at the cap at most once a second, with how many there were since the last line.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    fn refused(&mut self, settings: &ListenerSettings, peer: SocketAddr) {
        self.since_last += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            listener = settings.name,
            %peer,
            refused = self.since_last,
            cap = settings.max_connections,
            "refused connections: the listener is at its cap of open connections ({})",
            settings.max_connections_setting
        );
        self.last = Some(Instant::now());
        self.since_last = 0;
    }
}

/// One accepted connection.
struct Connection {
    settings: Arc<ListenerSettings>,
    metrics: ConnectionMetrics,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, app: axum::Router) {
        let name = self.settings.name;
        let open = self.metrics.open.with_label_values(&[name]);
        open.inc();
        match self.settings.tls.clone() {
            None => self.serve_http(TokioIo::new(tcp), app).await,
            Some(tls) => {
                let handshake = tokio::time::timeout(
                    self.settings.handshake_timeout,
                    TlsAcceptor::from(tls).accept(tcp),
                );
                let stream = tokio::select! {
                    r = handshake => r,
                    _ = self.stop.wait_for(|s| *s) => Ok(Err(std::io::Error::other("shutting down"))),
                };
                match stream {
                    Ok(Ok(stream)) => self.serve_http(TokioIo::new(stream), app).await,
                    Ok(Err(e)) => {
                        tracing::debug!(listener = name, peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        self.timed_out("handshake");
                        tracing::debug!(
                            listener = name,
                            peer = %self.peer,
                            timeout = ?self.settings.handshake_timeout,
                            "closed a connection that did not complete its TLS handshake in time"
                        );
                    }
                }
            }
        }
        open.dec();
    }

    fn timed_out(&self, reason: &str) {
        self.metrics
            .closed
            .with_label_values(&[self.settings.name, reason])
            .inc();
    }

    async fn serve_http<I>(&self, io: TokioIo<I>, app: axum::Router)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let settings = self.settings.clone();
        let (in_flight, in_flight_rx) = watch::channel(0usize);
        let service = Tracked {
            app,
            in_flight: Arc::new(in_flight),
            peer: self.peer,
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.handshake_timeout);
        let mut http2 = builder.http2();
        http2.timer(TokioTimer::new());
        if let Some(k) = settings.keepalive {
            http2
                .keep_alive_interval(k.interval)
                .keep_alive_timeout(k.timeout);
        }
        let conn = builder.serve_connection(io, TowerToHyperService::new(service));
        tokio::pin!(conn);
        let idle = idle_for(in_flight_rx, settings.idle_timeout);
        tokio::pin!(idle);
        // Once asked to close, a connection gets this long to say goodbye (a frozen peer would
        // otherwise keep a GOAWAY unflushed until keepalive gives up).
        let mut closing: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut stop = self.stop.clone();
        let result = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                () = &mut idle, if closing.is_none() => {
                    self.timed_out("idle");
                    tracing::debug!(listener = settings.name, peer = %self.peer, timeout = ?settings.idle_timeout, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                }
                _ = stop.wait_for(|s| *s), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Box::pin(tokio::time::sleep(settings.drain)));
                }
                () = async { if let Some(s) = closing.as_mut() { s.await } }, if closing.is_some() => {
                    break Ok(());
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(listener = settings.name, peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

/// How long a connection closed for idleness gets to finish closing.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Resolves once no request has been in flight for `idle` (counting from now).
async fn idle_for(mut in_flight: watch::Receiver<usize>, idle: Duration) {
    loop {
        if *in_flight.borrow_and_update() == 0 {
            tokio::select! {
                () = tokio::time::sleep(idle) => return,
                changed = in_flight.changed() => if changed.is_err() {
                    return std::future::pending().await;
                },
            }
        } else if in_flight.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The router, counting each request as in flight until its response body is done or dropped.
#[derive(Clone)]
struct Tracked {
    app: axum::Router,
    in_flight: Arc<watch::Sender<usize>>,
    peer: SocketAddr,
}

impl tower::Service<http::Request<Incoming>> for Tracked {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let guard = InFlight::new(self.in_flight.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// One request in flight; counted down when dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn new(counter: Arc<watch::Sender<usize>>) -> Self {
        counter.send_modify(|n| *n += 1);
        Self(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct TrackedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Every wait of these tests is bounded by this.
    const LIMIT: Duration = Duration::from_secs(10);

    fn router() -> axum::Router {
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "late"
                }),
            )
    }

    fn settings(tls: Option<Arc<ServerConfig>>) -> ListenerSettings {
        ListenerSettings {
            name: "test",
            tls,
            handshake_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            max_connections: 100,
            max_connections_setting: "ATOLL_TEST_MAX_CONNECTIONS",
            keepalive: None,
            drain: Duration::ZERO,
        }
    }

    fn tls() -> (Arc<ServerConfig>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = crate::server_tls::load_or_generate(&crate::server_tls::ServerTlsSource {
            server: "test",
            setting_prefix: "ATOLL_TEST_TLS",
            cert_file: None,
            key_file: None,
            dir: dir.path().to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            trust_hint: "",
        })
        .expect("certificate");
        let config = server_tls_config(&generated.cert_chain_pem, &generated.key_pem).expect("tls");
        (config, dir)
    }

    struct Server {
        addr: SocketAddr,
        metrics: ConnectionMetrics,
        registry: Registry,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        async fn start(settings: ListenerSettings) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let registry = Registry::new();
            let metrics = ConnectionMetrics::register(&registry).expect("metrics");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(
                listener,
                router(),
                settings,
                metrics.clone(),
                async {
                    let _ = stopped.await;
                },
            ));
            Server {
                addr,
                metrics,
                registry,
                stop: Some(stop),
                task,
            }
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(LIMIT, &mut self.task)
                .await
                .expect("the listener stops in time")
                .expect("joined");
        }

        fn timed_out(&self, reason: &str) -> u64 {
            self.metrics
                .closed
                .with_label_values(&["test", reason])
                .get()
        }

        fn refused(&self) -> u64 {
            self.metrics.refused.with_label_values(&["test"]).get()
        }
    }

    /// Waits until the server closes `tcp` (EOF or reset); answers how long that took.
    async fn closed_by_server(tcp: &mut TcpStream) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        tokio::time::timeout(LIMIT, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the server closes the connection in time");
        started.elapsed()
    }

    /// One HTTP/1.1 request on a new connection; answers the response's status line.
    async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut response = Vec::new();
        tokio::time::timeout(LIMIT, tcp.read_to_end(&mut response))
            .await
            .map_err(|_| std::io::Error::other("no response in time"))??;
        let text = String::from_utf8_lossy(&response).into_owned();
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    #[tokio::test]
    async fn connections_that_never_start_tls_are_closed_after_the_handshake_timeout() {
        let (tls, _dir) = tls();
        let server = Server::start(settings(Some(tls))).await;
        let mut silent = Vec::new();
        for _ in 0..20 {
            silent.push(TcpStream::connect(server.addr).await.expect("connect"));
        }
        for tcp in &mut silent {
            let waited = closed_by_server(tcp).await;
            assert!(waited < Duration::from_secs(5), "{waited:?}");
        }
        assert_eq!(server.timed_out("handshake"), 20);
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &server.registry.gather(),
            &mut text,
        )
        .expect("metrics text");
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("connections_timed_out_total{listener=\"test\",reason=\"handshake\"} 20"),
            "{text}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn idle_connections_are_closed_but_a_request_in_flight_is_not() {
        let server = Server::start(ListenerSettings {
            // Longer than the idle timeout, so idleness is what closes these connections.
            handshake_timeout: Duration::from_secs(5),
            ..settings(None)
        })
        .await;
        // Connected, never a request.
        let mut silent = TcpStream::connect(server.addr).await.expect("connect");
        closed_by_server(&mut silent).await;
        // A keep-alive connection after its request was answered.
        let mut kept = TcpStream::connect(server.addr).await.expect("connect");
        kept.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("request");
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(LIMIT, kept.read(&mut buf))
            .await
            .expect("in time")
            .expect("response");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        closed_by_server(&mut kept).await;
        assert!(
            server.timed_out("idle") >= 2,
            "{}",
            server.timed_out("idle")
        );
        // A request taking twice the idle timeout is answered: it is not idleness.
        let status = get(server.addr, "/slow").await.expect("slow request");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once_and_clients_work_after() {
        let server = Server::start(ListenerSettings {
            max_connections: 3,
            // Long: the held connections stay until the test drops them.
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(60),
            ..settings(None)
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(server.addr).await.expect("connect"));
        }
        // Let the server accept them before the next one arrives.
        let deadline = Instant::now() + LIMIT;
        while server.metrics.open.with_label_values(&["test"]).get() < 3 {
            assert!(Instant::now() < deadline, "held connections accepted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut extra = TcpStream::connect(server.addr).await.expect("connect");
        let waited = closed_by_server(&mut extra).await;
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(server.refused(), 1);
        drop(held);
        // Once the held ones are gone, a client is served again.
        let deadline = Instant::now() + LIMIT;
        loop {
            match get(server.addr, "/").await {
                Ok(status) if status.starts_with("HTTP/1.1 200") => break,
                other => assert!(Instant::now() < deadline, "not served again: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn requests_carry_the_clients_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let metrics = ConnectionMetrics::register(&Registry::new()).expect("metrics");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, settings(None), metrics, async {
            let _ = stopped.await;
        }));
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut response = String::new();
        tokio::time::timeout(LIMIT, tcp.read_to_string(&mut response))
            .await
            .expect("in time")
            .expect("response");
        assert!(response.ends_with("127.0.0.1"), "{response}");
        let _ = stop.send(());
        let _ = tokio::time::timeout(LIMIT, task).await;
    }
}
