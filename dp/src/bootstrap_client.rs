//! The call to the control plane's `POST /bootstrap`: TLS set-up (a given CA only, or — with a
//! loud warning — no verification at all), one HTTP/1.1 exchange per attempt, and retries with
//! backoff while the control plane cannot be reached.
//!
//! Contract (JSON both ways):
//! - request: `{"mesh", "name", "proxyType": "sidecar"|"ingress"|"egress", "dataplane": <document>,
//!   "token", "version": {"atollDp", "envoy"?}, "adminPort"?}`
//! - 200: `{"bootstrap": <Envoy bootstrap object>}`
//! - error: `{"title", "details", "causes": [{"field", "message"}]}` with 401/403 for a refused
//!   token, 400 for an invalid dataplane. 5xx and 429 are retried like an unreachable control plane.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_api_types::ErrorBody;
use atoll_backoff::Backoff;
use atoll_identity::tls_client::ClientTrust;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The body of `POST /bootstrap`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRequest {
    /// Empty for zone ingresses and egresses, which belong to no mesh.
    pub mesh: String,
    pub name: String,
    pub proxy_type: String,
    /// The Dataplane (or ZoneIngress/ZoneEgress) document, as JSON.
    pub dataplane: Value,
    pub token: String,
    pub version: Versions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
}

/// Versions reported to the control plane.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub atoll_dp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy: Option<String>,
}

/// Why no bootstrap was obtained.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// No HTTP answer: DNS, connection, TLS or timeout. Retried.
    #[error("{0}")]
    Unreachable(String),
    /// 5xx or 429: the control plane is there but cannot answer now. Retried.
    #[error("the control plane answered {status}: {}", body.summary())]
    Unavailable { status: StatusCode, body: ErrorBody },
    /// 401/403.
    #[error("the control plane refused the dataplane token: {}", body.summary())]
    TokenRefused { status: StatusCode, body: ErrorBody },
    /// 400.
    #[error("the control plane rejected the dataplane: {}", body.summary())]
    DataplaneRejected { body: ErrorBody },
    /// Any other non-200 answer.
    #[error("the control plane answered {status}: {}{}", if body.title.is_empty() { String::new() } else { format!("{}: ", body.title) }, body.details)]
    Rejected { status: StatusCode, body: ErrorBody },
    /// A 200 that is not `{"bootstrap": {...}}`.
    #[error("the control plane's answer is not a bootstrap: {0}")]
    BadResponse(String),
    /// Still unreachable when the connect timeout ran out.
    #[error("could not reach the control plane at {address} within {after:?}: {last}")]
    GaveUp {
        address: String,
        after: Duration,
        last: Box<BootstrapError>,
    },
}

impl BootstrapError {
    /// Worth another attempt?
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BootstrapError::Unreachable(_) | BootstrapError::Unavailable { .. }
        )
    }

    /// The error as lines for an operator: the summary, then one line per cause.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let body = match self {
            BootstrapError::TokenRefused { body, .. }
            | BootstrapError::DataplaneRejected { body }
            | BootstrapError::Rejected { body, .. }
            | BootstrapError::Unavailable { body, .. } => Some(body),
            _ => None,
        };
        for c in body.map(|b| b.causes.as_slice()).unwrap_or_default() {
            if c.field.is_empty() {
                out.push(format!("  {}", c.message));
            } else {
                out.push(format!("  {}: {}", c.field, c.message));
            }
        }
        out
    }
}

/// How the control plane's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only certificates issued by these CAs (from `--ca-cert-file`).
    Ca(Vec<CertificateDer<'static>>),
    /// Any certificate: no verification (logged as a warning).
    AcceptAnyCertificateInsecure,
}

impl Trust {
    /// Loads the CA certificates of a PEM file.
    pub fn from_ca_file(path: &Path) -> Result<Trust, String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the CA certificate file {}: {e}",
                path.display()
            )
        })?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: holds no PEM certificate", path.display()));
        }
        Ok(Trust::Ca(certs))
    }
}

/// The control plane's bootstrap endpoint, ready to be called.
#[derive(Clone)]
pub struct ControlPlane {
    address: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ControlPlane {
    /// Checks the address (`https://host:port[/prefix]`; `http://` is accepted with a warning)
    /// and builds the TLS client.
    pub fn new(address: &str, trust: Trust) -> Result<ControlPlane, String> {
        let uri: Uri = address
            .parse()
            .map_err(|e| format!("--cp-address {address:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "--cp-address {address:?} must start with https:// (e.g. https://cp.example:5678)"
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("--cp-address {address:?} names no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let prefix = uri.path().trim_end_matches('/');
        let path = format!("{prefix}/bootstrap");
        let tls = if https {
            Some(TlsConnector::from(Arc::new(client_config(trust)?)))
        } else {
            tracing::warn!(
                "WARNING: --cp-address uses plain http: the dataplane token is sent unencrypted"
            );
            None
        };
        Ok(ControlPlane {
            address: address.to_string(),
            host,
            port,
            authority,
            path,
            tls,
        })
    }

    /// The address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// One attempt, bounded by `timeout`.
    pub async fn post_bootstrap_once(
        &self,
        request: &BootstrapRequest,
        timeout: Duration,
    ) -> Result<Value, BootstrapError> {
        match tokio::time::timeout(timeout, self.attempt(request)).await {
            Ok(r) => r,
            Err(_) => Err(BootstrapError::Unreachable(format!(
                "no answer from {}:{} within {timeout:?}",
                self.host, self.port
            ))),
        }
    }

    async fn attempt(&self, request: &BootstrapRequest) -> Result<Value, BootstrapError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| BootstrapError::BadResponse(format!("cannot encode the request: {e}")))?;
        let http_request = Request::post(self.path.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("atoll-dp/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| BootstrapError::BadResponse(format!("cannot build the request: {e}")))?;

        let target = format!("{}:{}", self.host, self.port);
        let addrs: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| BootstrapError::Unreachable(format!("cannot resolve {}: {e}", self.host)))?
            .collect();
        let mut last = format!("{} resolved to no address", self.host);
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {target} ({addr}): {e}"),
            }
        }
        let tcp = tcp.ok_or(BootstrapError::Unreachable(last))?;
        let _ = tcp.set_nodelay(true);

        let (status, body) = match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| {
                    BootstrapError::Unreachable(format!(
                        "{:?} is not a TLS server name: {e}",
                        self.host
                    ))
                })?;
                let stream = tls.connect(name, tcp).await.map_err(|e| {
                    let hint = atoll_identity::tls_error_hint(&e.to_string())
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    BootstrapError::Unreachable(format!(
                        "TLS handshake with {target} failed: {e}{hint}"
                    ))
                })?;
                exchange(stream, http_request).await
            }
            None => exchange(tcp, http_request).await,
        }
        .map_err(|e| {
            BootstrapError::Unreachable(format!("HTTP exchange with {target} failed: {e}"))
        })?;

        interpret(status, &body)
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

/// Turns an HTTP answer into the bootstrap or the error it means.
pub fn interpret(status: StatusCode, body: &[u8]) -> Result<Value, BootstrapError> {
    if status == StatusCode::OK {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| BootstrapError::BadResponse(format!("invalid JSON: {e}")))?;
        return match value {
            Value::Object(mut o) => match o.remove("bootstrap") {
                Some(b @ Value::Object(_)) => Ok(b),
                Some(_) => Err(BootstrapError::BadResponse(
                    "\"bootstrap\" is not an object".into(),
                )),
                None => Err(BootstrapError::BadResponse(
                    "no \"bootstrap\" field in the answer".into(),
                )),
            },
            _ => Err(BootstrapError::BadResponse(
                "the answer is not an object".into(),
            )),
        };
    }
    let body = ErrorBody::parse(body);
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            BootstrapError::TokenRefused { status, body }
        }
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            BootstrapError::DataplaneRejected { body }
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            BootstrapError::Unavailable { status, body }
        }
        _ => BootstrapError::Rejected { status, body },
    })
}

/// Calls `/bootstrap` until it answers, retrying what is retryable with backoff (250 ms doubling
/// up to 5 s) for at most `connect_timeout`.
pub async fn fetch_bootstrap(
    cp: &ControlPlane,
    request: &BootstrapRequest,
    connect_timeout: Duration,
) -> Result<Value, BootstrapError> {
    let started = Instant::now();
    let deadline = started + connect_timeout;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut attempt = 1u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Give each attempt a fair time even near the deadline, but never hang for long.
        let attempt_timeout = left.clamp(Duration::from_secs(2), Duration::from_secs(30));
        tracing::debug!(attempt, address = cp.address(), "POST /bootstrap");
        let error = match cp.post_bootstrap_once(request, attempt_timeout).await {
            Ok(bootstrap) => return Ok(bootstrap),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BootstrapError::GaveUp {
                address: cp.address().to_string(),
                after: connect_timeout,
                last: Box::new(error),
            });
        }
        let wait = backoff.next_delay().min(left);
        let mut note = String::new();
        let _ = write!(
            note,
            "retrying in {:.1}s ({:.0}s left of --cp-connect-timeout)",
            wait.as_secs_f64(),
            left.as_secs_f64().ceil()
        );
        tracing::warn!(attempt, "control plane not reachable yet: {error}; {note}");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// The rustls client configuration for a trust choice (ring only, HTTP/1.1 by ALPN).
pub fn client_config(trust: Trust) -> Result<ClientConfig, String> {
    let trust = match trust {
        Trust::Ca(certs) => {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c).map_err(|e| {
                    format!("the CA certificate file holds an unusable certificate: {e}")
                })?;
            }
            ClientTrust::Roots(roots)
        }
        Trust::AcceptAnyCertificateInsecure => ClientTrust::AnyCertificateInsecure,
    };
    atoll_identity::tls_client::client_config(trust).map_err(|e| format!("TLS set-up: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_200_carries_the_bootstrap() {
        let b = interpret(StatusCode::OK, br#"{"bootstrap": {"node": {"id": "x"}}}"#).expect("ok");
        assert_eq!(b, json!({"node": {"id": "x"}}));
        assert!(matches!(
            interpret(StatusCode::OK, b"{}"),
            Err(BootstrapError::BadResponse(_))
        ));
        assert!(matches!(
            interpret(StatusCode::OK, b"<html>"),
            Err(BootstrapError::BadResponse(_))
        ));
    }

    #[test]
    fn errors_are_classified_and_printed_with_causes() {
        let e = interpret(
            StatusCode::UNAUTHORIZED,
            br#"{"title": "Unauthorized", "details": "token expired"}"#,
        )
        .expect_err("refused");
        assert_eq!(
            e.lines(),
            vec!["the control plane refused the dataplane token: token expired"]
        );
        assert!(!e.is_retryable());

        let e = interpret(
            StatusCode::BAD_REQUEST,
            br#"{"title": "Bad Request", "details": "invalid dataplane", "causes": [{"field": "networking.address", "message": "must be defined"}]}"#,
        )
        .expect_err("rejected");
        assert_eq!(
            e.lines(),
            vec![
                "the control plane rejected the dataplane: invalid dataplane",
                "  networking.address: must be defined"
            ]
        );

        let e = interpret(StatusCode::SERVICE_UNAVAILABLE, b"starting").expect_err("unavailable");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("starting"));

        let e = interpret(StatusCode::NOT_FOUND, b"").expect_err("404");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("404"));
    }

    #[test]
    fn addresses_are_checked() {
        let cp = ControlPlane::new(
            "https://cp.example:5678/prefix/",
            Trust::AcceptAnyCertificateInsecure,
        )
        .expect("valid");
        assert_eq!(cp.path, "/prefix/bootstrap");
        assert_eq!(cp.port, 5678);
        assert_eq!(cp.authority, "cp.example:5678");
        let cp =
            ControlPlane::new("https://[::1]", Trust::AcceptAnyCertificateInsecure).expect("valid");
        assert_eq!((cp.host.as_str(), cp.port), ("::1", 443));
        assert!(ControlPlane::new("cp.example:5678", Trust::AcceptAnyCertificateInsecure).is_err());
        assert!(ControlPlane::new("ftp://cp", Trust::AcceptAnyCertificateInsecure).is_err());
    }

    #[test]
    fn the_request_has_the_documented_shape() {
        let r = BootstrapRequest {
            mesh: "default".into(),
            name: "web-1".into(),
            proxy_type: "sidecar".into(),
            dataplane: json!({"type": "Dataplane"}),
            token: "t".into(),
            version: Versions {
                atoll_dp: "0.1.0".into(),
                envoy: Some("1.40.0".into()),
            },
            admin_port: None,
        };
        assert_eq!(
            serde_json::to_value(&r).expect("encodes"),
            json!({
                "mesh": "default", "name": "web-1", "proxyType": "sidecar",
                "dataplane": {"type": "Dataplane"}, "token": "t",
                "version": {"atollDp": "0.1.0", "envoy": "1.40.0"}
            })
        );
    }
}
