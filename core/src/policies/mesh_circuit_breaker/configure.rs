//! MeshCircuitBreaker applied to an outbound's Envoy cluster. Limits the conf leaves unset keep
//! what generation wrote (Kuma's default policy).

use crate::policies::OutboundResources;

use super::CircuitBreakerConf;

/// `connectionLimits` become the cluster's (default priority) circuit-breaker thresholds.
pub fn outbound(conf: &CircuitBreakerConf, out: &mut OutboundResources<'_>) {
    let limits = &conf.connection_limits;
    if limits.is_empty() {
        return;
    }
    let Some(breakers) = out.cluster.circuit_breakers.as_mut() else {
        return;
    };
    for t in &mut breakers.thresholds {
        if let Some(n) = limits.max_connections {
            t.max_connections = Some(n);
        }
        if let Some(n) = limits.max_pending_requests {
            t.max_pending_requests = Some(n);
        }
        if let Some(n) = limits.max_requests {
            t.max_requests = Some(n);
        }
        if let Some(n) = limits.max_retries {
            t.max_retries = Some(n);
        }
    }
}
