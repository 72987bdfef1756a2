//! Every manifest in Kuma's documentation (`atoll_test_support::kuma_docs_corpus`: shared/ beside
//! the checkout, or ATOLL_CONFORMANCE_DIR) must be accepted by the resource model, and read back
//! unchanged.

use std::path::{Path, PathBuf};

use atoll_core::format::parse_documents;
use atoll_core::{Kind, Resource};

fn corpus_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let kinds = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("conformance corpus at {}: {e}", dir.display()));
    for kind_dir in kinds.flatten() {
        let kind = kind_dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(kind_dir.path())
            .expect("kind folder")
            .flatten()
        {
            out.push((kind.clone(), f.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn every_documented_kuma_manifest_is_accepted_and_reads_back_unchanged() {
    let Some(dir) = atoll_test_support::kuma_docs_corpus() else {
        return;
    };
    let files = corpus_files(&dir);
    assert!(
        files.len() > 200,
        "corpus looks incomplete: {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for (kind, path) in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let docs = match parse_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for doc in docs {
            match Resource::from_value(doc.clone()) {
                Ok(res) => {
                    assert_eq!(
                        res.kind,
                        Kind::from_name(kind).expect("folder names a kind")
                    );
                    let mut expected = doc.clone();
                    if res.kind.is_mesh_scoped() && doc.get("mesh").is_none() {
                        // Written without a mesh: it went to the default mesh, as in Kuma.
                        expected["mesh"] = "default".into();
                    }
                    // Tag and label values are strings: `port: 1800` reads back as "1800", as
                    // Kuma reads it.
                    atoll_test_support::quote_tag_scalars(&mut expected);
                    assert_eq!(
                        res.to_value(),
                        expected,
                        "{} reads back changed",
                        path.display()
                    );
                }
                Err(v) => failures.push(format!("{}: {v}", path.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} manifests refused:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
