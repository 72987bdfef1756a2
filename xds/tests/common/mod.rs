//! Test inputs shared by the golden and the Envoy validation tests.

use atoll_xds::bootstrap::BootstrapParams;

/// The bootstrap cases: an IP control plane without a CA, and a DNS one with a (placeholder)
/// CA. No real certificate material goes into golden files.
pub fn bootstrap_cases() -> Vec<(&'static str, BootstrapParams)> {
    let base = BootstrapParams {
        mesh: "default".into(),
        name: "web-1".into(),
        service: "web".into(),
        proxy_type: "dataplane".into(),
        xds_host: "10.0.0.2".into(),
        xds_port: 5678,
        ca_cert_pem: None,
        token: Some("PLACEHOLDER-DATAPLANE-TOKEN".into()),
        admin_port: 9901,
    };
    let dns = BootstrapParams {
        xds_host: "zone-cp.atoll-system.svc".into(),
        ca_cert_pem: Some("PLACEHOLDER-CA-PEM".into()),
        token: None,
        ..base.clone()
    };
    vec![("bootstrap-ip", base), ("bootstrap-dns", dns)]
}
