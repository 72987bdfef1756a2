//! A small client for the control plane's REST API.

use hyper::Method;
use serde_json::Value;

use atoll_api_types::{ErrorBody, ListPage};
use atoll_core::Kind;

use crate::transport::{Answer, Transport, TransportError, Trust};

pub use atoll_api_types::Cause;

/// Why an API call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The control plane could not be reached.
    Unreachable { url: String, reason: String },
    /// The TLS handshake failed, most often on a certificate this client does not trust.
    Untrusted { url: String, reason: String },
    /// The control plane answered with an error.
    Api {
        status: u16,
        title: String,
        details: String,
        causes: Vec<Cause>,
    },
    /// The answer was not what the API promises.
    BadResponse(String),
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The control plane answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { url, reason } => write!(
                f,
                "cannot reach the control plane at {url}: {reason} (set --api or ATOLL_API)"
            ),
            ClientError::Untrusted { url, reason } => write!(
                f,
                "the control plane at {url} could not be verified: {reason} (trust its CA with --ca-cert-file or ATOLL_API_CA_FILE, e.g. the control plane's DATA_DIR/api-tls/ca.pem; --insecure-skip-verify turns verification off)"
            ),
            ClientError::Api {
                status,
                title,
                details,
                ..
            } => write!(f, "{title}: {details} (HTTP {status})"),
            ClientError::BadResponse(s) => {
                write!(f, "unexpected answer from the control plane: {s}")
            }
        }
    }
}

pub struct ApiClient {
    base: String,
    token: Option<String>,
    transport: Transport,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>, trust: Trust) -> Result<Self, String> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            transport: Transport::new(base, trust)?,
        })
    }

    fn path(kind: Kind, mesh: &str, name: Option<&str>) -> String {
        let mut p = match kind {
            Kind::Mesh => "/meshes".to_string(),
            k if k.is_mesh_scoped() => format!("/meshes/{mesh}/{}", k.plural()),
            k => format!("/{}", k.plural()),
        };
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }

    /// One call; transport failures become `Unreachable` or `Untrusted`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let url = format!("{}{path}", self.base);
        self.transport
            .send(method, path, self.token.as_deref(), body)
            .await
            .map_err(|e| match e {
                TransportError::Unreachable(reason) => ClientError::Unreachable { url, reason },
                TransportError::Tls(reason) => ClientError::Untrusted { url, reason },
            })
    }

    /// A call answered with JSON; an error status becomes `ClientError::Api`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let answer = self.call(method, path, body).await?;
        let status = answer.status;
        for w in answer.headers.get_all(hyper::header::WARNING) {
            if let Ok(text) = w.to_str() {
                let text = text
                    .strip_prefix("299 - ")
                    .unwrap_or(text)
                    .trim_matches('"');
                eprintln!("Warning: {text}");
            }
        }
        let body: Value = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).map_err(|e| {
                ClientError::BadResponse(format!("HTTP {status}, body is not JSON: {e}"))
            })?
        };
        if status >= 400 {
            return Err(api_error(status, &answer.body));
        }
        Ok((status, body))
    }

    pub async fn get(&self, kind: Kind, mesh: &str, name: &str) -> Result<Value, ClientError> {
        let (_, body) = self
            .send(Method::GET, &Self::path(kind, mesh, Some(name)), None)
            .await?;
        Ok(body)
    }

    /// Every resource of a kind (in `mesh` for mesh-scoped kinds), following `next` links.
    pub async fn list_all(&self, kind: Kind, mesh: &str) -> Result<Vec<Value>, ClientError> {
        self.list_all_at(&Self::path(kind, mesh, None)).await
    }

    /// Every item of a paginated list at `path` (`{items, next}` pages).
    pub async fn list_all_at(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut offset = 0u64;
        loop {
            let page_path = format!("{path}?offset={offset}&size=1000");
            let (_, body) = self.send(Method::GET, &page_path, None).await?;
            let page: ListPage<Value> = serde_json::from_value(body)
                .map_err(|e| ClientError::BadResponse(format!("a list that is not a page: {e}")))?;
            offset += page.items.len() as u64;
            let done = page.items.is_empty() || page.next.is_none();
            items.extend(page.items);
            if done {
                return Ok(items);
            }
        }
    }

    /// Creates or updates; true when created.
    pub async fn put(
        &self,
        kind: Kind,
        mesh: &str,
        name: &str,
        doc: &Value,
    ) -> Result<bool, ClientError> {
        let (status, _) = self
            .send(Method::PUT, &Self::path(kind, mesh, Some(name)), Some(doc))
            .await?;
        Ok(status == 201)
    }

    /// GET of any API path, answered as JSON.
    pub async fn get_path(&self, path: &str) -> Result<Value, ClientError> {
        let (_, body) = self.send(Method::GET, path, None).await?;
        Ok(body)
    }

    /// POST of a JSON body to an endpoint that answers plain text (tokens).
    pub async fn post_text(&self, path: &str, body: &Value) -> Result<String, ClientError> {
        let answer = self.call(Method::POST, path, Some(body)).await?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        if answer.status >= 400 {
            return Err(api_error(answer.status, &answer.body));
        }
        Ok(text)
    }

    /// POST of a JSON body to an endpoint that answers JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let (_, body) = self.send(Method::POST, path, Some(body)).await?;
        Ok(body)
    }

    pub async fn delete(&self, kind: Kind, mesh: &str, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &Self::path(kind, mesh, Some(name)), None)
            .await?;
        Ok(())
    }
}

/// An error answer, read as the API's error body (`atoll_api_types::ErrorBody`).
fn api_error(status: u16, body: &[u8]) -> ClientError {
    let body = ErrorBody::parse(body);
    ClientError::Api {
        status,
        title: body.title,
        details: body.details,
        causes: body.causes,
    }
}
