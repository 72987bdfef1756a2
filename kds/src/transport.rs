//! The KDS gRPC service `atoll.kds.v1.KdsSync`, written by hand (no protoc) over envoy-types'
//! prost messages:
//!
//! ```text
//! service atoll.kds.v1.KdsSync {
//!   // The zone sends requests (subscribe, ACK, NACK); global sends resources.
//!   rpc GlobalToZoneSync(stream DeltaDiscoveryRequest) returns (stream DeltaDiscoveryResponse);
//!   // Global sends requests; the zone sends resources.
//!   rpc ZoneToGlobalSync(stream DeltaDiscoveryResponse) returns (stream DeltaDiscoveryRequest);
//! }
//! ```
//!
//! The zone always dials. It authenticates every call with the metadata
//! `authorization: Bearer <zone token>` and `x-atoll-zone: <zone name>`, and describes itself
//! with `x-atoll-zone-instance` (its control plane's instance id), `x-atoll-zone-version` (its
//! Atoll version) and `x-atoll-zone-session` (one value per connection, the same on both
//! streams, so global can pair them); global shows these in its zone insights. The server side
//! ([`KdsServer`]) hands each call to a [`KdsHandler`], which checks them (see the global control
//! plane). The client side is [`KdsClient`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::{Request, Response, Status, Streaming};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "atoll.kds.v1.KdsSync";
/// Path of the global -> zone stream.
pub const GLOBAL_TO_ZONE_PATH: &str = "/atoll.kds.v1.KdsSync/GlobalToZoneSync";
/// Path of the zone -> global stream.
pub const ZONE_TO_GLOBAL_PATH: &str = "/atoll.kds.v1.KdsSync/ZoneToGlobalSync";
/// Metadata key naming the zone that dials.
pub const ZONE_HEADER: &str = "x-atoll-zone";
/// Metadata key carrying the zone control plane's instance id.
pub const ZONE_INSTANCE_HEADER: &str = "x-atoll-zone-instance";
/// Metadata key carrying the zone control plane's Atoll version.
pub const ZONE_VERSION_HEADER: &str = "x-atoll-zone-version";
/// Metadata key naming one connection of a zone (both of its streams carry the same value).
pub const ZONE_SESSION_HEADER: &str = "x-atoll-zone-session";
/// Longest value kept from the descriptive metadata above.
const MAX_DESCRIPTION: usize = 128;
/// Largest message either side accepts (the engine keeps responses under 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A stream of messages one side sends.
pub type MessageStream<T> =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// What the server does with each call.
pub trait KdsHandler: Send + Sync + 'static {
    /// `GlobalToZoneSync`: the zone's requests in, global's responses out.
    fn global_to_zone(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> BoxFuture<Response<MessageStream<DeltaDiscoveryResponse>>, Status>;

    /// `ZoneToGlobalSync`: the zone's responses in, global's requests out.
    fn zone_to_global(
        &self,
        request: Request<Streaming<DeltaDiscoveryResponse>>,
    ) -> BoxFuture<Response<MessageStream<DeltaDiscoveryRequest>>, Status>;
}

/// The tonic service routing the two methods to a [`KdsHandler`].
pub struct KdsServer<H> {
    inner: Arc<H>,
}

impl<H> KdsServer<H> {
    pub fn new(handler: Arc<H>) -> Self {
        Self { inner: handler }
    }
}

impl<H> Clone for KdsServer<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H> tonic::server::NamedService for KdsServer<H> {
    const NAME: &'static str = SERVICE_NAME;
}

struct GlobalToZone<H>(Arc<H>);

impl<H: KdsHandler> tonic::server::StreamingService<DeltaDiscoveryRequest> for GlobalToZone<H> {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = MessageStream<DeltaDiscoveryResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        self.0.global_to_zone(request)
    }
}

struct ZoneToGlobal<H>(Arc<H>);

impl<H: KdsHandler> tonic::server::StreamingService<DeltaDiscoveryResponse> for ZoneToGlobal<H> {
    type Response = DeltaDiscoveryRequest;
    type ResponseStream = MessageStream<DeltaDiscoveryRequest>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryResponse>>) -> Self::Future {
        self.0.zone_to_global(request)
    }
}

fn grpc<T, U>() -> tonic::server::Grpc<tonic_prost::ProstCodec<T, U>>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
        .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), Some(MAX_MESSAGE_BYTES))
}

impl<H, B> tonic::codegen::Service<http::Request<B>> for KdsServer<H>
where
    H: KdsHandler,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        match req.uri().path() {
            GLOBAL_TO_ZONE_PATH => Box::pin(async move {
                Ok(grpc::<DeltaDiscoveryResponse, DeltaDiscoveryRequest>()
                    .streaming(GlobalToZone(inner), req)
                    .await)
            }),
            ZONE_TO_GLOBAL_PATH => Box::pin(async move {
                Ok(grpc::<DeltaDiscoveryRequest, DeltaDiscoveryResponse>()
                    .streaming(ZoneToGlobal(inner), req)
                    .await)
            }),
            _ => {
                Box::pin(async move { Ok(Status::unimplemented("unknown KDS method").into_http()) })
            }
        }
    }
}

/// The zone's side: opens the two streams on a channel.
#[derive(Debug, Clone)]
pub struct KdsClient {
    inner: tonic::client::Grpc<tonic::transport::Channel>,
}

impl KdsClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        Self {
            inner: tonic::client::Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    /// Opens `GlobalToZoneSync`: `requests` are the zone's subscriptions and ACKs.
    pub async fn global_to_zone(
        &mut self,
        requests: Request<impl tokio_stream::Stream<Item = DeltaDiscoveryRequest> + Send + 'static>,
    ) -> Result<Response<Streaming<DeltaDiscoveryResponse>>, Status> {
        self.ready().await?;
        let codec =
            tonic_prost::ProstCodec::<DeltaDiscoveryRequest, DeltaDiscoveryResponse>::default();
        self.inner
            .streaming(
                requests,
                http::uri::PathAndQuery::from_static(GLOBAL_TO_ZONE_PATH),
                codec,
            )
            .await
    }

    /// Opens `ZoneToGlobalSync`: `responses` are the zone's resources.
    pub async fn zone_to_global(
        &mut self,
        responses: Request<
            impl tokio_stream::Stream<Item = DeltaDiscoveryResponse> + Send + 'static,
        >,
    ) -> Result<Response<Streaming<DeltaDiscoveryRequest>>, Status> {
        self.ready().await?;
        let codec =
            tonic_prost::ProstCodec::<DeltaDiscoveryResponse, DeltaDiscoveryRequest>::default();
        self.inner
            .streaming(
                responses,
                http::uri::PathAndQuery::from_static(ZONE_TO_GLOBAL_PATH),
                codec,
            )
            .await
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("KDS connection not ready: {e}")))
    }
}

/// Adds the zone's credentials to a call.
pub fn authenticate<T>(request: &mut Request<T>, zone: &str, token: &str) -> Result<(), Status> {
    let bearer = format!("Bearer {}", token.trim()).parse().map_err(|_| {
        Status::invalid_argument("the zone token holds characters not allowed in a header")
    })?;
    let zone = zone.parse().map_err(|_| {
        Status::invalid_argument("the zone name holds characters not allowed in a header")
    })?;
    request.metadata_mut().insert("authorization", bearer);
    request.metadata_mut().insert(ZONE_HEADER, zone);
    Ok(())
}

/// The credentials a call carries: (zone name, token).
pub fn credentials<T>(request: &Request<T>) -> Result<(String, String), Status> {
    let md = request.metadata();
    let zone = md
        .get(ZONE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|z| !z.is_empty())
        .ok_or_else(|| Status::unauthenticated(format!("missing {ZONE_HEADER} metadata")))?;
    let token = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated("missing zone token (authorization: Bearer <token>)")
        })?;
    Ok((zone.to_string(), token.to_string()))
}

/// What a zone control plane says about itself on each call (beside its credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneDescription {
    /// The zone control plane's instance id.
    pub instance_id: Option<String>,
    /// Its Atoll version.
    pub version: Option<String>,
    /// The connection both streams belong to.
    pub session: Option<String>,
}

/// Adds the zone's description to a call. Values that cannot travel as metadata (or are empty)
/// are left out.
pub fn describe<T>(request: &mut Request<T>, description: &ZoneDescription) {
    for (key, value) in [
        (ZONE_INSTANCE_HEADER, &description.instance_id),
        (ZONE_VERSION_HEADER, &description.version),
        (ZONE_SESSION_HEADER, &description.session),
    ] {
        if let Some(v) = value
            .as_deref()
            .map(clean_description)
            .filter(|v| !v.is_empty())
            .and_then(|v| v.parse().ok())
        {
            request.metadata_mut().insert(key, v);
        }
    }
}

/// What a call says about the zone that made it. Never fails: whatever is missing or
/// unreadable is `None`, and values are cut to printable ASCII of bounded length.
pub fn description<T>(request: &Request<T>) -> ZoneDescription {
    let md = request.metadata();
    let read = |key: &str| {
        md.get(key)
            .and_then(|v| v.to_str().ok())
            .map(clean_description)
            .filter(|v| !v.is_empty())
    };
    ZoneDescription {
        instance_id: read(ZONE_INSTANCE_HEADER),
        version: read(ZONE_VERSION_HEADER),
        session: read(ZONE_SESSION_HEADER),
    }
}

fn clean_description(v: &str) -> String {
    v.trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_DESCRIPTION)
        .collect()
}

/// Keeps a future type nameable for callers boxing handler results.
pub fn boxed<T, F>(f: F) -> BoxFuture<T, Status>
where
    F: Future<Output = Result<T, Status>> + Send + 'static,
{
    Box::pin(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_description_travels_as_metadata() {
        let mut req = Request::new(());
        let sent = ZoneDescription {
            instance_id: Some("zone-cp-1-a1b2c3".into()),
            version: Some("0.1.0".into()),
            session: Some("zone-cp-1-a1b2c3/4".into()),
        };
        describe(&mut req, &sent);
        authenticate(&mut req, "east", "tok").expect("credentials");
        assert_eq!(description(&req), sent);
        assert_eq!(
            credentials(&req).expect("credentials"),
            ("east".to_string(), "tok".to_string())
        );
    }

    #[test]
    fn a_missing_or_odd_description_is_tolerated() {
        let req = Request::new(());
        assert_eq!(description(&req), ZoneDescription::default());
        let mut req = Request::new(());
        describe(
            &mut req,
            &ZoneDescription {
                instance_id: Some("bad\nvalue\u{7f}".into()),
                version: Some("x".repeat(1000)),
                session: Some(String::new()),
            },
        );
        let d = description(&req);
        assert_eq!(d.instance_id.as_deref(), Some("badvalue"));
        assert_eq!(d.version.map(|v| v.len()), Some(MAX_DESCRIPTION));
        assert_eq!(d.session, None);
    }
}
