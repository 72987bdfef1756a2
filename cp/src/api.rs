//! The REST API, with Kuma's paths: `/meshes/{mesh}/{plural}/{name}` for mesh-scoped kinds,
//! `/{plural}/{name}` for global-scoped ones, lists with `offset`/`size` pagination, and `GET /`.
//!
//! Requests are routed by hand (one handler) so that every unknown kind or path gets an error that
//! names it, and so metrics carry a route template instead of raw paths.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use atoll_api_types::{Cause, ErrorBody, ListPage};
use atoll_core::format::parse_document;
use atoll_core::labels::{ORIGIN_GLOBAL, ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL};
use atoll_core::{Kind, Resource, ResourceKey, Scope, Violations};
use atoll_store::{ListFilter, SharedStore, StoreError};

use crate::auth::{Action, Identity};
use crate::config::Mode;
use crate::metrics::Metrics;
use crate::references::check_references;

/// Largest request body accepted when the router is built without a limit (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The body limit a router applies, kept in each request's extensions.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than the limit of {limit} bytes (ATOLL_MAX_BODY_SIZE)")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a request body of at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before anything is read; otherwise reading stops at the first byte past the limit,
/// so one request never holds more than `limit` bytes of body.
pub async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, BodyError> {
    use futures::StreamExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let title = match e {
            BodyError::TooLarge { .. } => "Request body too large",
            BodyError::Read(_) => "Bad request",
        };
        Self::new(e.status(), title, e.to_string())
    }
}
/// Page size when a list request gives none, and the largest accepted.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// What the API handlers share.
pub struct ApiState {
    pub store: SharedStore,
    pub mode: Mode,
    pub zone: String,
    pub instance_id: String,
    /// Bearer token of the bootstrap admin (`mesh-system:admin`).
    pub admin_token: String,
    /// Loopback-is-admin and the RBAC rules.
    pub auth: crate::auth::AuthSettings,
    pub metrics: Metrics,
    /// Live dataplane state, when this control plane serves proxies (zone).
    pub inspector: Arc<std::sync::OnceLock<Arc<dyn crate::extension::DataplaneInspector>>>,
    /// Live zone state and zone deletion, when this is a global control plane serving KDS.
    pub zone_inspector: Arc<std::sync::OnceLock<Arc<dyn crate::extension::ZoneInspector>>>,
    /// The global control plane a zone syncs with (`ATOLL_GLOBAL_ADDRESS`), for messages.
    pub global_address: Option<String>,
    /// The wall clock tokens are issued and verified by.
    pub clock: atoll_clock::SharedClock,
    /// Clock skew allowed on tokens' expiry (`ATOLL_TOKEN_CLOCK_LEEWAY`).
    pub token_leeway: chrono::TimeDelta,
}

/// Refuses changing a resource another control plane owns: on a zone, what came from global;
/// on global, what came from a zone. They are changed where they were created and synced here.
fn check_ownership(state: &ApiState, existing: &Resource) -> Result<(), ApiError> {
    let origin = existing.labels.get(ORIGIN_LABEL).map(String::as_str);
    let message = match (state.mode, origin) {
        (Mode::Zone, Some(ORIGIN_GLOBAL)) => format!(
            "{} is managed by the global control plane{}: change it there; it is synced to this zone",
            existing.key(),
            state
                .global_address
                .as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default()
        ),
        (Mode::Global, Some(ORIGIN_ZONE)) => format!(
            "{} is managed by zone {:?}: change it on that zone's control plane; it is synced to global",
            existing.key(),
            existing
                .labels
                .get(ZONE_LABEL)
                .map(String::as_str)
                .unwrap_or("?")
        ),
        _ => return Ok(()),
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Managed by another control plane",
        message,
    ))
}

/// The API as a router, so tests can call it without binding a socket; request bodies up to
/// [`DEFAULT_MAX_BODY_BYTES`].
pub fn router(state: Arc<ApiState>) -> Router {
    router_with_body_limit(state, DEFAULT_MAX_BODY_BYTES)
}

/// The API as a router accepting request bodies of at most `max_body_bytes`.
pub fn router_with_body_limit(state: Arc<ApiState>, max_body_bytes: usize) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(state)
        .layer(axum::Extension(BodyLimit(max_body_bytes)))
}

/// An API error: status plus the JSON body Kuma clients expect (`title`, `details`, `causes`).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    title: &'static str,
    details: String,
    causes: Vec<atoll_core::Violation>,
    /// Seconds a client should wait before trying again (`Retry-After`).
    retry_after: Option<u64>,
}

/// `Retry-After` of a 503 while the store is unavailable: long enough not to hammer a database
/// that is coming back, short enough for clients to notice it is back soon.
const STORE_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    fn new(status: StatusCode, title: &'static str, details: impl Into<String>) -> Self {
        Self {
            status,
            title,
            details: details.into(),
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn not_found(details: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", details)
    }

    fn bad_request(details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", details)
    }

    fn invalid(v: Violations) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Invalid resource",
            details: format!("{} violation(s): {v}", v.len()),
            causes: v.violations,
            retry_after: None,
        }
    }

    fn method_not_allowed(method: &Method, route: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            format!("{method} is not supported on {route}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => Self::not_found(e.to_string()),
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            StoreError::Backend(_) => {
                tracing::error!(error = %e, "store failure");
                Self {
                    retry_after: Some(STORE_RETRY_AFTER_SECS),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Store unavailable",
                        e.to_string(),
                    )
                }
            }
            StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "store failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Store unavailable",
                    e.to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            title: self.title.to_string(),
            details: self.details,
            causes: self
                .causes
                .into_iter()
                .map(|v| Cause {
                    field: v.field,
                    message: v.message,
                })
                .collect(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

/// A request's body, within the router's limit.
async fn request_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(DEFAULT_MAX_BODY_BYTES, |l| l.0);
    let (parts, body) = req.into_parts();
    Ok(read_body(&parts.headers, body, limit).await?)
}

/// The parsed target of a request.
#[derive(Debug)]
enum Target {
    Index,
    /// A list of one kind: in one mesh, or across meshes (`mesh` None).
    List {
        kind: Kind,
        mesh: Option<String>,
    },
    One {
        key: ResourceKey,
    },
    /// `POST /tokens/dataplane`.
    DataplaneToken,
    /// `POST /tokens/zone` (global control plane).
    ZoneToken,
    /// `POST /tokens/user`.
    UserToken,
    /// `POST /tokens/user/_revoke` (`{"jti"}` or `{"token"}`).
    RevokeUserToken,
    /// `POST /tokens/dataplane/_rotate-signing-key` (`{"mesh": ...}`) or
    /// `POST /tokens/zone/_rotate-signing-key` (global) or `POST /tokens/user/_rotate-signing-key`.
    RotateSigningKey {
        which: SigningKeyOf,
    },
    /// `GET /zones/_overview` (every zone) or `GET /zones/{name}/_overview` (one).
    ZoneOverview {
        name: Option<String>,
    },
    /// `GET /meshes/{mesh}/dataplanes/_overview`.
    Overview {
        mesh: String,
    },
    /// `GET /meshes/{mesh}/dataplanes/{name}/_config|_rules`.
    Inspect {
        mesh: String,
        name: String,
        what: InspectWhat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigningKeyOf {
    Dataplane,
    Zone,
    User,
}

#[derive(Debug, Clone, Copy)]
enum InspectWhat {
    Config,
    Rules,
}

async fn handle(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (route, response) = match route(&path) {
        Ok((route, target)) => {
            let response = serve(&state, req, &method, route, target).await;
            (route, response.unwrap_or_else(|e| e.into_response()))
        }
        Err(e) => ("unknown", e.into_response()),
    };
    let status = response.status().as_u16();
    state
        .metrics
        .observe_api(method.as_str(), route, status, started.elapsed());
    tracing::debug!(%method, %path, status, elapsed_us = started.elapsed().as_micros() as u64, "api request");
    response
}

fn route(path: &str) -> Result<(&'static str, Target), ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let kind_of = |plural: &str| {
        Kind::from_plural(plural).ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown resource type {plural:?}; known: {}",
                Kind::ALL
                    .iter()
                    .map(|k| k.plural())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    Ok(match segments.as_slice() {
        [] => ("/", Target::Index),
        ["tokens", "dataplane"] => ("/tokens/dataplane", Target::DataplaneToken),
        ["tokens", "zone"] => ("/tokens/zone", Target::ZoneToken),
        ["tokens", "user"] => ("/tokens/user", Target::UserToken),
        ["tokens", "user", "_revoke"] => ("/tokens/user/_revoke", Target::RevokeUserToken),
        ["tokens", "dataplane", "_rotate-signing-key"] => (
            "/tokens/dataplane/_rotate-signing-key",
            Target::RotateSigningKey {
                which: SigningKeyOf::Dataplane,
            },
        ),
        ["tokens", "zone", "_rotate-signing-key"] => (
            "/tokens/zone/_rotate-signing-key",
            Target::RotateSigningKey {
                which: SigningKeyOf::Zone,
            },
        ),
        ["tokens", "user", "_rotate-signing-key"] => (
            "/tokens/user/_rotate-signing-key",
            Target::RotateSigningKey {
                which: SigningKeyOf::User,
            },
        ),
        ["zones", "_overview"] => ("/zones/_overview", Target::ZoneOverview { name: None }),
        ["zones", name, "_overview"] => (
            "/zones/{name}/_overview",
            Target::ZoneOverview {
                name: Some(name.to_string()),
            },
        ),
        ["meshes", mesh, "dataplanes", "_overview"] => (
            "/meshes/{mesh}/dataplanes/_overview",
            Target::Overview {
                mesh: mesh.to_string(),
            },
        ),
        [
            "meshes",
            mesh,
            "dataplanes",
            name,
            what @ ("_config" | "_rules"),
        ] => (
            if *what == "_config" {
                "/meshes/{mesh}/dataplanes/{name}/_config"
            } else {
                "/meshes/{mesh}/dataplanes/{name}/_rules"
            },
            Target::Inspect {
                mesh: mesh.to_string(),
                name: name.to_string(),
                what: if *what == "_config" {
                    InspectWhat::Config
                } else {
                    InspectWhat::Rules
                },
            },
        ),
        ["meshes"] => (
            "/meshes",
            Target::List {
                kind: Kind::Mesh,
                mesh: None,
            },
        ),
        ["meshes", mesh] => (
            "/meshes/{name}",
            Target::One {
                key: ResourceKey::global(Kind::Mesh, *mesh),
            },
        ),
        ["meshes", mesh, plural] => {
            let kind = kind_of(plural)?;
            if kind.scope() != Scope::Mesh {
                return Err(ApiError::not_found(format!(
                    "{kind} is not scoped to a mesh: use /{plural}"
                )));
            }
            (
                "/meshes/{mesh}/{kind}",
                Target::List {
                    kind,
                    mesh: Some(mesh.to_string()),
                },
            )
        }
        ["meshes", mesh, plural, name] => {
            let kind = kind_of(plural)?;
            if kind.scope() != Scope::Mesh {
                return Err(ApiError::not_found(format!(
                    "{kind} is not scoped to a mesh: use /{plural}/{name}"
                )));
            }
            (
                "/meshes/{mesh}/{kind}/{name}",
                Target::One {
                    key: ResourceKey::new(kind, *mesh, *name),
                },
            )
        }
        [plural] => {
            let kind = kind_of(plural)?;
            ("/{kind}", Target::List { kind, mesh: None })
        }
        [plural, name] => {
            let kind = kind_of(plural)?;
            if kind.scope() == Scope::Mesh {
                return Err(ApiError::not_found(format!(
                    "{kind} belongs to a mesh: use /meshes/{{mesh}}/{plural}/{name}"
                )));
            }
            (
                "/{kind}/{name}",
                Target::One {
                    key: ResourceKey::global(kind, *name),
                },
            )
        }
        _ => return Err(ApiError::not_found(format!("no such path: {path}"))),
    })
}

async fn serve(
    state: &ApiState,
    req: Request,
    method: &Method,
    route: &'static str,
    target: Target,
) -> ApiResult {
    let presented = req.headers().get(header::AUTHORIZATION).cloned();
    let who = authenticate(state, presented, peer(&req)).await?;
    let allow = |action: Action, kind: Option<Kind>, mesh: Option<&str>| {
        authorize(state, &who, action, kind, mesh)
    };
    match (method, target) {
        (&Method::GET, Target::Index) => Ok(index(state)),
        (&Method::GET, Target::List { kind, mesh }) => {
            allow(Action::Read, Some(kind), mesh.as_deref())?;
            list(
                state,
                req.headers(),
                req.uri(),
                kind,
                mesh,
                &Resource::to_value,
            )
            .await
        }
        (&Method::GET, Target::ZoneOverview { name }) => {
            allow(Action::Read, Some(Kind::Zone), None)?;
            if state.mode != Mode::Global {
                return Err(ApiError::bad_request(format!(
                    "this is the control plane of zone {:?}: zone overviews are served by the global control plane{}",
                    state.zone,
                    state
                        .global_address
                        .as_deref()
                        .map(|a| format!(" ({a})"))
                        .unwrap_or_default()
                )));
            }
            let render = |r: &Resource| zone_overview(state, r);
            match name {
                None => list(state, req.headers(), req.uri(), Kind::Zone, None, &render).await,
                Some(name) => {
                    let key = ResourceKey::global(Kind::Zone, &name);
                    match state.store.get(&key).await? {
                        Some(zone) => Ok(axum::Json(render(&zone)).into_response()),
                        None => Err(ApiError::not_found(format!("zone {name:?} not found"))),
                    }
                }
            }
        }
        (&Method::GET, Target::One { key }) => {
            allow(Action::Read, Some(key.kind), mesh_of(&key))?;
            match state.store.get(&key).await? {
                Some(res) => Ok(axum::Json(res.to_value()).into_response()),
                None => Err(ApiError::not_found(format!("{key} not found"))),
            }
        }
        (&Method::PUT | &Method::DELETE, Target::One { key })
            if crate::tokens::system_secret(&key).is_some() =>
        {
            allow(Action::Write, Some(key.kind), mesh_of(&key))?;
            let what = crate::tokens::system_secret(&key).unwrap_or_default();
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "System secret",
                format!(
                    "{key} is {what}: the control plane manages it, it cannot be written or deleted through the API"
                ),
            ))
        }
        (&Method::POST, Target::RotateSigningKey { which }) => {
            if which != SigningKeyOf::Dataplane {
                allow(Action::Write, Some(Kind::GlobalSecret), None)?;
            }
            let body = request_body(req).await?;
            rotate_signing_key(state, &who, which, &body).await
        }
        (&Method::PUT, Target::One { key }) => {
            allow(Action::Write, Some(key.kind), mesh_of(&key))?;
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = request_body(req).await?;
            put(state, key, &content_type, &body).await
        }
        (&Method::DELETE, Target::One { key }) => {
            allow(Action::Write, Some(key.kind), mesh_of(&key))?;
            delete(state, key).await
        }
        (&Method::POST, Target::DataplaneToken) => {
            let body = request_body(req).await?;
            dataplane_token(state, &who, &body).await
        }
        (&Method::POST, Target::UserToken) => {
            allow(Action::GenerateUserToken, None, None)?;
            let body = request_body(req).await?;
            user_token(state, &who, &body).await
        }
        (&Method::POST, Target::RevokeUserToken) => {
            allow(Action::Write, Some(Kind::GlobalSecret), None)?;
            let body = request_body(req).await?;
            revoke_user_token(state, &who, &body).await
        }
        (&Method::POST, Target::ZoneToken) => {
            allow(Action::GenerateZoneToken, None, None)?;
            if state.mode != Mode::Global {
                return Err(ApiError::bad_request(
                    "zone tokens are issued by the global control plane: call POST /tokens/zone there",
                ));
            }
            let body = request_body(req).await?;
            zone_token(state, &body).await
        }
        (&Method::GET, Target::Overview { mesh }) => {
            allow(Action::Read, Some(Kind::Dataplane), Some(&mesh))?;
            ensure_mesh_exists(state, &mesh).await?;
            let inspector = inspector(state)?;
            Ok(axum::Json(inspector.overview(&mesh).await).into_response())
        }
        (&Method::GET, Target::Inspect { mesh, name, what }) => {
            allow(Action::Read, Some(Kind::Dataplane), Some(&mesh))?;
            let inspector = inspector(state)?;
            let found = match what {
                InspectWhat::Config => inspector.config(&mesh, &name).await,
                InspectWhat::Rules => inspector.rules(&mesh, &name).await,
            };
            found.map(|v| axum::Json(v).into_response()).ok_or_else(|| {
                ApiError::not_found(format!(
                    "dataplane {name:?} in mesh {mesh:?} is not known to this control plane"
                ))
            })
        }
        (m, _) => Err(ApiError::method_not_allowed(m, route)),
    }
}

fn index(state: &ApiState) -> Response {
    let mut body = json!({
        "product": "Atoll",
        "tagline": "Atoll",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": state.mode.as_str(),
        "instanceId": state.instance_id,
        "store": state.store.backend_name(),
    });
    if state.mode == Mode::Zone {
        body["zone"] = Value::String(state.zone.clone());
    }
    axum::Json(body).into_response()
}

/// Kuma's `ZoneOverview` of a Zone: the resource's metadata, `zone.enabled`, and the live
/// `zoneInsight` (an insight without subscriptions when no KDS server reports on zones).
fn zone_overview(state: &ApiState, zone: &Resource) -> Value {
    let insight = match state.zone_inspector.get() {
        Some(inspector) => inspector.insight(&zone.name),
        None => json!({"online": false, "subscriptions": []}),
    };
    let stored = zone.to_value();
    let mut body = json!({"type": "ZoneOverview", "name": zone.name});
    for field in ["labels", "creationTime", "modificationTime"] {
        if let Some(v) = stored.get(field) {
            body[field] = v.clone();
        }
    }
    body["zone"] = json!({"enabled": zone_enabled(zone)});
    body["zoneInsight"] = insight;
    body
}

/// A Zone is enabled unless it says `enabled: false`.
pub fn zone_enabled(zone: &Resource) -> bool {
    zone.spec.get("enabled").and_then(Value::as_bool) != Some(false)
}

async fn list(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    kind: Kind,
    mesh: Option<String>,
    render: &(dyn Fn(&Resource) -> Value + Sync),
) -> ApiResult {
    let mut offset = 0u64;
    let mut size = DEFAULT_PAGE_SIZE;
    let mut name_prefix = None;
    // Form decoding (`+` is a space, invalid UTF-8 replaced), as axum's `Query` does it.
    let axum::extract::Query(query) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    for (k, v) in query {
        match k.as_str() {
            "offset" => {
                offset = v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "offset: must be a non-negative integer (got {v:?})"
                    ))
                })?
            }
            "size" => {
                size = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("size: must be a positive integer (got {v:?})"))
                })?;
                if size == 0 || size > MAX_PAGE_SIZE {
                    return Err(ApiError::bad_request(format!(
                        "size: must be between 1 and {MAX_PAGE_SIZE} (got {size})"
                    )));
                }
            }
            "name" | "namePrefix" => name_prefix = Some(v),
            _ => {}
        }
    }
    if let Some(m) = &mesh {
        ensure_mesh_exists(state, m).await?;
    }
    let page = state
        .store
        .list(&ListFilter {
            kind,
            mesh,
            name_prefix,
            offset,
            limit: Some(size),
        })
        .await?;
    let end = offset + page.items.len() as u64;
    let next = (end < page.total).then(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}{}?offset={end}&size={size}", uri.path())
    });
    let items: Vec<Value> = page.items.iter().map(render).collect();
    Ok(axum::Json(ListPage {
        total: page.total,
        items,
        next,
    })
    .into_response())
}

fn inspector(state: &ApiState) -> Result<&Arc<dyn crate::extension::DataplaneInspector>, ApiError> {
    state.inspector.get().ok_or_else(|| {
        ApiError::not_found(format!(
            "this {} control plane serves no proxies: inspect dataplanes on their zone control plane",
            state.mode.as_str()
        ))
    })
}

/// `POST /tokens/dataplane` with `{"mesh", "name", "validFor"?, "type"?}`: answers the token as
/// plain text, as Kuma does.
async fn rotate_signing_key(
    state: &ApiState,
    who: &Identity,
    which: SigningKeyOf,
    body: &[u8],
) -> ApiResult {
    let key = if which == SigningKeyOf::Zone {
        if state.mode != Mode::Global {
            return Err(ApiError::bad_request(
                "the zone-token signing key is global's: rotate it there",
            ));
        }
        ResourceKey::global(Kind::GlobalSecret, crate::tokens::ZONE_SIGNING_KEY_SECRET)
    } else if which == SigningKeyOf::User {
        ResourceKey::global(Kind::GlobalSecret, crate::tokens::USER_SIGNING_KEY_SECRET)
    } else {
        let doc: Value = if body.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?
        };
        let mesh = doc
            .get("mesh")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        authorize(state, who, Action::Write, Some(Kind::Secret), Some(&mesh))?;
        ensure_mesh_exists(state, &mesh).await?;
        ResourceKey::new(Kind::Secret, mesh, crate::tokens::SIGNING_KEY_SECRET)
    };
    let kid = crate::tokens::rotate_signing_key(state.store.as_ref(), key.clone())
        .await
        .map_err(|e| token_failure(e, "Rotation failed"))?;
    Ok(axum::Json(json!({"rotated": key.to_string(), "kid": kid})).into_response())
}

/// The `tags` a dataplane token binds: `{"kuma.io/service": ["backend"]}` (a single string is
/// one value), as kumactl's `--tag`.
fn token_tags(
    value: Option<&Value>,
    at: &atoll_core::FieldPath,
    v: &mut Violations,
) -> Option<std::collections::BTreeMap<String, Vec<String>>> {
    let object = match value {
        None | Some(Value::Null) => return None,
        Some(Value::Object(o)) => o,
        Some(_) => {
            v.add(at, "must be an object of tag names to values");
            return None;
        }
    };
    let mut out = std::collections::BTreeMap::new();
    for (tag, values) in object {
        let values: Vec<String> = match values {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if tag.is_empty() || values.is_empty() || values.iter().any(String::is_empty) {
            v.add(
                &at.key(tag),
                "must give the tag at least one non-empty value",
            );
            continue;
        }
        out.insert(tag.clone(), values);
    }
    (!out.is_empty()).then_some(out)
}

async fn dataplane_token(state: &ApiState, who: &Identity, body: &[u8]) -> ApiResult {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
    let root = atoll_core::FieldPath::root();
    let mut v = Violations::new();
    let text = |field: &str| doc.get(field).and_then(Value::as_str).map(str::to_string);
    let mesh = text("mesh").unwrap_or_else(|| "default".into());
    let name = text("name").unwrap_or_default();
    if name.is_empty() {
        v.add(
            &root.field("name"),
            "must be the name of the dataplane the token is for",
        );
    }
    let valid_for = match text("validFor") {
        None => std::time::Duration::from_secs(24 * 3600),
        Some(d) => match atoll_core::types::parse_go_duration(&d) {
            Some(d) if !d.is_zero() => d,
            _ => {
                v.add(
                    &root.field("validFor"),
                    format!("must be a positive duration such as 24h (got {d:?})"),
                );
                std::time::Duration::ZERO
            }
        },
    };
    let proxy_type = text("type").filter(|t| !t.is_empty() && t != "dataplane");
    let tags = token_tags(doc.get("tags"), &root.field("tags"), &mut v);
    authorize(
        state,
        who,
        Action::GenerateDataplaneToken,
        None,
        Some(&mesh),
    )?;
    if !v.is_empty() {
        return Err(ApiError::invalid(v));
    }
    ensure_mesh_exists(state, &mesh).await?;
    let token = crate::tokens::issue_dataplane_token(
        state.store.as_ref(),
        &mesh,
        &name,
        proxy_type,
        tags,
        valid_for,
        state.clock.now(),
    )
    .await
    .map_err(|e| token_failure(e, "Token not issued"))?;
    tracing::info!(%mesh, %name, "issued a dataplane token");
    Ok(([(header::CONTENT_TYPE, "text/plain")], token).into_response())
}

/// `POST /tokens/user` with `{"name", "groups"?, "validFor"?}` (kumactl's `generate
/// user-token --name --group --valid-for`): answers the token as plain text.
async fn user_token(state: &ApiState, who: &Identity, body: &[u8]) -> ApiResult {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
    let root = atoll_core::FieldPath::root();
    let mut v = Violations::new();
    let name = match doc.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => {
            v.add(&root.field("name"), "must name the user the token is for");
            String::new()
        }
    };
    let mut groups = Vec::new();
    match doc.get("groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(g) if !g.trim().is_empty() => groups.push(g.to_string()),
                    _ => v.add(
                        &root.field("groups").index(i),
                        "must be a non-empty group name",
                    ),
                }
            }
        }
        Some(_) => v.add(&root.field("groups"), "must be a list of group names"),
    }
    let valid_for = match doc.get("validFor") {
        None => std::time::Duration::from_secs(24 * 3600),
        Some(d) => match d.as_str().and_then(atoll_core::types::parse_go_duration) {
            Some(d) if !d.is_zero() => d,
            _ => {
                v.add(
                    &root.field("validFor"),
                    format!("must be a positive duration such as 24h (got {d})"),
                );
                std::time::Duration::ZERO
            }
        },
    };
    if !v.is_empty() {
        return Err(ApiError::invalid(v));
    }
    let (token, jti) = crate::tokens::issue_user_token(
        state.store.as_ref(),
        &name,
        groups.clone(),
        valid_for,
        state.clock.now(),
    )
    .await
    .map_err(|e| token_failure(e, "Token not issued"))?;
    tracing::info!(user = %name, ?groups, %jti, issued_by = %who.name, "issued a user token");
    Ok(([(header::CONTENT_TYPE, "text/plain")], token).into_response())
}

/// `POST /tokens/user/_revoke` with `{"jti"}` or `{"token"}`: adds the token's id to the
/// GlobalSecret `user-token-revocations`, after which the token is refused on every request.
async fn revoke_user_token(state: &ApiState, who: &Identity, body: &[u8]) -> ApiResult {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
    let root = atoll_core::FieldPath::root();
    let text = |f: &str| doc.get(f).and_then(Value::as_str).filter(|t| !t.is_empty());
    let jti = match (text("jti"), text("token")) {
        (Some(jti), None) => jti.to_string(),
        (None, Some(token)) => {
            let keys = crate::tokens::user_verification_keys(state.store.as_ref())
                .await
                .map_err(token_store_error)?;
            atoll_identity::verify_user_token(token, &keys, state.clock.now(), state.token_leeway)
                .map_err(|e| {
                    let mut v = Violations::new();
                    v.add(
                        &root.field("token"),
                        format!("is not a valid user token of this control plane: {e}"),
                    );
                    ApiError::invalid(v)
                })?
                .jti
        }
        _ => {
            let mut v = Violations::new();
            v.add(
                &root,
                "give either jti (the token's id) or token (the token itself)",
            );
            return Err(ApiError::invalid(v));
        }
    };
    let added = crate::tokens::revoke_user_token(state.store.as_ref(), &jti)
        .await
        .map_err(token_store_error)?;
    tracing::info!(%jti, revoked_by = %who.name, added, "revoked a user token");
    Ok(axum::Json(json!({"revoked": jti, "alreadyRevoked": !added})).into_response())
}

/// `POST /tokens/zone` with `{"zone", "scope": "cp"|"ingress"|"egress" (or a one-item list, as
/// Kuma writes it), "validFor"?}`: answers the token as plain text.
async fn zone_token(state: &ApiState, body: &[u8]) -> ApiResult {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
    let root = atoll_core::FieldPath::root();
    let mut v = Violations::new();
    let zone = doc
        .get("zone")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if zone.is_empty() {
        v.add(&root.field("zone"), "must name the zone the token is for");
    } else {
        atoll_core::name::check_mesh_name(&zone, &root.field("zone"), &mut v);
    }
    let scope_text = match doc.get("scope") {
        None => Some("cp".to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().map(str::to_string),
        Some(_) => None,
    };
    let scope = match scope_text.as_deref() {
        Some("cp") => Some(atoll_identity::Scope::Cp),
        Some("ingress") => Some(atoll_identity::Scope::Ingress),
        Some("egress") => Some(atoll_identity::Scope::Egress),
        other => {
            v.add(
                &root.field("scope"),
                format!("must be one of: cp, ingress, egress (got {other:?})"),
            );
            None
        }
    };
    let valid_for = match doc.get("validFor").and_then(Value::as_str) {
        None => std::time::Duration::from_secs(365 * 24 * 3600),
        Some(d) => match atoll_core::types::parse_go_duration(d) {
            Some(d) if !d.is_zero() => d,
            _ => {
                v.add(
                    &root.field("validFor"),
                    format!("must be a positive duration such as 720h (got {d:?})"),
                );
                std::time::Duration::ZERO
            }
        },
    };
    let (Some(scope), true) = (scope, v.is_empty()) else {
        return Err(ApiError::invalid(v));
    };
    let token = crate::tokens::issue_zone_token(
        state.store.as_ref(),
        &zone,
        scope,
        valid_for,
        state.clock.now(),
    )
    .await
    .map_err(|e| token_failure(e, "Token not issued"))?;
    tracing::info!(%zone, ?scope, "issued a zone token");
    Ok(([(header::CONTENT_TYPE, "text/plain")], token).into_response())
}

async fn ensure_mesh_exists(state: &ApiState, mesh: &str) -> Result<(), ApiError> {
    match state
        .store
        .get(&ResourceKey::global(Kind::Mesh, mesh))
        .await?
    {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("mesh {mesh:?} does not exist"))),
    }
}

async fn put(state: &ApiState, key: ResourceKey, content_type: &str, body: &[u8]) -> ApiResult {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body must be UTF-8 JSON or YAML"))?;
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let known = [
        "",
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/plain",
    ];
    if !known.contains(&ct) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("send application/json or application/yaml, not {ct}"),
        ));
    }
    let mut doc = parse_document(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The path names the resource; the body may leave out what the path says.
    if let Value::Object(obj) = &mut doc {
        obj.entry("type")
            .or_insert_with(|| Value::String(key.kind.name().into()));
        obj.entry("name")
            .or_insert_with(|| Value::String(key.name.clone()));
        if key.kind.is_mesh_scoped() {
            obj.entry("mesh")
                .or_insert_with(|| Value::String(key.mesh.clone()));
        }
    }
    let (resource, warnings) =
        Resource::from_value_with_warnings(doc).map_err(ApiError::invalid)?;
    let mut v = Violations::new();
    let root = atoll_core::FieldPath::root();
    if resource.kind != key.kind {
        v.add(
            &root.field("type"),
            format!("is {} but the path is for {}", resource.kind, key.kind),
        );
    }
    if resource.name != key.name {
        v.add(
            &root.field("name"),
            format!("is {:?} but the path names {:?}", resource.name, key.name),
        );
    }
    if key.kind.is_mesh_scoped() && resource.mesh != key.mesh {
        v.add(
            &root.field("mesh"),
            format!(
                "is {:?} but the path names mesh {:?}",
                resource.mesh, key.mesh
            ),
        );
    }
    if !v.is_empty() {
        return Err(ApiError::invalid(v));
    }
    check_references(state.store.as_ref(), &resource)
        .await?
        .into_result()
        .map_err(ApiError::invalid)?;

    let expected = resource.version;
    let existing = state.store.get(&key).await?;
    if let Some(current) = &existing {
        check_ownership(state, current)?;
    }
    let mut warnings = warnings;
    warnings.extend(
        crate::change_warnings::change_warnings(state.store.as_ref(), existing.as_ref(), &resource)
            .await?,
    );
    let (stored, created) = match existing {
        Some(current) => {
            let expected = if expected > 0 {
                expected
            } else {
                current.version
            };
            (state.store.update(resource, expected).await?, false)
        }
        None if expected > 0 => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("{key} does not exist, but the document expects version {expected}"),
            ));
        }
        None => (state.store.create(resource).await?, true),
    };
    tracing::info!(resource = %key, version = stored.version, created, "resource written");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, axum::Json(stored.to_value())).into_response();
    // Accepted-with-a-warning details travel as HTTP `Warning: 299` headers, as Kubernetes does.
    for w in warnings {
        let text = format!("{}: {}", w.field, w.message).replace('"', "'");
        if let Ok(value) = header::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

async fn delete(state: &ApiState, key: ResourceKey) -> ApiResult {
    let Some(existing) = state.store.get(&key).await? else {
        return Err(ApiError::not_found(format!("{key} not found")));
    };
    check_ownership(state, &existing)?;
    if key.kind == Kind::Zone
        && state.mode == Mode::Global
        && let Some(zones) = state.zone_inspector.get()
    {
        return delete_zone(zones.as_ref(), &key.name).await;
    }
    if key.kind == Kind::Mesh {
        let removed = state.store.delete_mesh_contents(&key.name).await?;
        tracing::info!(mesh = %key.name, removed, "deleted the mesh's resources");
    }
    state.store.delete(&key, None).await?;
    tracing::info!(resource = %key, "resource deleted");
    Ok(axum::Json(json!({})).into_response())
}

/// Deletes a Zone through the KDS server: refused while the zone is connected; otherwise the
/// zone's resources go with it (and KDS removes the relayed ones from the other zones).
async fn delete_zone(zones: &dyn crate::extension::ZoneInspector, name: &str) -> ApiResult {
    use crate::extension::ZoneDeleteError;
    match zones.delete_zone(name).await {
        Ok(done) => {
            tracing::info!(
                zone = name,
                resources_removed = done.resources_removed,
                "zone deleted"
            );
            Ok(axum::Json(json!({"resourcesRemoved": done.resources_removed})).into_response())
        }
        Err(e @ ZoneDeleteError::Online { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "Zone is online",
            e.to_string(),
        )),
        Err(e @ ZoneDeleteError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(ZoneDeleteError::Store(e)) => Err(e.into()),
    }
}

/// Who sent the request: the admin token's holder, a user token's user, a loopback caller
/// (admin while loopback-is-admin is on), or anonymous. A token that is presented but not valid
/// is refused (401) rather than treated as anonymous, so a typo is not a silent downgrade.
async fn authenticate(
    state: &ApiState,
    header: Option<header::HeaderValue>,
    peer: Option<SocketAddr>,
) -> Result<Identity, ApiError> {
    let unauthorized =
        |details: String| ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", details);
    let Some(header) = header else {
        let loopback = peer.is_none_or(|addr| addr.ip().is_loopback());
        return Ok(if loopback && state.auth.loopback_admin {
            Identity::admin()
        } else {
            Identity::anonymous()
        });
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            unauthorized(
                "the Authorization header must be `Bearer <token>` (the admin token or a user token)"
                    .into(),
            )
        })?;
    if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) {
        return Ok(Identity::admin());
    }
    let store = state.store.as_ref();
    let keys = crate::tokens::user_verification_keys(store)
        .await
        .map_err(token_store_error)?;
    let claims =
        atoll_identity::verify_user_token(token, &keys, state.clock.now(), state.token_leeway)
            .map_err(|e| {
                unauthorized(format!(
                    "the bearer token is neither the admin token nor a valid user token: {e}"
                ))
            })?;
    let revoked = crate::tokens::revoked_user_tokens(store)
        .await
        .map_err(token_store_error)?;
    if revoked.contains(&claims.jti) {
        return Err(unauthorized(format!(
            "the user token {} of {:?} has been revoked",
            claims.jti, claims.name
        )));
    }
    Ok(Identity::user(claims.name, claims.groups))
}

/// A failed token operation: the store's errors as usual (503 when it is away), anything else
/// (an unreadable key) a 500 titled `title`.
fn token_failure(e: crate::tokens::TokenStoreError, title: &'static str) -> ApiError {
    match e {
        crate::tokens::TokenStoreError::Store(s) => ApiError::from(s),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, title, other.to_string()),
    }
}

fn token_store_error(e: crate::tokens::TokenStoreError) -> ApiError {
    match e {
        crate::tokens::TokenStoreError::Store(s) => ApiError::from(s),
        other => {
            tracing::error!(error = %other, "user-token keys or revocations unreadable");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Token check failed",
                other.to_string(),
            )
        }
    }
}

/// Refuses with 403 what the RBAC rules do not allow, naming the user, its groups, the action
/// and the kind.
fn authorize(
    state: &ApiState,
    who: &Identity,
    action: Action,
    kind: Option<Kind>,
    mesh: Option<&str>,
) -> Result<(), ApiError> {
    if state.auth.rbac.allows(who, action, kind, mesh) {
        return Ok(());
    }
    let mut what = action.as_str().to_string();
    if let Some(kind) = kind {
        what.push_str(&format!(" {kind}"));
    }
    if let Some(mesh) = mesh {
        what.push_str(&format!(" in mesh {mesh:?}"));
    }
    let hint = if who.is_anonymous() {
        ": send `Authorization: Bearer <token>` with a user token (atollctl generate user-token) or the admin token (the control plane's DATA_DIR/admin-token)"
    } else {
        ""
    };
    tracing::info!(user = %who.name, groups = ?who.groups, action = action.as_str(), kind = ?kind, mesh, "API request refused");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "Access denied",
        format!(
            "user {:?} (groups: {}) may not {what} ({}){hint}",
            who.name,
            who.groups.join(", "),
            state.auth.rbac.source
        ),
    ))
}

/// The mesh a key names, if it is mesh-scoped.
fn mesh_of(key: &ResourceKey) -> Option<&str> {
    (!key.mesh.is_empty()).then_some(key.mesh.as_str())
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    //! The route table's answers outside the handlers: wrong methods, unknown kinds and paths,
    //! slashes, which route a path lands on, and the metrics label it is counted under.

    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::{ApiState, router};
    use crate::config::Mode;
    use crate::metrics::Metrics;

    const TOKEN: &str = "unit-admin-token";

    fn state() -> Arc<ApiState> {
        Arc::new(ApiState {
            store: Arc::new(atoll_store::MemoryStore::new()),
            mode: Mode::Global,
            zone: "default".into(),
            instance_id: "unit-1".into(),
            admin_token: TOKEN.into(),
            auth: Default::default(),
            metrics: Metrics::new().expect("metrics"),
            inspector: Default::default(),
            zone_inspector: Default::default(),
            global_address: None,
            clock: atoll_clock::system(),
            token_leeway: atoll_identity::token::LEEWAY,
        })
    }

    async fn call(
        app: &axum::Router,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        call_with(app, method, path, token, "").await
    }

    async fn call_with(
        app: &axum::Router,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (status, body)
    }

    #[tokio::test]
    async fn a_wrong_method_on_a_known_path_is_405_naming_the_route() {
        let app = router(state());
        let cases = [
            (
                "POST",
                "/meshes/default/meshtimeouts/t",
                "/meshes/{mesh}/{kind}/{name}",
            ),
            (
                "PUT",
                "/meshes/default/meshtimeouts",
                "/meshes/{mesh}/{kind}",
            ),
            ("PATCH", "/meshes/default", "/meshes/{name}"),
            ("DELETE", "/meshes", "/meshes"),
            ("POST", "/zones/z", "/{kind}/{name}"),
            ("DELETE", "/zones", "/{kind}"),
            ("GET", "/tokens/dataplane", "/tokens/dataplane"),
            ("GET", "/tokens/user/_revoke", "/tokens/user/_revoke"),
            (
                "PUT",
                "/tokens/zone/_rotate-signing-key",
                "/tokens/zone/_rotate-signing-key",
            ),
            ("POST", "/zones/_overview", "/zones/_overview"),
            ("DELETE", "/zones/z/_overview", "/zones/{name}/_overview"),
            (
                "PUT",
                "/meshes/m/dataplanes/_overview",
                "/meshes/{mesh}/dataplanes/_overview",
            ),
            (
                "POST",
                "/meshes/m/dataplanes/d/_config",
                "/meshes/{mesh}/dataplanes/{name}/_config",
            ),
            (
                "DELETE",
                "/meshes/m/dataplanes/d/_rules",
                "/meshes/{mesh}/dataplanes/{name}/_rules",
            ),
            ("POST", "/", "/"),
        ];
        for (method, path, route) in cases {
            let (s, b) = call(&app, method, path, Some(TOKEN)).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {b}");
            assert_eq!(
                b,
                json!({
                    "title": "Method not allowed",
                    "details": format!("{method} is not supported on {route}"),
                }),
                "{method} {path}"
            );
        }
    }

    #[tokio::test]
    async fn a_wrong_method_is_refused_only_after_the_path_and_the_caller_check_out() {
        let app = router(state());
        // An unknown kind is a 404 whatever the method.
        let (s, b) = call(&app, "POST", "/meshes/default/nopes/x", Some(TOKEN)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(b["title"], "Not found");
        assert!(
            b["details"]
                .as_str()
                .expect("details")
                .starts_with("unknown resource type \"nopes\"; known: "),
            "{b}"
        );
        // A bad token is a 401 before the method is looked at.
        let (s, b) = call(&app, "POST", "/meshes/default/meshtimeouts/x", Some("nope")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }

    #[tokio::test]
    async fn unknown_kinds_and_paths_are_404_naming_them() {
        let app = router(state());
        let not_found = |details: &str| json!({"title": "Not found", "details": details});
        let cases = [
            (
                "/meshes/default/zones",
                not_found("Zone is not scoped to a mesh: use /zones"),
            ),
            (
                "/meshes/default/zones/z",
                not_found("Zone is not scoped to a mesh: use /zones/z"),
            ),
            (
                "/dataplanes/d",
                not_found("Dataplane belongs to a mesh: use /meshes/{mesh}/dataplanes/d"),
            ),
            (
                "/meshes/m/dataplanes/d/_stats",
                not_found("no such path: /meshes/m/dataplanes/d/_stats"),
            ),
            ("/zones/z/y", not_found("no such path: /zones/z/y")),
        ];
        for (path, expected) in cases {
            let (s, b) = call(&app, "GET", path, Some(TOKEN)).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
            assert_eq!(b, expected, "{path}");
        }
        for path in [
            "/tokens",
            "/tokens/x",
            "/meshes/m/tokens",
            "/meshes/m/tokens/x",
        ] {
            let (s, b) = call(&app, "GET", path, Some(TOKEN)).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
            assert!(
                b["details"]
                    .as_str()
                    .expect("details")
                    .starts_with("unknown resource type \"tokens\""),
                "{path}: {b}"
            );
        }
    }

    #[tokio::test]
    async fn paths_land_on_their_routes_whatever_the_slashes() {
        let app = router(state());
        let (s, b) = call_with(&app, "PUT", "/meshes/m", Some(TOKEN), "type: Mesh").await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        for path in ["/meshes", "/meshes/", "//meshes", "/meshes//"] {
            let (s, b) = call(&app, "GET", path, Some(TOKEN)).await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
            assert_eq!(b["total"], 1, "{path}: {b}");
        }
        let (s, b) = call(&app, "GET", "//meshes///m/", Some(TOKEN)).await;
        assert_eq!((s, &b["name"]), (StatusCode::OK, &json!("m")), "{b}");
        // A dataplane's own path is the generic one, not the inspection routes beside it.
        let (s, b) = call(&app, "GET", "/meshes/m/dataplanes/d", Some(TOKEN)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(
            b["details"], "Dataplane \"d\" in mesh \"m\" not found",
            "{b}"
        );
        let (s, b) = call(&app, "GET", "/meshes/m/dataplanes", Some(TOKEN)).await;
        assert_eq!((s, &b["total"]), (StatusCode::OK, &json!(0)), "{b}");
        // Inspection needs a zone's inspector; global has none.
        for path in [
            "/meshes/m/dataplanes/d/_config",
            "/meshes/m/dataplanes/_overview/_rules",
        ] {
            let (s, b) = call(&app, "GET", path, Some(TOKEN)).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
            assert!(
                b["details"]
                    .as_str()
                    .expect("details")
                    .contains("serves no proxies"),
                "{path}: {b}"
            );
        }
    }

    #[tokio::test]
    async fn requests_are_counted_under_their_route_template() {
        let state = state();
        let app = router(state.clone());
        call(&app, "GET", "/meshes/m/meshtimeouts/t-1", Some(TOKEN)).await;
        call(&app, "GET", "/meshes/m/meshtimeouts/t-2", Some(TOKEN)).await;
        call(&app, "GET", "/a/b/c/d/e/f", Some(TOKEN)).await;
        let text = state.metrics.render();
        for line in [
            "atoll_api_requests_total{method=\"GET\",route=\"/meshes/{mesh}/{kind}/{name}\",status=\"404\"} 2",
            "atoll_api_requests_total{method=\"GET\",route=\"unknown\",status=\"404\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("t-1"), "{text}");
    }
}
