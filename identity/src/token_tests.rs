//! Tests for dataplane and zone tokens: round trips, expiry, forgery, kind confusion, and inputs
//! that must be refused without panicking.
#![allow(clippy::unwrap_used)]

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn dp_claims() -> DataplaneClaims {
    DataplaneClaims {
        mesh: "default".into(),
        name: "backend-1".into(),
        tags: Some(BTreeMap::from([(
            "kuma.io/service".to_string(),
            vec!["backend".to_string()],
        )])),
        proxy_type: Some("dataplane".into()),
        iat: now(),
        exp: now() + TimeDelta::hours(1),
        jti: new_jti().unwrap(),
    }
}

fn zone_claims(scope: Scope) -> ZoneClaims {
    ZoneClaims {
        zone: "east".into(),
        scope,
        iat: now(),
        exp: now() + TimeDelta::days(365),
        jti: new_jti().unwrap(),
    }
}

/// Builds a token from arbitrary header and payload JSON, signed by `key`.
fn raw_token(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap()));
    // Signed with ring directly, so any header can be tried, even one jsonwebtoken would refuse.
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let sig = pair
        .sign(&ring::rand::SystemRandom::new(), token.as_bytes())
        .unwrap();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}

fn decode_segment(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

#[test]
fn dataplane_token_round_trip_carries_the_claims() {
    let key = SigningKey::generate().unwrap();
    let claims = dp_claims();
    let token = sign_dataplane_token(&key, &claims).unwrap();
    let got = verify_dataplane_token(&token, &[key.public_key()], now(), LEEWAY).unwrap();
    assert_eq!(got, claims);
    assert_eq!(got.mesh, "default");
    assert_eq!(got.name, "backend-1");

    // Minimal claims survive too.
    let minimal = DataplaneClaims {
        tags: None,
        proxy_type: None,
        ..dp_claims()
    };
    let token = sign_dataplane_token(&key, &minimal).unwrap();
    assert_eq!(
        verify_dataplane_token(&token, &[key.public_key()], now(), LEEWAY).unwrap(),
        minimal
    );
}

#[test]
fn token_wire_format() {
    let key = SigningKey::generate().unwrap();
    let token = sign_dataplane_token(&key, &dp_claims()).unwrap();
    assert_eq!(token.split('.').count(), 3);
    assert!(!token.contains('='), "base64url without padding");
    assert_eq!(
        decode_segment(&token, 0),
        json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()})
    );
    let payload = decode_segment(&token, 1);
    assert_eq!(payload["kind"], "dataplane");
    assert_eq!(payload["mesh"], "default");
    assert_eq!(payload["proxyType"], "dataplane");
    assert_eq!(payload["iat"], now().timestamp());
    assert_eq!(payload["exp"], (now() + TimeDelta::hours(1)).timestamp());
    let sig = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(2).unwrap())
        .unwrap();
    assert_eq!(sig.len(), 64, "raw r||s");
}

#[test]
fn zone_token_round_trip_for_every_scope() {
    let key = SigningKey::generate().unwrap();
    for scope in [Scope::Cp, Scope::Ingress, Scope::Egress] {
        let claims = zone_claims(scope);
        let token = sign_zone_token(&key, &claims).unwrap();
        assert_eq!(
            verify_zone_token(&token, &[key.public_key()], now(), LEEWAY).unwrap(),
            claims
        );
    }
    let token = sign_zone_token(&key, &zone_claims(Scope::Ingress)).unwrap();
    assert_eq!(decode_segment(&token, 1)["scope"], "ingress");
}

/// The leeway is the caller's: with none, a token is refused the second after its `exp`; with
/// a longer one, accepted for that long.
#[test]
fn the_leeway_is_the_callers_setting() {
    let key = SigningKey::generate().unwrap();
    let claims = dp_claims();
    let token = sign_dataplane_token(&key, &claims).unwrap();
    let keys = [key.public_key()];
    let after = claims.exp + TimeDelta::seconds(1);
    assert_eq!(
        verify_dataplane_token(&token, &keys, after, TimeDelta::zero()),
        Err(TokenError::Expired { at: claims.exp })
    );
    verify_dataplane_token(&token, &keys, claims.exp, TimeDelta::zero()).unwrap();
    let long = TimeDelta::minutes(5);
    verify_dataplane_token(&token, &keys, claims.exp + long, long).unwrap();
}

#[test]
fn expired_token_is_refused_after_the_leeway() {
    let key = SigningKey::generate().unwrap();
    let claims = dp_claims();
    let token = sign_dataplane_token(&key, &claims).unwrap();
    let keys = [key.public_key()];
    verify_dataplane_token(&token, &keys, claims.exp, LEEWAY).unwrap();
    verify_dataplane_token(&token, &keys, claims.exp + TimeDelta::seconds(30), LEEWAY).unwrap();
    assert_eq!(
        verify_dataplane_token(&token, &keys, claims.exp + TimeDelta::seconds(31), LEEWAY),
        Err(TokenError::Expired { at: claims.exp })
    );
}

#[test]
fn nbf_is_honoured_with_leeway() {
    let key = SigningKey::generate().unwrap();
    let nbf = now() + TimeDelta::minutes(5);
    let mut payload = serde_json::to_value(dp_claims()).unwrap();
    payload["kind"] = json!("dataplane");
    payload["nbf"] = json!(nbf.timestamp());
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()});
    let token = raw_token(&key, &header, &payload);
    let keys = [key.public_key()];
    assert_eq!(
        verify_dataplane_token(&token, &keys, now(), LEEWAY),
        Err(TokenError::NotYetValid { nbf })
    );
    verify_dataplane_token(&token, &keys, nbf - TimeDelta::seconds(30), LEEWAY).unwrap();
}

#[test]
fn token_signed_by_another_key_with_the_same_kid_is_refused() {
    let trusted = SigningKey::generate().unwrap();
    let attacker = SigningKey::generate().unwrap();
    let mut payload = serde_json::to_value(dp_claims()).unwrap();
    payload["kind"] = json!("dataplane");
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": trusted.kid()});
    let forged = raw_token(&attacker, &header, &payload);
    assert_eq!(
        verify_dataplane_token(&forged, &[trusted.public_key()], now(), LEEWAY),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn edited_payload_is_refused() {
    let key = SigningKey::generate().unwrap();
    let token = sign_dataplane_token(&key, &dp_claims()).unwrap();
    let mut payload = decode_segment(&token, 1);
    payload["name"] = json!("frontend-1");
    payload["exp"] = json!((now() + TimeDelta::days(3650)).timestamp());
    let parts: Vec<&str> = token.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    assert_eq!(
        verify_dataplane_token(&edited, &[key.public_key()], now(), LEEWAY),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn a_token_of_one_kind_is_refused_as_the_other() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let zone = sign_zone_token(&key, &zone_claims(Scope::Cp)).unwrap();
    assert_eq!(
        verify_dataplane_token(&zone, &keys, now(), LEEWAY),
        Err(TokenError::WrongKind {
            expected: "dataplane",
            found: "zone".into()
        })
    );
    let dp = sign_dataplane_token(&key, &dp_claims()).unwrap();
    assert_eq!(
        verify_zone_token(&dp, &keys, now(), LEEWAY),
        Err(TokenError::WrongKind {
            expected: "zone",
            found: "dataplane".into()
        })
    );
    // A signed token without a kind claim is not accepted as either.
    let mut payload = serde_json::to_value(dp_claims()).unwrap();
    payload.as_object_mut().unwrap().remove("kind");
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()});
    let kindless = raw_token(&key, &header, &payload);
    assert!(matches!(
        verify_dataplane_token(&kindless, &keys, now(), LEEWAY),
        Err(TokenError::WrongKind { .. })
    ));
}

#[test]
fn unknown_kid_and_key_rotation() {
    let old = SigningKey::generate().unwrap();
    let new = SigningKey::generate().unwrap();
    let token_old = sign_zone_token(&old, &zone_claims(Scope::Cp)).unwrap();
    let token_new = sign_zone_token(&new, &zone_claims(Scope::Cp)).unwrap();
    assert_eq!(
        verify_zone_token(&token_old, &[new.public_key()], now(), LEEWAY),
        Err(TokenError::UnknownKey(old.kid().to_string()))
    );
    assert!(matches!(
        verify_zone_token(&token_old, &[], now(), LEEWAY),
        Err(TokenError::UnknownKey(_))
    ));
    let both = [new.public_key(), old.public_key()];
    verify_zone_token(&token_old, &both, now(), LEEWAY).unwrap();
    verify_zone_token(&token_new, &both, now(), LEEWAY).unwrap();
}

#[test]
fn other_algorithms_are_refused() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let mut payload = serde_json::to_value(dp_claims()).unwrap();
    payload["kind"] = json!("dataplane");
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    for alg in ["none", "None", "HS256", "RS256", "ES384", "es256", ""] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": key.kid()});
        // Unsigned, as an `alg: none` token would be.
        let unsigned = format!("{}.{}.", b64(&header), b64(&payload));
        assert_eq!(
            verify_dataplane_token(&unsigned, &keys, now(), LEEWAY),
            Err(TokenError::UnsupportedAlgorithm(alg.to_string()))
        );
        // Even when carrying a valid ES256 signature.
        let signed = raw_token(&key, &header, &payload);
        assert_eq!(
            verify_dataplane_token(&signed, &keys, now(), LEEWAY),
            Err(TokenError::UnsupportedAlgorithm(alg.to_string()))
        );
    }
}

#[test]
fn malformed_headers_and_payloads_are_refused() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let good_payload = {
        let mut p = serde_json::to_value(dp_claims()).unwrap();
        p["kind"] = json!("dataplane");
        p
    };
    let cases = [
        (json!({"alg": "ES256", "typ": "JWT"}), good_payload.clone()),
        (
            json!({"alg": "ES256", "typ": "JOSE+JSON", "kid": key.kid()}),
            good_payload.clone(),
        ),
        (
            json!({"alg": "ES256", "kid": key.kid(), "crit": ["exp"]}),
            good_payload.clone(),
        ),
        (json!(["ES256"]), good_payload.clone()),
        (
            json!({"alg": "ES256", "kid": key.kid()}),
            json!({"kind": "dataplane", "mesh": "default"}),
        ),
        (json!({"alg": "ES256", "kid": key.kid()}), json!("a string")),
        (json!({"alg": "ES256", "kid": key.kid()}), {
            let mut p = good_payload.clone();
            p["exp"] = json!("tomorrow");
            p
        }),
        (json!({"alg": "ES256", "kid": key.kid()}), {
            let mut p = good_payload.clone();
            p["exp"] = json!(1e300);
            p
        }),
        (json!({"alg": "ES256", "kid": key.kid()}), {
            let mut p = good_payload.clone();
            p["exp"] = json!(i64::MAX);
            p
        }),
        (json!({"alg": "ES256", "kid": key.kid()}), {
            let mut p = good_payload.clone();
            p["kind"] = json!(7);
            p
        }),
        (json!({"alg": "ES256", "kid": key.kid()}), {
            let mut p = good_payload.clone();
            p["mesh"] = json!(null);
            p
        }),
    ];
    for (header, payload) in cases {
        let token = raw_token(&key, &header, &payload);
        let err = verify_dataplane_token(&token, &keys, now(), LEEWAY).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "{header} {payload}: {err:?}"
        );
    }
    // Without typ it is still a JWT.
    let token = raw_token(
        &key,
        &json!({"alg": "ES256", "kid": key.kid()}),
        &good_payload,
    );
    verify_dataplane_token(&token, &keys, now(), LEEWAY).unwrap();
}

#[test]
fn garbage_never_panics_and_is_malformed() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let token = sign_dataplane_token(&key, &dp_claims()).unwrap();
    let huge = "a".repeat(10 * 1024 * 1024);
    let huge_token = format!("{huge}.{huge}.{huge}");
    for input in [
        "",
        ".",
        "..",
        "...",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "!!!.@@@.###",
        "eyJ.eyJ.eyJ",
        "\u{0}.\u{0}.\u{0}",
        "é.é.é",
        huge.as_str(),
        huge_token.as_str(),
    ] {
        let err = verify_dataplane_token(input, &keys, now(), LEEWAY).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "{:?}: {err:?}",
            &input[..input.len().min(20)]
        );
    }
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], &parts[2][..10]),
        format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
    ] {
        assert!(
            matches!(
                verify_dataplane_token(&bad, &keys, now(), LEEWAY),
                Err(TokenError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn every_truncation_and_single_character_edit_is_refused() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let token = sign_dataplane_token(&key, &dp_claims()).unwrap();
    for end in 0..token.len() {
        assert!(verify_dataplane_token(&token[..end], &keys, now(), LEEWAY).is_err());
    }
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'A', b'z', b'-', b'.', b'_'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut edited = bytes.to_vec();
            edited[i] = replacement;
            let edited = String::from_utf8(edited).unwrap();
            assert!(
                verify_dataplane_token(&edited, &keys, now(), LEEWAY).is_err(),
                "edit at {i} accepted"
            );
        }
    }
}

#[test]
fn keys_round_trip_through_pem() {
    let key = SigningKey::generate().unwrap();
    assert_eq!(key.kid().len(), 16);
    assert!(key.kid().bytes().all(|b| b.is_ascii_hexdigit()));

    let pem_str = key.to_pkcs8_pem();
    assert!(pem_str.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let reloaded = SigningKey::from_pkcs8_pem(&pem_str).unwrap();
    assert_eq!(reloaded.kid(), key.kid());
    let token = sign_dataplane_token(&reloaded, &dp_claims()).unwrap();
    verify_dataplane_token(&token, &[key.public_key()], now(), LEEWAY).unwrap();

    let public_pem = key.public_key().to_pem();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let public = PublicKey::from_pem(&public_pem).unwrap();
    assert_eq!(public, key.public_key());
    assert_eq!(public.kid(), key.kid());
    verify_dataplane_token(&token, std::slice::from_ref(&public), now(), LEEWAY).unwrap();

    // Serde form is the PEM, so the CP can store and sync it.
    let json = serde_json::to_string(&public).unwrap();
    assert_eq!(json, serde_json::to_string(&public_pem).unwrap());
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), public);

    // The same SPKI as rcgen writes for the key, so other tools agree on it.
    let rcgen_key = rcgen::KeyPair::from_pem(&pem_str).unwrap();
    assert_eq!(rcgen_key.public_key_pem(), public_pem);

    assert!(!format!("{key:?}").contains("PRIVATE"));
    assert_ne!(SigningKey::generate().unwrap().kid(), key.kid());
}

#[test]
fn bad_key_pem_is_refused() {
    for bad in [
        "",
        "garbage",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        assert!(matches!(
            SigningKey::from_pkcs8_pem(bad),
            Err(IdentityError::InvalidKey(_))
        ));
        assert!(matches!(
            PublicKey::from_pem(bad),
            Err(IdentityError::InvalidKey(_))
        ));
    }
    // A P-384 key is not an ES256 key.
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert!(matches!(
        SigningKey::from_pkcs8_pem(&p384.serialize_pem()),
        Err(IdentityError::InvalidKey(_))
    ));
    assert!(matches!(
        PublicKey::from_pem(&p384.public_key_pem()),
        Err(IdentityError::InvalidKey(_))
    ));
    assert!(serde_json::from_str::<PublicKey>("\"nope\"").is_err());
}

#[test]
fn jti_is_random() {
    let a = new_jti().unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, new_jti().unwrap());
}

#[test]
fn a_tag_bound_token_admits_only_the_values_it_names() {
    let claims = dp_claims();
    let tags = |pairs: &[(&str, &str)]| {
        let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for (k, v) in pairs {
            out.entry(k.to_string()).or_default().insert(v.to_string());
        }
        out
    };
    assert!(claims.binds_service());
    assert!(
        claims
            .admits_tags(&tags(&[("kuma.io/service", "backend"), ("version", "v1")]))
            .is_ok()
    );
    let other = claims
        .admits_tags(&tags(&[("kuma.io/service", "web")]))
        .expect_err("another service");
    assert!(other.contains("\"web\""), "{other}");
    // A second inbound of another service is refused too.
    assert!(
        claims
            .admits_tags(&tags(&[
                ("kuma.io/service", "backend"),
                ("kuma.io/service", "web")
            ]))
            .is_err()
    );
    assert!(claims.admits_tags(&tags(&[("version", "v1")])).is_err());
    // Unbound tokens admit anything.
    let unbound = DataplaneClaims {
        tags: None,
        ..dp_claims()
    };
    assert!(!unbound.binds_service());
    assert!(
        unbound
            .admits_tags(&tags(&[("kuma.io/service", "web")]))
            .is_ok()
    );
}

#[test]
fn user_tokens_round_trip_and_are_never_taken_for_another_kind() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let claims = UserClaims {
        name: "alice".into(),
        groups: vec!["team-a".into(), "ops".into()],
        iat: now(),
        exp: now() + TimeDelta::hours(24),
        jti: new_jti().unwrap(),
    };
    let token = sign_user_token(&key, &claims).unwrap();
    assert_eq!(
        verify_user_token(&token, &keys, now(), LEEWAY).unwrap(),
        claims
    );
    assert_eq!(decode_segment(&token, 1)["kind"], "user");
    // A dataplane or zone token signed by the same key is not a user token, nor the reverse.
    let dp = sign_dataplane_token(&key, &dp_claims()).unwrap();
    assert!(matches!(
        verify_user_token(&dp, &keys, now(), LEEWAY),
        Err(TokenError::WrongKind {
            expected: "user",
            ..
        })
    ));
    assert!(matches!(
        verify_zone_token(&token, &keys, now(), LEEWAY),
        Err(TokenError::WrongKind {
            expected: "zone",
            ..
        })
    ));
    assert!(matches!(
        verify_user_token(&token, &keys, now() + TimeDelta::hours(25), LEEWAY),
        Err(TokenError::Expired { .. })
    ));
    let other = SigningKey::generate().unwrap();
    assert!(matches!(
        verify_user_token(&token, &[other.public_key()], now(), LEEWAY),
        Err(TokenError::UnknownKey(_))
    ));
}
