//! Tokens. Dataplane tokens: each mesh has an ES256 signing key, kept as the mesh Secret
//! `dataplane-token-signing-key` (created on first use), that mints tokens naming one dataplane.
//! Zone tokens: the global control plane's key, kept as the GlobalSecret
//! `zone-token-signing-key`, mints tokens naming one zone and a scope (cp, ingress, egress).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_identity::token::{
    DataplaneClaims, PublicKey, Scope, SigningKey, ZoneClaims, new_jti, sign_dataplane_token,
    sign_zone_token,
};
use atoll_store::{Store, StoreError};

/// Name of the mesh Secret holding the dataplane-token signing key (PKCS#8 PEM).
pub const SIGNING_KEY_SECRET: &str = "dataplane-token-signing-key";

/// Why a token could not be issued or keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the signing key secret of mesh {mesh:?} is unreadable: {reason}")]
    BadKey { mesh: String, reason: String },
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

/// Name of the GlobalSecret holding the zone-token signing key (global control plane only).
pub const ZONE_SIGNING_KEY_SECRET: &str = "zone-token-signing-key";

/// The mesh's signing key, created and stored on first use.
pub async fn signing_key(store: &dyn Store, mesh: &str) -> Result<SigningKey, TokenStoreError> {
    load_or_create_key(
        store,
        ResourceKey::new(Kind::Secret, mesh, SIGNING_KEY_SECRET),
    )
    .await
}

/// The global control plane's zone-token signing key, created and stored on first use.
pub async fn zone_signing_key(store: &dyn Store) -> Result<SigningKey, TokenStoreError> {
    load_or_create_key(
        store,
        ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET),
    )
    .await
}

/// The public keys that verify zone tokens.
pub async fn zone_verification_keys(store: &dyn Store) -> Result<Vec<PublicKey>, TokenStoreError> {
    let key = ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET);
    match store.get(&key).await? {
        Some(secret) => Ok(vec![decode_key("", &secret)?.public_key()]),
        None => Ok(Vec::new()),
    }
}

/// Mints a zone token for `zone` with `scope`, valid for `valid_for` from `now`.
pub async fn issue_zone_token(
    store: &dyn Store,
    zone: &str,
    scope: Scope,
    valid_for: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<String, TokenStoreError> {
    let key = zone_signing_key(store).await?;
    let validity =
        chrono::Duration::from_std(valid_for).map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let claims = ZoneClaims {
        zone: zone.into(),
        scope,
        iat: now,
        exp: now + validity,
        jti: new_jti().map_err(|e| TokenStoreError::Mint(e.to_string()))?,
    };
    sign_zone_token(&key, &claims).map_err(|e| TokenStoreError::Mint(e.to_string()))
}

async fn load_or_create_key(
    store: &dyn Store,
    key: ResourceKey,
) -> Result<SigningKey, TokenStoreError> {
    let mesh = key.mesh.clone();
    if let Some(existing) = store.get(&key).await? {
        return decode_key(&mesh, &existing);
    }
    let fresh = SigningKey::generate().map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let mut secret = Resource::new(key.kind, key.mesh.clone(), key.name.clone());
    let data = base64::engine::general_purpose::STANDARD.encode(fresh.to_pkcs8_pem());
    secret.spec.insert("data".into(), Value::String(data));
    match store.create(secret).await {
        Ok(_) => {
            tracing::info!(secret = %key, kid = fresh.kid(), "created a token signing key");
            Ok(fresh)
        }
        // Another replica created it first: use theirs.
        Err(StoreError::AlreadyExists(_)) => match store.get(&key).await? {
            Some(existing) => decode_key(&mesh, &existing),
            None => Err(TokenStoreError::BadKey {
                mesh,
                reason: "created concurrently and then deleted".into(),
            }),
        },
        Err(e) => Err(e.into()),
    }
}

/// The public keys that verify a mesh's dataplane tokens (none if the mesh never minted one).
pub async fn verification_keys(
    store: &dyn Store,
    mesh: &str,
) -> Result<Vec<PublicKey>, TokenStoreError> {
    let key = ResourceKey::new(Kind::Secret, mesh, SIGNING_KEY_SECRET);
    match store.get(&key).await? {
        Some(secret) => Ok(vec![decode_key(mesh, &secret)?.public_key()]),
        None => Ok(Vec::new()),
    }
}

fn decode_key(mesh: &str, secret: &Resource) -> Result<SigningKey, TokenStoreError> {
    let bad = |reason: String| TokenStoreError::BadKey {
        mesh: mesh.into(),
        reason,
    };
    let data = secret
        .spec
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no data".into()))?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| bad(e.to_string()))?;
    let pem = String::from_utf8(pem).map_err(|e| bad(e.to_string()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| bad(e.to_string()))
}

/// Mints a token for dataplane `name` of `mesh`, valid for `valid_for` from `now`.
pub async fn issue_dataplane_token(
    store: &dyn Store,
    mesh: &str,
    name: &str,
    proxy_type: Option<String>,
    valid_for: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<String, TokenStoreError> {
    let key = signing_key(store, mesh).await?;
    let validity =
        chrono::Duration::from_std(valid_for).map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let claims = DataplaneClaims {
        mesh: mesh.into(),
        name: name.into(),
        tags: None,
        proxy_type,
        iat: now,
        exp: now + validity,
        jti: new_jti().map_err(|e| TokenStoreError::Mint(e.to_string()))?,
    };
    sign_dataplane_token(&key, &claims).map_err(|e| TokenStoreError::Mint(e.to_string()))
}
