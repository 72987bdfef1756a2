//! The zone ingress's golden and Envoy tests: every `testdata/<case>.input.yaml` (a
//! `ZoneIngressContext`) must generate exactly its `<case>.golden.yaml`
//! (`UPDATE_GOLDEN_FILES=true` rewrites them), and real Envoy must accept every case as a static
//! bootstrap, in JSON and in protobuf form (`envoy --mode validate`; skipped with a notice when
//! `envoy` is not on PATH, unless `CI`). The helpers are shared with atoll-xds's own tests.

use atoll_xds::zone_context::ZoneIngressContext;
use atoll_zone_ingress::generate_ingress;

// Shared with the egress and sidecar tests; the ingress needs no test certificates.
#[allow(dead_code)]
#[path = "../../xds/tests/support/envoy.rs"]
mod envoy_support;
#[path = "../../xds/tests/support/golden.rs"]
mod golden_support;

use envoy_support::{envoy, static_config, validate_both};
use golden_support::{assert_cases_match_golden_files, read_cases};

fn cases() -> Vec<(String, ZoneIngressContext)> {
    read_cases()
}

#[test]
fn zone_ingress_matches_golden_files() {
    assert_cases_match_golden_files(2, |ctx| generate_ingress(ctx).expect("generates"));
}

#[test]
fn envoy_accepts_every_zone_ingress_case() {
    let Some(envoy) = envoy() else { return };
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
