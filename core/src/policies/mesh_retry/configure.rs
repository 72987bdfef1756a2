//! MeshRetry applied to an outbound's Envoy resources: the section of the outbound's protocol
//! (`tcp`, `http` or `grpc`). Values the conf leaves unset keep what generation wrote (Kuma's
//! default policy).

use crate::policies::{OutboundProtocol, OutboundResources};

use super::RetryConf;

/// `tcp.maxConnectAttempt` is the TCP proxy's `max_connect_attempts`; `numRetries`,
/// `perTryTimeout`, `backOff` and `retryOn` fill the route's retry policy. HTTP methods and
/// status codes in `retryOn` are not Envoy `retry_on` conditions and are left out.
pub fn outbound(conf: &RetryConf, out: &mut OutboundResources<'_>) {
    let section = match out.protocol {
        OutboundProtocol::Tcp => {
            if let Some(n) = conf.tcp.as_ref().and_then(|t| t.max_connect_attempt) {
                for tcp in out.tcp_proxies() {
                    tcp.max_connect_attempts = Some(n);
                }
            }
            return;
        }
        OutboundProtocol::Http => &conf.http,
        OutboundProtocol::Grpc => &conf.grpc,
    };
    let Some(section) = section else { return };
    let retry_on = section
        .retry_on
        .as_ref()
        .map(|on| {
            on.iter()
                .filter_map(|c| envoy_retry_condition(c))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty());
    for route in out.routes() {
        let Some(policy) = route.retry_policy.as_mut() else {
            continue;
        };
        if let Some(on) = &retry_on {
            policy.retry_on = on.clone();
        }
        if let Some(n) = section.num_retries {
            policy.num_retries = Some(n);
        }
        if let Some(t) = section.per_try_timeout {
            policy.per_try_timeout = Some(t);
        }
        if let Some(back_off) = policy.retry_back_off.as_mut() {
            if let Some(t) = section.base_interval {
                back_off.base_interval = t;
            }
            if let Some(t) = section.max_interval {
                back_off.max_interval = Some(t);
            }
        }
    }
}

/// Kuma's `retryOn` names in Envoy's spelling.
fn envoy_retry_condition(kuma: &str) -> Option<&'static str> {
    Some(match kuma {
        "5xx" | "5XX" => "5xx",
        "GatewayError" => "gateway-error",
        "Reset" => "reset",
        "Retriable4xx" => "retriable-4xx",
        "ConnectFailure" => "connect-failure",
        "EnvoyRatelimited" => "envoy-ratelimited",
        "RefusedStream" => "refused-stream",
        "Http3PostConnectFailure" => "http3-post-connect-failure",
        "Canceled" => "cancelled",
        "DeadlineExceeded" => "deadline-exceeded",
        "Internal" => "internal",
        "ResourceExhausted" => "resource-exhausted",
        "Unavailable" => "unavailable",
        _ => return None,
    })
}
