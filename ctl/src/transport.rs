//! One HTTP/1.1 exchange per API call, over plain TCP (`http://`) or TLS (`https://`) with the
//! control plane's certificate verified: against `--ca-cert-file`, else the system's CA bundle;
//! never unverified unless `--insecure-skip-verify` says so.
//!
//! Done with hyper's low-level client over tokio-rustls (ring), as atoll-dp does: reqwest's
//! rustls features would pull rustls-platform-verifier and hyper-rustls into the build.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use atoll_identity::tls_client::ClientTrust;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a whole API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the system keeps its CA bundle (Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine/others);
/// `SSL_CERT_FILE` wins.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How the control plane's HTTPS certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only this CA (`--ca-cert-file`).
    CaFile(PathBuf),
    /// The system's CA bundle.
    SystemRoots,
    /// Nothing checked (`--insecure-skip-verify`).
    InsecureSkipVerify,
}

/// Why a call got no HTTP answer.
#[derive(Debug)]
pub enum TransportError {
    /// DNS, TCP, HTTP, or a timeout.
    Unreachable(String),
    /// The TLS handshake failed: most often a certificate this client does not trust.
    Tls(String),
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The control plane's API endpoint, ready to be called.
pub struct Transport {
    host: String,
    port: u16,
    authority: String,
    prefix: String,
    tls: Option<TlsConnector>,
}

impl Transport {
    /// Checks the URL (`http://` or `https://host[:port][/prefix]`) and sets up TLS for https.
    pub fn new(base: &str, trust: Trust) -> Result<Transport, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("--api {base:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "--api {base:?} must start with http:// or https://"
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("--api {base:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let tls = if https {
            Some(TlsConnector::from(Arc::new(client_config(&trust)?)))
        } else {
            None
        };
        Ok(Transport {
            host,
            port,
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// One request (`path_and_query` under the base URL's path) on a fresh connection.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Answer, TransportError> {
        match tokio::time::timeout(
            CALL_TIMEOUT,
            self.attempt(method, path_and_query, token, body),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(TransportError::Unreachable(format!(
                "no answer within {CALL_TIMEOUT:?}"
            ))),
        }
    }

    async fn attempt(
        &self,
        method: Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Answer, TransportError> {
        let unreachable = TransportError::Unreachable;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.prefix))
            .header(header::HOST, self.authority.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("atollctl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| unreachable("the token holds characters a header cannot".into()))?;
            request = request.header(header::AUTHORIZATION, value);
        }
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        let request = request
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;

        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| {
                    TransportError::Tls(format!("{:?} is not a TLS server name: {e}", self.host))
                })?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| TransportError::Tls(e.to_string()))?;
                exchange(stream, request).await
            }
            None => exchange(tcp, request).await,
        }
        .map_err(unreachable)
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<Answer, String>
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
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

fn read_roots(path: &Path, roots: &mut RootCertStore) -> Result<usize, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{}: holds no usable PEM certificate",
            path.display()
        ));
    }
    Ok(added)
}

fn system_roots() -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        if path.is_file() {
            read_roots(&path, &mut roots)?;
            return Ok(roots);
        }
    }
    Err(format!(
        "no system CA bundle found (SSL_CERT_FILE, {}): give the control plane's CA with --ca-cert-file",
        SYSTEM_BUNDLES.join(", ")
    ))
}

/// The rustls client configuration for a trust choice (ring only, HTTP/1.1 by ALPN).
fn client_config(trust: &Trust) -> Result<ClientConfig, String> {
    let trust = match trust {
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            read_roots(path, &mut roots)?;
            ClientTrust::Roots(roots)
        }
        Trust::SystemRoots => ClientTrust::Roots(system_roots()?),
        Trust::InsecureSkipVerify => ClientTrust::AnyCertificateInsecure,
    };
    atoll_identity::tls_client::client_config(trust).map_err(|e| format!("TLS set-up: {e}"))
}
