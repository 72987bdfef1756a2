//! Golden tests: every `testdata/<case>.input.yaml` (a `ProxyContext`) must generate exactly
//! `testdata/<case>.golden.yaml` (a YAML list of `{typeUrl, name, resource}`), and the
//! bootstrap cases their `bootstrap-*.golden.yaml`. `UPDATE_GOLDEN_FILES=true cargo test -p
//! atoll-xds` rewrites the golden files instead of comparing.

use std::fs;

use atoll_xds::bootstrap::bootstrap;
use atoll_xds::context::ProxyContext;
use atoll_xds::generate::generate;

mod common;
#[path = "support/golden.rs"]
mod golden_support;

use golden_support::{assert_cases_match_golden_files, check, testdata, to_yaml};

fn input_cases() -> Vec<(String, std::path::PathBuf)> {
    golden_support::input_cases(&testdata())
}

/// The golden YAML of one context.
fn render(ctx: &ProxyContext) -> String {
    golden_support::render(&generate(ctx).expect("generates"))
}

#[test]
fn generated_resources_match_golden_files() {
    assert_cases_match_golden_files(6, |ctx: &ProxyContext| generate(ctx).expect("generates"));
}

#[test]
fn bootstrap_matches_golden_files() {
    let mut failures = Vec::new();
    for (case, params) in common::bootstrap_cases() {
        let yaml = to_yaml(&bootstrap(&params));
        failures.extend(check(
            &testdata().join(format!("{case}.golden.yaml")),
            &yaml,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_inputs_generate_the_same_twice() {
    for (_, input) in input_cases() {
        let text = fs::read_to_string(&input).expect("read input");
        let ctx: ProxyContext = serde_saphyr::from_str(&text).expect("parses");
        assert_eq!(render(&ctx), render(&ctx), "{}", input.display());
    }
}
