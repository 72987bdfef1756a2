//! Golden tests: every `testdata/<case>.input.yaml` (a `ProxyContext`) must generate exactly
//! `testdata/<case>.golden.yaml` (a YAML list of `{typeUrl, name, resource}`), and the
//! bootstrap cases their `bootstrap-*.golden.yaml`. `UPDATE_GOLDEN_FILES=true cargo test -p
//! atoll-xds` rewrites the golden files instead of comparing.

use std::fs;
use std::path::{Path, PathBuf};

use atoll_xds::bootstrap::bootstrap;
use atoll_xds::context::ProxyContext;
use atoll_xds::generate::generate;
use serde::Serialize;

mod common;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoldenEntry<'a> {
    type_url: &'a str,
    name: &'a str,
    resource: &'a serde_json::Value,
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN_FILES").is_ok_and(|v| v == "true")
}

/// Compares `actual` with the golden file (or rewrites it); returns a failure message.
fn check(golden: &Path, actual: &str) -> Option<String> {
    if updating() {
        fs::write(golden, actual).expect("write golden file");
        return None;
    }
    let expected = fs::read_to_string(golden).unwrap_or_default();
    if expected == actual {
        return None;
    }
    Some(format!(
        "{} differs (run with UPDATE_GOLDEN_FILES=true to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
        golden.display()
    ))
}

/// YAML without folded block scalars, so long type URLs stay on one line.
fn to_yaml<T: Serialize>(value: &T) -> String {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(value, options).expect("serializes to YAML")
}

fn input_cases() -> Vec<(String, PathBuf)> {
    let mut cases: Vec<_> = fs::read_dir(testdata())
        .expect("testdata directory")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let file = p.file_name()?.to_str()?.to_string();
            let case = file.strip_suffix(".input.yaml")?.to_string();
            Some((case, p))
        })
        .collect();
    cases.sort();
    cases
}

/// The golden YAML of one context.
fn render(ctx: &ProxyContext) -> String {
    let resources = generate(ctx).expect("generates");
    let entries: Vec<_> = resources
        .iter()
        .map(|r| GoldenEntry {
            type_url: &r.type_url,
            name: &r.name,
            resource: &r.json,
        })
        .collect();
    to_yaml(&entries)
}

#[test]
fn generated_resources_match_golden_files() {
    let cases = input_cases();
    assert!(cases.len() >= 6, "expected the golden cases in testdata/");
    let mut failures = Vec::new();
    for (case, input) in cases {
        let text = fs::read_to_string(&input).expect("read input");
        let ctx: ProxyContext =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let golden = testdata().join(format!("{case}.golden.yaml"));
        failures.extend(check(&golden, &render(&ctx)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
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
