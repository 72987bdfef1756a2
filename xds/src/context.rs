//! What generation needs to know about one proxy. The zone control plane resolves it from the
//! store (dataplanes, meshes, policies); golden tests read it from `testdata/*.input.yaml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use atoll_core::policies::OutboundConfs;

/// Everything needed to generate one sidecar's Envoy configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyContext {
    pub mesh: String,
    /// The Dataplane's name.
    pub name: String,
    /// The address the proxy's inbound listeners bind to (the Dataplane's `networking.address`).
    pub address: String,
    /// Mesh mTLS; `None` when the mesh has mTLS off (plaintext everywhere).
    #[serde(default)]
    pub mtls: Option<MeshMtls>,
    #[serde(default)]
    pub inbounds: Vec<InboundContext>,
    #[serde(default)]
    pub outbounds: Vec<OutboundContext>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MtlsMode {
    /// Only mTLS is accepted on inbounds.
    #[serde(rename = "STRICT")]
    Strict,
    /// mTLS and plaintext are both accepted on inbounds.
    #[serde(rename = "PERMISSIVE")]
    Permissive,
}

/// Mesh mTLS settings. Certificates travel by SDS over the same ADS stream under the names
/// `generate::IDENTITY_SECRET` (this proxy's certificate and key) and `generate::MESH_CA_SECRET`
/// (the mesh CA to validate peers), which the server fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshMtls {
    pub mode: MtlsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Http,
    Http2,
    Grpc,
}

/// One inbound: a listener on `address:port` forwarding to the application at
/// `serviceAddress:servicePort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundContext {
    pub port: u16,
    pub service_address: String,
    pub service_port: u16,
    /// The `kuma.io/service` tag.
    pub service: String,
    pub protocol: Protocol,
    /// Every tag of the inbound (including `kuma.io/service`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Who may connect, from MeshTrafficPermission.
    #[serde(default)]
    pub permissions: InboundPermissions,
}

/// The merged MeshTrafficPermission rules of one inbound, most specific first: the first rule
/// whose source matches the client decides; when none matches, the client is denied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundPermissions {
    #[serde(default)]
    pub rules: Vec<PermissionRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRule {
    pub source: SourceMatch,
    pub action: PermissionAction,
}

/// Which clients a rule concerns, by the identity in their mesh certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SourceMatch {
    /// Every client of the mesh.
    Any,
    /// Clients whose certificate carries every one of these tags (`kuma.io/service` is the
    /// SPIFFE ID `spiffe://<mesh>/<service>`; every tag `k: v` is a URI SAN `kuma://k/v`).
    Tags(BTreeMap<String, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermissionAction {
    Allow,
    Deny,
    /// Allowed; a shadow rule records that it would have been denied.
    AllowWithShadowDeny,
}

/// One outbound: a local listener at `address:port` for the service, and its endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundContext {
    pub address: String,
    pub port: u16,
    /// The `kuma.io/service` it reaches.
    pub service: String,
    pub protocol: Protocol,
    /// Healthy endpoints of the service in the mesh, sorted.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The typed merged confs of the outbound policies (MeshTimeout, MeshRetry,
    /// MeshCircuitBreaker) for this destination, resolved by the zone control plane; generation
    /// hands them to the policy packages' configurers. Unset ones keep Kuma's defaults.
    #[serde(default, skip_serializing_if = "OutboundConfs::is_empty")]
    pub policies: OutboundConfs,
    /// `service` names a MeshExternalService, reached through the zone egress: the cluster is
    /// `external:<name>`, sends the SNI `zone_proxy::external_sni` and verifies the egress's
    /// identity (`zone_proxy::egress_spiffe_id`) instead of the service's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub address: String,
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The zone the endpoint is in (locality); `None` for the local zone.
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_weight() -> u32 {
    1
}
