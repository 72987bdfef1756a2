//! Fuzz targets over every path where Atoll reads input it does not control:
//!
//! - [`resource_yaml`], [`resource_json`]: a document as the REST API and `atollctl apply` read
//!   it (`format::parse_documents`, then `Resource::from_value` and the kind's validator);
//! - [`token`]: dataplane and zone token verification, and the key PEMs tokens are checked with;
//! - [`kds`]: the KDS sans-IO engine (a `Sender` and a `Receiver`) fed the other side's real
//!   traffic interleaved with arbitrary, corrupted and prost-decoded delta discovery messages;
//! - [`xds`]: one Envoy's `DeltaSession` fed a sequence of arbitrary delta discovery requests
//!   (structured, or prost-decoded from raw bytes) and snapshot changes.
//!
//! Each target takes bytes and must neither panic nor break an invariant it checks, whatever
//! the bytes. The libFuzzer binaries (`fuzz_targets/`, run by `scripts/fuzz` with cargo-fuzz on
//! a nightly toolchain) are one line each; the workspace tests run every target over its seeds
//! (`seeds/<target>/`) and a few hundred deterministic mutations of them ([`smoke`]).

mod kds_target;
mod resource_target;
pub mod smoke;
mod token_target;
mod xds_target;

pub use kds_target::kds;
pub use resource_target::{resource_json, resource_yaml};
pub use token_target::token;
pub use xds_target::xds;
