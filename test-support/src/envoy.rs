//! Running real Envoy (`envoy --mode validate`) on generated configuration, for the sidecar and
//! the zone proxy tests.
//!
//! ADS references are replaced by what Envoy can check offline: each EDS cluster becomes a
//! STATIC cluster with the generated ClusterLoadAssignment inline, and each SDS reference
//! (`sds_config: {ads: {}}`) becomes a reference to a static secret, holding certificates made
//! here with rcgen (a mesh CA and an identity with a SPIFFE URI SAN).
//!
//! Without `envoy` on PATH the tests record a visible skip and pass, unless `CI` is set (then
//! fail): see [`crate::skip`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use atoll_xds::model::{self, type_urls};
use atoll_xds::proto::{EnvoyResource, ToProto};
use envoy_types::pb::envoy::config::bootstrap::v3::{Bootstrap, bootstrap::StaticResources};
use envoy_types::pb::envoy::config::core::v3::Node;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

/// The `envoy` binary, or `None` after recording that `test` skipped its Envoy validation.
pub fn envoy(test: &str) -> Option<PathBuf> {
    crate::envoy_or_skip(&format!("{test} (validation by real Envoy)"))
}

/// Runs `envoy --mode validate` on a JSON bootstrap; returns Envoy's complaint on failure.
pub fn validate(envoy: &Path, dir: &Path, name: &str, config: &Value) -> Result<(), String> {
    let file = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(config).expect("serializes");
    fs::write(&file, &text).expect("write config");
    run_validate(envoy, &file, name, &text)
}

/// Validates `config` as JSON and as binary protobuf: Envoy's complaints, if any.
pub fn validate_both(envoy: &Path, dir: &Path, name: &str, config: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    failures.extend(validate(envoy, dir, name, config).err());
    failures.extend(validate_proto(envoy, dir, name, &proto_bootstrap(config)).err());
    failures
}

/// Runs `envoy --mode validate` on a binary protobuf bootstrap (Envoy reads `*.pb` as such).
pub fn validate_proto(
    envoy: &Path,
    dir: &Path,
    name: &str,
    bootstrap: &Bootstrap,
) -> Result<(), String> {
    let file = dir.join(format!("{name}.pb"));
    fs::write(&file, bootstrap.encode_to_vec()).expect("write config");
    run_validate(envoy, &file, name, &format!("{bootstrap:#?}"))
}

fn run_validate(envoy: &Path, file: &Path, name: &str, text: &str) -> Result<(), String> {
    let output = Command::new(envoy)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(file)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warn")
        .output()
        .expect("run envoy");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: envoy --mode validate failed ({}):\n{}\n{}\nconfig:\n{text}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

pub struct TestCerts {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

pub fn test_certs(mesh: &str, service: &str) -> TestCerts {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");

    let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    let spiffe = format!("spiffe://{mesh}/{service}");
    params.subject_alt_names = vec![SanType::URI(spiffe.try_into().expect("ia5 uri"))];
    let key = KeyPair::generate().expect("leaf key");
    let leaf = params.signed_by(&key, &ca).expect("leaf cert");
    TestCerts {
        ca_pem: ca.pem(),
        chain_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Drops every `sds_config`, so secret references resolve to `static_resources.secrets`.
fn use_static_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("sds_config");
            map.values_mut().for_each(use_static_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(use_static_secrets),
        _ => {}
    }
}

/// A static bootstrap holding generated listeners, clusters (EDS ones made STATIC with their
/// ClusterLoadAssignment inline) and secrets.
pub fn static_config(
    node_id: &str,
    resources: &[EnvoyResource],
    secrets: &[EnvoyResource],
) -> Value {
    let of_type = |url: &'static str| -> Vec<(String, Value)> {
        resources
            .iter()
            .filter(|r| r.type_url == url)
            .map(|r| (r.name.clone(), r.json.clone()))
            .collect()
    };
    let assignments: BTreeMap<String, Value> = of_type(type_urls::CLUSTER_LOAD_ASSIGNMENT)
        .into_iter()
        .collect();
    let listeners: Vec<Value> = of_type(type_urls::LISTENER)
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    let clusters: Vec<Value> = of_type(type_urls::CLUSTER)
        .into_iter()
        .map(|(name, mut cluster)| {
            if cluster["type"] == "EDS" {
                let map = cluster.as_object_mut().expect("cluster object");
                map.remove("eds_cluster_config");
                map.insert("type".into(), json!("STATIC"));
                let cla = assignments
                    .get(&name)
                    .unwrap_or_else(|| panic!("no ClusterLoadAssignment for EDS cluster {name}"));
                map.insert("load_assignment".into(), cla.clone());
            }
            cluster
        })
        .collect();
    let secrets: Vec<Value> = secrets.iter().map(|s| s.json.clone()).collect();
    let mut config = json!({
        "node": {"id": node_id, "cluster": "validate"},
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters,
            "secrets": secrets,
        },
    });
    use_static_secrets(&mut config);
    config
}

/// The same static bootstrap, built through the model's `Deserialize` and the protobuf
/// conversion instead of JSON: this is what checks the wire form the ADS server sends.
pub fn proto_bootstrap(config: &Value) -> Bootstrap {
    fn parse<T: serde::de::DeserializeOwned + serde::Serialize>(items: &Value) -> Vec<T> {
        items
            .as_array()
            .expect("array")
            .iter()
            .map(|item| {
                let parsed: T =
                    serde_json::from_value(item.clone()).expect("model parses its JSON");
                // The model reads back exactly what it wrote.
                assert_eq!(&serde_json::to_value(&parsed).expect("serializes"), item);
                parsed
            })
            .collect()
    }
    let statics = &config["static_resources"];
    let listeners: Vec<model::Listener> = parse(&statics["listeners"]);
    let clusters: Vec<model::Cluster> = parse(&statics["clusters"]);
    let secrets: Vec<model::Secret> = parse(&statics["secrets"]);
    Bootstrap {
        node: Some(Node {
            id: config["node"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            cluster: "validate".into(),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            listeners: listeners.iter().map(ToProto::to_proto).collect(),
            clusters: clusters.iter().map(ToProto::to_proto).collect(),
            secrets: secrets.iter().map(ToProto::to_proto).collect(),
        }),
        ..Default::default()
    }
}
