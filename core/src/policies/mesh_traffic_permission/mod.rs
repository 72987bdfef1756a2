//! The MeshTrafficPermission package: `api` (the resource and its validation) and `conf` (the
//! ordered decisions for one inbound, from the merged `from` entries). Its Envoy side (RBAC
//! filters on the inbound listener) is still written by `atoll-xds`'s generation from those
//! decisions; moving it here as `configure` is the next step.

pub mod api;
pub mod conf;

pub use api::*;

use crate::policies::PolicyReach;

/// `from` entries change the inbounds of the proxies the policy selects.
pub const REACH: PolicyReach = PolicyReach::INBOUNDS;
