//! Atoll's test platform, shared by every crate's tests (a dev-dependency only; no production
//! crate depends on it):
//!
//! - [`wait`]: bounded waits ([`eventually`], [`until`]) whose patience `ATOLL_TEST_PATIENCE`
//!   scales for slow machines;
//! - [`skip`]: visible skips when Envoy, PostgreSQL or Kuma's documentation corpus is missing
//!   (failures under CI);
//! - [`quote_tag_scalars`]: a manifest as Atoll reads it back;
//! - ports chosen at run time, control-plane binaries as child processes ([`CpProcess`]), and a
//!   TCP [`Relay`] that can freeze a link;
//! - feature `in-process`: [`in_process`], global and zone control planes inside the test
//!   process;
//! - feature `postgres`: [`postgres`], a throwaway PostgreSQL database per test;
//! - feature `raw-grpc`: [`raw_grpc`], a gRPC codec for raw bytes (hostile frames);
//! - feature `envoy-config`: [`golden`] files and validation of generated configuration by real
//!   Envoy ([`envoy`]).
//!
//! How to run the tests and what they need: docs/TESTING.md.

mod corpus;
mod manifests;
mod ports;
mod process;
mod relay;
pub mod skip;
pub mod wait;

#[cfg(feature = "envoy-config")]
pub mod envoy;
#[cfg(feature = "envoy-config")]
pub mod golden;
#[cfg(feature = "in-process")]
pub mod in_process;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "raw-grpc")]
pub mod raw_grpc;

pub use corpus::kuma_docs_corpus;
pub use manifests::quote_tag_scalars;
pub use ports::{free_port, try_free_port};
pub use process::{CpProcess, http_dataplane};
pub use relay::Relay;
pub use skip::{envoy_or_skip, in_ci, skip};
pub use wait::{PATIENCE, eventually, scaled, until, until_blocking};
