//! What generation needs to know about one zone proxy: a zone ingress (`ZoneIngressContext`)
//! or a zone egress (`ZoneEgressContext`). The zone control plane resolves them from the store
//! (ZoneIngress/ZoneEgress, dataplanes, MeshExternalServices, the other zones' ingresses);
//! golden tests read them from `zone-ingress/testdata/*.input.yaml` and
//! `zone-egress/testdata/*.input.yaml`. atoll-zone-ingress and atoll-zone-egress turn them into
//! Envoy resources.

use serde::{Deserialize, Serialize};

use crate::context::{Endpoint, Protocol};

/// The port a zone ingress listens on unless told otherwise (Kuma's default).
pub const DEFAULT_INGRESS_PORT: u16 = 10001;
/// The port a zone egress listens on unless told otherwise (Kuma's default).
pub const DEFAULT_EGRESS_PORT: u16 = 10002;

fn default_ingress_port() -> u16 {
    DEFAULT_INGRESS_PORT
}

fn default_egress_port() -> u16 {
    DEFAULT_EGRESS_PORT
}

// ---------------------------------------------------------------------------------------------
// Zone ingress
// ---------------------------------------------------------------------------------------------

/// Everything needed to generate one zone ingress's Envoy configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneIngressContext {
    /// The ZoneIngress's name.
    pub name: String,
    /// The zone it serves (its local zone).
    pub zone: String,
    /// The address the listener binds to (`networking.address`).
    pub address: String,
    /// The listener port (`networking.port`).
    #[serde(default = "default_ingress_port")]
    pub port: u16,
    /// Every (mesh, service) this zone offers to other zones, with its local endpoints. Services
    /// of every mesh share the one listener; the SNI keeps meshes apart.
    #[serde(default)]
    pub services: Vec<IngressService>,
}

/// One service of one mesh reachable through the ingress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressService {
    pub mesh: String,
    /// The `kuma.io/service` tag.
    pub service: String,
    /// Healthy endpoints of the service in this zone (the inbound `address:port` of each
    /// dataplane), sorted. They must be local: `zone` unset or this zone.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

// ---------------------------------------------------------------------------------------------
// Zone egress
// ---------------------------------------------------------------------------------------------

/// Everything needed to generate one zone egress's Envoy configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneEgressContext {
    /// The ZoneEgress's name.
    pub name: String,
    /// The zone it serves (its local zone).
    pub zone: String,
    /// The address the listener binds to (`networking.address`).
    pub address: String,
    /// The listener port (`networking.port`).
    #[serde(default = "default_egress_port")]
    pub port: u16,
    /// What the egress forwards, per mesh. Each mesh has its own identity certificate and CA
    /// (SDS secrets named by `zone_proxy::egress_identity_secret` / `egress_mesh_ca_secret`).
    #[serde(default)]
    pub meshes: Vec<EgressMesh>,
}

/// The routes of one mesh through the egress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressMesh {
    pub mesh: String,
    /// Services in other zones, passed through (mTLS untouched) to those zones' ingresses.
    /// Only for meshes with `routing.zoneEgress: true`.
    #[serde(default)]
    pub remote_services: Vec<EgressRemoteService>,
    /// MeshExternalServices of the mesh: mesh mTLS is terminated here and the outside
    /// connection originated.
    #[serde(default)]
    pub external_services: Vec<ExternalService>,
}

/// A service of the mesh that runs in other zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRemoteService {
    /// The `kuma.io/service` tag.
    pub service: String,
    /// The ingresses of the zones that run it, with the instance count behind each.
    #[serde(default)]
    pub zones: Vec<RemoteZoneIngress>,
}

/// A remote zone ingress as seen from this zone: its advertised address, and how many
/// instances of a given service run behind it (the weight of its endpoint).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteZoneIngress {
    pub zone: String,
    /// The ingress's advertised address (`networking.advertisedAddress`).
    pub address: String,
    /// The ingress's advertised port (`networking.advertisedPort`).
    pub port: u16,
    /// Healthy instances of the service behind this ingress; 0 leaves the ingress out.
    pub instances: u32,
}

/// One zone egress of this zone (`networking.address:port`), for sidecars that must send
/// traffic through it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalZoneEgress {
    pub address: String,
    pub port: u16,
}

/// A MeshExternalService, resolved: its name in the mesh, protocol, endpoints and TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalService {
    /// The MeshExternalService's name (its SNI is `zone_proxy::external_sni(name, mesh)`).
    pub name: String,
    /// `spec.match.protocol`: the egress speaks HTTP (HTTP/1.1, HTTP/2, gRPC) or TCP.
    pub protocol: Protocol,
    /// `spec.endpoints`: IP addresses or DNS names, with ports.
    pub endpoints: Vec<ExternalEndpoint>,
    /// `spec.tls`; absent means plaintext to the outside.
    #[serde(default)]
    pub tls: Option<ExternalTls>,
}

/// One `spec.endpoints` entry of a MeshExternalService.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalEndpoint {
    /// An IP address or a DNS name.
    pub address: String,
    pub port: u16,
}

/// `spec.tls` of a MeshExternalService: TLS originated by the egress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalTls {
    /// `tls.enabled`; false means plaintext, as if `tls` were absent.
    #[serde(default)]
    pub enabled: bool,
    /// `tls.verification.serverName`: the SNI sent. Default: the first endpoint's address when
    /// it is a DNS name; none for IP endpoints.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `tls.verification.mode`.
    #[serde(default)]
    pub verification: TlsVerification,
    /// `tls.verification.caCert`: the CA the server certificate must chain to. Default: the
    /// system bundle (`zone_proxy::SYSTEM_CA_BUNDLE`).
    #[serde(default)]
    pub ca_cert: Option<CaCert>,
    /// `tls.verification.subjectAltNames` (exact DNS names). Default: the server name.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// How the egress verifies an external server's certificate (Kuma's `verification.mode`,
/// without `SkipCA`: Envoy refuses SAN checks without a trusted CA).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVerification {
    /// Chain to the CA and match the subject alternative names.
    #[default]
    Secured,
    /// Chain to the CA only.
    SkipSAN,
    /// No verification at all.
    SkipAll,
}

/// Where a CA certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CaCert {
    /// PEM text.
    Inline(String),
    /// A file on the egress's host.
    File(String),
}
