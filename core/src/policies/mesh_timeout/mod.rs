//! The MeshTimeout package: `api` (the resource and its validation), `conf` (the merged
//! `default` for one destination, durations parsed) and `configure` (that conf applied to the
//! outbound's Envoy listener, routes and cluster). Today the zone control plane resolves the
//! `to` entries; `from` and `rules` (the inbound side) are validated but not applied yet.

pub mod api;
pub mod conf;
pub mod configure;

pub use api::*;
pub use conf::TimeoutConf;

use crate::policies::PolicyReach;

/// `to` entries change the outbounds of the proxies the policy selects.
pub const REACH: PolicyReach = PolicyReach::OUTBOUNDS;
