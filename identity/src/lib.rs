//! Mesh identities for Atoll: everything that proves who a proxy or a zone is.
//!
//! This crate owns:
//! - the **mesh CA** ([`ca`]): generating a self-signed root per mesh or loading one the operator
//!   provides, and issuing workload certificates whose URI SANs carry the SPIFFE id of each service
//!   (`spiffe://<mesh>/<service>`) and every inbound tag (`kuma://<tag>/<value>`), the way Kuma
//!   encodes them so MeshTrafficPermission RBAC can match on them;
//! - the control plane's own **TLS certificate** when the operator provides none
//!   ([`ca::generate_server_cert`]);
//! - **dataplane, zone and user tokens** ([`token`]): ES256 JWTs minted by a CP and verified by any CP
//!   holding the public keys.
//!
//! It does no I/O besides cryptography (key generation and randomness come from `ring`): no files,
//! no network, no tokio. It never reads the clock either: every function that depends on time takes
//! `now: DateTime<Utc>`, so callers decide and tests are deterministic. Storing the CA (as a Secret),
//! distributing keys and scheduling rotation belong to the control-plane crates.

pub mod ca;
mod jwt_crypto;
mod pem;
pub mod tls_client;
pub mod token;

pub use ca::{
    CaBundle, IssuedCert, ServerTls, TlsUsage, WorkloadCertRequest, generate_root_ca,
    generate_server_cert, generate_tls_cert, is_ca_certificate, issue_workload_cert,
    load_provided_ca, rotation_at, rotation_due, spiffe_id, tag_uri, tls_error_hint,
};
pub use token::{
    DataplaneClaims, PublicKey, Scope, SigningKey, TokenError, UserClaims, ZoneClaims, new_jti,
    sign_dataplane_token, sign_user_token, sign_zone_token, verify_dataplane_token,
    verify_user_token, verify_zone_token,
};

use chrono::{DateTime, Utc};

/// Errors from CA handling, certificate issuance and token minting.
///
/// Token *verification* has its own error type, [`TokenError`], because its callers react to each
/// case (unknown key, expired, forged) differently.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The input holds no parsable X.509 certificate.
    #[error("not a certificate: {0}")]
    NotACertificate(String),
    /// The certificate parses but may not issue certificates.
    #[error("certificate is not a CA: {0}")]
    NotACa(String),
    /// The private key could not be read or is of an unsupported kind.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// The private key is valid but belongs to another certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// The CA certificate's validity ended before `now`.
    #[error("the CA certificate expired at {not_after}")]
    CaExpired {
        /// End of the CA certificate's validity.
        not_after: DateTime<Utc>,
    },
    /// The CA certificate's validity starts after `now`.
    #[error("the CA certificate is not valid before {not_before}")]
    CaNotYetValid {
        /// Start of the CA certificate's validity.
        not_before: DateTime<Utc>,
    },
    /// The CA is well formed but Atoll cannot issue under it (for example a subject name that
    /// cannot be reproduced byte for byte in issued certificates).
    #[error("unsupported CA: {0}")]
    UnsupportedCa(String),
    /// A request parameter is unusable (empty name, characters not allowed in a URI, zero validity).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The crypto library failed (key generation, signing, encoding).
    #[error("crypto failure: {0}")]
    Crypto(String),
}

/// Result alias for this crate's fallible operations other than token verification.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
