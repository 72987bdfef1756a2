//! MeshCircuitBreaker's merged conf for one destination, typed: what `configure` applies.

use serde::{Deserialize, Serialize};

use crate::Kind;
use crate::matching::{Destination, ProxyView};
use crate::policies::MeshPolicies;
use crate::policies::outbound::merged_to_conf;

use super::api;

/// What the applying MeshCircuitBreakers set for one destination; unset values keep Kuma's
/// default policy's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConf {
    #[serde(default, skip_serializing_if = "ConnectionLimits::is_empty")]
    pub connection_limits: ConnectionLimits,
}

/// `connectionLimits`: the cluster's circuit-breaker thresholds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl ConnectionLimits {
    pub fn is_empty(&self) -> bool {
        self == &ConnectionLimits::default()
    }
}

impl From<&api::Conf> for CircuitBreakerConf {
    fn from(c: &api::Conf) -> Self {
        let limits = c.connection_limits.as_ref();
        CircuitBreakerConf {
            connection_limits: ConnectionLimits {
                max_connections: limits.and_then(|l| l.max_connections),
                max_pending_requests: limits.and_then(|l| l.max_pending_requests),
                max_requests: limits.and_then(|l| l.max_requests),
                max_retries: limits.and_then(|l| l.max_retries),
            },
        }
    }
}

/// The merged `to` conf of the MeshCircuitBreakers in `policies` for traffic from `proxy` to
/// `destination`.
pub fn outbound(
    policies: &MeshPolicies,
    proxy: &ProxyView,
    destination: &Destination,
) -> Option<CircuitBreakerConf> {
    merged_to_conf::<api::Conf, _>(policies, Kind::MeshCircuitBreaker, proxy, destination)
}
