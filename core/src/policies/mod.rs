//! The sixteen targetRef policies, one package (folder) each, after Kuma's
//! `pkg/plugins/policies/<name>/{api,plugin}`:
//!
//! - `api`: the resource as written (types) and its validation;
//! - `conf` (once the policy takes effect): the typed merged conf, i.e. the policy's `default`
//!   after Kuma's targetRef ordering and merge ([`crate::matching`]), parsed once, durations
//!   included; nothing downstream reads policy JSON;
//! - `configure`: pure functions from that conf to changes of the Envoy resources generation
//!   built ([`atoll_envoy_model`]);
//! - `REACH`: which proxies, and which side of them, a change of such a policy can concern
//!   ([`PolicyReach`]), read by the zone control plane's rebuild planning through [`reach`].
//!
//! The packages that take effect are wired here once: [`OutboundConfs`] resolves and applies
//! them per outbound, so neither the zone control plane nor `atoll-xds` names a policy kind.

pub mod common;
pub mod mesh_access_log;
pub mod mesh_circuit_breaker;
pub mod mesh_fault_injection;
pub mod mesh_health_check;
pub mod mesh_http_route;
pub mod mesh_load_balancing_strategy;
pub mod mesh_metric;
pub mod mesh_passthrough;
pub mod mesh_proxy_patch;
pub mod mesh_rate_limit;
pub mod mesh_retry;
pub mod mesh_tcp_route;
pub mod mesh_timeout;
pub mod mesh_tls;
pub mod mesh_trace;
pub mod mesh_traffic_permission;
pub mod outbound;
pub mod store;

pub use outbound::{OutboundConfs, OutboundProtocol, OutboundResources};
pub use store::MeshPolicies;

use crate::Kind;

/// Which proxies a change of a policy kind can concern, and which side of them. Proxies not
/// selected by a policy's top-level targetRef are never concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyReach {
    /// The inbound side (inbound listeners and local clusters) of the proxies it selects.
    pub inbounds: bool,
    /// The outbound side of the proxies it selects, for the destinations its `to` entries name
    /// (every destination for a `to` entry of kind `Mesh`).
    pub outbounds: bool,
}

impl PolicyReach {
    /// The policy does not change Envoy configuration (yet): no proxy is rebuilt for it.
    pub const NONE: PolicyReach = PolicyReach {
        inbounds: false,
        outbounds: false,
    };
    pub const INBOUNDS: PolicyReach = PolicyReach {
        inbounds: true,
        outbounds: false,
    };
    pub const OUTBOUNDS: PolicyReach = PolicyReach {
        inbounds: false,
        outbounds: true,
    };

    /// Whether the zone control plane resolves this kind into Envoy configuration at all (and
    /// so keeps it in its mesh index).
    pub fn applies(self) -> bool {
        self.inbounds || self.outbounds
    }

    /// Only the inbound side changes: the outbound side of a previous build can be kept.
    pub fn inbounds_only(self) -> bool {
        self.inbounds && !self.outbounds
    }

    /// Only the outbound side changes, for the `to` destinations: proxies that reach none of
    /// them are not concerned.
    pub fn outbounds_only(self) -> bool {
        self.outbounds && !self.inbounds
    }
}

/// What a change of `kind` can concern (see [`PolicyReach`]); [`PolicyReach::NONE`] for kinds
/// that are not policies. Each package declares its own `REACH`; this is the one list of them.
pub fn reach(kind: Kind) -> PolicyReach {
    match kind {
        Kind::MeshTrafficPermission => mesh_traffic_permission::REACH,
        Kind::MeshTimeout => mesh_timeout::REACH,
        Kind::MeshRetry => mesh_retry::REACH,
        Kind::MeshCircuitBreaker => mesh_circuit_breaker::REACH,
        Kind::MeshHTTPRoute => mesh_http_route::REACH,
        Kind::MeshTCPRoute => mesh_tcp_route::REACH,
        Kind::MeshHealthCheck => mesh_health_check::REACH,
        Kind::MeshRateLimit => mesh_rate_limit::REACH,
        Kind::MeshAccessLog => mesh_access_log::REACH,
        Kind::MeshTrace => mesh_trace::REACH,
        Kind::MeshMetric => mesh_metric::REACH,
        Kind::MeshLoadBalancingStrategy => mesh_load_balancing_strategy::REACH,
        Kind::MeshFaultInjection => mesh_fault_injection::REACH,
        Kind::MeshPassthrough => mesh_passthrough::REACH,
        Kind::MeshProxyPatch => mesh_proxy_patch::REACH,
        Kind::MeshTLS => mesh_tls::REACH,
        Kind::Mesh
        | Kind::Zone
        | Kind::ZoneIngress
        | Kind::ZoneEgress
        | Kind::GlobalSecret
        | Kind::HostnameGenerator
        | Kind::Dataplane
        | Kind::Secret
        | Kind::MeshService
        | Kind::MeshExternalService
        | Kind::MeshMultiZoneService => PolicyReach::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policies_in_effect_declare_the_sides_they_change() {
        assert!(reach(Kind::MeshTrafficPermission).inbounds_only());
        for kind in [Kind::MeshTimeout, Kind::MeshRetry, Kind::MeshCircuitBreaker] {
            assert!(reach(kind).outbounds_only(), "{kind}");
        }
        assert!(!reach(Kind::MeshHealthCheck).applies());
        assert!(!reach(Kind::Dataplane).applies());
        let applied = Kind::ALL.iter().filter(|k| reach(**k).applies()).count();
        assert_eq!(applied, 4);
    }
}
