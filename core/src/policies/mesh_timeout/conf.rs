//! MeshTimeout's merged conf for one destination, typed: what `configure` applies.

use serde::{Deserialize, Serialize};

use atoll_envoy_model::Duration;

use crate::Kind;
use crate::matching::{Destination, ProxyView};
use crate::policies::MeshPolicies;
use crate::policies::common::envoy_duration;
use crate::policies::outbound::merged_to_conf;

use super::api;

/// The timeouts the applying MeshTimeouts set for one destination; unset ones keep Kuma's
/// default policy's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "HttpTimeouts::is_empty")]
    pub http: HttpTimeouts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers_timeout: Option<Duration>,
}

impl HttpTimeouts {
    pub fn is_empty(&self) -> bool {
        self == &HttpTimeouts::default()
    }
}

impl From<&api::Conf> for TimeoutConf {
    fn from(c: &api::Conf) -> Self {
        let http = c.http.clone().unwrap_or_default();
        TimeoutConf {
            connection_timeout: envoy_duration(&c.connection_timeout),
            idle_timeout: envoy_duration(&c.idle_timeout),
            http: HttpTimeouts {
                request_timeout: envoy_duration(&http.request_timeout),
                stream_idle_timeout: envoy_duration(&http.stream_idle_timeout),
                max_stream_duration: envoy_duration(&http.max_stream_duration),
                max_connection_duration: envoy_duration(&http.max_connection_duration),
                request_headers_timeout: envoy_duration(&http.request_headers_timeout),
            },
        }
    }
}

/// The merged `to` conf of the MeshTimeouts in `policies` for traffic from `proxy` to
/// `destination`.
pub fn outbound(
    policies: &MeshPolicies,
    proxy: &ProxyView,
    destination: &Destination,
) -> Option<TimeoutConf> {
    merged_to_conf::<api::Conf, _>(policies, Kind::MeshTimeout, proxy, destination)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use crate::matching::{InboundView, PolicyView};
    use serde_json::json;

    #[test]
    fn merges_entries_and_parses_durations_once() {
        let mut policies = MeshPolicies::default();
        for (name, to) in [
            (
                "mesh",
                json!({"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1m", "http": {"requestTimeout": "2s"}}}),
            ),
            (
                "db",
                json!({"targetRef": {"kind": "MeshService", "name": "db"}, "default": {"connectionTimeout": "250ms"}}),
            ),
        ] {
            let r = Resource::from_value(json!({
                "type": "MeshTimeout", "mesh": "default", "name": name, "spec": {"to": [to]}
            }))
            .expect("valid");
            policies.upsert(PolicyView::from_resource(&r).expect("view"));
        }
        let proxy = ProxyView {
            mesh: "default".into(),
            name: "web-1".into(),
            inbounds: vec![InboundView::default()],
            ..ProxyView::default()
        };
        let to = |service: &str| Destination::Named {
            kind: "MeshService".into(),
            name: service.into(),
            section_name: None,
        };
        let db = outbound(&policies, &proxy, &to("db")).expect("applies");
        assert_eq!(db.connection_timeout, Some(Duration::from_millis(250)));
        assert_eq!(db.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(db.http.request_timeout, Some(Duration::from_secs(2)));
        let other = outbound(&policies, &proxy, &to("cache")).expect("applies");
        assert_eq!(other.connection_timeout, None);
        assert_eq!(
            serde_json::to_value(&other).expect("serializes"),
            json!({"idleTimeout": "60s", "http": {"requestTimeout": "2s"}})
        );
    }
}
