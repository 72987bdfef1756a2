//! Dataplane, zone and user tokens: compact JWTs (RFC 7519, JWS compact serialization) signed with
//! ES256 (ECDSA P-256 + SHA-256, raw 64-byte `r || s` signatures, RFC 7518 §3.4).
//!
//! Header: `{"alg":"ES256","typ":"JWT","kid":"<kid>"}`. Payload: the claims plus
//! `"kind": "dataplane" | "zone" | "user"`, so one kind of token is never accepted as the other. `iat`,
//! `exp` (and `nbf`, honoured if present) are NumericDates (seconds since the epoch).
//!
//! A [`SigningKey`] mints tokens; its [`PublicKey`] (SPKI PEM, which is also its serde form) can be
//! handed to CPs that must verify but never mint: the global CP syncs its zone-token keys to the
//! zones this way. Keys are told apart by `kid`, the first 16 hex digits of the SHA-256 of the
//! public key's SPKI DER, so several keys can be trusted at once during a rotation.
//!
//! The JWS mechanics (segments, base64url, header and claims JSON, the signature) are
//! `jsonwebtoken`'s, with ES256 computed by ring (`jwt_crypto`). Atoll keeps what is its own:
//! which header fields it accepts, the `kind` claim, and `exp`/`nbf` checked against the `now`
//! the caller passes (jsonwebtoken reads the system clock, which tests cannot move).
//!
//! Verification never panics, whatever the input: oversized tokens are refused before decoding.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::pem::{self as pki_pem, PemObject};
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{IdentityError, Result, jwt_crypto, pem};

/// The default clock leeway applied to `exp` and `nbf` (control planes make it a setting).
pub const LEEWAY: TimeDelta = TimeDelta::seconds(30);

/// Longest token accepted for verification, in bytes; longer input is refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Length of an ES256 signature (64 bytes) in unpadded base64url.
const SIGNATURE_B64_LEN: usize = 86;
const KIND_DATAPLANE: &str = "dataplane";
const KIND_ZONE: &str = "zone";
const KIND_USER: &str = "user";

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1), before the 65-byte
/// uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P256_POINT_LEN: usize = 65;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed ES256 JWT of ours (segments, base64url, JSON, required claims).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// No trusted key has this `kid`.
    #[error("token signed by unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify under the key named by `kid`.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` (plus the leeway) is before `now`.
    #[error("token expired at {at}")]
    Expired {
        /// The token's `exp`.
        at: DateTime<Utc>,
    },
    /// `nbf` is after `now` (plus the leeway).
    #[error("token not valid before {nbf}")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: DateTime<Utc>,
    },
    /// A valid token of another kind (a zone token presented as a dataplane token, say).
    #[error("expected a {expected} token, got {found}")]
    WrongKind {
        /// The kind the caller asked for.
        expected: &'static str,
        /// The token's `kind` claim (`<missing>` if absent).
        found: String,
    },
    /// The header's `alg` is not ES256 (`none` included).
    #[error("unsupported token algorithm {0:?} (only ES256 is accepted)")]
    UnsupportedAlgorithm(String),
}

/// What a dataplane token grants: the CP compares these with the Dataplane the proxy presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneClaims {
    /// Mesh the dataplane must belong to.
    pub mesh: String,
    /// Name the dataplane must have (what an empty name means is the CP's policy).
    pub name: String,
    /// Tags the dataplane must carry, each with the values it may take (Kuma's `--tag`
    /// binding: `kuma.io/service=backend` binds the token to that service's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Vec<String>>>,
    /// Proxy type (`dataplane`, `ingress`, `egress`), if restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_type: Option<String>,
    /// Issued at.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub iat: DateTime<Utc>,
    /// Expires at.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub exp: DateTime<Utc>,
    /// Unique token id (see [`new_jti`]), for revocation lists.
    pub jti: String,
}

/// What a zone token grants: a zone CP (or its ingress/egress) identifying to the global CP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneClaims {
    /// Zone name.
    pub zone: String,
    /// What the holder may act as.
    pub scope: Scope,
    /// Issued at.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub iat: DateTime<Utc>,
    /// Expires at.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub exp: DateTime<Utc>,
    /// Unique token id (see [`new_jti`]), for revocation lists.
    pub jti: String,
}

/// Who a user token speaks for: a REST API user and its groups (Kuma's user tokens,
/// `kumactl generate user-token --name --group`). The control plane adds the implicit group
/// `mesh-system:authenticated` when it accepts one; the token carries only what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    /// User name.
    pub name: String,
    /// Groups the user belongs to (may be empty).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Issued at.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub iat: DateTime<Utc>,
    /// Expires at.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub exp: DateTime<Utc>,
    /// Unique token id (see [`new_jti`]): what a revocation list names.
    pub jti: String,
}

/// The role a zone token is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The zone control plane (KDS).
    Cp,
    /// The zone's ingress proxy.
    Ingress,
    /// The zone's egress proxy.
    Egress,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Cp => "cp",
            Scope::Ingress => "ingress",
            Scope::Egress => "egress",
        })
    }
}

/// An ES256 private key that mints tokens.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| IdentityError::Crypto("P-256 key generation failed".into()))?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Reads a P-256 key from PKCS#8 PEM (`BEGIN PRIVATE KEY`), as [`Self::to_pkcs8_pem`] writes.
    pub fn from_pkcs8_pem(pem_str: &str) -> Result<Self> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem_str.as_bytes()).map_err(|e| match e {
            pki_pem::Error::NoItemsFound => {
                IdentityError::InvalidKey("no PRIVATE KEY PEM block found".into())
            }
            e => IdentityError::InvalidKey(format!("bad PEM: {e}")),
        })?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| IdentityError::InvalidKey(format!("not a PKCS#8 P-256 key: {e}")))?;
        let public = PublicKey::from_point(pair.public_key().as_ref())
            .map_err(|e| IdentityError::InvalidKey(e.to_string()))?;
        Ok(Self {
            pkcs8: pkcs8.to_vec(),
            encoding: EncodingKey::from_ec_der(pkcs8),
            public,
        })
    }

    /// The key as PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub fn to_pkcs8_pem(&self) -> String {
        pem::encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The key id written in every token's header (see [`PublicKey::kid`]).
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The public half, for verifiers.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }
}

/// An ES256 public key that verifies tokens. Serializes as its SPKI PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey {
    /// Uncompressed SEC1 point (65 bytes).
    point: Vec<u8>,
    kid: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

impl PublicKey {
    fn from_point(point: &[u8]) -> Result<Self> {
        if point.len() != P256_POINT_LEN || point.first() != Some(&0x04) {
            return Err(IdentityError::InvalidKey(
                "not an uncompressed P-256 public key".into(),
            ));
        }
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        let kid = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            point: point.to_vec(),
            kid,
        })
    }

    /// Reads an SPKI PEM (`BEGIN PUBLIC KEY`) holding a P-256 key.
    pub fn from_pem(pem_str: &str) -> Result<Self> {
        let der =
            SubjectPublicKeyInfoDer::from_pem_slice(pem_str.as_bytes()).map_err(|e| match e {
                pki_pem::Error::NoItemsFound => {
                    IdentityError::InvalidKey("no PUBLIC KEY PEM block found".into())
                }
                e => IdentityError::InvalidKey(format!("bad PEM: {e}")),
            })?;
        match der.as_ref().strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => Self::from_point(point),
            None => Err(IdentityError::InvalidKey(
                "not a P-256 (prime256v1) public key".into(),
            )),
        }
    }

    /// The key as SPKI PEM (`BEGIN PUBLIC KEY`).
    pub fn to_pem(&self) -> String {
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&self.point);
        pem::encode("PUBLIC KEY", &spki)
    }

    /// Stable key id: the first 16 hex digits of the SHA-256 of the SPKI DER.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as `jwt_crypto` reads it: the uncompressed point.
    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ec_der(&self.point)
    }
}

impl TryFrom<String> for PublicKey {
    type Error = IdentityError;
    fn try_from(pem_str: String) -> Result<Self> {
        Self::from_pem(&pem_str)
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_pem()
    }
}

/// A random token id: 128 bits, lowercase hex.
pub fn new_jti() -> Result<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdentityError::Crypto("no randomness for a token id".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl DataplaneClaims {
    /// Checks the token's tag binding against the tags a dataplane carries (every value of
    /// each tag, over all its inbounds), as Kuma does: each bound tag must be present, and
    /// every value the dataplane gives it must be one the token allows.
    pub fn admits_tags(
        &self,
        dataplane_tags: &BTreeMap<String, std::collections::BTreeSet<String>>,
    ) -> std::result::Result<(), String> {
        for (tag, allowed) in self.tags.iter().flatten() {
            let Some(values) = dataplane_tags.get(tag) else {
                return Err(format!(
                    "the dataplane has no tag {tag:?}, which its token requires"
                ));
            };
            if let Some(value) = values.iter().find(|v| !allowed.contains(v)) {
                return Err(format!(
                    "the dataplane's tag {tag:?} has the value {value:?}, which its token does not allow (allowed: {})",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether the token binds the dataplane's service (`kuma.io/service`).
    pub fn binds_service(&self) -> bool {
        self.tags
            .as_ref()
            .is_some_and(|t| t.get("kuma.io/service").is_some_and(|v| !v.is_empty()))
    }
}

/// Mints a dataplane token.
pub fn sign_dataplane_token(key: &SigningKey, claims: &DataplaneClaims) -> Result<String> {
    sign(key, KIND_DATAPLANE, claims)
}

/// Verifies a dataplane token against the trusted `keys` at `now` (with `leeway`) and returns
/// its claims.
/// Comparing them with the Dataplane presented is the caller's job.
///
/// Checks, in order: size (at most [`MAX_TOKEN_BYTES`]; surrounding whitespace is ignored), three
/// base64url segments, a JSON header with `alg` ES256, `typ` JWT if present, no `crit`, and a
/// `kid` naming one of `keys`; the signature; then (authenticated) `kind`, `exp` and `nbf` with
/// `leeway` for clock skew (usually [`LEEWAY`]), and the claims' shape.
pub fn verify_dataplane_token(
    token: &str,
    keys: &[PublicKey],
    now: DateTime<Utc>,
    leeway: TimeDelta,
) -> Result<DataplaneClaims, TokenError> {
    verify(token, keys, now, leeway, KIND_DATAPLANE)
}

/// Mints a zone token.
pub fn sign_zone_token(key: &SigningKey, claims: &ZoneClaims) -> Result<String> {
    sign(key, KIND_ZONE, claims)
}

/// Verifies a zone token against the trusted `keys` at `now` (with `leeway`) and returns its
/// claims.
pub fn verify_zone_token(
    token: &str,
    keys: &[PublicKey],
    now: DateTime<Utc>,
    leeway: TimeDelta,
) -> Result<ZoneClaims, TokenError> {
    verify(token, keys, now, leeway, KIND_ZONE)
}

/// Mints a user token.
pub fn sign_user_token(key: &SigningKey, claims: &UserClaims) -> Result<String> {
    sign(key, KIND_USER, claims)
}

/// Verifies a user token against the trusted `keys` at `now` (with `leeway`) and returns its
/// claims. Checking
/// the revocation list is the caller's job.
pub fn verify_user_token(
    token: &str,
    keys: &[PublicKey],
    now: DateTime<Utc>,
    leeway: TimeDelta,
) -> Result<UserClaims, TokenError> {
    verify(token, keys, now, leeway, KIND_USER)
}

#[derive(Serialize)]
struct PayloadOut<'a, C> {
    kind: &'static str,
    #[serde(flatten)]
    claims: &'a C,
}

fn sign<C: Serialize>(key: &SigningKey, kind: &'static str, claims: &C) -> Result<String> {
    jwt_crypto::install();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid().to_string());
    jsonwebtoken::encode(&header, &PayloadOut { kind, claims }, &key.encoding).map_err(|e| match e
        .kind()
    {
        ErrorKind::Json(_) => {
            IdentityError::InvalidRequest(format!("encoding the token claims: {e}"))
        }
        _ => IdentityError::Crypto(format!("signing a token: {e}")),
    })
}

fn malformed(reason: impl Into<String>) -> TokenError {
    TokenError::Malformed(reason.into())
}

/// What jsonwebtoken checks for us: an ES256 signature, nothing of the claims (`verify` checks
/// those against the caller's `now`).
fn signature_only() -> Validation {
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v
}

fn verify<C: DeserializeOwned>(
    token: &str,
    keys: &[PublicKey],
    now: DateTime<Utc>,
    leeway: TimeDelta,
    expected: &'static str,
) -> Result<C, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!(
            "token is {} bytes, more than the {MAX_TOKEN_BYTES} accepted",
            token.len()
        )));
    }
    let token = token.trim();
    let segments: Vec<&str> = token.split('.').collect();
    let [header_b64, _, signature_b64] = segments[..] else {
        return Err(malformed(format!(
            "expected 3 dot-separated segments, found {}",
            segments.len()
        )));
    };

    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        // jsonwebtoken cannot read an algorithm it does not know (`none`): name it anyway.
        match declared_algorithm(header_b64) {
            Some(alg) if alg != "ES256" => TokenError::UnsupportedAlgorithm(alg),
            _ => malformed(format!("header is not a JWS header: {e}")),
        }
    })?;
    if header.alg != Algorithm::ES256 {
        return Err(TokenError::UnsupportedAlgorithm(format!(
            "{:?}",
            header.alg
        )));
    }
    if let Some(typ) = &header.typ
        && !typ.eq_ignore_ascii_case("JWT")
    {
        return Err(malformed(format!("header typ is {typ:?}, not JWT")));
    }
    // No extension is understood here, so none may be critical.
    if header.crit.is_some() {
        return Err(malformed("header has critical extensions (crit)"));
    }
    let Some(kid) = header.kid else {
        return Err(malformed("header has no kid"));
    };
    let candidates: Vec<&PublicKey> = keys.iter().filter(|k| k.kid == kid).collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey(kid));
    }
    // A cut or padded signature is malformed, not merely wrong.
    if signature_b64.len() != SIGNATURE_B64_LEN {
        return Err(malformed(format!(
            "signature is {} base64url characters, ES256 needs {SIGNATURE_B64_LEN}",
            signature_b64.len()
        )));
    }

    jwt_crypto::install();
    let validation = signature_only();
    let mut payload = None;
    for key in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding_key(), &validation) {
            Ok(data) => {
                payload = Some(data.claims);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
            Err(e) => return Err(malformed(e.to_string())),
        }
    }
    let Some(payload) = payload else {
        return Err(TokenError::BadSignature);
    };

    // Authenticated from here on.
    match payload.get("kind") {
        Some(Value::String(kind)) if kind == expected => {}
        Some(Value::String(kind)) => {
            return Err(TokenError::WrongKind {
                expected,
                found: kind.clone(),
            });
        }
        Some(_) => return Err(malformed("kind claim is not a string")),
        None => {
            return Err(TokenError::WrongKind {
                expected,
                found: "<missing>".into(),
            });
        }
    }
    let exp =
        numeric_date(&payload, "exp")?.ok_or_else(|| malformed("payload has no exp claim"))?;
    if now
        > exp
            .checked_add_signed(leeway)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    {
        return Err(TokenError::Expired { at: exp });
    }
    if let Some(nbf) = numeric_date(&payload, "nbf")?
        && now
            .checked_add_signed(leeway)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            < nbf
    {
        return Err(TokenError::NotYetValid { nbf });
    }
    serde_json::from_value(Value::Object(payload))
        .map_err(|e| malformed(format!("claims do not match a {expected} token: {e}")))
}

/// The `alg` a header declares, read leniently: only to name, in the refusal, an algorithm
/// jsonwebtoken has no name for.
fn declared_algorithm(header_b64: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct DeclaredAlgorithm {
        alg: String,
    }
    let json = URL_SAFE_NO_PAD.decode(header_b64).ok()?;
    serde_json::from_slice::<DeclaredAlgorithm>(&json)
        .ok()
        .map(|h| h.alg)
}

/// Reads an optional NumericDate claim (integer seconds; fractions are truncated).
fn numeric_date(
    payload: &Map<String, Value>,
    claim: &str,
) -> Result<Option<DateTime<Utc>>, TokenError> {
    let Some(value) = payload.get(claim) else {
        return Ok(None);
    };
    let seconds = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.trunc() as i64)
        }),
        _ => None,
    };
    seconds
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map(Some)
        .ok_or_else(|| malformed(format!("{claim} is not a valid NumericDate")))
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
