//! Tokens and the keys that check them.
//!
//! The first byte picks what the rest is:
//! - `0`: a token, verified as a dataplane, a zone and a user token against the fuzzing key;
//! - `1`: a token payload (any bytes), signed here with the fuzzing key so that verification
//!   goes past the signature into the claims (`kind`, `exp`, `nbf`, their shapes);
//! - `2`: a header (any bytes), signed with a fixed payload, for the header checks after base64;
//! - otherwise: a PEM text read as a public key, a PKCS#8 signing key and a provided CA.

use std::sync::OnceLock;

use atoll_identity::token::{
    PublicKey, SigningKey, verify_dataplane_token, verify_user_token, verify_zone_token,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

/// A throwaway P-256 key made for fuzzing (it signs nothing else), so seeds stay valid.
pub const FUZZ_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5IJwu/ju86qHDPHA
kZNyU9dypi6sbmJjfjoZxEu59XChRANCAATw2X46BR5f70a9P36X+SVelXC4I5X4
BbwaEp7iP1NPqKxLqflN1ZW+tK0nOy4CzzIFW1DS6Cqm1jxRFxU+9XSe
-----END PRIVATE KEY-----
";

/// Tokens are checked at this moment (seeds' `exp` lie after it).
pub const NOW_SECONDS: i64 = 1_790_000_000;

struct Keys {
    public: Vec<PublicKey>,
    pair: EcdsaKeyPair,
    kid: String,
}

fn keys() -> Option<&'static Keys> {
    static KEYS: OnceLock<Option<Keys>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signing = SigningKey::from_pkcs8_pem(FUZZ_KEY_PEM).ok()?;
        let der = rustls_der(FUZZ_KEY_PEM)?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                .ok()?;
        Some(Keys {
            public: vec![signing.public_key()],
            kid: signing.kid().to_string(),
            pair,
        })
    })
    .as_ref()
}

/// The DER inside a one-block PEM.
fn rustls_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW_SECONDS, 0).unwrap_or_default()
}

/// A compact JWS of `header` and `payload` signed with the fuzzing key.
pub fn signed(header: &[u8], payload: &[u8]) -> Option<String> {
    let keys = keys()?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = keys
        .pair
        .sign(&SystemRandom::new(), token.as_bytes())
        .ok()?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
    Some(token)
}

/// The header every token of the fuzzing key carries.
pub fn header() -> Vec<u8> {
    let kid = keys().map(|k| k.kid.as_str()).unwrap_or_default();
    format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#).into_bytes()
}

fn verify_all(token: &str) {
    let Some(keys) = keys() else { return };
    if let Err(e) =
        verify_dataplane_token(token, &keys.public, now(), atoll_identity::token::LEEWAY)
    {
        assert!(!e.to_string().is_empty());
    }
    if let Err(e) = verify_zone_token(token, &keys.public, now(), atoll_identity::token::LEEWAY) {
        assert!(!e.to_string().is_empty());
    }
    if let Err(e) = verify_user_token(token, &keys.public, now(), atoll_identity::token::LEEWAY) {
        assert!(!e.to_string().is_empty());
    }
}

pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => verify_all(&String::from_utf8_lossy(rest)),
        1 => {
            if let Some(t) = signed(&header(), rest) {
                verify_all(&t);
            }
        }
        2 => {
            let payload = format!(
                r#"{{"kind":"zone","zone":"z","scope":"cp","iat":{NOW_SECONDS},"exp":{},"jti":"j"}}"#,
                NOW_SECONDS + 60
            );
            if let Some(t) = signed(rest, payload.as_bytes()) {
                verify_all(&t);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let _ = PublicKey::from_pem(&text);
            let _ = SigningKey::from_pkcs8_pem(&text);
            // A provided CA: certificate PEM, then (after a NUL) its key PEM.
            let (cert, key) = text.split_once('\0').unwrap_or((&text, FUZZ_KEY_PEM));
            let _ = atoll_identity::ca::load_provided_ca(cert, key, now());
        }
    }
}

/// Seed inputs: valid tokens of both kinds (mode 0), their payloads (mode 1), a header (mode
/// 2) and the fuzzing key's PEMs (key mode). Written to `seeds/token/` by the ignored test
/// `smoke::tests::write_token_seeds`.
#[cfg(test)]
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let exp = NOW_SECONDS + 3600;
    let dataplane = format!(
        r#"{{"kind":"dataplane","mesh":"default","name":"web-1","tags":{{"kuma.io/service":["web"]}},"proxyType":"dataplane","iat":{NOW_SECONDS},"exp":{exp},"nbf":{NOW_SECONDS},"jti":"0123"}}"#
    );
    let zone = format!(
        r#"{{"kind":"zone","zone":"east","scope":"cp","iat":{NOW_SECONDS},"exp":{exp},"jti":"4567"}}"#
    );
    let user = format!(
        r#"{{"kind":"user","name":"alice","groups":["mesh-system:admin"],"iat":{NOW_SECONDS},"exp":{exp},"jti":"89ab"}}"#
    );
    let mut out = Vec::new();
    let with_mode = |mode: u8, bytes: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(bytes);
        v
    };
    for (name, payload) in [("dataplane", &dataplane), ("zone", &zone), ("user", &user)] {
        if let Some(t) = signed(&header(), payload.as_bytes()) {
            out.push((name, with_mode(0, t.as_bytes())));
        }
        out.push((name, with_mode(1, payload.as_bytes())));
    }
    out.push(("header", with_mode(2, &header())));
    out.push(("private-key", with_mode(3, FUZZ_KEY_PEM.as_bytes())));
    if let Ok(key) = SigningKey::from_pkcs8_pem(FUZZ_KEY_PEM) {
        out.push((
            "public-key",
            with_mode(3, key.public_key().to_pem().as_bytes()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness reaches past the signature: its seed tokens verify.
    #[test]
    fn seed_tokens_verify() {
        let keys = keys().expect("fuzzing key");
        let seeds = seed_inputs();
        let tokens: Vec<String> = seeds
            .iter()
            .filter(|(_, b)| b.first() == Some(&0))
            .map(|(_, b)| String::from_utf8_lossy(&b[1..]).into_owned())
            .collect();
        assert_eq!(tokens.len(), 3);
        assert!(
            verify_dataplane_token(
                &tokens[0],
                &keys.public,
                now(),
                atoll_identity::token::LEEWAY
            )
            .is_ok()
        );
        assert!(
            verify_zone_token(
                &tokens[1],
                &keys.public,
                now(),
                atoll_identity::token::LEEWAY
            )
            .is_ok()
        );
        assert!(
            verify_user_token(
                &tokens[2],
                &keys.public,
                now(),
                atoll_identity::token::LEEWAY
            )
            .is_ok()
        );
    }
}
