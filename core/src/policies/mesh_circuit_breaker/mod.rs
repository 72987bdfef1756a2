//! The MeshCircuitBreaker package: `api` (the resource and its validation), `conf` (the merged
//! `default` for one destination) and `configure` (that conf applied to the outbound's
//! cluster). Today `connectionLimits` of `to` entries take effect; outlier detection and the
//! inbound side (`from`, `rules`) are validated but not applied yet.

pub mod api;
pub mod conf;
pub mod configure;

pub use api::*;
pub use conf::CircuitBreakerConf;

use crate::policies::PolicyReach;

/// `to` entries change the outbounds of the proxies the policy selects.
pub const REACH: PolicyReach = PolicyReach::OUTBOUNDS;
