//! Golden tests: every `testdata/<case>.input.yaml` (a `ProxyContext`) must generate exactly
//! `testdata/<case>.golden.yaml` (a YAML list of `{typeUrl, name, resource}`), and the
//! bootstrap cases their `bootstrap-*.golden.yaml`. `UPDATE_GOLDEN_FILES=true cargo test -p
//! atoll-xds` rewrites the golden files instead of comparing.

use std::fs;

use atoll_xds::bootstrap::bootstrap;
use atoll_xds::context::ProxyContext;
use atoll_xds::generate::generate;

use atoll_test_support::golden::{Testdata, check, to_yaml};

mod common;

fn testdata() -> Testdata {
    Testdata::of(env!("CARGO_MANIFEST_DIR"))
}

/// The golden YAML of one context.
fn render(ctx: &ProxyContext) -> String {
    atoll_test_support::golden::render(&generate(ctx).expect("generates"))
}

#[test]
fn generated_resources_match_golden_files() {
    testdata()
        .assert_cases_match_golden_files(6, |ctx: &ProxyContext| generate(ctx).expect("generates"));
}

#[test]
fn bootstrap_matches_golden_files() {
    let mut failures = Vec::new();
    for (case, params) in common::bootstrap_cases() {
        let yaml = to_yaml(&bootstrap(&params));
        failures.extend(check(&testdata().golden_file(case), &yaml));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_inputs_generate_the_same_twice() {
    for (_, input) in testdata().input_cases() {
        let text = fs::read_to_string(&input).expect("read input");
        let ctx: ProxyContext = serde_saphyr::from_str(&text).expect("parses");
        assert_eq!(render(&ctx), render(&ctx), "{}", input.display());
    }
}
