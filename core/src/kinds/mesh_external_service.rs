//! `MeshExternalService`: a destination outside the mesh, reached through the zone egress, with
//! its endpoints and how TLS to it is originated.

use serde::Deserialize;

use crate::kinds::dataplane::{is_hostname, is_ip};
use crate::kinds::hostname_generator::{Address, Extension, HostnameGeneratorStatus};
use crate::kinds::mesh_service::{Protocol, Vip};
use crate::kinds::secret::DataSource;
use crate::path::FieldPath;
use crate::string_enum;
use crate::validate::{Validate, Violations, check_non_empty, check_port};

string_enum! {
    pub enum MatchType {
        HostnameGenerator => "HostnameGenerator",
    }
}

string_enum! {
    pub enum TlsVersion {
        Auto => "TLSAuto",
        Tls10 => "TLS10",
        Tls11 => "TLS11",
        Tls12 => "TLS12",
        Tls13 => "TLS13",
    }
}

impl TlsVersion {
    /// Ordering of concrete versions; `None` for `TLSAuto` and unknown values.
    pub fn rank(&self) -> Option<u8> {
        match self {
            TlsVersion::Tls10 => Some(0),
            TlsVersion::Tls11 => Some(1),
            TlsVersion::Tls12 => Some(2),
            TlsVersion::Tls13 => Some(3),
            _ => None,
        }
    }
}

string_enum! {
    pub enum VerificationMode {
        Secured => "Secured",
        SkipSan => "SkipSAN",
        SkipCa => "SkipCA",
        SkipAll => "SkipAll",
    }
}

string_enum! {
    pub enum SanMatchType {
        Exact => "Exact",
        Prefix => "Prefix",
    }
}

/// Protocols a MeshExternalService can be matched on (no kafka).
const MATCH_PROTOCOLS: &[&str] = &["tcp", "grpc", "http", "http2"];

/// The kind-specific fields of a MeshExternalService.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshExternalServiceDoc {
    #[serde(default)]
    pub spec: Option<MeshExternalServiceSpec>,
    /// Written by the control plane.
    #[serde(default)]
    pub status: Option<MeshExternalServiceStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshExternalServiceSpec {
    /// Which traffic goes to this service.
    #[serde(rename = "match", default)]
    pub match_: Option<Match>,
    /// A plugin; when present, endpoints and tls are the plugin's to check.
    #[serde(default)]
    pub extension: Option<Extension>,
    #[serde(default)]
    pub endpoints: Option<Vec<Endpoint>>,
    /// TLS originated by the proxy.
    #[serde(default)]
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// Defaults to HostnameGenerator (the only type).
    #[serde(rename = "type", default)]
    pub type_: Option<MatchType>,
    /// The port clients send to.
    #[serde(default)]
    pub port: Option<i64>,
    /// Defaults to tcp.
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// An IP, a hostname, or a Unix socket as `unix:///path`.
    #[serde(default)]
    pub address: Option<String>,
    /// Required except for Unix sockets.
    #[serde(default)]
    pub port: Option<i64>,
    /// Envoy priority level for failover (0 is primary), at most 128.
    #[serde(default)]
    pub priority: Option<u32>,
}

impl Endpoint {
    /// The socket path when the address is `unix://<path>`.
    pub fn unix_path(&self) -> Option<&str> {
        self.address.as_deref()?.strip_prefix("unix://")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub version: Option<TlsVersionRange>,
    /// Not recommended.
    #[serde(default)]
    pub allow_renegotiation: Option<bool>,
    #[serde(default)]
    pub verification: Option<Verification>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsVersionRange {
    #[serde(default)]
    pub min: Option<TlsVersion>,
    #[serde(default)]
    pub max: Option<TlsVersion>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Defaults to Secured.
    #[serde(default)]
    pub mode: Option<VerificationMode>,
    /// SNI sent, overriding the default.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub subject_alt_names: Option<Vec<SanMatch>>,
    #[serde(default)]
    pub ca_cert: Option<DataSource>,
    #[serde(default)]
    pub client_cert: Option<DataSource>,
    #[serde(default)]
    pub client_key: Option<DataSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SanMatch {
    /// Defaults to Exact.
    #[serde(rename = "type", default)]
    pub type_: Option<SanMatchType>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshExternalServiceStatus {
    #[serde(default)]
    pub vip: Option<Vip>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub hostname_generators: Vec<HostnameGeneratorStatus>,
}

fn validate_endpoint(e: &Endpoint, at: &FieldPath, v: &mut Violations) {
    let Some(address) = e.address.as_deref() else {
        v.add(&at.field("address"), "must be defined");
        return;
    };
    if let Some(path) = address.strip_prefix("unix://") {
        if !path.starts_with('/') {
            v.add(
                &at.field("address"),
                "a Unix socket must be an absolute path: unix:///path",
            );
        }
        if let Some(p) = e.port {
            check_port(p, &at.field("port"), v);
        }
    } else if is_ip(address) || is_hostname(address) {
        match e.port {
            Some(p) => check_port(p, &at.field("port"), v),
            None => v.add(&at.field("port"), "must be defined"),
        }
    } else {
        v.add(
            &at.field("address"),
            "must be an IP address, a hostname or unix:///path",
        );
    }
    if e.priority.is_some_and(|p| p > 128) {
        v.add(&at.field("priority"), "must be in the range 0-128");
    }
}

fn validate_tls(tls: &Tls, at: &FieldPath, v: &mut Violations) {
    if let Some(version) = &tls.version {
        let v_at = at.field("version");
        version.min.validate(&v_at.field("min"), v);
        version.max.validate(&v_at.field("max"), v);
        let min = version.min.as_ref().and_then(TlsVersion::rank);
        let max = version.max.as_ref().and_then(TlsVersion::rank);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            v.add(&v_at.field("min"), "must not be above max");
        }
    }
    let Some(ver) = &tls.verification else {
        return;
    };
    let at = at.field("verification");
    ver.mode.validate(&at.field("mode"), v);
    if let Some(sn) = &ver.server_name
        && !is_hostname(sn)
    {
        v.add(&at.field("serverName"), "must be a valid DNS name");
    }
    for (i, san) in ver.subject_alt_names.iter().flatten().enumerate() {
        let s_at = at.field("subjectAltNames").index(i);
        san.type_.validate(&s_at.field("type"), v);
        match &san.value {
            Some(val) => check_non_empty(val, &s_at.field("value"), v),
            None => v.add(&s_at.field("value"), "must be defined"),
        }
    }
    for (name, ds) in [
        ("caCert", &ver.ca_cert),
        ("clientCert", &ver.client_cert),
        ("clientKey", &ver.client_key),
    ] {
        if let Some(ds) = ds {
            ds.validate(&at.field(name), v);
            ds.check_no_file(&at.field(name), v);
        }
    }
    match (&ver.client_cert, &ver.client_key) {
        (Some(_), None) => v.add(&at.field("clientKey"), "must be defined when clientCert is"),
        (None, Some(_)) => v.add(&at.field("clientCert"), "must be defined when clientKey is"),
        _ => {}
    }
}

impl Validate for MeshExternalServiceDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let at = at.field("spec");
        let Some(spec) = &self.spec else {
            v.add(&at, "must be defined");
            return;
        };
        let m_at = at.field("match");
        match &spec.match_ {
            None => v.add(&m_at, "must be defined"),
            Some(m) => {
                m.type_.validate(&m_at.field("type"), v);
                match m.port {
                    Some(p) => check_port(p, &m_at.field("port"), v),
                    None => v.add(&m_at.field("port"), "must be defined"),
                }
                if let Some(p) = &m.protocol
                    && !MATCH_PROTOCOLS.contains(&p.as_str())
                {
                    v.add(
                        &m_at.field("protocol"),
                        format!(
                            "must be one of: {} (got {:?})",
                            MATCH_PROTOCOLS.join(", "),
                            p.as_str()
                        ),
                    );
                }
            }
        }
        if let Some(ext) = &spec.extension {
            // Endpoints and tls then belong to the extension.
            ext.validate(&at.field("extension"), v);
            return;
        }
        for (i, e) in spec.endpoints.iter().flatten().enumerate() {
            validate_endpoint(e, &at.field("endpoints").index(i), v);
        }
        if let Some(tls) = &spec.tls {
            validate_tls(tls, &at.field("tls"), v);
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
    fn valid_service_is_accepted_and_typed() {
        let r = Resource::from_value(json!({
            "type": "MeshExternalService", "name": "db", "mesh": "default",
            "spec": {
                "match": {"type": "HostnameGenerator", "port": 5432, "protocol": "tcp"},
                "endpoints": [
                    {"address": "db.example.com", "port": 5432},
                    {"address": "203.0.113.10", "port": 5432, "priority": 1},
                    {"address": "unix:///var/run/db.sock"}
                ],
                "tls": {
                    "enabled": true, "version": {"min": "TLS12", "max": "TLS13"},
                    "verification": {
                        "mode": "Secured", "serverName": "db.example.com",
                        "subjectAltNames": [{"type": "Prefix", "value": "db"}],
                        "clientCert": {"secret": "c"}, "clientKey": {"secret": "k"}
                    }
                }
            }
        }))
        .expect("valid");
        let doc: MeshExternalServiceDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        let spec = doc.spec.expect("spec");
        let eps = spec.endpoints.expect("endpoints");
        assert_eq!(eps[2].unix_path(), Some("/var/run/db.sock"));
    }

    #[test]
    fn bad_match_and_endpoints_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "MeshExternalService", "name": "x",
                "spec": {
                    "match": {"type": "Static", "port": 0, "protocol": "kafka"},
                    "endpoints": [{"address": "ex ample", "port": 1}, {"address": "example.com"}]
                }
            })),
            vec![
                "spec.match.type",
                "spec.match.port",
                "spec.match.protocol",
                "spec.endpoints[0].address",
                "spec.endpoints[1].port"
            ]
        );
    }

    #[test]
    fn tls_problems_are_all_reported() {
        assert_eq!(
            fields(json!({
                "type": "MeshExternalService", "name": "x",
                "spec": {
                    "match": {"port": 443},
                    "endpoints": [{"address": "example.com", "port": 443}],
                    "tls": {
                        "version": {"min": "TLS13", "max": "TLS12"},
                        "verification": {
                            "mode": "Trusting", "serverName": "bad name",
                            "clientCert": {"file": "/c.pem"}
                        }
                    }
                }
            })),
            vec![
                "spec.tls.version.min",
                "spec.tls.verification.mode",
                "spec.tls.verification.serverName",
                "spec.tls.verification.clientCert.file",
                "spec.tls.verification.clientKey"
            ]
        );
    }

    #[test]
    fn missing_match_and_extension_type() {
        assert_eq!(
            fields(json!({
                "type": "MeshExternalService", "name": "x",
                "spec": {"extension": {"config": {}}, "endpoints": [{"address": "!!"}]}
            })),
            vec!["spec.match", "spec.extension.type"]
        );
    }
}
