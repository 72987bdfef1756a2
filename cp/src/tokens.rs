//! Tokens. Dataplane tokens: each mesh has an ES256 signing key, kept as the mesh Secret
//! `dataplane-token-signing-key` (created on first use), that mints tokens naming one dataplane.
//! Zone tokens: the global control plane's key, kept as the GlobalSecret
//! `zone-token-signing-key`, mints tokens naming one zone and a scope (cp, ingress, egress).
//! User tokens: each control plane's key, kept as the GlobalSecret `user-token-signing-key`,
//! mints tokens naming a REST API user and its groups; the GlobalSecret `user-token-revocations`
//! lists the ids of revoked ones (comma-separated, as Kuma writes it).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_identity::token::{
    DataplaneClaims, PublicKey, Scope, SigningKey, UserClaims, ZoneClaims, new_jti,
    sign_dataplane_token, sign_user_token, sign_zone_token,
};
use atoll_store::{Store, StoreError};

/// Name of the mesh Secret holding the dataplane-token signing key (PKCS#8 PEM). It never leaves
/// the control plane that made it (KDS skips it).
pub const SIGNING_KEY_SECRET: &str = "dataplane-token-signing-key";
/// Name of the mesh Secret holding the public half of global's signing key (SPKI PEM), which
/// global publishes so zones verify the dataplane tokens it mints.
pub const PUBLIC_KEY_SECRET: &str = "dataplane-token-public-key";
/// Name of the GlobalSecret holding the public half of the zone-token signing key, published
/// by global so zones verify ingress and egress tokens.
pub const ZONE_PUBLIC_KEY_SECRET: &str = "zone-token-public-key";

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

/// Name of the GlobalSecret holding this control plane's user-token signing key. Like every
/// GlobalSecret but the public keys, KDS never syncs it: a user token is good on the control
/// plane that minted it.
pub const USER_SIGNING_KEY_SECRET: &str = "user-token-signing-key";
/// Name of the GlobalSecret listing revoked user-token ids (`data`: base64 of `id1,id2,...`).
pub const USER_REVOCATIONS_SECRET: &str = "user-token-revocations";

/// Mints a user token for `name` in `groups`, valid for `valid_for` from `now`; returns the
/// token and its id (what revocation names).
pub async fn issue_user_token(
    store: &dyn Store,
    name: &str,
    groups: Vec<String>,
    valid_for: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<(String, String), TokenStoreError> {
    let key = load_or_create_key(
        store,
        ResourceKey::global(Kind::GlobalSecret, USER_SIGNING_KEY_SECRET),
    )
    .await?;
    let validity =
        chrono::Duration::from_std(valid_for).map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let jti = new_jti().map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let claims = UserClaims {
        name: name.into(),
        groups,
        iat: now,
        exp: now + validity,
        jti: jti.clone(),
    };
    let token = sign_user_token(&key, &claims).map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    Ok((token, jti))
}

/// The key that verifies user tokens: this control plane's signing key (none before the first
/// user token was minted, so no user token verifies).
pub async fn user_verification_keys(store: &dyn Store) -> Result<Vec<PublicKey>, TokenStoreError> {
    let signing = ResourceKey::global(Kind::GlobalSecret, USER_SIGNING_KEY_SECRET);
    match store.get(&signing).await? {
        Some(secret) => Ok(vec![decode_key("", &secret)?.public_key()]),
        None => Ok(Vec::new()),
    }
}

/// The ids of revoked user tokens.
pub async fn revoked_user_tokens(
    store: &dyn Store,
) -> Result<std::collections::BTreeSet<String>, TokenStoreError> {
    let key = ResourceKey::global(Kind::GlobalSecret, USER_REVOCATIONS_SECRET);
    match store.get(&key).await? {
        Some(secret) => Ok(parse_revocations(&secret_pem("", &secret)?)),
        None => Ok(Default::default()),
    }
}

fn parse_revocations(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// Adds `jti` to the revocation list (created on first use). Returns false when it was already
/// there. Retries on a concurrent change of the list.
pub async fn revoke_user_token(store: &dyn Store, jti: &str) -> Result<bool, TokenStoreError> {
    let key = ResourceKey::global(Kind::GlobalSecret, USER_REVOCATIONS_SECRET);
    for _ in 0..5 {
        let current = store.get(&key).await?;
        let mut ids = match &current {
            Some(secret) => parse_revocations(&secret_pem("", secret)?),
            None => Default::default(),
        };
        if !ids.insert(jti.to_string()) {
            return Ok(false);
        }
        let text = ids.into_iter().collect::<Vec<_>>().join(",");
        let mut secret = Resource::new(Kind::GlobalSecret, "", USER_REVOCATIONS_SECRET);
        secret.spec.insert(
            "data".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
        );
        let written = match &current {
            Some(c) => store.update(secret, c.version).await.map(|_| ()),
            None => store.create(secret).await.map(|_| ()),
        };
        match written {
            Ok(()) => return Ok(true),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TokenStoreError::Mint(
        "the revocation list kept changing under concurrent writes; try again".into(),
    ))
}

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

/// The public keys that verify zone tokens: on global, its signing key only (a replaced key
/// invalidates the old tokens at once, whatever the published copy says); on a zone, the public
/// key global published.
pub async fn zone_verification_keys(store: &dyn Store) -> Result<Vec<PublicKey>, TokenStoreError> {
    let signing = ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET);
    if let Some(secret) = store.get(&signing).await? {
        return Ok(vec![decode_key("", &secret)?.public_key()]);
    }
    let public = ResourceKey::global(Kind::GlobalSecret, ZONE_PUBLIC_KEY_SECRET);
    match store.get(&public).await? {
        Some(secret) => Ok(vec![decode_public_key("", &secret)?]),
        None => Ok(Vec::new()),
    }
}

async fn keys_of(
    store: &dyn Store,
    mesh: &str,
    signing: ResourceKey,
    public: ResourceKey,
) -> Result<Vec<PublicKey>, TokenStoreError> {
    let mut keys = Vec::new();
    if let Some(secret) = store.get(&signing).await? {
        keys.push(decode_key(mesh, &secret)?.public_key());
    }
    if let Some(secret) = store.get(&public).await? {
        let key = decode_public_key(mesh, &secret)?;
        if keys.iter().all(|k| k.kid() != key.kid()) {
            keys.push(key);
        }
    }
    Ok(keys)
}

fn decode_public_key(mesh: &str, secret: &Resource) -> Result<PublicKey, TokenStoreError> {
    let pem = secret_pem(mesh, secret)?;
    PublicKey::from_pem(&pem).map_err(|e| TokenStoreError::BadKey {
        mesh: mesh.into(),
        reason: e.to_string(),
    })
}

/// Removes the published public half of a deleted signing key (tokens it signed stop verifying
/// in the zones too). Returns whether anything was removed.
pub async fn withdraw_public_key(
    store: &dyn Store,
    signing: &ResourceKey,
    public_name: &str,
) -> Result<bool, TokenStoreError> {
    if store.get(signing).await?.is_some() {
        return Ok(false);
    }
    let public = ResourceKey::new(signing.kind, signing.mesh.clone(), public_name);
    match store.delete(&public, None).await {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes (or refreshes) the public half of the signing key held in `signing` as the Secret or
/// GlobalSecret `public_name` beside it. Global calls it so zones can verify what it signs.
/// Returns whether anything was written.
pub async fn publish_public_key(
    store: &dyn Store,
    signing: &ResourceKey,
    public_name: &str,
) -> Result<bool, TokenStoreError> {
    let Some(secret) = store.get(signing).await? else {
        return Ok(false);
    };
    let pem = decode_key(&signing.mesh, &secret)?.public_key().to_pem();
    let data = Value::String(base64::engine::general_purpose::STANDARD.encode(pem));
    let public_key = ResourceKey::new(signing.kind, signing.mesh.clone(), public_name);
    let mut public = Resource::new(signing.kind, signing.mesh.clone(), public_name);
    public.spec.insert("data".into(), data);
    match store.get(&public_key).await? {
        Some(current) if current.spec == public.spec => Ok(false),
        Some(current) => {
            store.update(public, current.version).await?;
            Ok(true)
        }
        None => match store.create(public).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e.into()),
        },
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

/// What manages `key` when it is a system secret: the token signing keys and their published
/// public halves, and builtin CA material. The control plane writes them; the generic API must
/// not (an overwritten or deleted key locked zones out and made token endpoints fail), so a
/// rotation goes through [`rotate_signing_key`].
pub fn system_secret(key: &ResourceKey) -> Option<&'static str> {
    match key.kind {
        Kind::GlobalSecret if key.name == ZONE_SIGNING_KEY_SECRET => Some(
            "the zone-token signing key (rotate it with POST /tokens/zone/_rotate-signing-key)",
        ),
        Kind::GlobalSecret if key.name == USER_SIGNING_KEY_SECRET => Some(
            "the user-token signing key (rotate it with POST /tokens/user/_rotate-signing-key)",
        ),
        Kind::GlobalSecret if key.name == ZONE_PUBLIC_KEY_SECRET => {
            Some("the published zone-token verification key")
        }
        Kind::Secret if key.name == SIGNING_KEY_SECRET => Some(
            "the mesh's dataplane-token signing key (rotate it with POST /tokens/dataplane/_rotate-signing-key)",
        ),
        Kind::Secret if key.name == PUBLIC_KEY_SECRET => {
            Some("the published dataplane-token verification key")
        }
        Kind::Secret
            if key
                .name
                .strip_prefix(&format!("{}.ca-builtin-", key.mesh))
                .is_some_and(|rest| rest.starts_with("cert-") || rest.starts_with("key-")) =>
        {
            Some("builtin CA material of the mesh")
        }
        _ => None,
    }
}

/// Replaces the signing key in `key` (a mesh's dataplane-token key or global's zone-token key)
/// with a freshly generated one: every token it signed stops verifying at once, here and, once
/// the new public half is published, in the zones. Returns the new key's id.
pub async fn rotate_signing_key(
    store: &dyn Store,
    key: ResourceKey,
) -> Result<String, TokenStoreError> {
    let fresh = SigningKey::generate().map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let mut secret = Resource::new(key.kind, key.mesh.clone(), key.name.clone());
    let data = base64::engine::general_purpose::STANDARD.encode(fresh.to_pkcs8_pem());
    secret.spec.insert("data".into(), Value::String(data));
    match store.get(&key).await? {
        Some(current) => store.update(secret, current.version).await?,
        None => store.create(secret).await?,
    };
    tracing::info!(secret = %key, kid = fresh.kid(), "rotated a token signing key");
    Ok(fresh.kid().to_string())
}

/// The public keys that verify a mesh's dataplane tokens: this control plane's own signing key
/// and the one global published (none if nobody minted one).
pub async fn verification_keys(
    store: &dyn Store,
    mesh: &str,
) -> Result<Vec<PublicKey>, TokenStoreError> {
    keys_of(
        store,
        mesh,
        ResourceKey::new(Kind::Secret, mesh, SIGNING_KEY_SECRET),
        ResourceKey::new(Kind::Secret, mesh, PUBLIC_KEY_SECRET),
    )
    .await
}

fn decode_key(mesh: &str, secret: &Resource) -> Result<SigningKey, TokenStoreError> {
    let pem = secret_pem(mesh, secret)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| TokenStoreError::BadKey {
        mesh: mesh.into(),
        reason: e.to_string(),
    })
}

fn secret_pem(mesh: &str, secret: &Resource) -> Result<String, TokenStoreError> {
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
    String::from_utf8(pem).map_err(|e| bad(e.to_string()))
}

/// Mints a token for dataplane `name` of `mesh`, bound to `tags` when given, valid for
/// `valid_for` from `now`.
pub async fn issue_dataplane_token(
    store: &dyn Store,
    mesh: &str,
    name: &str,
    proxy_type: Option<String>,
    tags: Option<std::collections::BTreeMap<String, Vec<String>>>,
    valid_for: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<String, TokenStoreError> {
    let key = signing_key(store, mesh).await?;
    let validity =
        chrono::Duration::from_std(valid_for).map_err(|e| TokenStoreError::Mint(e.to_string()))?;
    let claims = DataplaneClaims {
        mesh: mesh.into(),
        name: name.into(),
        tags,
        proxy_type,
        iat: now,
        exp: now + validity,
        jti: new_jti().map_err(|e| TokenStoreError::Mint(e.to_string()))?,
    };
    sign_dataplane_token(&key, &claims).map_err(|e| TokenStoreError::Mint(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_store::MemoryStore;

    /// Copies one resource from global's store into a zone's, as KDS does.
    async fn sync(from: &MemoryStore, to: &MemoryStore, key: ResourceKey) {
        let r = from.get(&key).await.expect("read").expect("present");
        to.create(Resource { version: 0, ..r })
            .await
            .expect("synced");
    }

    #[tokio::test]
    async fn a_zone_verifies_globals_tokens_with_the_published_public_keys_only() {
        let global = MemoryStore::new();
        let zone = MemoryStore::new();
        let now = Utc::now();
        let day = std::time::Duration::from_secs(86400);
        let token = issue_dataplane_token(&global, "default", "web-1", None, None, day, now)
            .await
            .expect("minted");
        let zone_token = issue_zone_token(&global, "zone-1", Scope::Ingress, day, now)
            .await
            .expect("minted");
        assert!(
            verification_keys(&zone, "default")
                .await
                .expect("keys")
                .is_empty()
        );

        let signing = ResourceKey::new(Kind::Secret, "default", SIGNING_KEY_SECRET);
        assert!(
            publish_public_key(&global, &signing, PUBLIC_KEY_SECRET)
                .await
                .expect("published")
        );
        assert!(
            !publish_public_key(&global, &signing, PUBLIC_KEY_SECRET)
                .await
                .expect("idempotent")
        );
        let zone_signing = ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET);
        publish_public_key(&global, &zone_signing, ZONE_PUBLIC_KEY_SECRET)
            .await
            .expect("published");
        sync(
            &global,
            &zone,
            ResourceKey::new(Kind::Secret, "default", PUBLIC_KEY_SECRET),
        )
        .await;
        sync(
            &global,
            &zone,
            ResourceKey::global(Kind::GlobalSecret, ZONE_PUBLIC_KEY_SECRET),
        )
        .await;

        let keys = verification_keys(&zone, "default").await.expect("keys");
        let claims = atoll_identity::verify_dataplane_token(
            &token,
            &keys,
            now,
            atoll_identity::token::LEEWAY,
        )
        .expect("valid");
        assert_eq!(claims.name, "web-1");
        let zone_keys = zone_verification_keys(&zone).await.expect("keys");
        let claims = atoll_identity::verify_zone_token(
            &zone_token,
            &zone_keys,
            now,
            atoll_identity::token::LEEWAY,
        )
        .expect("valid");
        assert_eq!(claims.scope, Scope::Ingress);
        // The zone holds no private key: what it would mint with its own fresh key is not
        // accepted by global.
        assert!(zone.get(&signing).await.expect("read").is_none());
        let forged = issue_dataplane_token(&zone, "default", "web-1", None, None, day, now)
            .await
            .expect("zone mints with its own key");
        let global_keys = verification_keys(&global, "default").await.expect("keys");
        assert!(
            atoll_identity::verify_dataplane_token(
                &forged,
                &global_keys,
                now,
                atoll_identity::token::LEEWAY
            )
            .is_err()
        );

        // Global drops its zone-token key: the published copy is withdrawn with it (global's
        // publisher does it on the delete event), and nothing verifies the old tokens any more.
        assert!(
            !withdraw_public_key(&global, &zone_signing, ZONE_PUBLIC_KEY_SECRET)
                .await
                .expect("kept while the key exists")
        );
        global.delete(&zone_signing, None).await.expect("deleted");
        assert!(
            withdraw_public_key(&global, &zone_signing, ZONE_PUBLIC_KEY_SECRET)
                .await
                .expect("withdrawn")
        );
        assert!(
            zone_verification_keys(&global)
                .await
                .expect("keys")
                .is_empty()
        );
        let public = ResourceKey::global(Kind::GlobalSecret, ZONE_PUBLIC_KEY_SECRET);
        assert!(global.get(&public).await.expect("read").is_none());
    }
}
