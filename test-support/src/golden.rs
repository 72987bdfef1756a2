//! Golden files: generated Envoy resources compared with `<case>.golden.yaml` files beside their
//! `<case>.input.yaml` in a crate's `testdata/`. `UPDATE_GOLDEN_FILES=true` rewrites the golden
//! files instead of comparing (review the diff before committing it).

use std::fs;
use std::path::{Path, PathBuf};

use atoll_xds::proto::EnvoyResource;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoldenEntry<'a> {
    type_url: &'a str,
    name: &'a str,
    resource: &'a serde_json::Value,
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN_FILES").is_ok_and(|v| v == "true")
}

/// Compares `actual` with the golden file (or rewrites it); returns a failure message.
pub fn check(golden: &Path, actual: &str) -> Option<String> {
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
pub fn to_yaml<T: Serialize>(value: &T) -> String {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(value, options).expect("serializes to YAML")
}

/// A crate's `testdata/` directory of golden cases.
#[derive(Debug, Clone)]
pub struct Testdata(PathBuf);

impl Testdata {
    /// `testdata/` of the crate whose manifest directory is `manifest_dir` (pass
    /// `env!("CARGO_MANIFEST_DIR")`).
    pub fn of(manifest_dir: &str) -> Testdata {
        Testdata(Path::new(manifest_dir).join("testdata"))
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// The `<case>.input.yaml` files, sorted by case name.
    pub fn input_cases(&self) -> Vec<(String, PathBuf)> {
        input_cases(&self.0)
    }

    /// The golden file of `case`.
    pub fn golden_file(&self, case: &str) -> PathBuf {
        self.0.join(format!("{case}.golden.yaml"))
    }

    /// Every `<case>.input.yaml`, parsed, sorted by case name.
    pub fn read_cases<T: serde::de::DeserializeOwned>(&self) -> Vec<(String, T)> {
        input_cases(&self.0)
            .into_iter()
            .map(|(case, path)| {
                let text = fs::read_to_string(&path).expect("read input");
                let input = serde_saphyr::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                (case, input)
            })
            .collect()
    }

    /// Generates every case twice (the output must not change) and
    /// compares it with its golden file; panics with every difference. At least `min_cases`.
    pub fn assert_cases_match_golden_files<T: serde::de::DeserializeOwned>(
        &self,
        min_cases: usize,
        generate: impl Fn(&T) -> Vec<EnvoyResource>,
    ) {
        let cases: Vec<(String, T)> = self.read_cases();
        assert!(
            cases.len() >= min_cases,
            "expected at least {min_cases} cases in testdata/"
        );
        let mut failures = Vec::new();
        for (case, input) in cases {
            let resources = generate(&input);
            // Same JSON and same versions (the encoded bytes may differ: prost writes protobuf
            // maps from a HashMap, in an order that changes between runs).
            let again = generate(&input);
            let versions = |rs: &[EnvoyResource]| {
                rs.iter()
                    .map(|r| (r.type_url.clone(), r.name.clone(), r.version.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                versions(&resources),
                versions(&again),
                "{case}: versions changed"
            );
            assert_eq!(
                render(&resources),
                render(&again),
                "{case}: generated twice, differently"
            );
            failures.extend(check(&self.golden_file(&case), &render(&resources)));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

/// The `<case>.input.yaml` files of `dir`, sorted by case name.
fn input_cases(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut cases: Vec<_> = fs::read_dir(dir)
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

/// The golden YAML of generated resources: a list of `{typeUrl, name, resource}`.
pub fn render(resources: &[EnvoyResource]) -> String {
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
