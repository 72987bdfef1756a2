//! MeshPassthrough: controls which traffic to destinations outside the mesh the selected proxies
//! let through (all, none, or only the listed domains, IPs and CIDRs).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{PolicyDoc, TopLevelOpts, check_top_level};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::validate::{Validate, Violations, check_port};

/// A MeshPassthrough document (the part after the envelope).
/// The `MeshPassthrough` document: its spec is all that is kind-specific.
pub type MeshPassthroughDoc = PolicyDoc<MeshPassthroughSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshPassthroughSpec {
    /// The proxies configured; the whole mesh when left out.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub default: Option<PassthroughConf>,
}

string_enum! {
    pub enum PassthroughMode {
        All => "All",
        Matched => "Matched",
        None => "None",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassthroughConf {
    /// `All` lets any traffic through, `Matched` only `appendMatch`, `None` nothing.
    #[serde(default)]
    pub passthrough_mode: Option<PassthroughMode>,
    /// Destinations let through in `Matched` mode.
    #[serde(default)]
    pub append_match: Option<Vec<PassthroughMatch>>,
}

string_enum! {
    pub enum PassthroughMatchType {
        Domain => "Domain",
        Ip => "IP",
        Cidr => "CIDR",
    }
}

string_enum! {
    pub enum PassthroughProtocol {
        Tcp => "tcp",
        Tls => "tls",
        Grpc => "grpc",
        Http => "http",
        Http2 => "http2",
        Mysql => "mysql",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassthroughMatch {
    /// Required.
    #[serde(default, rename = "type")]
    pub match_type: Option<PassthroughMatchType>,
    /// A domain (`*.example.com` allowed), an IP address or a CIDR. Required.
    #[serde(default)]
    pub value: String,
    /// All ports when left out.
    #[serde(default)]
    pub port: Option<i64>,
    /// Default `tcp`.
    #[serde(default)]
    pub protocol: Option<PassthroughProtocol>,
}

impl PassthroughMatch {
    /// The protocol, `tcp` when not written.
    pub fn effective_protocol(&self) -> PassthroughProtocol {
        self.protocol.clone().unwrap_or(PassthroughProtocol::Tcp)
    }
}

const TOP_KINDS: &[K] = &[K::Mesh, K::MeshSubset, K::Dataplane];

impl Validate for MeshPassthroughSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts::default(),
            v,
        );
        match &self.default {
            Some(default) => default.validate(&at.field("default"), v),
            None => v.add(&at.field("default"), "must be defined"),
        }
    }
}

/// Protocols that cannot share a port with a different protocol.
fn is_l7(p: &PassthroughProtocol) -> bool {
    matches!(
        p,
        PassthroughProtocol::Grpc | PassthroughProtocol::Http | PassthroughProtocol::Http2
    )
}

impl Validate for PassthroughConf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        self.passthrough_mode
            .validate(&at.field("passthroughMode"), v);
        let mut protocol_by_port: HashMap<i64, PassthroughProtocol> = HashMap::new();
        let mut seen: HashSet<(i64, String, String)> = HashSet::new();
        for (i, m) in self.append_match.iter().flatten().enumerate() {
            let at = at.field("appendMatch").index(i);
            m.protocol.validate(&at.field("protocol"), v);
            let protocol = m.effective_protocol();
            match m.port {
                Some(port) => {
                    check_port(port, &at.field("port"), v);
                    match protocol_by_port.get(&port) {
                        Some(p) if *p != protocol && is_l7(&protocol) => v.add(
                            &at.field("port"),
                            "matches sharing a port must use the same protocol when it is grpc, http or http2",
                        ),
                        Some(_) => {}
                        None => {
                            protocol_by_port.insert(port, protocol.clone());
                        }
                    }
                    if !seen.insert((port, protocol.as_str().to_string(), m.value.clone())) {
                        v.add(
                            &at.field("value"),
                            format!("{:?} is already listed for this port and protocol", m.value),
                        );
                    }
                }
                None if protocol == PassthroughProtocol::Mysql => {
                    v.add(&at.field("port"), "must be defined with protocol mysql");
                }
                None => {}
            }
            let value_at = at.field("value");
            match &m.match_type {
                None => v.add(
                    &at.field("type"),
                    "must be defined: one of Domain, IP, CIDR",
                ),
                Some(t) => t.validate(&at.field("type"), v),
            }
            match m.match_type.as_ref() {
                Some(PassthroughMatchType::Ip) if m.value.parse::<IpAddr>().is_err() => {
                    v.add(
                        &value_at,
                        format!("must be an IP address (got {:?})", m.value),
                    );
                }
                Some(PassthroughMatchType::Cidr) if !is_cidr(&m.value) => {
                    v.add(
                        &value_at,
                        format!("must be a CIDR such as 10.0.0.0/8 (got {:?})", m.value),
                    );
                }
                Some(PassthroughMatchType::Domain) => {
                    if matches!(
                        protocol,
                        PassthroughProtocol::Tcp | PassthroughProtocol::Mysql
                    ) {
                        v.add(
                            &at.field("protocol"),
                            format!(
                                "protocol {} is not supported with a domain (use tls, http, http2 or grpc)",
                                protocol.as_str()
                            ),
                        );
                    }
                    check_domain(m, is_l7(&protocol), &at, v);
                }
                _ => {}
            }
        }
    }
}

fn check_domain(m: &PassthroughMatch, l7: bool, at: &FieldPath, v: &mut Violations) {
    let value = m.value.as_str();
    let value_at = at.field("value");
    if value.is_empty() {
        v.add(&value_at, "must not be empty");
        return;
    }
    if value.starts_with('*') && !value.starts_with("*.") && value != "*" {
        v.add(
            &value_at,
            "partial wildcards are not supported: write *.example.com",
        );
        return;
    }
    if m.port.is_none() && value.starts_with('*') && l7 {
        v.add(
            &at.field("port"),
            "must be defined for a wildcard domain with protocol grpc, http or http2",
        );
    }
    let host = value.strip_prefix("*.").unwrap_or(value);
    if !host.starts_with('*') && !is_dns_name(host) {
        v.add(
            &value_at,
            format!("must be a domain name such as example.com or *.example.com (got {value:?})"),
        );
    }
}

/// A DNS host name: labels of letters, digits, '-' and '_' (1-63 characters, not starting or
/// ending with '-'), separated by '.'.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.chars().all(|c| c.is_ascii_digit()) && prefix.parse::<u8>().is_ok_and(|p| p <= max)
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::{paths, policy};
    use serde_json::{Value, json};

    fn doc(spec: Value) -> Value {
        policy("MeshPassthrough", "pt", spec)
    }

    #[test]
    fn accepts_a_full_document() {
        let spec = json!({
            "targetRef": {"kind": "MeshSubset", "proxyTypes": ["Sidecar"], "tags": {"app": "a"}},
            "default": {"passthroughMode": "Matched", "appendMatch": [
                {"type": "Domain", "value": "httpbin.org", "protocol": "tls", "port": 443},
                {"type": "Domain", "value": "*.wikipedia.org", "protocol": "tls", "port": 443},
                {"type": "Domain", "value": "api.example.com", "protocol": "http", "port": 80},
                {"type": "IP", "value": "10.240.15.39", "port": 8888},
                {"type": "IP", "value": "fd00::1", "protocol": "tcp"},
                {"type": "CIDR", "value": "10.250.0.0/16", "protocol": "mysql", "port": 3306},
                {"type": "CIDR", "value": "fd00::/8"}
            ]}
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let spec = json!({
            "targetRef": {"kind": "MeshService", "name": "s"},
            "default": {"passthroughMode": "Some", "appendMatch": [
                {"type": "IP", "value": "300.1.1.1", "port": 0},
                {"type": "CIDR", "value": "10.0.0.0/33", "protocol": "mysql"},
                {"type": "Domain", "value": "*foo.com", "protocol": "tcp"},
                {"type": "Domain", "value": "*.example.com", "protocol": "http"},
                {"type": "Host", "value": "x", "protocol": "udp"}
            ]}
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.targetRef.kind",
                "spec.default.passthroughMode",
                "spec.default.appendMatch[0].port",
                "spec.default.appendMatch[0].value",
                "spec.default.appendMatch[1].port",
                "spec.default.appendMatch[1].value",
                "spec.default.appendMatch[2].protocol",
                "spec.default.appendMatch[2].value",
                "spec.default.appendMatch[3].port",
                "spec.default.appendMatch[4].protocol",
                "spec.default.appendMatch[4].type",
            ]
        );
    }

    #[test]
    fn refuses_port_conflicts_and_unknown_fields() {
        let spec = json!({
            "targetRef": {"kind": "Dataplane", "sectionName": "x"},
            "default": {"appendMatch": [
                {"type": "Domain", "value": "a.com", "protocol": "tls", "port": 8080},
                {"type": "Domain", "value": "b.com", "protocol": "http", "port": 8080},
                {"type": "Domain", "value": "a.com", "protocol": "tls", "port": 8080, "weight": 1}
            ]}
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.default.appendMatch[2].weight",
                "spec.targetRef.sectionName",
                "spec.default.appendMatch[1].port",
                "spec.default.appendMatch[2].value",
            ]
        );
    }
}
