//! The mesh CA as the zone control plane uses it: the builtin CA is generated once per mesh and
//! stored as two mesh Secrets (`<mesh>.ca-builtin-cert-<backend>` and `...-key-...`, Kuma's names),
//! so a global control plane can later own and sync them; a provided CA is read from the Secrets
//! (or inline data) its backend names.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use atoll_core::kinds::mesh::{CaConf, MeshDoc, MtlsMode};
use atoll_core::kinds::secret::DataSourceRef;
use atoll_core::{Kind, Resource, ResourceKey};
use atoll_identity::CaBundle;
use atoll_store::{Store, StoreError};

/// Kuma's default lifetime of proxy certificates.
pub const DEFAULT_DP_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a generated builtin root (Kuma: 10 years).
pub const DEFAULT_ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The CA a mesh's proxies get certificates from.
#[derive(Debug, Clone)]
pub struct MeshCa {
    pub backend: String,
    pub bundle: CaBundle,
    pub mode: atoll_xds::context::MtlsMode,
    /// Lifetime of proxy certificates (`dpCert.rotation.expiration`).
    pub dp_cert_validity: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mesh {mesh:?}: {reason}")]
    Config { mesh: String, reason: String },
    #[error("mesh {mesh:?}: CA backend {backend:?}: {source}")]
    Identity {
        mesh: String,
        backend: String,
        source: atoll_identity::IdentityError,
    },
}

pub fn cert_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-cert-{backend}")
}

pub fn key_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-key-{backend}")
}

/// The mesh's CA, creating the builtin root on first use; `None` when mTLS is off.
pub async fn mesh_ca(
    store: &dyn Store,
    mesh: &str,
    doc: &MeshDoc,
    now: DateTime<Utc>,
) -> Result<Option<MeshCa>, CaError> {
    let Some(mtls) = &doc.mtls else {
        return Ok(None);
    };
    let Some(enabled) = &mtls.enabled_backend else {
        return Ok(None);
    };
    let config_err = |reason: String| CaError::Config {
        mesh: mesh.to_string(),
        reason,
    };
    let backend = mtls
        .backends
        .iter()
        .find(|b| b.name.as_deref() == Some(enabled.as_str()))
        .ok_or_else(|| config_err(format!("enabledBackend {enabled:?} names no backend")))?;
    let conf = backend
        .typed_conf()
        .map_err(|e| config_err(format!("backend {enabled:?} conf: {e}")))?;
    let identity_err = |source| CaError::Identity {
        mesh: mesh.to_string(),
        backend: enabled.clone(),
        source,
    };
    let bundle = match conf {
        CaConf::Builtin(builtin) => {
            let validity = builtin
                .ca_cert
                .as_ref()
                .and_then(|c| c.expiration.as_ref())
                .and_then(|e| e.as_std())
                .unwrap_or(DEFAULT_ROOT_VALIDITY);
            builtin_ca(store, mesh, enabled, validity, now, identity_err).await?
        }
        CaConf::Provided(provided) => {
            let cert = read_source(store, mesh, provided.cert.as_ref(), "cert").await?;
            let key = read_source(store, mesh, provided.key.as_ref(), "key").await?;
            atoll_identity::load_provided_ca(&cert, &key, now).map_err(identity_err)?
        }
        CaConf::Other(_) => {
            return Err(config_err(format!(
                "CA backend {enabled:?} is of a type Atoll cannot issue from yet (builtin and provided are supported)"
            )));
        }
    };
    let mode = match backend.mode {
        Some(MtlsMode::Permissive) => atoll_xds::context::MtlsMode::Permissive,
        _ => atoll_xds::context::MtlsMode::Strict,
    };
    let dp_cert_validity = backend
        .dp_cert
        .as_ref()
        .and_then(|d| d.rotation.as_ref())
        .and_then(|r| r.expiration.as_ref())
        .and_then(|e| e.as_std())
        .unwrap_or(DEFAULT_DP_CERT_VALIDITY);
    Ok(Some(MeshCa {
        backend: enabled.clone(),
        bundle,
        mode,
        dp_cert_validity,
    }))
}

async fn builtin_ca(
    store: &dyn Store,
    mesh: &str,
    backend: &str,
    validity: Duration,
    now: DateTime<Utc>,
    identity_err: impl Fn(atoll_identity::IdentityError) -> CaError,
) -> Result<CaBundle, CaError> {
    let cert_key = ResourceKey::new(Kind::Secret, mesh, cert_secret_name(mesh, backend));
    let key_key = ResourceKey::new(Kind::Secret, mesh, key_secret_name(mesh, backend));
    for _ in 0..3 {
        let cert = store.get(&cert_key).await?;
        let key = store.get(&key_key).await?;
        if let (Some(cert), Some(key)) = (&cert, &key) {
            let cert_pem = secret_text(cert, mesh)?;
            let key_pem = secret_text(key, mesh)?;
            return atoll_identity::load_provided_ca(&cert_pem, &key_pem, now)
                .map_err(identity_err);
        }
        // Generate once; a concurrent creator (another replica) wins and we read theirs.
        let fresh = atoll_identity::generate_root_ca(mesh, validity, now).map_err(&identity_err)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut key_secret = Resource::new(Kind::Secret, mesh, key_key.name.clone());
        key_secret
            .spec
            .insert("data".into(), Value::String(b64.encode(&fresh.key_pem)));
        let mut cert_secret = Resource::new(Kind::Secret, mesh, cert_key.name.clone());
        cert_secret
            .spec
            .insert("data".into(), Value::String(b64.encode(&fresh.cert_pem)));
        let created_key = key.is_some() || create_ok(store.create(key_secret).await)?;
        let created_cert = cert.is_some() || create_ok(store.create(cert_secret).await)?;
        if created_key && created_cert && cert.is_none() && key.is_none() {
            tracing::info!(%mesh, %backend, "generated the mesh's builtin CA");
            return Ok(fresh);
        }
    }
    Err(CaError::Config {
        mesh: mesh.to_string(),
        reason: "the builtin CA secrets keep changing under us".into(),
    })
}

fn create_ok(r: Result<Resource, StoreError>) -> Result<bool, CaError> {
    match r {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn secret_text(secret: &Resource, mesh: &str) -> Result<String, CaError> {
    let bad = |reason: &str| CaError::Config {
        mesh: mesh.to_string(),
        reason: format!("secret {:?}: {reason}", secret.name),
    };
    let data = secret
        .spec
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("has no data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad("data is not base64"))?;
    String::from_utf8(bytes).map_err(|_| bad("data is not text"))
}

async fn read_source(
    store: &dyn Store,
    mesh: &str,
    source: Option<&atoll_core::kinds::secret::DataSource>,
    what: &str,
) -> Result<String, CaError> {
    let missing = || CaError::Config {
        mesh: mesh.to_string(),
        reason: format!("the provided CA has no usable {what}"),
    };
    match source.and_then(|s| s.source()).ok_or_else(missing)? {
        DataSourceRef::Secret(name) => {
            let secret = store
                .get(&ResourceKey::new(Kind::Secret, mesh, name))
                .await?
                .ok_or_else(|| CaError::Config {
                    mesh: mesh.to_string(),
                    reason: format!("secret {name:?} of the provided CA {what} does not exist"),
                })?;
            secret_text(&secret, mesh)
        }
        DataSourceRef::InlineString(s) => Ok(s.to_string()),
        DataSourceRef::Inline(bytes) => String::from_utf8(bytes).map_err(|_| missing()),
        DataSourceRef::File(path) => std::fs::read_to_string(path).map_err(|e| CaError::Config {
            mesh: mesh.to_string(),
            reason: format!("cannot read the provided CA {what} file {path}: {e}"),
        }),
    }
}
