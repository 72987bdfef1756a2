//! MeshRetry's merged conf for one destination, typed: what `configure` applies.

use serde::{Deserialize, Serialize};

use atoll_envoy_model::Duration;

use crate::Kind;
use crate::matching::{Destination, ProxyView};
use crate::policies::MeshPolicies;
use crate::policies::common::envoy_duration;
use crate::policies::outbound::merged_to_conf;

use super::api;

/// What the applying MeshRetries set for one destination, per protocol section; unset values
/// keep Kuma's default policy's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<RequestRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<RequestRetry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connect_attempt: Option<u32>,
}

/// The `http` or `grpc` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Duration>,
    /// `retryOn` as written (Kuma's names, HTTP methods and status codes alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
}

fn back_off(b: &Option<api::BackOff>) -> (Option<Duration>, Option<Duration>) {
    b.as_ref().map_or((None, None), |b| {
        (
            envoy_duration(&b.base_interval),
            envoy_duration(&b.max_interval),
        )
    })
}

impl From<&api::Conf> for RetryConf {
    fn from(c: &api::Conf) -> Self {
        RetryConf {
            tcp: c.tcp.as_ref().map(|t| TcpRetry {
                max_connect_attempt: t.max_connect_attempt,
            }),
            http: c.http.as_ref().map(|h| {
                let (base_interval, max_interval) = back_off(&h.back_off);
                RequestRetry {
                    num_retries: h.num_retries,
                    per_try_timeout: envoy_duration(&h.per_try_timeout),
                    base_interval,
                    max_interval,
                    retry_on: h
                        .retry_on
                        .as_ref()
                        .map(|on| on.iter().map(|c| c.0.clone()).collect()),
                }
            }),
            grpc: c.grpc.as_ref().map(|g| {
                let (base_interval, max_interval) = back_off(&g.back_off);
                RequestRetry {
                    num_retries: g.num_retries,
                    per_try_timeout: envoy_duration(&g.per_try_timeout),
                    base_interval,
                    max_interval,
                    retry_on: g
                        .retry_on
                        .as_ref()
                        .map(|on| on.iter().map(|c| c.as_str().to_string()).collect()),
                }
            }),
        }
    }
}

/// The merged `to` conf of the MeshRetries in `policies` for traffic from `proxy` to
/// `destination`.
pub fn outbound(
    policies: &MeshPolicies,
    proxy: &ProxyView,
    destination: &Destination,
) -> Option<RetryConf> {
    merged_to_conf::<api::Conf, _>(policies, Kind::MeshRetry, proxy, destination)
}
