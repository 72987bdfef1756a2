//! The zone ingress's golden and Envoy tests: every `testdata/<case>.input.yaml` (a
//! `ZoneIngressContext`) must generate exactly its `<case>.golden.yaml`
//! (`UPDATE_GOLDEN_FILES=true` rewrites them), and real Envoy must accept every case as a static
//! bootstrap, in JSON and in protobuf form (`envoy --mode validate`; a visible skip when
//! `envoy` is not on PATH, unless `CI`).

use atoll_xds::zone_context::ZoneIngressContext;
use atoll_zone_ingress::generate_ingress;

use atoll_test_support::envoy::{envoy, static_config, validate_both};
use atoll_test_support::golden::Testdata;

fn cases() -> Vec<(String, ZoneIngressContext)> {
    testdata().read_cases()
}

fn testdata() -> Testdata {
    Testdata::of(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn zone_ingress_matches_golden_files() {
    testdata().assert_cases_match_golden_files(2, |ctx| generate_ingress(ctx).expect("generates"));
}

#[test]
fn envoy_accepts_every_zone_ingress_case() {
    let Some(envoy) = envoy("envoy_accepts_every_zone_ingress_case") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (case, ctx) in cases() {
        let resources = generate_ingress(&ctx).expect("generates");
        let name = format!("zone-ingress-{case}");
        let config = static_config(&name, &resources, &[]);
        failures.extend(validate_both(&envoy, dir.path(), &name, &config));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
