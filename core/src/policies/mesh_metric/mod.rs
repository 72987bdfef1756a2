//! The MeshMetric package: `api` holds its resource types and validation. It does not change Envoy's
//! configuration yet, so a change of one concerns no proxy ([`REACH`]). Making it take effect
//! means adding `conf` (the typed merged `default`) and `configure` (conf to Envoy resources)
//! beside `api`, as `mesh_timeout` does, and declaring what it reaches.

pub mod api;

pub use api::*;

use crate::policies::PolicyReach;

/// Resolved by no control plane yet: a change rebuilds no proxy.
pub const REACH: PolicyReach = PolicyReach::NONE;
