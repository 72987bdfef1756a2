//! KDS with the operator's own certificate: one made as `atollctl generate tls-certificate`
//! makes it (a CA and a server certificate signed by it) carries a zone's link to global; a CA
//! certificate used as the server certificate (what `openssl req -x509` makes by default) is
//! refused when global starts, with the problem and the fix, instead of leaving every zone with
//! rustls's bare `CaUsedAsEndEntity`.

use std::time::Duration;

use atoll_cp::{Config, ConfigArgs, ControlPlane, Mode};
use atoll_identity::TlsUsage;
use atoll_test_support::in_process::*;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_server_certificate_carries_kds_and_a_ca_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = atoll_identity::generate_tls_cert(
        TlsUsage::Server,
        &["127.0.0.1".to_string()],
        Duration::from_secs(3600),
        chrono::Utc::now(),
    )
    .expect("certificate");
    assert!(!atoll_identity::is_ca_certificate(&tls.cert_pem).expect("parses"));
    let cert_file = dir.path().join("kds-cert.pem");
    let key_file = dir.path().join("kds-key.pem");
    std::fs::write(&cert_file, tls.cert_chain_pem()).expect("cert");
    std::fs::write(&key_file, &tls.key_pem).expect("key");
    // The zone harness trusts `<global dir>/kds-tls/ca.pem`: put the operator's CA there.
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(trust.join("kds-tls")).expect("dir");
    std::fs::write(trust.join("kds-tls").join("ca.pem"), &tls.ca_cert_pem).expect("ca");

    let (mut global, kds) = start_global_with(
        &dir.path().join("global"),
        ConfigArgs {
            kds_tls_cert_file: Some(cert_file.clone()),
            kds_tls_key_file: Some(key_file.clone()),
            ..ConfigArgs::default()
        },
    )
    .await;
    let token = zone_token(&global, "zone-1").await;
    let mut zone = start_zone(dir.path(), "zone-1", kds, &trust, &token).await;
    wait_online(&global, "zone-1", true).await;
    zone.stop().await;
    global.stop().await;

    // A CA certificate as the server's own.
    let ca = atoll_identity::generate_root_ca("m", Duration::from_secs(3600), chrono::Utc::now())
        .expect("ca");
    assert!(atoll_identity::is_ca_certificate(&ca.cert_pem).expect("parses"));
    std::fs::write(&cert_file, &ca.cert_pem).expect("cert");
    std::fs::write(&key_file, &ca.key_pem).expect("key");
    let args = ConfigArgs {
        data_dir: Some(dir.path().join("global-2")),
        kds_address: Some("127.0.0.1:0".parse().expect("addr")),
        kds_tls_cert_file: Some(cert_file),
        kds_tls_key_file: Some(key_file),
        ..ConfigArgs::default()
    };
    let config = Config::resolve(Mode::Global, &args).expect("config resolves");
    let bind = || TcpListener::bind("127.0.0.1:0");
    let kds_listener = bind().await.expect("bind");
    let hook: atoll_cp::extension::StartHook =
        Box::new(move |ctx| Box::pin(atoll_global_cp::start_on(ctx, kds_listener)));
    let started = ControlPlane::start_with(
        config,
        bind().await.expect("bind"),
        bind().await.expect("bind"),
        Some(hook),
    )
    .await;
    let error = match started {
        Ok(_) => panic!("a CA certificate must be refused as the KDS server certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("is a CA certificate")
            && error.contains("atollctl generate tls-certificate"),
        "{error}"
    );
}

#[test]
fn a_zone_told_ca_used_as_end_entity_is_told_the_fix() {
    let hint = atoll_identity::tls_error_hint(
        "transport error: invalid peer certificate: CaUsedAsEndEntity",
    )
    .expect("a hint");
    assert!(hint.contains("openssl req -x509"), "{hint}");
    assert!(hint.contains("atollctl generate tls-certificate"), "{hint}");
}
