//! Tests for the mesh CA: chains are verified for real with webpki (ring), and SANs, extensions
//! and validity are read back with x509-parser.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .unwrap()
}

fn x509(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

fn at(t: DateTime<Utc>) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(t.timestamp()).unwrap()))
}

/// Verifies `chain_pem` (leaf first, then intermediates, possibly the anchor itself) up to
/// `anchor_pem` at `t`, for client and server authentication.
fn verify_chain(
    chain_pem: &str,
    anchor_pem: &str,
    t: DateTime<Utc>,
) -> std::result::Result<(), webpki::Error> {
    let chain = certs(chain_pem);
    let anchor_der = certs(anchor_pem).remove(0);
    let anchors = [webpki::anchor_from_trusted_cert(&anchor_der)?.to_owned()];
    let ee = webpki::EndEntityCert::try_from(&chain[0])?;
    for usage in [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ] {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &chain[1..],
            at(t),
            usage,
            None,
            None,
        )?;
    }
    Ok(())
}

fn request() -> WorkloadCertRequest {
    let mut tags = BTreeMap::new();
    tags.insert(
        "kuma.io/service".to_string(),
        BTreeSet::from(["backend".to_string(), "backend-admin".to_string()]),
    );
    tags.insert(
        "kuma.io/zone".to_string(),
        BTreeSet::from(["east".to_string()]),
    );
    tags.insert("version".to_string(), BTreeSet::from(["v2".to_string()]));
    WorkloadCertRequest {
        mesh: "default".into(),
        services: vec!["backend".into(), "backend-admin".into(), "backend".into()],
        tags,
        validity: DAY,
    }
}

/// A CA made with rcgen directly, standing in for one an operator brings.
fn external_ca(
    alg: &'static rcgen::SignatureAlgorithm,
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> (String, String, CertificateParams, KeyPair) {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "NL");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    params
        .distinguished_name
        .push(DnType::CommonName, "Example Mesh Root");
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.not_before = to_offset(not_before).unwrap();
    params.not_after = to_offset(not_after).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), params, key)
}

fn ca_usages() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
}

#[test]
fn root_ca_has_the_expected_shape() {
    let ca = generate_root_ca("default", 365 * DAY, now()).unwrap();
    let der = certs(&ca.cert_pem).remove(0);
    let cert = x509(&der);

    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert_eq!(uris(&cert), ["spiffe://default"]);
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["default"]);
    assert_eq!(
        cert.validity().not_before.timestamp(),
        (now() - CLOCK_SKEW).timestamp()
    );
    assert_eq!(
        cert.validity().not_after.timestamp(),
        (now() + TimeDelta::days(365)).timestamp()
    );
    assert_eq!(ca.not_after, now() + TimeDelta::days(365));
    // Self-signed, with a P-256 key, and the key in the bundle is the certificate's.
    cert.verify_signature(None).unwrap();
    let key = KeyPair::from_pem(&ca.key_pem).unwrap();
    assert_eq!(key.algorithm(), &PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );
    // It is usable as a trust anchor.
    webpki::anchor_from_trusted_cert(&der).unwrap();
}

#[test]
fn root_ca_refuses_bad_input() {
    assert!(matches!(
        generate_root_ca("", DAY, now()),
        Err(IdentityError::InvalidRequest(_))
    ));
    assert!(matches!(
        generate_root_ca("a/b", DAY, now()),
        Err(IdentityError::InvalidRequest(_))
    ));
    assert!(matches!(
        generate_root_ca("mesh", Duration::ZERO, now()),
        Err(IdentityError::InvalidRequest(_))
    ));
    assert!(matches!(
        generate_root_ca("mesh", Duration::MAX, now()),
        Err(IdentityError::InvalidRequest(_))
    ));
}

#[test]
fn workload_cert_chains_to_the_mesh_ca_and_carries_identities() {
    let ca = generate_root_ca("default", 365 * DAY, now()).unwrap();
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();

    let chain = certs(&issued.cert_chain_pem);
    assert_eq!(chain.len(), 2, "leaf then CA");
    assert_eq!(chain[1], certs(&ca.cert_pem)[0]);
    verify_chain(&issued.cert_chain_pem, &ca.cert_pem, now()).unwrap();

    let leaf = x509(&chain[0]);
    assert_eq!(
        uris(&leaf),
        [
            "spiffe://default/backend",
            "spiffe://default/backend-admin",
            "kuma://kuma.io/service/backend",
            "kuma://kuma.io/service/backend-admin",
            "kuma://kuma.io/zone/east",
            "kuma://version/v2",
        ]
    );
    assert_eq!(uris(&leaf)[0], spiffe_id("default", "backend"));
    assert_eq!(uris(&leaf)[4], tag_uri("kuma.io/zone", "east"));
    // Empty subject, so the SAN extension must be critical (RFC 5280 4.2.1.6).
    assert!(leaf.subject().iter().next().is_none());
    assert!(leaf.subject_alternative_name().unwrap().unwrap().critical);
    assert!(!leaf.is_ca());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    assert_eq!(issued.not_before, now() - TimeDelta::minutes(1));
    assert_eq!(issued.not_after, now() + TimeDelta::days(1));
    assert_eq!(
        leaf.validity().not_before.timestamp(),
        issued.not_before.timestamp()
    );
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        issued.not_after.timestamp()
    );
    let serial_hex: String = leaf
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(issued.serial, serial_hex);

    let key = KeyPair::from_pem(&issued.key_pem).unwrap();
    assert_eq!(key.algorithm(), &PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        key.public_key_raw(),
        leaf.public_key().subject_public_key.data.as_ref()
    );
}

#[test]
fn workload_cert_is_refused_outside_its_validity_and_under_another_ca() {
    let ca = generate_root_ca("default", 365 * DAY, now()).unwrap();
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();

    // Back-dated by one minute for clock skew, not more.
    verify_chain(
        &issued.cert_chain_pem,
        &ca.cert_pem,
        now() - TimeDelta::seconds(59),
    )
    .unwrap();
    assert!(matches!(
        verify_chain(
            &issued.cert_chain_pem,
            &ca.cert_pem,
            now() - TimeDelta::minutes(2)
        ),
        Err(webpki::Error::CertNotValidYet { .. })
    ));
    assert!(matches!(
        verify_chain(
            &issued.cert_chain_pem,
            &ca.cert_pem,
            now() + TimeDelta::hours(25)
        ),
        Err(webpki::Error::CertExpired { .. })
    ));

    // Another CA of the same mesh has the same subject name: only the signature tells them apart.
    let other = generate_root_ca("default", 365 * DAY, now()).unwrap();
    let leaf_pem = crate::pem::encode("CERTIFICATE", &certs(&issued.cert_chain_pem)[0]);
    let err = verify_chain(&leaf_pem, &other.cert_pem, now()).unwrap_err();
    assert!(
        matches!(err, webpki::Error::InvalidSignatureForPublicKey),
        "{err:?}"
    );
}

#[test]
fn workload_certs_get_fresh_keys_and_serials() {
    let ca = generate_root_ca("default", 365 * DAY, now()).unwrap();
    let a = issue_workload_cert(&ca, &request(), now()).unwrap();
    let b = issue_workload_cert(&ca, &request(), now()).unwrap();
    assert_ne!(a.key_pem, b.key_pem);
    assert_ne!(a.serial, b.serial);
    assert_eq!(a.serial.len(), 32);
}

#[test]
fn workload_validity_is_clamped_to_the_ca() {
    let ca = generate_root_ca("default", HOUR, now()).unwrap();
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();
    assert_eq!(issued.not_after, ca.not_after);
    verify_chain(&issued.cert_chain_pem, &ca.cert_pem, now()).unwrap();
}

#[test]
fn workload_cert_refuses_expired_ca_and_bad_requests() {
    let ca = generate_root_ca("default", HOUR, now()).unwrap();
    let later = now() + TimeDelta::hours(2);
    assert!(matches!(
        issue_workload_cert(&ca, &request(), later),
        Err(IdentityError::CaExpired { not_after }) if not_after == ca.not_after
    ));

    let bad = |f: fn(&mut WorkloadCertRequest)| {
        let mut req = request();
        f(&mut req);
        issue_workload_cert(&ca, &req, now())
    };
    for f in [
        (|r: &mut WorkloadCertRequest| {
            r.services.clear();
            r.tags.clear();
        }) as fn(&mut WorkloadCertRequest),
        |r| r.mesh = String::new(),
        |r| r.mesh = "de/fault".into(),
        |r| r.services.push("has space".into()),
        |r| r.services.push("caf\u{e9}".into()),
        |r| {
            r.tags
                .insert("team".into(), BTreeSet::from([String::new()]));
        },
        |r| r.validity = Duration::ZERO,
    ] {
        assert!(matches!(bad(f), Err(IdentityError::InvalidRequest(_))));
    }
    // Tags alone are enough.
    let mut req = request();
    req.services.clear();
    issue_workload_cert(&ca, &req, now()).unwrap();
}

#[test]
fn workload_cert_refuses_a_broken_bundle() {
    let ca = generate_root_ca("default", DAY, now()).unwrap();
    let other = generate_root_ca("default", DAY, now()).unwrap();
    let swapped = CaBundle {
        key_pem: other.key_pem,
        ..ca.clone()
    };
    assert!(matches!(
        issue_workload_cert(&swapped, &request(), now()),
        Err(IdentityError::KeyMismatch)
    ));
    let garbage = CaBundle {
        cert_pem: "nope".into(),
        ..ca
    };
    assert!(matches!(
        issue_workload_cert(&garbage, &request(), now()),
        Err(IdentityError::NotACertificate(_))
    ));
}

#[test]
fn rotation_is_due_when_less_than_a_fifth_remains() {
    let ca = generate_root_ca("default", 365 * DAY, now()).unwrap();
    let cert = issue_workload_cert(&ca, &request(), now()).unwrap();
    // Lifetime from issue = 24 h (the 1 min of back-dating does not count): a fifth is
    // 17 280 s = 4 h 48 min.
    let at = rotation_at(&cert);
    assert_eq!(cert.not_after - at, TimeDelta::seconds(17_280));
    assert!(!rotation_due(&cert, now()));
    assert!(!rotation_due(&cert, now() + TimeDelta::hours(19)));
    assert!(!rotation_due(&cert, at));
    assert!(rotation_due(&cert, at + TimeDelta::seconds(1)));
    assert!(rotation_due(&cert, cert.not_after));
    assert!(rotation_due(&cert, cert.not_after + TimeDelta::days(3)));
}

#[test]
fn provided_ca_good_pair_is_accepted_and_issues_verifiable_certs() {
    let (cert_pem, key_pem, ..) = external_ca(
        &PKCS_ECDSA_P256_SHA256,
        IsCa::Ca(BasicConstraints::Constrained(1)),
        ca_usages(),
        now() - TimeDelta::days(1),
        now() + TimeDelta::days(30),
    );
    let ca = load_provided_ca(&cert_pem, &key_pem, now()).unwrap();
    assert_eq!(certs(&ca.cert_pem), certs(&cert_pem));
    assert_eq!(ca.not_after, now() + TimeDelta::days(30));
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();
    verify_chain(&issued.cert_chain_pem, &cert_pem, now()).unwrap();
}

#[test]
fn provided_ca_may_be_p384_without_key_usage() {
    let (cert_pem, key_pem, ..) = external_ca(
        &PKCS_ECDSA_P384_SHA384,
        IsCa::Ca(BasicConstraints::Unconstrained),
        Vec::new(),
        now() - TimeDelta::days(1),
        now() + TimeDelta::days(30),
    );
    let ca = load_provided_ca(&cert_pem, &key_pem, now()).unwrap();
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();
    verify_chain(&issued.cert_chain_pem, &cert_pem, now()).unwrap();
}

#[test]
fn provided_intermediate_ca_with_chain() {
    let (root_pem, _, root_params, root_key) = external_ca(
        &PKCS_ECDSA_P256_SHA256,
        IsCa::Ca(BasicConstraints::Unconstrained),
        ca_usages(),
        now() - TimeDelta::days(1),
        now() + TimeDelta::days(300),
    );
    let root = Issuer::new(root_params, root_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "zone east intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = ca_usages();
    params.not_before = to_offset(now() - TimeDelta::days(1)).unwrap();
    params.not_after = to_offset(now() + TimeDelta::days(30)).unwrap();
    let intermediate = params.signed_by(&key, &root).unwrap();

    let bundle_pem = format!("{}{}", intermediate.pem(), root_pem);
    let ca = load_provided_ca(&bundle_pem, &key.serialize_pem(), now()).unwrap();
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();
    assert_eq!(certs(&issued.cert_chain_pem).len(), 3);
    verify_chain(&issued.cert_chain_pem, &root_pem, now()).unwrap();
}

#[test]
fn provided_ca_with_mismatched_key_is_refused() {
    let (cert_pem, ..) = external_ca(
        &PKCS_ECDSA_P256_SHA256,
        IsCa::Ca(BasicConstraints::Unconstrained),
        ca_usages(),
        now() - TimeDelta::days(1),
        now() + TimeDelta::days(30),
    );
    let other_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let err = load_provided_ca(&cert_pem, &other_key.serialize_pem(), now()).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "the private key does not match the certificate's public key"
    );
}

#[test]
fn provided_non_ca_cert_is_refused() {
    for (is_ca, usages, why) in [
        (IsCa::NoCa, ca_usages(), "no basic constraints"),
        (IsCa::ExplicitNoCa, ca_usages(), "cA=false"),
        (
            IsCa::Ca(BasicConstraints::Unconstrained),
            vec![KeyUsagePurpose::DigitalSignature],
            "keyCertSign",
        ),
    ] {
        let (cert_pem, key_pem, ..) = external_ca(
            &PKCS_ECDSA_P256_SHA256,
            is_ca,
            usages,
            now() - TimeDelta::days(1),
            now() + TimeDelta::days(30),
        );
        match load_provided_ca(&cert_pem, &key_pem, now()) {
            Err(IdentityError::NotACa(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected NotACa({why}), got {other:?}"),
        }
    }
    // A workload certificate is not a CA either.
    let ca = generate_root_ca("default", DAY, now()).unwrap();
    let issued = issue_workload_cert(&ca, &request(), now()).unwrap();
    assert!(matches!(
        load_provided_ca(&issued.cert_chain_pem, &issued.key_pem, now()),
        Err(IdentityError::NotACa(_))
    ));
}

#[test]
fn provided_garbage_is_refused() {
    let ca = generate_root_ca("default", DAY, now()).unwrap();
    let garbage_der = crate::pem::encode("CERTIFICATE", b"definitely not DER");
    for cert_pem in [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
        garbage_der.as_str(),
        ca.key_pem.as_str(),
    ] {
        let err = load_provided_ca(cert_pem, &ca.key_pem, now()).unwrap_err();
        assert!(
            matches!(err, IdentityError::NotACertificate(_)),
            "{cert_pem:?}: {err}"
        );
    }
    for key_pem in ["", "garbage", ca.cert_pem.as_str()] {
        let err = load_provided_ca(&ca.cert_pem, key_pem, now()).unwrap_err();
        assert!(
            matches!(err, IdentityError::InvalidKey(_)),
            "{key_pem:?}: {err}"
        );
    }
    let sec1 = crate::pem::encode("EC PRIVATE KEY", b"\x30\x03\x02\x01\x01");
    match load_provided_ca(&ca.cert_pem, &sec1, now()) {
        Err(IdentityError::InvalidKey(reason)) => assert!(reason.contains("PKCS#8"), "{reason}"),
        other => panic!("expected InvalidKey, got {other:?}"),
    }
}

#[test]
fn provided_ca_outside_its_validity_is_refused() {
    let (cert_pem, key_pem, ..) = external_ca(
        &PKCS_ECDSA_P256_SHA256,
        IsCa::Ca(BasicConstraints::Unconstrained),
        ca_usages(),
        now() - TimeDelta::days(30),
        now() - TimeDelta::days(1),
    );
    match load_provided_ca(&cert_pem, &key_pem, now()) {
        Err(IdentityError::CaExpired { not_after }) => {
            assert_eq!(not_after, now() - TimeDelta::days(1));
        }
        other => panic!("expected CaExpired, got {other:?}"),
    }
    let (cert_pem, key_pem, ..) = external_ca(
        &PKCS_ECDSA_P256_SHA256,
        IsCa::Ca(BasicConstraints::Unconstrained),
        ca_usages(),
        now() + TimeDelta::days(1),
        now() + TimeDelta::days(30),
    );
    assert!(matches!(
        load_provided_ca(&cert_pem, &key_pem, now()),
        Err(IdentityError::CaNotYetValid { .. })
    ));
}

#[test]
fn generated_ca_round_trips_through_load_and_serde() {
    let ca = generate_root_ca("default", DAY, now()).unwrap();
    let loaded = load_provided_ca(&ca.cert_pem, &ca.key_pem, now()).unwrap();
    assert_eq!(loaded.cert_pem, ca.cert_pem);
    assert_eq!(loaded.not_after, ca.not_after);

    let json = serde_json::to_string(&ca).unwrap();
    assert!(json.contains("\"certPem\"") && json.contains("\"notAfter\""));
    let back: CaBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ca);
    assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
}

#[test]
fn server_cert_covers_dns_names_and_ips() {
    let hosts: Vec<String> = ["cp.atoll.svc", "localhost", "127.0.0.1", "::1"]
        .map(String::from)
        .to_vec();
    let tls = generate_server_cert(&hosts, 365 * DAY, now()).unwrap();

    let ca_der = certs(&tls.ca_cert_pem).remove(0);
    let leaf_der = certs(&tls.cert_pem).remove(0);
    assert_eq!(
        certs(&tls.cert_chain_pem()),
        [leaf_der.clone(), ca_der.clone()]
    );
    let anchors = [webpki::anchor_from_trusted_cert(&ca_der)
        .unwrap()
        .to_owned()];
    let ee = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        at(now()),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .unwrap();
    for name in ["cp.atoll.svc", "localhost", "127.0.0.1", "::1"] {
        ee.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
            .unwrap();
    }
    for name in ["other.example", "10.0.0.1"] {
        assert!(
            ee.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
                .is_err()
        );
    }

    let leaf = x509(&leaf_der);
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let ips: Vec<IpAddr> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        ips,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        tls.not_after.timestamp()
    );
    let key = KeyPair::from_pem(&tls.key_pem).unwrap();
    assert_eq!(
        key.public_key_raw(),
        leaf.public_key().subject_public_key.data.as_ref()
    );
    assert!(x509(&ca_der).is_ca());
}

#[test]
fn server_cert_refuses_bad_hosts() {
    assert!(matches!(
        generate_server_cert(&[], DAY, now()),
        Err(IdentityError::InvalidRequest(_))
    ));
    for host in ["", "has space", "a..b", "-", "caf\u{e9}.example", "a.*.b"] {
        assert!(
            matches!(
                generate_server_cert(&[host.to_string()], DAY, now()),
                Err(IdentityError::InvalidRequest(_))
            ),
            "{host:?}"
        );
    }
    generate_server_cert(&["*.atoll.svc".to_string()], DAY, now()).unwrap();
}

/// A time inside the OpenSSL fixtures' validity (they start 2026-11-26).
fn fixture_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap()
}

#[test]
fn openssl_made_cas_are_accepted_and_issue_verifiable_certs() {
    for (cert_pem, key_pem) in [
        (
            include_str!("../testdata/openssl-p256-ca.crt"),
            include_str!("../testdata/openssl-p256-ca.key"),
        ),
        (
            include_str!("../testdata/openssl-rsa-ca.crt"),
            include_str!("../testdata/openssl-rsa-ca.key"),
        ),
    ] {
        let ca = load_provided_ca(cert_pem, key_pem, fixture_now()).unwrap();
        let issued = issue_workload_cert(&ca, &request(), fixture_now()).unwrap();
        verify_chain(&issued.cert_chain_pem, cert_pem, fixture_now()).unwrap();
    }
    // Before the fixture existed, it is not valid yet.
    assert!(matches!(
        load_provided_ca(
            include_str!("../testdata/openssl-p256-ca.crt"),
            include_str!("../testdata/openssl-p256-ca.key"),
            now(),
        ),
        Err(IdentityError::CaNotYetValid { .. })
    ));
}

#[test]
fn sec1_keys_are_refused_with_a_hint() {
    match load_provided_ca(
        include_str!("../testdata/openssl-p256-ca.crt"),
        include_str!("../testdata/openssl-sec1.key"),
        fixture_now(),
    ) {
        Err(IdentityError::InvalidKey(reason)) => assert!(reason.contains("pkcs8"), "{reason}"),
        other => panic!("expected InvalidKey, got {other:?}"),
    }
}
