//! MeshHealthCheck: active health checking (TCP, HTTP or gRPC probes) that the selected proxies
//! run against the endpoints of their outbound destinations, removing unhealthy ones.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    HeaderSetAdd, IntOrString, PolicyDoc, ToEntry, TopLevelOpts, check_duration,
    check_entry_target_ref, check_percent, check_percentage, check_positive, check_top_level,
    has_entries, require_a_section,
};
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// The `MeshHealthCheck` document: its spec is all that is kind-specific.
pub type MeshHealthCheckDoc = PolicyDoc<MeshHealthCheckSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshHealthCheckSpec {
    /// The proxies that run the checks; the whole mesh when absent.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Health checks per destination.
    #[serde(default)]
    pub to: Option<Vec<To>>,
}

pub type To = ToEntry<Conf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    /// Time between checks.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Time to wait for a check's answer.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Failed checks before a host is marked unhealthy.
    #[serde(default)]
    pub unhealthy_threshold: Option<i32>,
    /// Successful checks before a host is marked healthy again.
    #[serde(default)]
    pub healthy_threshold: Option<i32>,
    /// Random delay before the first check.
    #[serde(default)]
    pub initial_jitter: Option<Duration>,
    /// Random delay added to each interval.
    #[serde(default)]
    pub interval_jitter: Option<Duration>,
    /// Random delay added to each interval, as a share of it (0-100).
    #[serde(default)]
    pub interval_jitter_percent: Option<i32>,
    /// Below this share of healthy hosts (0-100), traffic goes to every host.
    #[serde(default)]
    pub healthy_panic_threshold: Option<IntOrString>,
    /// In panic mode, fail traffic instead of sending it to every host.
    #[serde(default)]
    pub fail_traffic_on_panic: Option<bool>,
    /// File where health check events are logged.
    #[serde(default)]
    pub event_log_path: Option<String>,
    /// Log every failed check, not only the first.
    #[serde(default)]
    pub always_log_health_check_failures: Option<bool>,
    /// Interval used for hosts that received no traffic yet.
    #[serde(default)]
    pub no_traffic_interval: Option<Duration>,
    #[serde(default)]
    pub tcp: Option<TcpHealthCheck>,
    #[serde(default)]
    pub http: Option<HttpHealthCheck>,
    #[serde(default)]
    pub grpc: Option<GrpcHealthCheck>,
    /// Reuse the probe connection between checks.
    #[serde(default)]
    pub reuse_connection: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpHealthCheck {
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Base64 payload sent on the connection; a connect-only check when absent.
    #[serde(default)]
    pub send: Option<String>,
    /// Base64 payloads expected in the answer (fuzzy match).
    #[serde(default)]
    pub receive: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHealthCheck {
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Path requested (Kuma's default: `/`).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub request_headers_to_add: Option<HeaderSetAdd>,
    /// Status codes counted as healthy (Kuma's default: 200).
    #[serde(default)]
    pub expected_statuses: Option<Vec<i32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcHealthCheck {
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Service name sent in the gRPC health check request.
    #[serde(default)]
    pub service_name: Option<String>,
    /// `:authority` of the check request.
    #[serde(default)]
    pub authority: Option<String>,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshGateway,
    K::MeshService,
    K::MeshServiceSubset,
    K::Dataplane,
];
const TO_KINDS: &[K] = &[
    K::Mesh,
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
];

impl Validate for MeshHealthCheckSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        require_a_section(&[("to", has_entries(&self.to))], at, v);
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: false,
                gateway_listener_tags: true,
            },
            v,
        );
        for (i, t) in self.to.iter().flatten().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&t.target_ref, &at.field("targetRef"), TO_KINDS, v);
            t.default.validate(&at.field("default"), v);
        }
    }
}

impl Validate for Conf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_duration(&self.interval, &at.field("interval"), true, v);
        check_duration(&self.timeout, &at.field("timeout"), true, v);
        check_positive(
            &self.unhealthy_threshold,
            &at.field("unhealthyThreshold"),
            v,
        );
        check_positive(&self.healthy_threshold, &at.field("healthyThreshold"), v);
        check_duration(&self.initial_jitter, &at.field("initialJitter"), true, v);
        check_duration(&self.interval_jitter, &at.field("intervalJitter"), true, v);
        check_percent(
            &self.interval_jitter_percent,
            &at.field("intervalJitterPercent"),
            v,
        );
        if let Some(p) = &self.healthy_panic_threshold {
            check_percentage(p, true, &at.field("healthyPanicThreshold"), v);
        }
        check_duration(
            &self.no_traffic_interval,
            &at.field("noTrafficInterval"),
            true,
            v,
        );
        if let Some(p) = &self.event_log_path
            && !is_file_path(p)
        {
            v.add(
                &at.field("eventLogPath"),
                "must be an absolute file path (e.g. /tmp/health-check.log)",
            );
        }
        if let Some(http) = &self.http {
            let at = at.field("http");
            if http.path.as_deref().is_some_and(str::is_empty) {
                v.add(&at.field("path"), "must not be empty");
            }
            http.request_headers_to_add
                .validate(&at.field("requestHeadersToAdd"), v);
            for (i, s) in http.expected_statuses.iter().flatten().enumerate() {
                if !(100..=599).contains(s) {
                    v.add(
                        &at.field("expectedStatuses").index(i),
                        "must be in the range 100-599",
                    );
                }
            }
        }
        if self.http.is_none() && self.tcp.is_none() && self.grpc.is_none() {
            v.add(at, "must have at least one of 'http', 'tcp', 'grpc'");
        }
    }
}

/// An absolute Unix path or a Windows path with a drive letter.
fn is_file_path(p: &str) -> bool {
    if p.contains('\0') {
        return false;
    }
    let bytes = p.as_bytes();
    p.starts_with('/')
        || (bytes.len() > 2
            && bytes[0].is_ascii_alphabetic()
            && bytes[1] == b':'
            && matches!(bytes[2], b'\\' | b'/'))
}

#[cfg(test)]
mod tests {
    use crate::Resource;
    use crate::format::parse_document;
    use crate::policies::common::test_support::{fields, refused};

    #[test]
    fn accepts_full_document() {
        let doc = parse_document(
            r#"
type: MeshHealthCheck
name: full
spec:
  targetRef: {kind: MeshGateway, name: edge, tags: {port: http-80}}
  to:
    - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo, sectionName: http, _port: 3001}
      default:
        interval: 10s
        timeout: 2s
        unhealthyThreshold: 3
        healthyThreshold: 1
        initialJitter: 5s
        intervalJitter: 6s
        intervalJitterPercent: 10
        healthyPanicThreshold: 60
        failTrafficOnPanic: true
        eventLogPath: /tmp/health-check.log
        alwaysLogHealthCheckFailures: true
        noTrafficInterval: 10s
        reuseConnection: false
        tcp: {disabled: false, send: Zm9v, receive: [YmFy, YmF6]}
        http:
          disabled: false
          path: /health
          requestHeadersToAdd:
            set: [{name: x-check, value: "1"}]
            add: [{name: x-source, value: mesh}]
          expectedStatuses: [200, 201]
        grpc: {disabled: false, serviceName: grpc.health.v1.CustomHealth, authority: backend.mesh}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshHealthCheck
name: bad
spec:
  targetRef: {kind: MeshExternalService, name: ext}
  to:
    - targetRef: {kind: MeshSubset, tags: {app: x}}
      default:
        interval: 0s
        timeout: 2 seconds
        unhealthyThreshold: 0
        intervalJitterPercent: 120
        healthyPanicThreshold: "101"
        eventLogPath: relative.log
        http:
          path: ""
          requestHeadersToAdd: {set: [{name: "Bad Header", value: x}]}
          expectedStatuses: [200, 700]
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.targetRef.kind",
                "spec.to[0].targetRef.kind",
                "spec.to[0].default.interval",
                "spec.to[0].default.timeout",
                "spec.to[0].default.unhealthyThreshold",
                "spec.to[0].default.intervalJitterPercent",
                "spec.to[0].default.healthyPanicThreshold",
                "spec.to[0].default.eventLogPath",
                "spec.to[0].default.http.path",
                "spec.to[0].default.http.requestHeadersToAdd.set[0].name",
                "spec.to[0].default.http.expectedStatuses[1]",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn requires_a_protocol_and_a_target() {
        let v = refused(
            r#"
type: MeshHealthCheck
name: bad
spec:
  to:
    - default: {interval: 10s}
    - targetRef: {kind: Mesh}
      default: {tcp: {}}
"#,
        );
        assert_eq!(
            fields(&v),
            ["spec.to[0].targetRef", "spec.to[0].default"],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields() {
        let v = refused(
            r#"
type: MeshHealthCheck
name: bad
spec:
  to:
    - targetRef: {kind: Mesh}
      default: {tcp: {}, udp: {}, http: {statuses: [200]}}
"#,
        );
        assert_eq!(
            fields(&v),
            ["spec.to[0].default.udp", "spec.to[0].default.http.statuses"],
            "{v:?}"
        );
    }
}
