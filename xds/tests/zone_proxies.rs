//! The zone proxies' golden and Envoy tests: every `testdata/zone-ingress/<case>.input.yaml` (a
//! `ZoneIngressContext`) and `testdata/zone-egress/<case>.input.yaml` (a `ZoneEgressContext`)
//! must generate exactly its `<case>.golden.yaml` (`UPDATE_GOLDEN_FILES=true` rewrites them),
//! and real Envoy must accept every case as a static bootstrap, in JSON and in protobuf form
//! (`envoy --mode validate`; skipped with a notice when `envoy` is not on PATH, unless `CI`).

use std::fs;
use std::path::Path;

use atoll_xds::proto::EnvoyResource;
use atoll_xds::zone_context::{CaCert, ZoneEgressContext, ZoneIngressContext};
use atoll_xds::zone_proxy::{
    EGRESS_SERVICE, SYSTEM_CA_BUNDLE, egress_secrets, generate_egress, generate_ingress,
    meshes_with_external_services,
};
use serde_json::json;

#[path = "support/envoy.rs"]
mod envoy_support;
#[path = "support/golden.rs"]
mod golden_support;

use envoy_support::{envoy, proto_bootstrap, static_config, test_certs, validate, validate_proto};
use golden_support::{check, input_cases, render, testdata};

fn read<T: serde::de::DeserializeOwned>(input: &Path) -> T {
    let text = fs::read_to_string(input).expect("read input");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", input.display()))
}

fn ingress_cases() -> Vec<(String, ZoneIngressContext)> {
    input_cases(&testdata().join("zone-ingress"))
        .into_iter()
        .map(|(case, path)| (case, read(&path)))
        .collect()
}

fn egress_cases() -> Vec<(String, ZoneEgressContext)> {
    input_cases(&testdata().join("zone-egress"))
        .into_iter()
        .map(|(case, path)| (case, read(&path)))
        .collect()
}

fn golden_path(kind: &str, case: &str) -> std::path::PathBuf {
    testdata().join(kind).join(format!("{case}.golden.yaml"))
}

#[test]
fn zone_ingress_matches_golden_files() {
    let cases = ingress_cases();
    assert!(cases.len() >= 2, "expected the zone ingress cases");
    let mut failures = Vec::new();
    for (case, ctx) in cases {
        let resources = generate_ingress(&ctx).expect("generates");
        assert_eq!(resources, generate_ingress(&ctx).expect("generates"));
        failures.extend(check(
            &golden_path("zone-ingress", &case),
            &render(&resources),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn zone_egress_matches_golden_files() {
    let cases = egress_cases();
    assert!(cases.len() >= 3, "expected the zone egress cases");
    let mut failures = Vec::new();
    for (case, ctx) in cases {
        let resources = generate_egress(&ctx).expect("generates");
        assert_eq!(resources, generate_egress(&ctx).expect("generates"));
        failures.extend(check(
            &golden_path("zone-egress", &case),
            &render(&resources),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// JSON and protobuf validation of one generated configuration.
fn validate_both(
    envoy: &Path,
    dir: &Path,
    name: &str,
    resources: &[EnvoyResource],
    secrets: &[EnvoyResource],
) -> Vec<String> {
    let config = static_config(name, resources, secrets);
    let mut failures = Vec::new();
    failures.extend(validate(envoy, dir, name, &config).err());
    let proto = proto_bootstrap(&config);
    failures.extend(validate_proto(envoy, dir, name, &proto).err());
    failures
}

#[test]
fn envoy_accepts_every_zone_ingress_case() {
    let Some(envoy) = envoy() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (case, ctx) in ingress_cases() {
        let resources = generate_ingress(&ctx).expect("generates");
        let name = format!("zone-ingress-{case}");
        failures.extend(validate_both(&envoy, dir.path(), &name, &resources, &[]));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn envoy_accepts_every_zone_egress_case() {
    let Some(envoy) = envoy() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // A real CA in place of the inputs' placeholder; the system bundle only where it exists.
    let external_ca = test_certs("external", "unused").ca_pem;
    let system_bundle = Path::new(SYSTEM_CA_BUNDLE).is_file();
    let mut failures = Vec::new();
    for (case, mut ctx) in egress_cases() {
        for external in ctx.meshes.iter_mut().flat_map(|m| &mut m.external_services) {
            if let Some(tls) = &mut external.tls {
                match &tls.ca_cert {
                    Some(CaCert::Inline(_)) => {
                        tls.ca_cert = Some(CaCert::Inline(external_ca.clone()));
                    }
                    None if !system_bundle => {
                        tls.ca_cert = Some(CaCert::Inline(external_ca.clone()));
                    }
                    _ => {}
                }
            }
        }
        let resources = generate_egress(&ctx).expect("generates");
        let secrets: Vec<EnvoyResource> = meshes_with_external_services(&ctx)
            .into_iter()
            .flat_map(|mesh| {
                let certs = test_certs(mesh, EGRESS_SERVICE);
                egress_secrets(mesh, &certs.chain_pem, &certs.key_pem, &certs.ca_pem)
            })
            .collect();
        let name = format!("zone-egress-{case}");
        failures.extend(validate_both(
            &envoy,
            dir.path(),
            &name,
            &resources,
            &secrets,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The egress's external chains really depend on their mesh's secrets: without them Envoy
/// refuses the configuration.
#[test]
fn envoy_rejects_an_egress_without_its_secrets() {
    let Some(envoy) = envoy() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, ctx) = egress_cases()
        .into_iter()
        .find(|(case, _)| case == "mixed")
        .expect("the mixed case");
    let resources = generate_egress(&ctx).expect("generates");
    let mut config = static_config("no-secrets", &resources, &[]);
    assert!(validate(&envoy, dir.path(), "no-secrets", &config).is_err());
    // ...and a listener whose chains name a missing cluster is refused too.
    config["static_resources"]["secrets"] = json!([]);
    config["static_resources"]["clusters"] = json!([]);
    assert!(validate(&envoy, dir.path(), "no-clusters", &config).is_err());
}
