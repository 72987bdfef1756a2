//! Where a mesh's builtin CA lives: two mesh Secrets, `<mesh>.ca-builtin-cert-<backend>` and
//! `<mesh>.ca-builtin-key-<backend>` (Kuma's names). Whoever owns the mesh generates them once: a
//! standalone zone for itself, the global control plane for every zone (KDS syncs the Secrets,
//! so proxies in different zones chain to the same root and trust each other). A zone connected
//! to a global never generates one: it waits for global's.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use atoll_core::kinds::mesh::{CaConf, MeshDoc};
use atoll_core::{Kind, Resource, ResourceKey};
use atoll_identity::CaBundle;
use atoll_store::{Store, StoreError};

/// Lifetime of a generated builtin root (Kuma: 10 years).
pub const DEFAULT_ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub fn cert_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-cert-{backend}")
}

pub fn key_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-key-{backend}")
}

#[derive(Debug, thiserror::Error)]
pub enum BuiltinCaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mesh {mesh:?}: {reason}")]
    Unusable { mesh: String, reason: String },
    #[error("mesh {mesh:?}: builtin CA {backend:?}: {source}")]
    Identity {
        mesh: String,
        backend: String,
        source: atoll_identity::IdentityError,
    },
}

/// Whether a missing builtin CA may be generated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// This control plane owns the mesh (global, or a standalone zone).
    Allowed,
    /// The mesh comes from a global control plane, which generates the CA.
    FromGlobal,
}

/// The builtin CA of `backend`, generated and stored on first use when `generation` allows it.
/// `Ok(None)` when it is missing and must come from global.
pub async fn builtin_ca(
    store: &dyn Store,
    mesh: &str,
    backend: &str,
    validity: Duration,
    now: DateTime<Utc>,
    generation: Generation,
) -> Result<Option<CaBundle>, BuiltinCaError> {
    let identity_err = |source| BuiltinCaError::Identity {
        mesh: mesh.to_string(),
        backend: backend.to_string(),
        source,
    };
    let cert_key = ResourceKey::new(Kind::Secret, mesh, cert_secret_name(mesh, backend));
    let key_key = ResourceKey::new(Kind::Secret, mesh, key_secret_name(mesh, backend));
    for _ in 0..3 {
        let cert = store.get(&cert_key).await?;
        let key = store.get(&key_key).await?;
        if let (Some(cert), Some(key)) = (&cert, &key) {
            let cert_pem = secret_text(cert, mesh)?;
            let key_pem = secret_text(key, mesh)?;
            return atoll_identity::load_provided_ca(&cert_pem, &key_pem, now)
                .map(Some)
                .map_err(identity_err);
        }
        if generation == Generation::FromGlobal {
            return Ok(None);
        }
        // Generate once; a concurrent creator (another replica) wins and we read theirs.
        let fresh = atoll_identity::generate_root_ca(mesh, validity, now).map_err(identity_err)?;
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
            return Ok(Some(fresh));
        }
    }
    Err(BuiltinCaError::Unusable {
        mesh: mesh.to_string(),
        reason: "the builtin CA secrets keep changing under us".into(),
    })
}

/// Generates every missing builtin CA a Mesh declares (each builtin backend, enabled or not,
/// so switching backends needs no wait). Global calls it for every Mesh it stores.
pub async fn ensure_builtin_cas(
    store: &dyn Store,
    mesh: &str,
    doc: &MeshDoc,
    now: DateTime<Utc>,
) -> Result<usize, BuiltinCaError> {
    let Some(mtls) = &doc.mtls else {
        return Ok(0);
    };
    let mut count = 0;
    for backend in &mtls.backends {
        let (Some(name), Ok(CaConf::Builtin(builtin))) = (&backend.name, backend.typed_conf())
        else {
            continue;
        };
        let validity = builtin
            .ca_cert
            .as_ref()
            .and_then(|c| c.expiration.as_ref())
            .and_then(|e| e.as_std())
            .unwrap_or(DEFAULT_ROOT_VALIDITY);
        builtin_ca(store, mesh, name, validity, now, Generation::Allowed).await?;
        count += 1;
    }
    Ok(count)
}

fn create_ok(r: Result<Resource, StoreError>) -> Result<bool, BuiltinCaError> {
    match r {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The text a Secret carries (`data`, base64).
pub fn secret_text(secret: &Resource, mesh: &str) -> Result<String, BuiltinCaError> {
    let bad = |reason: &str| BuiltinCaError::Unusable {
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

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_store::memory::MemoryStore;

    fn mesh_doc(yaml: &str) -> MeshDoc {
        let value: Value = serde_saphyr::from_str(yaml).expect("yaml");
        serde_json::from_value(value).expect("mesh doc")
    }

    #[tokio::test]
    async fn a_zone_fed_by_global_waits_and_the_owner_generates_once() {
        let store = MemoryStore::new();
        let now = Utc::now();
        let waiting = builtin_ca(
            &store,
            "default",
            "ca-1",
            DEFAULT_ROOT_VALIDITY,
            now,
            Generation::FromGlobal,
        )
        .await
        .expect("no store error");
        assert!(waiting.is_none(), "a zone must not invent its own CA");
        let doc = mesh_doc(
            "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n",
        );
        assert_eq!(
            ensure_builtin_cas(&store, "default", &doc, now)
                .await
                .expect("generated"),
            2
        );
        let first = builtin_ca(
            &store,
            "default",
            "ca-1",
            DEFAULT_ROOT_VALIDITY,
            now,
            Generation::FromGlobal,
        )
        .await
        .expect("read")
        .expect("present now");
        ensure_builtin_cas(&store, "default", &doc, now)
            .await
            .expect("idempotent");
        let again = builtin_ca(
            &store,
            "default",
            "ca-1",
            DEFAULT_ROOT_VALIDITY,
            now,
            Generation::Allowed,
        )
        .await
        .expect("read")
        .expect("present");
        assert_eq!(first.cert_pem, again.cert_pem, "the root is generated once");
        let other = builtin_ca(
            &store,
            "default",
            "ca-2",
            DEFAULT_ROOT_VALIDITY,
            now,
            Generation::FromGlobal,
        )
        .await
        .expect("read")
        .expect("present");
        assert_ne!(first.cert_pem, other.cert_pem, "one root per backend");
    }
}
