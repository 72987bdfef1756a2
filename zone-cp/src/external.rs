//! MeshExternalServices as the zone egress serves them: a stored MeshExternalService (written on
//! global and synced, or written in a standalone zone) resolved into what `atoll_zone_egress`
//! generates from, with its CA certificate read from the Secret or file it names.

use serde_json::Value;

use atoll_core::kinds::mesh_external_service::{
    MeshExternalServiceDoc, SanMatchType, VerificationMode,
};
use atoll_core::kinds::mesh_service::Protocol as MeshProtocol;
use atoll_core::kinds::secret::DataSourceRef;
use atoll_core::{Kind, Resource, ResourceKey};
use atoll_store::Store;
use atoll_xds::context::Protocol;
use atoll_xds::zone_context::{
    CaCert, ExternalEndpoint, ExternalService, ExternalTls, TlsVerification,
};

/// Why a MeshExternalService cannot be served (it is left out, with this reason in the logs).
#[derive(Debug, thiserror::Error)]
pub enum ExternalServiceError {
    #[error("MeshExternalService {name:?} of mesh {mesh:?}: {reason}")]
    Unusable {
        mesh: String,
        name: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] atoll_store::StoreError),
}

/// The name a MeshExternalService is reached by: the name it was written with (synced copies
/// carry it as `kuma.io/display-name`).
pub fn external_name(resource: &Resource) -> String {
    atoll_kds::naming::display_name(resource).to_string()
}

/// Resolves a stored MeshExternalService.
pub async fn resolve(
    store: &dyn Store,
    resource: &Resource,
) -> Result<ExternalService, ExternalServiceError> {
    let name = external_name(resource);
    let unusable = |reason: String| ExternalServiceError::Unusable {
        mesh: resource.mesh.clone(),
        name: name.clone(),
        reason,
    };
    let doc: MeshExternalServiceDoc = serde_json::from_value(Value::Object(resource.spec.clone()))
        .map_err(|e| unusable(e.to_string()))?;
    let spec = doc.spec.ok_or_else(|| unusable("it has no spec".into()))?;
    let protocol = match spec.match_.as_ref().and_then(|m| m.protocol.as_ref()) {
        Some(MeshProtocol::Http) => Protocol::Http,
        Some(MeshProtocol::Http2) => Protocol::Http2,
        Some(MeshProtocol::Grpc) => Protocol::Grpc,
        _ => Protocol::Tcp,
    };
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().flatten().enumerate() {
        let (Some(address), Some(port)) = (&e.address, e.port.and_then(|p| u16::try_from(p).ok()))
        else {
            return Err(unusable(format!(
                "endpoints[{i}] needs an address and a port"
            )));
        };
        endpoints.push(ExternalEndpoint {
            address: address.clone(),
            port,
        });
    }
    if endpoints.is_empty() {
        return Err(unusable("it has no endpoints".into()));
    }
    let tls = match spec.tls {
        Some(tls) if tls.enabled.unwrap_or(false) => {
            let v = tls.verification.unwrap_or_default();
            let verification = match v.mode {
                Some(VerificationMode::SkipSan) => TlsVerification::SkipSAN,
                Some(VerificationMode::SkipAll) => TlsVerification::SkipAll,
                Some(VerificationMode::SkipCa) => {
                    // Envoy cannot match SANs without a trusted CA: nothing is verified.
                    tracing::warn!(mesh = %resource.mesh, %name, "verification mode SkipCA is served as SkipAll");
                    TlsVerification::SkipAll
                }
                _ => TlsVerification::Secured,
            };
            let ca_cert = match &v.ca_cert {
                None => None,
                Some(source) => Some(
                    match source.source().ok_or_else(|| {
                        unusable("tls.verification.caCert must set exactly one source".into())
                    })? {
                        DataSourceRef::InlineString(pem) => CaCert::Inline(pem.to_string()),
                        DataSourceRef::Inline(bytes) => {
                            CaCert::Inline(String::from_utf8(bytes).map_err(|_| {
                                unusable("tls.verification.caCert.inline is not text".into())
                            })?)
                        }
                        DataSourceRef::File(path) => {
                            CaCert::Inline(std::fs::read_to_string(path).map_err(|e| {
                                unusable(format!(
                                    "cannot read tls.verification.caCert.file {path}: {e}"
                                ))
                            })?)
                        }
                        DataSourceRef::Secret(secret) => {
                            let stored = store
                                .get(&ResourceKey::new(Kind::Secret, &resource.mesh, secret))
                                .await?
                                .ok_or_else(|| {
                                    unusable(format!("the caCert Secret {secret:?} does not exist"))
                                })?;
                            CaCert::Inline(
                                atoll_cp::mesh_ca::secret_text(&stored, &resource.mesh)
                                    .map_err(|e| unusable(e.to_string()))?,
                            )
                        }
                    },
                ),
            };
            let subject_alt_names = v
                .subject_alt_names
                .iter()
                .flatten()
                .filter(|s| !matches!(s.type_, Some(SanMatchType::Prefix)))
                .filter_map(|s| s.value.clone())
                .collect();
            Some(ExternalTls {
                enabled: true,
                server_name: v.server_name,
                verification,
                ca_cert,
                subject_alt_names,
            })
        }
        _ => None,
    };
    Ok(ExternalService {
        name,
        protocol,
        endpoints,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_store::MemoryStore;
    use base64::Engine;

    fn mes(spec: Value, labels: &[(&str, &str)]) -> Resource {
        let mut r = Resource::new(Kind::MeshExternalService, "default", "httpbin-4b2z9");
        r.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r.spec.insert("spec".into(), spec);
        r
    }

    #[tokio::test]
    async fn a_synced_external_service_keeps_its_name_and_reads_its_ca_secret() {
        let store = MemoryStore::new();
        let mut secret = Resource::new(Kind::Secret, "default", "httpbin-ca");
        secret.spec.insert(
            "data".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode("PEM")),
        );
        store.create(secret).await.expect("secret");
        let r = mes(
            serde_json::json!({
                "match": {"type": "HostnameGenerator", "port": 443, "protocol": "http"},
                "endpoints": [{"address": "httpbin.org", "port": 443}],
                "tls": {"enabled": true, "verification": {"mode": "SkipSAN", "caCert": {"secret": "httpbin-ca"}}},
            }),
            &[
                ("kuma.io/display-name", "httpbin"),
                ("kuma.io/origin", "global"),
            ],
        );
        let ext = resolve(&store, &r).await.expect("resolved");
        assert_eq!(ext.name, "httpbin");
        assert_eq!(ext.protocol, Protocol::Http);
        assert_eq!(ext.endpoints[0].address, "httpbin.org");
        let tls = ext.tls.expect("tls");
        assert_eq!(tls.verification, TlsVerification::SkipSAN);
        assert_eq!(tls.ca_cert, Some(CaCert::Inline("PEM".into())));
    }

    #[tokio::test]
    async fn an_unusable_external_service_says_why() {
        let store = MemoryStore::new();
        let no_endpoints = mes(serde_json::json!({"match": {"port": 80}}), &[]);
        let e = resolve(&store, &no_endpoints)
            .await
            .expect_err("no endpoints");
        assert!(e.to_string().contains("no endpoints"), "{e}");
        let missing_ca = mes(
            serde_json::json!({"endpoints": [{"address": "1.2.3.4", "port": 443}],
                "tls": {"enabled": true, "verification": {"caCert": {"secret": "nope"}}}}),
            &[],
        );
        let e = resolve(&store, &missing_ca)
            .await
            .expect_err("missing secret");
        assert!(e.to_string().contains("\"nope\" does not exist"), "{e}");
    }
}
