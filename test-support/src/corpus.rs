//! Kuma's documented manifests, which live outside the repository.

use std::path::Path;

/// Where Kuma's documented example manifests are (`<kind>/<file>.yaml`): `ATOLL_CONFORMANCE_DIR`
/// when set, else `shared/conformance/kuma-docs` beside the checkout (how the project's machines
/// and CI lay it out). `None`, after recording a visible skip, when it is absent outside CI, so
/// that a lone clone's tests pass and say what they did not check; in CI (`CI` set) its absence
/// is a failure.
pub fn kuma_docs_corpus() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("ATOLL_CONFORMANCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/kuma-docs")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    crate::skip(
        "the Kuma documentation corpus checks",
        &format!("{}", dir.display()),
        "set ATOLL_CONFORMANCE_DIR to Kuma's example manifests",
    );
    None
}
