//! The zone egress's golden and Envoy tests: every `testdata/<case>.input.yaml` (a
//! `ZoneEgressContext`) must generate exactly its `<case>.golden.yaml`
//! (`UPDATE_GOLDEN_FILES=true` rewrites them), and real Envoy must accept every case as a static
//! bootstrap, in JSON and in protobuf form, with the egress's secrets (`envoy --mode validate`;
//! a visible skip when `envoy` is not on PATH, unless `CI`).

use std::path::Path;

use atoll_xds::proto::EnvoyResource;
use atoll_xds::zone_context::{CaCert, ZoneEgressContext};
use atoll_xds::zone_proxy::{EGRESS_SERVICE, SYSTEM_CA_BUNDLE};
use atoll_zone_egress::{egress_secrets, generate_egress, meshes_with_external_services};
use serde_json::json;

use atoll_test_support::envoy::{envoy, static_config, test_certs, validate, validate_both};
use atoll_test_support::golden::Testdata;

fn cases() -> Vec<(String, ZoneEgressContext)> {
    testdata().read_cases()
}

fn testdata() -> Testdata {
    Testdata::of(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn zone_egress_matches_golden_files() {
    testdata().assert_cases_match_golden_files(3, |ctx| generate_egress(ctx).expect("generates"));
}

#[test]
fn envoy_accepts_every_zone_egress_case() {
    let Some(envoy) = envoy("envoy_accepts_every_zone_egress_case") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // A real CA in place of the inputs' placeholder; the system bundle only where it exists.
    let external_ca = test_certs("external", "unused").ca_pem;
    let system_bundle = Path::new(SYSTEM_CA_BUNDLE).is_file();
    let mut failures = Vec::new();
    for (case, mut ctx) in cases() {
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
        let config = static_config(&name, &resources, &secrets);
        failures.extend(validate_both(&envoy, dir.path(), &name, &config));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The egress's external chains really depend on their mesh's secrets: without them Envoy
/// refuses the configuration.
#[test]
fn envoy_rejects_an_egress_without_its_secrets() {
    let Some(envoy) = envoy("envoy_rejects_an_egress_without_its_secrets") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, ctx) = cases()
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
