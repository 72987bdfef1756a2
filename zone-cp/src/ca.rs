//! The mesh CA as the zone control plane uses it: the builtin CA is read from two mesh Secrets
//! (`atoll_cp::mesh_ca`), generated here only by a standalone zone (global generates it for the
//! zones it feeds); a provided CA is read from the Secrets (or inline data) its backend names.

use std::time::Duration;

use chrono::{DateTime, Utc};

use atoll_core::kinds::mesh::{CaConf, MeshDoc, MtlsMode};
use atoll_core::kinds::secret::DataSourceRef;
use atoll_core::{Kind, Resource, ResourceKey};
use atoll_cp::mesh_ca::BuiltinCaError;
use atoll_identity::CaBundle;
use atoll_store::{Store, StoreError};

/// Kuma's default lifetime of proxy certificates.
pub const DEFAULT_DP_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
pub use atoll_cp::mesh_ca::DEFAULT_ROOT_VALIDITY;

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

pub use atoll_cp::mesh_ca::{Generation, cert_secret_name, key_secret_name};

impl From<BuiltinCaError> for CaError {
    fn from(e: BuiltinCaError) -> Self {
        match e {
            BuiltinCaError::Store(e) => CaError::Store(e),
            BuiltinCaError::Unusable { mesh, reason } => CaError::Config { mesh, reason },
            BuiltinCaError::Identity {
                mesh,
                backend,
                source,
            } => CaError::Identity {
                mesh,
                backend,
                source,
            },
        }
    }
}

/// The mesh's CA, creating the builtin root on first use when `generation` allows it; `None`
/// when mTLS is off.
pub async fn mesh_ca(
    store: &dyn Store,
    mesh: &str,
    doc: &MeshDoc,
    now: DateTime<Utc>,
    generation: Generation,
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
            atoll_cp::mesh_ca::builtin_ca(store, mesh, enabled, validity, now, generation)
                .await?
                .ok_or_else(|| {
                    config_err(format!(
                        "the builtin CA {enabled:?} has not arrived from the global control plane yet (global generates it; check the zone's KDS connection)"
                    ))
                })?
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

fn secret_text(secret: &Resource, mesh: &str) -> Result<String, CaError> {
    atoll_cp::mesh_ca::secret_text(secret, mesh).map_err(CaError::from)
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
