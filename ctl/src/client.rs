//! A small client for the control plane's REST API.

use serde::Deserialize;
use serde_json::Value;

use atoll_core::Kind;

#[derive(Debug, Deserialize)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

/// Why an API call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The control plane could not be reached.
    Unreachable { url: String, reason: String },
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

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { url, reason } => write!(
                f,
                "cannot reach the control plane at {url}: {reason} (set --api or ATOLL_API)"
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
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
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

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, Value), ClientError> {
        let resp = rb.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: root_cause(&e),
        })?;
        let status = resp.status().as_u16();
        for w in resp.headers().get_all(reqwest::header::WARNING) {
            if let Ok(text) = w.to_str() {
                let text = text
                    .strip_prefix("299 - ")
                    .unwrap_or(text)
                    .trim_matches('"');
                eprintln!("Warning: {text}");
            }
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::BadResponse(e.to_string()))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::BadResponse(format!("HTTP {status}, body is not JSON: {e}"))
            })?
        };
        if status >= 400 {
            let text = |k: &str| {
                body.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let causes = body
                .get("causes")
                .cloned()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default();
            return Err(ClientError::Api {
                status,
                title: text("title"),
                details: text("details"),
                causes,
            });
        }
        Ok((status, body))
    }

    pub async fn get(&self, kind: Kind, mesh: &str, name: &str) -> Result<Value, ClientError> {
        let url = format!("{}{}", self.base, Self::path(kind, mesh, Some(name)));
        let (_, body) = self
            .send(self.request(reqwest::Method::GET, &url), &url)
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
            let url = format!("{}{path}?offset={offset}&size=1000", self.base);
            let (_, body) = self
                .send(self.request(reqwest::Method::GET, &url), &url)
                .await?;
            let page = body
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| ClientError::BadResponse("a list without items".into()))?;
            offset += page.len() as u64;
            items.extend(page.iter().cloned());
            let done = page.is_empty() || body.get("next").is_none_or(Value::is_null);
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
        let url = format!("{}{}", self.base, Self::path(kind, mesh, Some(name)));
        let rb = self.request(reqwest::Method::PUT, &url).json(doc);
        let (status, _) = self.send(rb, &url).await?;
        Ok(status == 201)
    }

    /// GET of any API path, answered as JSON.
    pub async fn get_path(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let (_, body) = self
            .send(self.request(reqwest::Method::GET, &url), &url)
            .await?;
        Ok(body)
    }

    /// POST of a JSON body to an endpoint that answers plain text (tokens).
    pub async fn post_text(&self, path: &str, body: &Value) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .request(reqwest::Method::POST, &url)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: root_cause(&e),
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::BadResponse(e.to_string()))?;
        if status >= 400 {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let field = |k: &str| {
                body.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let causes = body
                .get("causes")
                .cloned()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default();
            return Err(ClientError::Api {
                status,
                title: field("title"),
                details: if field("details").is_empty() {
                    text
                } else {
                    field("details")
                },
                causes,
            });
        }
        Ok(text)
    }

    pub async fn delete(&self, kind: Kind, mesh: &str, name: &str) -> Result<(), ClientError> {
        let url = format!("{}{}", self.base, Self::path(kind, mesh, Some(name)));
        self.send(self.request(reqwest::Method::DELETE, &url), &url)
            .await?;
        Ok(())
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
