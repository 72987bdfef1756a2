//! `Dataplane`: one proxy (sidecar or gateway), its inbounds, outbounds and transparent proxying;
//! also the tag and address checks shared with the zone proxies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::kinds::mesh::MetricsBackend;
use crate::kinds::mesh_service::Protocol;
use crate::labels::{PROTOCOL_TAG, SERVICE_TAG};
use crate::path::FieldPath;
use crate::string_enum;
use crate::types::Duration;
use crate::validate::{Validate, Violations, check_non_empty, check_port};

/// Tags: string keys and values.
pub type Tags = BTreeMap<String, String>;

string_enum! {
    pub enum GatewayType {
        Delegated => "DELEGATED",
        Builtin => "BUILTIN",
    }
}

string_enum! {
    pub enum InboundState {
        Ready => "Ready",
        NotReady => "NotReady",
        Ignored => "Ignored",
    }
}

string_enum! {
    pub enum IpFamilyMode {
        UnSpecified => "UnSpecified",
        DualStack => "DualStack",
        IPv4 => "IPv4",
        IPv6 => "IPv6",
    }
}

string_enum! {
    /// What a backendRef (outbound or reachable backend) may name.
    pub enum BackendKind {
        MeshService => "MeshService",
        MeshExternalService => "MeshExternalService",
        MeshMultiZoneService => "MeshMultiZoneService",
    }
}

string_enum! {
    /// The role of a zone proxy listener embedded in a Dataplane.
    pub enum ListenerType {
        Unspecified => "Unspecified",
        ZoneIngress => "ZoneIngress",
        ZoneEgress => "ZoneEgress",
    }
}

string_enum! {
    pub enum ListenerState {
        Ready => "Ready",
        NotReady => "NotReady",
    }
}

/// The kind-specific fields of a Dataplane (no `spec:` key in universal format).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneDoc {
    #[serde(default)]
    pub networking: Option<Networking>,
    /// Overrides of the mesh's (legacy) metrics backend for this proxy.
    #[serde(default)]
    pub metrics: Option<MetricsBackend>,
    /// Endpoints exposed without mTLS (deprecated in Kuma).
    #[serde(default)]
    pub probes: Option<Probes>,
    /// Never used. Kuma ignores unknown top-level keys and one of its documented examples puts
    /// `inbound` at the top level by mistake; it is accepted (and ignored) so that manifest
    /// applies as it does on Kuma. The real inbounds are `networking.inbound`.
    #[serde(default)]
    pub inbound: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// The IP where the proxy is reachable by the control plane and other proxies.
    #[serde(default)]
    pub address: Option<String>,
    /// A routable address for proxies in a private network; Envoy still binds to `address`.
    #[serde(default)]
    pub advertised_address: Option<String>,
    #[serde(default)]
    pub admin: Option<EnvoyAdmin>,
    #[serde(default)]
    pub inbound: Vec<Inbound>,
    #[serde(default)]
    pub outbound: Vec<Outbound>,
    #[serde(default)]
    pub gateway: Option<Gateway>,
    #[serde(default, alias = "transparent_proxying")]
    pub transparent_proxying: Option<TransparentProxying>,
    /// Zone proxy listeners embedded in this Dataplane.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

impl Networking {
    /// `networking: {}`: nothing set at all.
    fn is_empty(&self) -> bool {
        self.address.is_none()
            && self.advertised_address.is_none()
            && self.admin.is_none()
            && self.inbound.is_empty()
            && self.outbound.is_empty()
            && self.gateway.is_none()
            && self.transparent_proxying.is_none()
            && self.listeners.is_empty()
    }
}

/// Envoy's admin API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyAdmin {
    #[serde(default)]
    pub port: Option<i64>,
}

impl Validate for EnvoyAdmin {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(p) = self.port {
            check_port(p, &at.field("port"), v);
        }
    }
}

/// A service the proxy implements.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// The port Envoy listens on (with transparent proxying: the application's port).
    #[serde(default)]
    pub port: Option<i64>,
    /// The application's port; defaults to `port`.
    #[serde(default)]
    pub service_port: Option<i64>,
    /// The application's address; defaults to the inbound address.
    #[serde(default)]
    pub service_address: Option<String>,
    /// Where the inbound listener binds; defaults to `networking.address`.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    /// Absent means healthy.
    #[serde(default)]
    pub health: Option<Health>,
    #[serde(default)]
    pub service_probe: Option<ServiceProbe>,
    #[serde(default)]
    pub state: Option<InboundState>,
    /// Lets a MeshService `targetPort` refer to this inbound by name.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

impl Inbound {
    pub fn service(&self) -> Option<&str> {
        self.tags.get(SERVICE_TAG).map(String::as_str)
    }

    /// The application port: `servicePort`, or `port` when unset.
    pub fn effective_service_port(&self) -> Option<i64> {
        self.service_port.filter(|p| *p != 0).or(self.port)
    }

    /// Whether traffic may be sent to this inbound.
    pub fn is_ready(&self) -> bool {
        let healthy = self
            .health
            .as_ref()
            .is_none_or(|h| h.ready.unwrap_or(false));
        healthy && !matches!(self.state, Some(InboundState::NotReady))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    #[serde(default)]
    pub ready: Option<bool>,
}

/// Active health checking of the application by Envoy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProbe {
    #[serde(default)]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default, alias = "unhealthy_threshold")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(default, alias = "healthy_threshold")]
    pub healthy_threshold: Option<u32>,
    /// A TCP connect check (the only checker).
    #[serde(default)]
    pub tcp: Option<TcpProbe>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TcpProbe {}

/// A service the proxy consumes, by tags (legacy) or by backendRef.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbound {
    /// Defaults to 127.0.0.1.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub backend_ref: Option<OutboundBackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundBackendRef {
    #[serde(default)]
    pub kind: Option<BackendKind>,
    #[serde(default)]
    pub name: Option<String>,
    /// Required unless kind is MeshExternalService.
    #[serde(default)]
    pub port: Option<i64>,
    /// Selects one object (the oldest when several match).
    #[serde(default)]
    pub labels: Option<Tags>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    #[serde(default)]
    pub tags: Tags,
    /// Defaults to DELEGATED.
    #[serde(rename = "type", default)]
    pub type_: Option<GatewayType>,
}

impl Gateway {
    pub fn is_builtin(&self) -> bool {
        matches!(self.type_, Some(GatewayType::Builtin))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransparentProxying {
    #[serde(default, alias = "redirect_port_inbound")]
    pub redirect_port_inbound: Option<i64>,
    #[serde(default, alias = "redirect_port_outbound")]
    pub redirect_port_outbound: Option<i64>,
    /// Services reached directly by IP:port; `*` for all.
    #[serde(default, alias = "direct_access_services")]
    pub direct_access_services: Vec<String>,
    /// `kuma.io/service` values reachable; empty means all.
    #[serde(default, alias = "reachable_services")]
    pub reachable_services: Vec<String>,
    #[serde(default, alias = "ip_family_mode")]
    pub ip_family_mode: Option<IpFamilyMode>,
    /// MeshService/MeshExternalService/MeshMultiZoneService reachable; absent means all.
    #[serde(default, alias = "reachable_backends")]
    pub reachable_backends: Option<ReachableBackends>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReachableBackends {
    #[serde(default)]
    pub refs: Vec<ReachableBackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReachableBackendRef {
    #[serde(default)]
    pub kind: Option<BackendKind>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub labels: Option<Tags>,
}

/// A zone ingress or egress listener embedded in a Dataplane.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(rename = "type", default)]
    pub type_: Option<ListenerType>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<ListenerState>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub endpoints: Vec<ProbeEndpoint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeEndpoint {
    #[serde(default, alias = "inbound_port")]
    pub inbound_port: Option<i64>,
    #[serde(default, alias = "inbound_path")]
    pub inbound_path: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}

/// Where Envoy's admin API listens.
const LOOPBACK: &str = "127.0.0.1";

/// Whether something bound to `address` would take the port from 127.0.0.1: the same address,
/// or a wildcard (`0.0.0.0`, `::`).
fn overlaps_loopback(address: &str) -> bool {
    address
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified() || ip == IpAddr::from([127, 0, 0, 1]))
}

/// Whether an inbound listens on, or forwards to, `port` on 127.0.0.1: its own listener (at its
/// address or the Dataplane's) or its application (at `serviceAddress`, else the listener's
/// address; at `servicePort`, else `port`).
fn inbound_uses_loopback_port(inbound: &Inbound, net: &Networking, port: i64) -> bool {
    let listen = inbound.address.as_deref().or(net.address.as_deref());
    let app = inbound.service_address.as_deref().or(listen);
    (inbound.port == Some(port) && listen.is_some_and(overlaps_loopback))
        || (inbound.effective_service_port() == Some(port) && app.is_some_and(overlaps_loopback))
}

/// True for an IPv4 or IPv6 address.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// True for a DNS name: dot-separated labels of letters, digits, `-` and `_`, each at most 63
/// characters and not starting or ending with `-`; at most 253 characters in all.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Checks an address a proxy binds to or is reached at (`networking.address`,
/// `advertisedAddress`): an IP that is not unspecified. Kuma also accepts a domain name and
/// resolves it in the control plane; Atoll does not (docs/ARCHITECTURE.md, "Proxy addresses"):
/// Envoy's listeners and EDS endpoints take IPs, and a name that stops resolving must not
/// break the config of every proxy that reaches it.
pub fn check_address(address: &str, at: &FieldPath, v: &mut Violations) {
    if address.trim().is_empty() {
        v.add(at, "must not be empty");
    } else if address == "0.0.0.0" || address == "::" {
        v.add(at, "must not be 0.0.0.0 or ::");
    } else if !is_ip(address) {
        let hint = if is_hostname(address) {
            ": Atoll does not resolve hostnames for proxy addresses, give the IP the proxy is reached at"
        } else {
            ""
        };
        v.add(
            at,
            format!("must be a valid IP address (got {address:?}){hint}"),
        );
    }
}

/// Checks an address that must be an IP.
pub fn check_ip(address: &str, at: &FieldPath, v: &mut Violations) {
    if !is_ip(address) {
        v.add(at, "must be a valid IP address");
    }
}

/// Checks tag names and values (Kuma's character sets); with `require_service`, also that
/// `kuma.io/service` is present. A `kuma.io/protocol` tag must name a known protocol.
pub fn check_tags(tags: &Tags, at: &FieldPath, v: &mut Violations, require_service: bool) {
    if require_service && !tags.contains_key(SERVICE_TAG) {
        v.add(&at.key(SERVICE_TAG), "tag has to exist");
    }
    for (k, val) in tags {
        if k.is_empty() {
            v.add(at, "tag names must not be empty");
            continue;
        }
        if !k
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-_:/".contains(&c))
        {
            v.add(
                &at.key(k),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores",
            );
        }
        if val.is_empty() {
            v.add(&at.key(k), "tag value must not be empty");
        } else if !val
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-_:".contains(&c))
        {
            v.add(
                &at.key(k),
                "tag value must consist of alphanumeric characters, dots, dashes, colons and underscores",
            );
        }
    }
    if let Some(p) = tags.get(PROTOCOL_TAG)
        && !Protocol::ALLOWED.contains(&p.as_str())
    {
        v.add(
            &at.key(PROTOCOL_TAG),
            format!(
                "must be one of: {} (got {p:?})",
                Protocol::ALLOWED.join(", ")
            ),
        );
    }
}

impl DataplaneDoc {
    /// Whether the document declares any traffic: an inbound, outbound, gateway or listener.
    /// Kuma's documentation shows partial Dataplanes that only carry settings (an admin port, a
    /// metrics override); those are accepted without `networking.address`, and the proxy that
    /// registers under the name must complete them before it is served.
    pub fn declares_traffic(&self) -> bool {
        self.networking.as_ref().is_some_and(|n| {
            !n.inbound.is_empty()
                || !n.outbound.is_empty()
                || n.gateway.is_some()
                || !n.listeners.is_empty()
        })
    }
}

impl Validate for DataplaneDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let net_at = at.field("networking");
        let default_net = Networking::default();
        let net = self.networking.as_ref().unwrap_or(&default_net);
        match net.address.as_deref() {
            Some(a) => check_address(a, &net_at.field("address"), v),
            // `networking: {}` says nothing a proxy could be served with.
            None if self.declares_traffic()
                || self.networking.as_ref().is_some_and(Networking::is_empty) =>
            {
                v.add(&net_at.field("address"), "must be defined")
            }
            None => {}
        }
        if let Some(a) = &net.advertised_address {
            check_address(a, &net_at.field("advertisedAddress"), v);
        }
        if let Some(admin) = &net.admin {
            admin.validate(&net_at.field("admin"), v);
            // Envoy's admin listens on 127.0.0.1: only what also binds there can collide.
            if let Some(p) = admin.port {
                let port_at = net_at.field("admin").field("port");
                if net
                    .inbound
                    .iter()
                    .any(|i| inbound_uses_loopback_port(i, net, p))
                {
                    v.add(&port_at, "must differ from inbound");
                }
                if net.outbound.iter().any(|o| {
                    o.port == Some(p) && overlaps_loopback(o.address.as_deref().unwrap_or(LOOPBACK))
                }) {
                    v.add(&port_at, "must differ from outbound");
                }
            }
        }

        if let Some(gw) = &net.gateway {
            let gw_at = net_at.field("gateway");
            gw.type_.validate(&gw_at.field("type"), v);
            check_tags(&gw.tags, &gw_at.field("tags"), v, true);
            if let Some(p) = gw.tags.get(PROTOCOL_TAG)
                && p != "tcp"
            {
                v.add(
                    &gw_at.field("tags").key(PROTOCOL_TAG),
                    format!("a gateway only accepts tcp (got {p:?})"),
                );
            }
            if !net.inbound.is_empty() {
                v.add(
                    &net_at.field("inbound"),
                    "must not be set on a gateway: a Dataplane has either a gateway or inbounds",
                );
            }
            if gw.is_builtin() && !net.outbound.is_empty() {
                v.add(
                    &net_at.field("outbound"),
                    "must not be set on a builtin gateway",
                );
            }
            if !net.listeners.is_empty() {
                v.add(&net_at.field("listeners"), "must not be set on a gateway");
            }
            if gw.is_builtin() && self.probes.is_some() {
                v.add(&at.field("probes"), "must not be set on a builtin gateway");
            }
        }

        for (i, inbound) in net.inbound.iter().enumerate() {
            validate_inbound(
                inbound,
                net.address.as_deref(),
                &net_at.field("inbound").index(i),
                v,
            );
        }
        let mut names: Vec<&str> = net
            .inbound
            .iter()
            .filter_map(|i| i.name.as_deref())
            .collect();
        for (i, outbound) in net.outbound.iter().enumerate() {
            validate_outbound(outbound, &net_at.field("outbound").index(i), v);
        }
        if let Some(tp) = &net.transparent_proxying {
            validate_transparent_proxying(tp, &net_at.field("transparentProxying"), v);
        }
        for (i, l) in net.listeners.iter().enumerate() {
            let l_at = net_at.field("listeners").index(i);
            match &l.type_ {
                None | Some(ListenerType::Unspecified) => {
                    v.add(&l_at.field("type"), "must be ZoneIngress or ZoneEgress")
                }
                Some(t) => t.validate(&l_at.field("type"), v),
            }
            match l.address.as_deref() {
                Some(a) => check_address(a, &l_at.field("address"), v),
                None => v.add(&l_at.field("address"), "must be defined"),
            }
            match l.port {
                Some(p) => check_port(p, &l_at.field("port"), v),
                None => v.add(&l_at.field("port"), "must be defined"),
            }
            l.state.validate(&l_at.field("state"), v);
            if let (Some(a), Some(p)) = (l.address.as_deref(), l.port) {
                let here = format!("{a}:{p}");
                let earlier = net.listeners[..i]
                    .iter()
                    .find(|o| o.address.as_deref() == Some(a) && o.port == Some(p));
                if let Some(other) = earlier {
                    let message = if other.type_ == l.type_ {
                        format!("address:port {here} is already used by another listener")
                    } else {
                        format!("address:port {here} is used by listeners of different types")
                    };
                    v.add(&l_at, message);
                }
                let inbound_there = net.inbound.iter().any(|ib| {
                    ib.port == Some(p)
                        && ib.address.as_deref().or(net.address.as_deref()) == Some(a)
                });
                if inbound_there {
                    v.add(
                        &l_at,
                        format!("address:port {here} collides with an inbound listener"),
                    );
                }
            }
            if let Some(n) = l.name.as_deref() {
                if names.contains(&n) {
                    v.add(
                        &l_at.field("name"),
                        format!("{n:?} must be unique across inbounds and listeners"),
                    );
                }
                names.push(n);
            }
        }

        if let Some(probes) = &self.probes {
            let p_at = at.field("probes");
            match probes.port {
                Some(p) => check_port(p, &p_at.field("port"), v),
                None => v.add(&p_at.field("port"), "must be defined"),
            }
            for (i, e) in probes.endpoints.iter().enumerate() {
                let e_at = p_at.field("endpoints").index(i);
                match e.inbound_port {
                    Some(p) => check_port(p, &e_at.field("inboundPort"), v),
                    None => v.add(&e_at.field("inboundPort"), "must be defined"),
                }
                for (name, path) in [("inboundPath", &e.inbound_path), ("path", &e.path)] {
                    if !path.as_deref().is_some_and(|p| p.starts_with('/')) {
                        v.add(&e_at.field(name), "must be a URL path starting with /");
                    }
                }
            }
        }

        if let Some(m) = &self.metrics {
            // Only the type is checked: the conf is kept as written, as Kuma keeps a free-form
            // Struct, and read with `MetricsBackend::prometheus_conf` where it is used.
            m.validate_type(&at.field("metrics"), v);
            if m.conf.as_ref().is_some_and(|c| !c.is_object()) {
                v.add(&at.field("metrics").field("conf"), "must be an object");
            }
        }
    }
}

fn validate_inbound(
    inbound: &Inbound,
    dp_address: Option<&str>,
    at: &FieldPath,
    v: &mut Violations,
) {
    match inbound.port {
        Some(p) => check_port(p, &at.field("port"), v),
        None => v.add(&at.field("port"), "must be defined"),
    }
    if let Some(p) = inbound.service_port.filter(|p| *p != 0) {
        check_port(p, &at.field("servicePort"), v);
    }
    let same_port = inbound
        .service_port
        .is_none_or(|sp| sp == 0 || Some(sp) == inbound.port);
    if let Some(sa) = &inbound.service_address {
        check_ip(sa, &at.field("serviceAddress"), v);
        let listen = inbound.address.as_deref().or(dp_address);
        if listen == Some(sa.as_str()) && same_port {
            v.add(
                &at.field("serviceAddress"),
                "serviceAddress and servicePort must differ from the inbound address and port",
            );
        }
    }
    if let Some(a) = &inbound.address {
        check_ip(a, &at.field("address"), v);
    }
    check_tags(&inbound.tags, &at.field("tags"), v, true);
    inbound.protocol.validate(&at.field("protocol"), v);
    inbound.state.validate(&at.field("state"), v);
    if let Some(n) = &inbound.name {
        check_non_empty(n, &at.field("name"), v);
    }
    if let Some(probe) = &inbound.service_probe {
        let p_at = at.field("serviceProbe");
        probe.interval.validate(&p_at.field("interval"), v);
        probe.timeout.validate(&p_at.field("timeout"), v);
        for (name, t) in [
            ("unhealthyThreshold", probe.unhealthy_threshold),
            ("healthyThreshold", probe.healthy_threshold),
        ] {
            if t == Some(0) {
                v.add(&p_at.field(name), "must be a positive number");
            }
        }
    }
}

fn validate_outbound(outbound: &Outbound, at: &FieldPath, v: &mut Violations) {
    match outbound.port {
        Some(p) => check_port(p, &at.field("port"), v),
        None => v.add(&at.field("port"), "must be defined"),
    }
    if let Some(a) = &outbound.address {
        check_ip(a, &at.field("address"), v);
    }
    match (&outbound.tags, &outbound.backend_ref) {
        (Some(_), Some(_)) => v.add(at, "must set exactly one of tags or backendRef, not both"),
        (None, None) => v.add(at, "must set exactly one of tags or backendRef"),
        (Some(tags), None) => check_tags(tags, &at.field("tags"), v, true),
        (None, Some(r)) => {
            let r_at = at.field("backendRef");
            match &r.kind {
                Some(k) => k.validate(&r_at.field("kind"), v),
                None => v.add(&r_at.field("kind"), "must be defined"),
            }
            let has_name = r.name.as_deref().is_some_and(|n| !n.is_empty());
            let has_labels = r.labels.as_ref().is_some_and(|l| !l.is_empty());
            if !has_name && !has_labels {
                v.add(&r_at, "must set name or labels");
            }
            // A MeshExternalService's port comes from its endpoints.
            if !matches!(r.kind, Some(BackendKind::MeshExternalService)) {
                match r.port {
                    Some(p) => check_port(p, &r_at.field("port"), v),
                    None => v.add(&r_at.field("port"), "must be defined"),
                }
            }
        }
    }
}

fn validate_transparent_proxying(tp: &TransparentProxying, at: &FieldPath, v: &mut Violations) {
    for (name, port) in [
        ("redirectPortInbound", tp.redirect_port_inbound),
        ("redirectPortOutbound", tp.redirect_port_outbound),
    ] {
        // 0 is protobuf's "unset".
        if let Some(p) = port.filter(|p| *p != 0) {
            check_port(p, &at.field(name), v);
        }
    }
    tp.ip_family_mode.validate(&at.field("ipFamilyMode"), v);
    let refs_at = at.field("reachableBackends").field("refs");
    for (i, r) in tp
        .reachable_backends
        .iter()
        .flat_map(|b| &b.refs)
        .enumerate()
    {
        let r_at = refs_at.index(i);
        match &r.kind {
            Some(k) => k.validate(&r_at.field("kind"), v),
            None => v.add(&r_at.field("kind"), "must be defined"),
        }
        let has_name = r.name.as_deref().is_some_and(|n| !n.is_empty());
        let has_ns = r.namespace.as_deref().is_some_and(|n| !n.is_empty());
        let has_labels = r.labels.as_ref().is_some_and(|l| !l.is_empty());
        if !has_name && !has_ns && !has_labels {
            v.add(&r_at.field("name"), "name or labels are required");
        }
        if !has_name && has_ns {
            v.add(&r_at.field("name"), "is required when namespace is set");
        }
        if (has_name || has_ns) && has_labels {
            v.add(&r_at.field("labels"), "must not be set together with name");
        }
        if let Some(p) = r.port {
            check_port(p, &r_at.field("port"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use serde_json::json;

    fn fields(value: serde_json::Value) -> Vec<String> {
        Resource::from_value(value)
            .expect_err("invalid")
            .iter()
            .map(|x| x.field.clone())
            .collect()
    }

    #[test]
    fn valid_dataplane_is_accepted_and_typed() {
        let r = Resource::from_value(json!({
            "type": "Dataplane", "mesh": "default", "name": "web-01",
            "networking": {
                "address": "192.168.0.1",
                "admin": {"port": 9901},
                "inbound": [{
                    "port": 8080, "servicePort": 8081, "name": "http",
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
                    "serviceProbe": {"interval": "1s", "tcp": {}}
                }],
                "outbound": [
                    {"port": 10001, "tags": {"kuma.io/service": "backend"}},
                    {"port": 10002, "backendRef": {"kind": "MeshService", "name": "db", "port": 5432}}
                ],
                "transparentProxying": {
                    "redirectPortInbound": 15006, "redirectPortOutbound": 15001,
                    "ipFamilyMode": "DualStack",
                    "reachableBackends": {"refs": [{"kind": "MeshService", "name": "db"}]}
                }
            }
        }))
        .expect("valid");
        let doc: DataplaneDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        let net = doc.networking.expect("networking");
        assert_eq!(net.inbound[0].service(), Some("web"));
        assert_eq!(net.inbound[0].effective_service_port(), Some(8081));
        assert!(net.inbound[0].is_ready());
    }

    fn dataplane(networking: serde_json::Value) -> serde_json::Value {
        json!({"type": "Dataplane", "mesh": "default", "name": "dp", "networking": networking})
    }

    #[test]
    fn the_admin_port_collides_only_with_what_binds_on_loopback() {
        let web = |address: &str, port: u16| json!({"port": port, "address": address, "tags": {"kuma.io/service": "web"}});
        // An inbound on another address may use the admin's port number.
        let other_address = dataplane(json!({"address": "10.0.0.1", "admin": {"port": 9901},
            "inbound": [web("10.0.0.1", 9901)]}));
        assert!(Resource::from_value(other_address).is_ok());
        // On 127.0.0.1 (or a wildcard) it may not; nor may the application behind an inbound.
        for address in ["127.0.0.1", "0.0.0.0"] {
            assert_eq!(
                fields(dataplane(
                    json!({"address": "10.0.0.1", "admin": {"port": 9901},
                    "inbound": [web(address, 9901)]})
                )),
                vec!["networking.admin.port"]
            );
        }
        assert_eq!(
            fields(dataplane(
                json!({"address": "10.0.0.1", "admin": {"port": 9901},
                "inbound": [{"port": 8080, "servicePort": 9901, "serviceAddress": "127.0.0.1",
                    "tags": {"kuma.io/service": "web"}}]})
            )),
            vec!["networking.admin.port"]
        );
        // Outbounds listen on 127.0.0.1 unless told otherwise.
        let v = Resource::from_value(dataplane(json!({"address": "10.0.0.1",
            "admin": {"port": 9901},
            "outbound": [{"port": 9901, "tags": {"kuma.io/service": "db"}}]})))
        .expect_err("collides with an outbound");
        assert_eq!(v.violations[0].field, "networking.admin.port");
        assert_eq!(v.violations[0].message, "must differ from outbound");
        let elsewhere = dataplane(json!({"address": "10.0.0.1", "admin": {"port": 9901},
            "outbound": [{"port": 9901, "address": "10.0.0.1", "tags": {"kuma.io/service": "db"}}]}));
        assert!(Resource::from_value(elsewhere).is_ok());
    }

    #[test]
    fn listeners_may_not_share_an_address_and_port() {
        let listener = |t: &str, port: u16| json!({"type": t, "address": "10.0.0.1", "port": port});
        let v = Resource::from_value(dataplane(json!({"address": "10.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
        "listeners": [
            listener("ZoneIngress", 10001),
            listener("ZoneIngress", 10001),
            listener("ZoneEgress", 10001),
            listener("ZoneEgress", 8080)
        ]})))
        .expect_err("collisions");
        let found: Vec<(&str, &str)> = v
            .iter()
            .map(|x| (x.field.as_str(), x.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "networking.listeners[1]",
                    "address:port 10.0.0.1:10001 is already used by another listener"
                ),
                (
                    "networking.listeners[2]",
                    "address:port 10.0.0.1:10001 is used by listeners of different types"
                ),
                (
                    "networking.listeners[3]",
                    "address:port 10.0.0.1:8080 collides with an inbound listener"
                )
            ]
        );
    }

    #[test]
    fn missing_service_tag_and_bad_port_are_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "Dataplane", "mesh": "default", "name": "dp",
                "networking": {
                    "address": "10.0.0.1",
                    "inbound": [{"port": 70000, "tags": {"version": "v1"}}]
                }
            })),
            vec![
                "networking.inbound[0].port",
                "networking.inbound[0].tags[\"kuma.io/service\"]"
            ]
        );
    }

    #[test]
    fn outbound_needs_exactly_one_of_tags_or_backend_ref() {
        assert_eq!(
            fields(json!({
                "type": "Dataplane", "name": "dp",
                "networking": {
                    "address": "10.0.0.1",
                    "inbound": [{"port": 80, "tags": {"kuma.io/service": "a", "kuma.io/protocol": "udp"}}],
                    "outbound": [
                        {"port": 1, "tags": {"kuma.io/service": "b"}, "backendRef": {"kind": "MeshService", "name": "b", "port": 80}},
                        {"port": 2},
                        {"port": 3, "backendRef": {"kind": "Service", "port": 0}}
                    ]
                }
            })),
            vec![
                "networking.inbound[0].tags[\"kuma.io/protocol\"]",
                "networking.outbound[0]",
                "networking.outbound[1]",
                "networking.outbound[2].backendRef.kind",
                "networking.outbound[2].backendRef",
                "networking.outbound[2].backendRef.port"
            ]
        );
    }

    #[test]
    fn gateway_with_inbound_and_bad_address_are_refused() {
        assert_eq!(
            fields(json!({
                "type": "Dataplane", "name": "gw",
                "networking": {
                    "address": "not an address!",
                    "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}},
                    "inbound": [{"port": 80, "tags": {"kuma.io/service": "a"}}],
                    "outbound": [{"port": 81, "tags": {"kuma.io/service": "b"}}]
                }
            })),
            vec![
                "networking.address",
                "networking.inbound",
                "networking.outbound"
            ]
        );
    }

    #[test]
    fn address_is_required_once_traffic_is_declared() {
        assert_eq!(
            fields(json!({
                "type": "Dataplane", "name": "dp",
                "networking": {
                    "inbound": [{"port": 80, "tags": {"kuma.io/service": "a"}}],
                    "transparentProxying": {"redirectPortInbound": 99999, "ipFamilyMode": "IPv5"}
                }
            })),
            vec![
                "networking.address",
                "networking.transparentProxying.redirectPortInbound",
                "networking.transparentProxying.ipFamilyMode"
            ]
        );
        // Settings only (an atoll-dp template): the address is filled in at registration.
        Resource::from_value(json!({
            "type": "Dataplane", "name": "dp", "networking": {"admin": {"port": 1000}}
        }))
        .expect("template accepted");
        Resource::from_value(json!({
            "type": "Dataplane", "name": "dp", "metrics": {"type": "prometheus", "conf": {"port": 1234}}
        }))
        .expect("metrics override accepted");
        assert_eq!(
            fields(
                json!({"type": "Dataplane", "name": "dp", "metrics": {"type": "statsd", "conf": 1}})
            ),
            vec!["metrics.type", "metrics.conf"]
        );
    }

    #[test]
    fn hostnames_and_ips() {
        assert!(is_hostname("backend.example.com"));
        assert!(is_hostname("my_host"));
        assert!(!is_hostname("-bad.com"));
        assert!(!is_hostname("a..b"));
        assert!(is_ip("::1"));
        assert!(!is_ip("1.2.3"));
    }
}
