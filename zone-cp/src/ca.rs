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
    /// The roots proxies trust (PEM, one or more): the issuing CA's, then every other backend
    /// of `mtls.backends` whose CA is at hand, so that switching `enabledBackend` to a listed
    /// backend breaks no connection; during a switch, the old root as well (`index`).
    pub trust_pem: String,
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
    /// The enabled builtin CA's Secrets are not stored yet; builds are retried when they are.
    #[error("mesh {mesh:?}: the builtin CA {backend:?} is not stored yet ({})", match from {
        Generation::Allowed => "this zone creates it when it sees the Mesh",
        Generation::FromGlobal => "global generates it; check the zone's KDS connection",
    })]
    NotYet {
        mesh: String,
        backend: String,
        from: Generation,
    },
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

/// The mesh's CA, read from the store (never written: builtin roots are created where the Mesh
/// is observed, see [`provision_builtin_cas`]); `None` when mTLS is off. `generation` says who
/// creates a missing builtin root, for the error that a build reports until it is there.
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
            atoll_cp::mesh_ca::builtin_ca(
                store,
                mesh,
                enabled,
                validity,
                now,
                Generation::FromGlobal,
            )
            .await?
            .ok_or_else(|| CaError::NotYet {
                mesh: mesh.to_string(),
                backend: enabled.clone(),
                from: generation,
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
    let mut trust_pem = bundle.cert_pem.clone();
    for other in &mtls.backends {
        let Some(name) = other.name.as_deref().filter(|n| *n != enabled.as_str()) else {
            continue;
        };
        match backend_root(store, mesh, other, now).await {
            Ok(Some(root)) => add_root(&mut trust_pem, &root),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%mesh, backend = %name, error = %e, "a CA backend's root is not trusted: it cannot be read")
            }
        }
    }
    Ok(Some(MeshCa {
        backend: enabled.clone(),
        trust_pem,
        bundle,
        mode,
        dp_cert_validity,
    }))
}

/// Appends `root` (PEM) to a trust bundle unless it is there already.
pub fn add_root(trust_pem: &mut String, root: &str) {
    if trust_pem.contains(root.trim()) {
        return;
    }
    if !trust_pem.ends_with('\n') && !trust_pem.is_empty() {
        trust_pem.push('\n');
    }
    trust_pem.push_str(root);
}

/// The root certificate (PEM) of a backend that is not the enabled one, if it is stored yet.
async fn backend_root(
    store: &dyn Store,
    mesh: &str,
    backend: &atoll_core::kinds::mesh::CertificateAuthorityBackend,
    now: DateTime<Utc>,
) -> Result<Option<String>, CaError> {
    let name = backend.name.clone().unwrap_or_default();
    let conf = backend.typed_conf().map_err(|e| CaError::Config {
        mesh: mesh.to_string(),
        reason: format!("backend {name:?} conf: {e}"),
    })?;
    match conf {
        CaConf::Builtin(builtin) => {
            let validity = builtin
                .ca_cert
                .as_ref()
                .and_then(|c| c.expiration.as_ref())
                .and_then(|e| e.as_std())
                .unwrap_or(DEFAULT_ROOT_VALIDITY);
            let bundle = atoll_cp::mesh_ca::builtin_ca(
                store,
                mesh,
                &name,
                validity,
                now,
                Generation::FromGlobal,
            )
            .await?;
            Ok(bundle.map(|b| b.cert_pem))
        }
        CaConf::Provided(provided) => Ok(Some(
            read_source(store, mesh, provided.cert.as_ref(), "cert").await?,
        )),
        CaConf::Other(_) => Ok(None),
    }
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

/// Creates the builtin CAs the stored Mesh `mesh` declares and the store lacks (a standalone
/// zone owns its meshes' CAs; a federated one receives them from global). Called where the
/// Mesh is observed, never while building a proxy's config. Returns how many backends it saw.
pub async fn provision_builtin_cas(
    store: &dyn Store,
    mesh: &str,
    now: DateTime<Utc>,
) -> Result<usize, CaError> {
    let Some(stored) = store.get(&ResourceKey::global(Kind::Mesh, mesh)).await? else {
        return Ok(0);
    };
    let doc: MeshDoc =
        serde_json::from_value(serde_json::Value::Object(stored.spec)).map_err(|e| {
            CaError::Config {
                mesh: mesh.to_string(),
                reason: format!("unreadable Mesh: {e}"),
            }
        })?;
    Ok(atoll_cp::mesh_ca::ensure_builtin_cas(store, mesh, &doc, now).await?)
}
