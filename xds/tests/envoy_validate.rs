//! Real Envoy checks the generated configuration: every golden case is turned into a static
//! bootstrap and run through `envoy --mode validate`, and so are the dataplane bootstraps.
//!
//! ADS references are replaced by what Envoy can check offline: each EDS cluster becomes a
//! STATIC cluster with the generated ClusterLoadAssignment inline, and each SDS reference
//! (`sds_config: {ads: {}}`) becomes a reference to a static secret, holding certificates made
//! here with rcgen (a mesh CA and an identity with a SPIFFE URI SAN).
//!
//! Without `envoy` on PATH the tests record a visible skip and pass, unless `CI` is set (then
//! fail).

use atoll_xds::bootstrap::bootstrap;
use atoll_xds::context::ProxyContext;
use atoll_xds::generate::{generate, secrets};
use serde_json::{Value, json};

mod common;

use atoll_test_support::envoy::{
    TestCerts, envoy, proto_bootstrap, static_config, test_certs, validate, validate_both,
    validate_proto,
};

/// A static bootstrap holding one case's generated listeners, clusters and secrets.
fn static_bootstrap(ctx: &ProxyContext, certs: &TestCerts) -> Value {
    let resources = generate(ctx).expect("generates");
    let secrets = secrets(&certs.chain_pem, &certs.key_pem, &certs.ca_pem);
    static_config(&format!("{}.{}", ctx.mesh, ctx.name), &resources, &secrets)
}

fn cases() -> Vec<(String, ProxyContext)> {
    atoll_test_support::golden::Testdata::of(env!("CARGO_MANIFEST_DIR")).read_cases()
}

#[test]
fn envoy_accepts_every_golden_case() {
    let Some(envoy) = envoy("envoy_accepts_every_golden_case") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = cases();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for (case, ctx) in cases {
        let service = ctx
            .inbounds
            .first()
            .map_or_else(|| "client".to_string(), |i| i.service.clone());
        let certs = test_certs(&ctx.mesh, &service);
        let config = static_bootstrap(&ctx, &certs);
        failures.extend(validate_both(&envoy, dir.path(), &case, &config));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn envoy_accepts_the_bootstraps() {
    let Some(envoy) = envoy("envoy_accepts_the_bootstraps") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = test_certs("default", "control-plane");
    let mut failures = Vec::new();
    for (case, mut params) in common::bootstrap_cases() {
        // A real CA instead of the golden files' placeholder: Envoy parses it.
        if params.ca_cert_pem.is_some() {
            params.ca_cert_pem = Some(certs.ca_pem.clone());
        }
        if let Err(e) = validate(&envoy, dir.path(), case, &bootstrap(&params)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The harness is not vacuous: Envoy rejects a broken configuration.
#[test]
fn envoy_rejects_a_broken_config() {
    let Some(envoy) = envoy("envoy_rejects_a_broken_config") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, ctx) = cases().into_iter().next().expect("a case");
    let certs = test_certs(&ctx.mesh, "x");
    let mut config = static_bootstrap(&ctx, &certs);
    // Point every route and TCP proxy at a cluster that does not exist.
    config["static_resources"]["clusters"] = json!([]);
    assert!(validate(&envoy, dir.path(), "broken", &config).is_err());
    assert!(validate_proto(&envoy, dir.path(), "broken", &proto_bootstrap(&config)).is_err());
    // ...while the unbroken protobuf form of the same case passes.
    let config = static_bootstrap(&ctx, &certs);
    assert_eq!(
        validate_proto(&envoy, dir.path(), "unbroken", &proto_bootstrap(&config)),
        Ok(())
    );
}
