//! MeshCircuitBreaker: connection limits and outlier detection (ejecting failing endpoints from
//! the load-balancing pool) for the selected proxies' outbound (`to`) or inbound (`from`, `rules`)
//! traffic.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    DefaultRule, FromEntry, IntOrString, PolicyDoc, PolicySpec, ToEntry, TopLevelOpts,
    check_duration, check_entry_target_ref, check_percent, check_percentage, check_positive,
    check_top_level,
};
use crate::target_ref::TargetRefKind as K;
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// The `MeshCircuitBreaker` document: its spec is all that is kind-specific.
pub type MeshCircuitBreakerDoc = PolicyDoc<MeshCircuitBreakerSpec>;

/// `to`, `from` and `rules`, the three sections of a targetRef policy.
pub type MeshCircuitBreakerSpec = PolicySpec<Conf, Rule>;

pub type To = ToEntry<Conf>;

pub type From = FromEntry<Conf>;

pub type Rule = DefaultRule<Conf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    #[serde(default)]
    pub connection_limits: Option<ConnectionLimits>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Envoy circuit-breaker thresholds (all greater than zero).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionLimits {
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub max_connection_pools: Option<u32>,
    #[serde(default)]
    pub max_pending_requests: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub max_requests: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Time between ejection sweeps.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Base ejection time, multiplied by the number of times a host was ejected.
    #[serde(default)]
    pub base_ejection_time: Option<Duration>,
    /// Maximum share of hosts ejected at once, 0-100.
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
    /// Count locally originated errors (connect failures, timeouts) apart from upstream ones.
    #[serde(default)]
    pub split_external_and_local_errors: Option<bool>,
    /// Required unless `disabled`.
    #[serde(default)]
    pub detectors: Option<Detectors>,
    /// Below this share of healthy hosts (0-100), ejection is ignored.
    #[serde(default)]
    pub healthy_panic_threshold: Option<IntOrString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detectors {
    #[serde(default)]
    pub total_failures: Option<ConsecutiveFailures>,
    #[serde(default)]
    pub gateway_failures: Option<ConsecutiveFailures>,
    #[serde(default)]
    pub local_origin_failures: Option<ConsecutiveFailures>,
    #[serde(default)]
    pub success_rate: Option<SuccessRate>,
    #[serde(default)]
    pub failure_percentage: Option<FailurePercentage>,
}

/// Ejects a host after this many consecutive errors of one class.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsecutiveFailures {
    #[serde(default)]
    pub consecutive: Option<u32>,
}

/// Ejects hosts whose success rate is far below the cluster's mean.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessRate {
    #[serde(default)]
    pub minimum_hosts: Option<u32>,
    #[serde(default)]
    pub request_volume: Option<u32>,
    /// Ejection threshold: mean - factor * stddev (an int or a decimal string, > 0).
    #[serde(default)]
    pub standard_deviation_factor: Option<IntOrString>,
}

/// Ejects hosts whose failure percentage reaches a threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailurePercentage {
    #[serde(default)]
    pub minimum_hosts: Option<u32>,
    #[serde(default)]
    pub request_volume: Option<u32>,
    /// 0-100.
    #[serde(default)]
    pub threshold: Option<u32>,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshService,
    K::MeshGateway,
    K::MeshServiceSubset,
    K::Dataplane,
];
const FROM_KINDS: &[K] = &[K::Mesh];
const TO_KINDS: &[K] = &[
    K::Mesh,
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
];

impl Validate for MeshCircuitBreakerSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let to = self.to();
        let from = self.from();
        let rules = self.rules();
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: !from.is_empty() || !rules.is_empty(),
                gateway_listener_tags: true,
            },
            v,
        );
        if rules.is_empty() && to.is_empty() && from.is_empty() {
            v.add(
                at,
                "at least one of 'from', 'to' or 'rules' has to be defined",
            );
        }
        if !rules.is_empty() && (!to.is_empty() || !from.is_empty()) {
            v.add(at, "'to' and 'from' must be empty when 'rules' is defined");
        }
        for (i, r) in rules.iter().enumerate() {
            r.default
                .validate(&at.field("rules").index(i).field("default"), v);
        }
        for (i, f) in from.iter().enumerate() {
            let at = at.field("from").index(i);
            check_entry_target_ref(&f.target_ref, &at.field("targetRef"), FROM_KINDS, v);
            f.default.validate(&at.field("default"), v);
        }
        for (i, t) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&t.target_ref, &at.field("targetRef"), TO_KINDS, v);
            t.default.validate(&at.field("default"), v);
        }
    }
}

impl Validate for Conf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.connection_limits.is_none() && self.outlier_detection.is_none() {
            v.add(
                at,
                "at least one of 'connectionLimits' or 'outlierDetection' should be configured",
            );
            return;
        }
        if let Some(l) = &self.connection_limits {
            let at = at.field("connectionLimits");
            check_positive(&l.max_connections, &at.field("maxConnections"), v);
            check_positive(&l.max_connection_pools, &at.field("maxConnectionPools"), v);
            check_positive(&l.max_pending_requests, &at.field("maxPendingRequests"), v);
            check_positive(&l.max_retries, &at.field("maxRetries"), v);
            check_positive(&l.max_requests, &at.field("maxRequests"), v);
        }
        if let Some(o) = &self.outlier_detection {
            o.validate(&at.field("outlierDetection"), v);
        }
    }
}

impl Validate for OutlierDetection {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_duration(&self.interval, &at.field("interval"), true, v);
        check_duration(
            &self.base_ejection_time,
            &at.field("baseEjectionTime"),
            true,
            v,
        );
        check_percent(
            &self.max_ejection_percent,
            &at.field("maxEjectionPercent"),
            v,
        );
        if let Some(p) = &self.healthy_panic_threshold {
            check_percentage(p, true, &at.field("healthyPanicThreshold"), v);
        }
        let at = at.field("detectors");
        let Some(d) = &self.detectors else {
            if self.disabled != Some(true) {
                v.add(&at, "must be defined unless outlier detection is disabled");
            }
            return;
        };
        if d.total_failures.is_none()
            && d.gateway_failures.is_none()
            && d.local_origin_failures.is_none()
            && d.success_rate.is_none()
            && d.failure_percentage.is_none()
        {
            v.add(
                &at,
                "must have at least one of 'totalFailures', 'gatewayFailures', \
                 'localOriginFailures', 'successRate', 'failurePercentage'",
            );
            return;
        }
        for (name, c) in [
            ("totalFailures", &d.total_failures),
            ("gatewayFailures", &d.gateway_failures),
            ("localOriginFailures", &d.local_origin_failures),
        ] {
            if let Some(c) = c {
                check_positive(&c.consecutive, &at.field(name).field("consecutive"), v);
            }
        }
        if let Some(s) = &d.success_rate {
            let at = at.field("successRate");
            check_positive(&s.minimum_hosts, &at.field("minimumHosts"), v);
            check_positive(&s.request_volume, &at.field("requestVolume"), v);
            if let Some(f) = &s.standard_deviation_factor {
                f.check_positive(&at.field("standardDeviationFactor"), v);
            }
        }
        if let Some(f) = &d.failure_percentage {
            let at = at.field("failurePercentage");
            check_positive(&f.minimum_hosts, &at.field("minimumHosts"), v);
            check_positive(&f.request_volume, &at.field("requestVolume"), v);
            check_percent(&f.threshold, &at.field("threshold"), v);
        }
    }
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
type: MeshCircuitBreaker
name: full
spec:
  targetRef: {kind: MeshSubset, tags: {app: web}}
  to:
    - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo, _port: 8080}
      default:
        connectionLimits: {maxConnections: 2, maxConnectionPools: 3, maxPendingRequests: 8, maxRetries: 2, maxRequests: 2}
        outlierDetection:
          disabled: false
          interval: 5s
          baseEjectionTime: 30s
          maxEjectionPercent: 20
          splitExternalAndLocalErrors: true
          healthyPanicThreshold: "50.5"
          detectors:
            totalFailures: {consecutive: 10}
            gatewayFailures: {consecutive: 10}
            localOriginFailures: {consecutive: 10}
            successRate: {minimumHosts: 5, requestVolume: 10, standardDeviationFactor: "1.9"}
            failurePercentage: {requestVolume: 10, minimumHosts: 5, threshold: 85}
  from:
    - targetRef: {kind: Mesh}
      default:
        outlierDetection: {disabled: true}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshCircuitBreaker
name: bad
spec:
  targetRef: {kind: MeshHTTPRoute, name: r}
  to:
    - targetRef: {kind: MeshHTTPRoute, name: r}
      default:
        connectionLimits: {maxConnections: 0}
        outlierDetection:
          interval: 0s
          maxEjectionPercent: 101
          healthyPanicThreshold: lots
          detectors:
            totalFailures: {consecutive: 0}
            successRate: {standardDeviationFactor: "-1"}
            failurePercentage: {threshold: 150}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.targetRef.kind",
                "spec.to[0].targetRef.kind",
                "spec.to[0].default.connectionLimits.maxConnections",
                "spec.to[0].default.outlierDetection.interval",
                "spec.to[0].default.outlierDetection.maxEjectionPercent",
                "spec.to[0].default.outlierDetection.healthyPanicThreshold",
                "spec.to[0].default.outlierDetection.detectors.totalFailures.consecutive",
                "spec.to[0].default.outlierDetection.detectors.successRate.standardDeviationFactor",
                "spec.to[0].default.outlierDetection.detectors.failurePercentage.threshold",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn checks_sections_and_directions() {
        let v = refused(
            r#"
type: MeshCircuitBreaker
name: bad
spec:
  targetRef: {kind: Dataplane, labels: {app: web}}
  rules:
    - default: {}
    - default: {outlierDetection: {interval: 1s}}
    - default: {outlierDetection: {detectors: {}}}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {connectionLimits: {}}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec",
                "spec.rules[0].default",
                "spec.rules[1].default.outlierDetection.detectors",
                "spec.rules[2].default.outlierDetection.detectors",
                "spec.from[0].targetRef.kind",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_empty_policies() {
        let v = refused(
            r#"
type: MeshCircuitBreaker
name: bad
spec:
  targetRef: {kind: Mesh}
  default: {connectionLimits: {maxConnections: 1}}
"#,
        );
        assert_eq!(fields(&v), ["spec.default", "spec"], "{v:?}");
        let v = refused(
            r#"
type: MeshCircuitBreaker
name: bad
spec:
  to:
    - targetRef: {kind: Mesh}
      default: {connectionLimits: {maxConnections: -1}}
"#,
        );
        assert_eq!(
            fields(&v),
            ["spec.to[0].default.connectionLimits.maxConnections"],
            "{v:?}"
        );
    }
}
