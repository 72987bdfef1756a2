//! The MeshRetry package: `api` (the resource and its validation), `conf` (the merged
//! `default` for one destination, durations parsed) and `configure` (that conf applied to the
//! outbound's route retry policy or TCP proxy). Header conditions, host selection and the
//! rate-limited back-off are validated but not applied yet.

pub mod api;
pub mod conf;
pub mod configure;

pub use api::*;
pub use conf::RetryConf;

use crate::policies::PolicyReach;

/// `to` entries change the outbounds of the proxies the policy selects.
pub const REACH: PolicyReach = PolicyReach::OUTBOUNDS;
