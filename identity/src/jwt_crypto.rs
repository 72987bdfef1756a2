//! ES256 for `jsonwebtoken`, computed by `ring`.
//!
//! From version 10 on, jsonwebtoken's own back-ends are aws-lc-rs or the RustCrypto crates;
//! either would add a second crypto stack beside ring, which rustls, rcgen and the mesh CA
//! already use. The crate takes a custom `CryptoProvider` instead, so this module gives it
//! ES256 signing and verification from ring, and nothing else: a token naming any other
//! algorithm is refused before it reaches a provider.
//!
//! Keys, as this provider reads them: an `EncodingKey` holds the PKCS#8 DER of a P-256 key, a
//! `DecodingKey` the 65-byte uncompressed public point.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};

static RING_ES256: CryptoProvider = CryptoProvider {
    signer_factory: es256_signer,
    verifier_factory: es256_verifier,
    // No JWKs: Atoll's keys travel as PEM.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring's ES256 jsonwebtoken's provider for this process. Called before every sign and
/// verify: jsonwebtoken looks its provider up per call and has none by default with the
/// features Atoll builds it with. The first provider installed in a process stays; nothing else
/// in Atoll installs one.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = RING_ES256.install_default();
    });
}

fn es256_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::ES256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        key.as_bytes(),
        &SystemRandom::new(),
    )
    .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    Ok(Box::new(Es256Signer(pair)))
}

fn es256_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::ES256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Es256Verifier(key.try_get_as_bytes()?.to_vec())))
}

struct Es256Signer(EcdsaKeyPair);

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        self.0
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// The uncompressed P-256 point.
struct Es256Verifier(Vec<u8>);

impl Verifier<Vec<u8>> for Es256Verifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(message, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}
