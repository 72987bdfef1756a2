//! The mesh CA: root generation, loading an operator-provided CA, workload certificates, and the
//! control plane's own fallback TLS certificate.
//!
//! All keys generated here are ECDSA P-256 (a provided CA may use any key rcgen can sign with under
//! `ring`: P-256, P-384, Ed25519 or RSA, in PKCS#8). Certificate times have one-second precision,
//! so `now` is truncated to the second; every certificate is back-dated by [`CLOCK_SKEW`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::{self as pki_pem, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::{IdentityError, Result, pem};

/// How far certificates are back-dated so a peer whose clock is slightly behind accepts them.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);

/// A mesh CA: certificate and private key, as the control plane stores it (in a Secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    /// The CA certificate (PEM). With a provided intermediate CA, the first block is the signing
    /// CA and the following blocks its chain; all of them are appended to issued chains.
    pub cert_pem: String,
    /// The CA private key (PKCS#8 PEM).
    pub key_pem: String,
    /// End of the CA certificate's validity.
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// What a workload certificate must prove.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadCertRequest {
    /// The mesh the proxy belongs to.
    pub mesh: String,
    /// `kuma.io/service` values of the proxy's inbounds; each becomes `spiffe://<mesh>/<service>`.
    pub services: Vec<String>,
    /// All inbound tags; each value becomes `kuma://<tag>/<value>`.
    pub tags: std::collections::BTreeMap<String, BTreeSet<String>>,
    /// Requested lifetime, counted from `now` (clamped to the CA's own expiry).
    pub validity: Duration,
}

/// A workload certificate and its key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCert {
    /// The leaf certificate followed by the CA certificate(s), PEM.
    pub cert_chain_pem: String,
    /// The leaf's private key (PKCS#8 PEM).
    pub key_pem: String,
    /// Start of validity (`now` minus [`CLOCK_SKEW`]).
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Serial number, lowercase hex.
    pub serial: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"[redacted]")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("serial", &self.serial)
            .finish()
    }
}

/// TLS material for the control plane's own listeners (xDS 5678, KDS 5685) when the operator
/// provides none: a throwaway CA and a server certificate signed by it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    /// The CA clients must trust (PEM).
    pub ca_cert_pem: String,
    /// The server certificate alone (PEM); see [`ServerTls::cert_chain_pem`].
    pub cert_pem: String,
    /// The server's private key (PKCS#8 PEM).
    pub key_pem: String,
    /// End of validity of both certificates.
    pub not_after: DateTime<Utc>,
}

impl ServerTls {
    /// The server certificate followed by its CA, as a TLS server presents it.
    pub fn cert_chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.ca_cert_pem)
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The SPIFFE id of a service in a mesh: `spiffe://<mesh>/<service>`.
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// The URI SAN Kuma uses for one tag value: `kuma://<name>/<value>` (for example
/// `kuma://kuma.io/zone/east`). MeshTrafficPermission matches on these.
pub fn tag_uri(name: &str, value: &str) -> String {
    format!("kuma://{name}/{value}")
}

/// Generates a self-signed root CA for `mesh`: ECDSA P-256, subject `O=Atoll, OU=Mesh, CN=<mesh>`,
/// basic constraints CA (no path length limit), key usage keyCertSign + cRLSign, URI SAN
/// `spiffe://<mesh>`, valid from `now - CLOCK_SKEW` to `now + validity`.
pub fn generate_root_ca(mesh: &str, validity: Duration, now: DateTime<Utc>) -> Result<CaBundle> {
    check_uri_part("mesh", mesh, false)?;
    let (not_before, not_after) = window(now, validity)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Atoll");
    dn.push(DnType::OrganizationalUnitName, "Mesh");
    dn.push(DnType::CommonName, mesh);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![uri_san(&format!("spiffe://{mesh}"))?];
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    params.serial_number = Some(random_serial()?.0);

    let cert = params.self_signed(&key).map_err(crypto)?;
    Ok(CaBundle {
        cert_pem: pem::encode("CERTIFICATE", cert.der()),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// Loads a CA the operator provides (certificate PEM, possibly followed by its chain, and a
/// PKCS#8 private key PEM) and checks, in this order, that: the certificate parses
/// ([`IdentityError::NotACertificate`]); the key parses ([`IdentityError::InvalidKey`]); the
/// certificate is a CA, i.e. basic constraints cA=true and, if key usage is present,
/// keyCertSign ([`IdentityError::NotACa`]); the key matches the certificate
/// ([`IdentityError::KeyMismatch`]); it is valid at `now` ([`IdentityError::CaExpired`],
/// [`IdentityError::CaNotYetValid`]); and Atoll can issue under it
/// ([`IdentityError::UnsupportedCa`], checked by issuing a throwaway certificate).
///
/// The returned bundle holds the certificates and key re-encoded canonically.
pub fn load_provided_ca(cert_pem: &str, key_pem: &str, now: DateTime<Utc>) -> Result<CaBundle> {
    let ca = LoadedCa::parse(cert_pem, key_pem, now)?;
    // Trial issuance: proves that the issuer name rcgen writes equals the CA's subject bytes.
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![uri_san("spiffe://atoll-trial-issuance")?];
    let (not_before, _) = window(now, Duration::from_secs(60))?;
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(ca.not_after)?;
    let trial_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    ca.sign(&params, &trial_key)?;

    Ok(CaBundle {
        cert_pem: ca.chain_pem(),
        key_pem: ca.issuer.key().serialize_pem(),
        not_after: ca.not_after,
    })
}

/// Issues a workload certificate under `ca`: a fresh P-256 key; an empty subject with a critical
/// SAN extension holding URI SANs `spiffe://<mesh>/<service>` for each service, then
/// `kuma://<tag>/<value>` for each tag value (duplicates removed, sorted); EKU serverAuth +
/// clientAuth; key usage digitalSignature; valid from `now - CLOCK_SKEW` to `now + validity`, or
/// to the CA's own expiry if that comes first.
///
/// Fails with [`IdentityError::InvalidRequest`] if the mesh, a service, a tag name or a value is
/// empty or holds characters other than printable ASCII (the mesh may not contain `/`), if there
/// is no SAN at all, or if the validity is zero; with the CA errors of [`load_provided_ca`] if the
/// bundle is unusable or the CA is not valid at `now`.
pub fn issue_workload_cert(
    ca: &CaBundle,
    req: &WorkloadCertRequest,
    now: DateTime<Utc>,
) -> Result<IssuedCert> {
    check_uri_part("mesh", &req.mesh, false)?;
    let mut sans = Vec::new();
    let services: BTreeSet<&str> = req.services.iter().map(String::as_str).collect();
    for service in services {
        check_uri_part("service", service, true)?;
        sans.push(uri_san(&spiffe_id(&req.mesh, service))?);
    }
    for (name, values) in &req.tags {
        check_uri_part("tag name", name, true)?;
        for value in values {
            check_uri_part("tag value", value, true)?;
            sans.push(uri_san(&tag_uri(name, value))?);
        }
    }
    if sans.is_empty() {
        return Err(IdentityError::InvalidRequest(
            "a workload certificate needs at least one service or tag".into(),
        ));
    }
    let (not_before, requested_not_after) = window(now, req.validity)?;

    let ca = LoadedCa::parse(&ca.cert_pem, &ca.key_pem, now)?;
    let not_after = requested_not_after.min(ca.not_after);

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    let (serial_number, serial) = random_serial()?;
    params.serial_number = Some(serial_number);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let cert = ca.sign(&params, &key)?;
    Ok(IssuedCert {
        cert_chain_pem: format!(
            "{}{}",
            pem::encode("CERTIFICATE", cert.der()),
            ca.chain_pem()
        ),
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
        serial,
    })
}

/// When the certificate was issued: `not_before` without the clock-skew back-dating. Rotation
/// is measured from here, so the back-dating does not make short-lived certificates look
/// mostly spent the moment they are issued.
fn issued_at(cert: &IssuedCert) -> DateTime<Utc> {
    (cert.not_before + CLOCK_SKEW).min(cert.not_after)
}

/// The instant at which exactly 20% of `cert`'s lifetime (from issue to `not_after`) remains.
/// Rotation is due strictly after it; see [`rotation_due`].
pub fn rotation_at(cert: &IssuedCert) -> DateTime<Utc> {
    let total = cert.not_after - issued_at(cert);
    cert.not_after - total / 5
}

/// Whether `cert` should be replaced: true when less than 20% of its lifetime (from issue to
/// `not_after`, in milliseconds) remains, and always once it has expired or if the lifetime is
/// empty. A 24 h certificate is thus renewed about 4 h 48 min before expiry, leaving time for
/// retries and for the new one to reach the proxy.
pub fn rotation_due(cert: &IssuedCert, now: DateTime<Utc>) -> bool {
    let total = (cert.not_after - issued_at(cert)).num_milliseconds();
    let remaining = (cert.not_after - now).num_milliseconds();
    remaining.saturating_mul(5) < total || remaining <= 0
}

/// What a certificate made by [`generate_tls_cert`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsUsage {
    /// A server (EKU serverAuth): the KDS, xDS or API certificate of a control plane.
    Server,
    /// A client (EKU clientAuth).
    Client,
}

/// Generates TLS material for the control plane itself: a self-signed CA
/// (`O=Atoll, CN=Atoll control plane CA`, path length 0) and a server certificate signed by it
/// whose SANs are `hosts` (IP literals become IP SANs, everything else DNS SANs; `*.` wildcards
/// are allowed), EKU serverAuth, subject CN the first host. Both are valid from
/// `now - CLOCK_SKEW` to `now + validity`.
pub fn generate_server_cert(
    hosts: &[String],
    validity: Duration,
    now: DateTime<Utc>,
) -> Result<ServerTls> {
    generate_tls_cert(TlsUsage::Server, hosts, validity, now)
}

/// Like [`generate_server_cert`], for either usage (`atollctl generate tls-certificate`): a CA
/// and, signed by it, a certificate that is not a CA (TLS clients refuse a CA certificate as a
/// peer's own certificate).
pub fn generate_tls_cert(
    usage: TlsUsage,
    hosts: &[String],
    validity: Duration,
    now: DateTime<Utc>,
) -> Result<ServerTls> {
    let Some(first) = hosts.first() else {
        return Err(IdentityError::InvalidRequest(
            "a TLS certificate needs at least one host".into(),
        ));
    };
    let mut sans = Vec::with_capacity(hosts.len());
    for host in hosts {
        sans.push(host_san(host)?);
    }
    let (not_before, not_after) = window(now, validity)?;

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Atoll");
    dn.push(DnType::CommonName, "Atoll control plane CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = to_offset(not_before)?;
    ca_params.not_after = to_offset(not_after)?;
    ca_params.serial_number = Some(random_serial()?.0);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(crypto)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        TlsUsage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        TlsUsage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    params.serial_number = Some(random_serial()?.0);
    let cert = params.signed_by(&key, &issuer).map_err(crypto)?;

    Ok(ServerTls {
        ca_cert_pem: pem::encode("CERTIFICATE", ca_cert.der()),
        cert_pem: pem::encode("CERTIFICATE", cert.der()),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// A parsed, checked CA ready to sign.
struct LoadedCa {
    /// The signing CA first, then its chain.
    certs: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
    not_after: DateTime<Utc>,
}

impl LoadedCa {
    fn parse(cert_pem: &str, key_pem: &str, now: DateTime<Utc>) -> Result<Self> {
        let certs = parse_certs(cert_pem)?;
        let Some(ca_der) = certs.first() else {
            return Err(IdentityError::NotACertificate(
                "no CERTIFICATE PEM block found".into(),
            ));
        };
        let ca = parse_x509(ca_der)?;
        for extra in &certs[1..] {
            parse_x509(extra)?;
        }
        let key = parse_key(key_pem)?;
        check_is_ca(&ca)?;
        if ca.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(IdentityError::KeyMismatch);
        }
        let not_before = asn1_time(&ca.validity().not_before)?;
        let not_after = asn1_time(&ca.validity().not_after)?;
        if now > not_after {
            return Err(IdentityError::CaExpired { not_after });
        }
        if now < not_before {
            return Err(IdentityError::CaNotYetValid { not_before });
        }
        // rcgen panics on an empty RDN and cannot express multi-valued ones: refuse both first.
        if ca.subject().iter().any(|rdn| rdn.iter().count() != 1) {
            return Err(IdentityError::UnsupportedCa(
                "its subject has an empty or multi-valued RDN".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(ca_der, key).map_err(|e| {
            IdentityError::UnsupportedCa(format!("cannot reuse its subject and key id: {e}"))
        })?;
        Ok(Self {
            certs,
            issuer,
            not_after,
        })
    }

    /// Signs `params` for `key`, then checks the result chains to this CA by name.
    fn sign(&self, params: &CertificateParams, key: &KeyPair) -> Result<Certificate> {
        let cert = params.signed_by(key, &self.issuer).map_err(crypto)?;
        let leaf = parse_x509(cert.der())?;
        let ca = parse_x509(&self.certs[0])?;
        if leaf.issuer().as_raw() != ca.subject().as_raw() {
            return Err(IdentityError::UnsupportedCa(
                "its subject name cannot be reproduced byte for byte as an issuer name".into(),
            ));
        }
        Ok(cert)
    }

    fn chain_pem(&self) -> String {
        self.certs
            .iter()
            .map(|der| pem::encode("CERTIFICATE", der))
            .collect()
    }
}

/// What to do about a TLS error a peer's certificate caused, for the errors operators make:
/// rustls names the problem (`CaUsedAsEndEntity`) and nothing more.
pub fn tls_error_hint(error: &str) -> Option<&'static str> {
    if error.contains("CaUsedAsEndEntity") {
        Some(
            "the server presented a CA certificate (basic constraints CA:TRUE, what `openssl req -x509` makes by default) as its own certificate, which TLS clients refuse; give the server a certificate signed by a CA instead (`atollctl generate tls-certificate --type server --hostname <host> --cert-file cert.pem --key-file key.pem --ca-cert-file ca.pem`) and trust that CA (ca.pem) here",
        )
    } else if error.contains("UnknownIssuer") {
        Some(
            "the server's certificate is not signed by the CA trusted here: check the CA file given to this side",
        )
    } else if error.contains("NotValidForName") {
        Some(
            "the server's certificate does not name the host dialed: dial a name it carries, or make a certificate with that --hostname",
        )
    } else if error.contains("Expired") {
        Some("the server's certificate has expired (or this machine's clock is wrong)")
    } else {
        None
    }
}

/// Whether the first certificate of `cert_pem` is a CA certificate (basic constraints
/// `CA:TRUE`), which TLS peers refuse as a server's or client's own certificate.
pub fn is_ca_certificate(cert_pem: &str) -> Result<bool> {
    let certs = parse_certs(cert_pem)?;
    let Some(first) = certs.first() else {
        return Err(IdentityError::NotACertificate(
            "no CERTIFICATE PEM block found".into(),
        ));
    };
    let cert = parse_x509(first)?;
    Ok(cert.is_ca())
}

fn parse_certs(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::NotACertificate(format!("bad PEM: {e}")))
}

fn parse_x509<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(IdentityError::NotACertificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(IdentityError::NotACertificate(format!(
            "cannot parse X.509: {e}"
        ))),
    }
}

fn parse_key(key_pem: &str) -> Result<KeyPair> {
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        pki_pem::Error::NoItemsFound => {
            IdentityError::InvalidKey("no PRIVATE KEY PEM block found".into())
        }
        e => IdentityError::InvalidKey(format!("bad PEM: {e}")),
    })?;
    if !matches!(der, PrivateKeyDer::Pkcs8(_)) {
        return Err(IdentityError::InvalidKey(
            "only PKCS#8 keys (BEGIN PRIVATE KEY) are supported; convert with \
             `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        ));
    }
    KeyPair::try_from(&der).map_err(|e| {
        IdentityError::InvalidKey(format!(
            "unsupported or corrupt key (P-256, P-384, Ed25519 or RSA expected): {e}"
        ))
    })
}

fn check_is_ca(cert: &X509Certificate<'_>) -> Result<()> {
    match cert.basic_constraints() {
        Err(e) => {
            return Err(IdentityError::NotACa(format!(
                "malformed basic constraints: {e}"
            )));
        }
        Ok(None) => {
            return Err(IdentityError::NotACa(
                "it has no basic constraints extension".into(),
            ));
        }
        Ok(Some(bc)) if !bc.value.ca => {
            return Err(IdentityError::NotACa(
                "its basic constraints say cA=false".into(),
            ));
        }
        Ok(Some(_)) => {}
    }
    match cert.key_usage() {
        Err(e) => Err(IdentityError::NotACa(format!("malformed key usage: {e}"))),
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(IdentityError::NotACa(
            "its key usage lacks keyCertSign".into(),
        )),
        Ok(_) => Ok(()),
    }
}

fn asn1_time(t: &x509_parser::time::ASN1Time) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0)
        .ok_or_else(|| IdentityError::NotACertificate("validity date out of range".into()))
}

/// `(now - CLOCK_SKEW, now + validity)`, truncated to whole seconds.
fn window(now: DateTime<Utc>, validity: Duration) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let out_of_range = || IdentityError::InvalidRequest("validity out of range".into());
    if validity < Duration::from_secs(1) {
        return Err(IdentityError::InvalidRequest(
            "validity must be at least one second".into(),
        ));
    }
    let now = DateTime::from_timestamp(now.timestamp(), 0).ok_or_else(out_of_range)?;
    let validity = TimeDelta::from_std(validity).map_err(|_| out_of_range())?;
    let not_before = now
        .checked_sub_signed(CLOCK_SKEW)
        .ok_or_else(out_of_range)?;
    let not_after = now.checked_add_signed(validity).ok_or_else(out_of_range)?;
    // Drop sub-second parts of the validity too, so the value matches the certificate.
    let not_after = DateTime::from_timestamp(not_after.timestamp(), 0).ok_or_else(out_of_range)?;
    Ok((not_before, not_after))
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|_| IdentityError::InvalidRequest(format!("time {t} out of range")))
}

/// A random positive 126-bit serial (RFC 5280 allows up to 20 octets), with its hex form.
fn random_serial() -> Result<(SerialNumber, String)> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdentityError::Crypto("no randomness for a serial number".into()))?;
    // Clear the sign bit and set the next one: positive, and DER needs no leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok((SerialNumber::from_slice(&bytes), hex))
}

/// Accepts non-empty printable ASCII without spaces; `/` only where `slash_ok`.
fn check_uri_part(what: &str, s: &str, slash_ok: bool) -> Result<()> {
    if s.is_empty() {
        return Err(IdentityError::InvalidRequest(format!("{what} is empty")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !c.is_ascii_graphic() || (!slash_ok && *c == '/'))
    {
        return Err(IdentityError::InvalidRequest(format!(
            "{what} {s:?} contains {c:?}, which cannot go in a URI SAN"
        )));
    }
    Ok(())
}

fn uri_san(uri: &str) -> Result<SanType> {
    Ia5String::try_from(uri)
        .map(SanType::URI)
        .map_err(|e| IdentityError::InvalidRequest(format!("{uri:?} is not a valid URI SAN: {e}")))
}

fn host_san(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let labels: Vec<&str> = host.split('.').collect();
    let valid = host.len() <= 253
        && !(labels.first() == Some(&"*") && labels.len() < 3)
        && labels.iter().enumerate().all(|(i, label)| {
            (i == 0 && *label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    if !valid {
        return Err(IdentityError::InvalidRequest(format!(
            "host {host:?} is neither an IP address nor a DNS name"
        )));
    }
    Ia5String::try_from(host)
        .map(SanType::DnsName)
        .map_err(|e| IdentityError::InvalidRequest(format!("host {host:?}: {e}")))
}

fn crypto(e: rcgen::Error) -> IdentityError {
    IdentityError::Crypto(e.to_string())
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
