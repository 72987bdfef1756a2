//! MeshFaultInjection: injects faults into HTTP traffic to test resilience: aborts with a status
//! code, added delays and limited response bandwidth, each for a percentage of requests.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    FromEntry, IntOrString, PolicyDoc, PolicySpec, RuleEntry, ToEntry, TopLevelOpts,
    check_entry_target_ref, check_percentage, check_rule_matches, check_top_level, has_entries,
    includes_gateways, require_a_section,
};
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// A MeshFaultInjection document (the part after the envelope).
/// The `MeshFaultInjection` document: its spec is all that is kind-specific.
pub type MeshFaultInjectionDoc = PolicyDoc<MeshFaultInjectionSpec>;

/// `to`, `from` and `rules`, the three sections of a targetRef policy.
pub type MeshFaultInjectionSpec = PolicySpec<Option<FaultInjectionConf>>;

pub type FaultInjectionFrom = FromEntry<Option<FaultInjectionConf>>;

pub type FaultInjectionTo = ToEntry<Option<FaultInjectionConf>>;

pub type FaultInjectionRule = RuleEntry<Option<FaultInjectionConf>>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultInjectionConf {
    /// Faults, applied in order.
    #[serde(default)]
    pub http: Option<Vec<HttpFault>>,
}

/// One fault entry: any of abort, delay and response bandwidth limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpFault {
    #[serde(default)]
    pub abort: Option<AbortFault>,
    #[serde(default)]
    pub delay: Option<DelayFault>,
    #[serde(default)]
    pub response_bandwidth: Option<ResponseBandwidthFault>,
}

/// Answers a share of requests with an HTTP status instead of forwarding them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortFault {
    /// Required; 100-599.
    #[serde(default)]
    pub http_status: Option<i64>,
    /// Required; 0-100, an integer or a decimal string.
    #[serde(default)]
    pub percentage: Option<IntOrString>,
}

/// Delays a share of requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelayFault {
    /// Required.
    #[serde(default)]
    pub value: Option<Duration>,
    /// Required; 0-100.
    #[serde(default)]
    pub percentage: Option<IntOrString>,
}

/// Limits the response bandwidth of a share of requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseBandwidthFault {
    /// Required, e.g. `10kbps`, `5Mbps`, `1Gbps`.
    #[serde(default)]
    pub limit: String,
    /// Required; 0-100.
    #[serde(default)]
    pub percentage: Option<IntOrString>,
}

impl ResponseBandwidthFault {
    /// The limit in kilobits per second, when valid.
    pub fn limit_kbps(&self) -> Option<u64> {
        parse_bandwidth_kbps(&self.limit)
    }
}

/// Parses `<number>[ ]kbps|Mbps|Gbps` into kbps.
pub fn parse_bandwidth_kbps(s: &str) -> Option<u64> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let factor = match unit {
        "kbps" => 1,
        "Mbps" => 1_000,
        "Gbps" => 1_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshGateway,
    K::MeshService,
    K::MeshServiceSubset,
    K::Dataplane,
];
const FROM_KINDS: &[K] = &[K::Mesh, K::MeshSubset, K::MeshServiceSubset, K::MeshService];
const TO_KINDS: &[K] = &[K::Mesh];

impl Validate for MeshFaultInjectionSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let spec = self;
        require_a_section(
            &[
                ("from", has_entries(&spec.from)),
                ("to", has_entries(&spec.to)),
                ("rules", has_entries(&spec.rules)),
            ],
            at,
            v,
        );
        let from = spec.from();
        let to = spec.to();
        let rules = spec.rules();
        check_top_level(
            &spec.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: !from.is_empty() || !rules.is_empty(),
                gateway_listener_tags: true,
            },
            v,
        );
        if !from.is_empty() && !rules.is_empty() {
            v.add(at, "'from' must be empty when 'rules' is defined");
        }
        // Kuma refuses `from` when the scope may include gateways, but its own documentation
        // pairs `from` with `MeshSubset` and `Mesh` scopes; gateways simply ignore `from`.
        if !to.is_empty() && !includes_gateways(&spec.target_ref) {
            v.add(
                &at.field("to"),
                "must not be defined: 'to' configures gateways, and the targetRef selects none",
            );
        }
        for (i, rule) in rules.iter().enumerate() {
            let at = at.field("rules").index(i);
            check_rule_matches(&rule.matches, &at.field("matches"), v);
            rule.default.validate(&at.field("default"), v);
        }
        for (i, item) in from.iter().enumerate() {
            let at = at.field("from").index(i);
            check_from_target_ref(&item.target_ref, &at.field("targetRef"), v);
            item.default.validate(&at.field("default"), v);
        }
        for (i, item) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&item.target_ref, &at.field("targetRef"), TO_KINDS, v);
            item.default.validate(&at.field("default"), v);
        }
    }
}

/// Checks a `from[].targetRef`. Kuma's documentation writes `kind: Mesh` with `name: <mesh>` there
/// (the policy's own mesh); that name is tolerated, every other problem is reported.
fn check_from_target_ref(target_ref: &Option<TargetRef>, at: &FieldPath, v: &mut Violations) {
    let mut found = Violations::new();
    check_entry_target_ref(target_ref, at, FROM_KINDS, &mut found);
    let mesh_with_name = target_ref
        .as_ref()
        .is_some_and(|t| t.kind == K::Mesh && t.name.is_some());
    let name_at = at.field("name").to_string();
    found
        .violations
        .retain(|x| !(mesh_with_name && x.field == name_at));
    v.extend(found);
}

impl Validate for FaultInjectionConf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        self.http.validate(&at.field("http"), v);
    }
}

fn check_required_percentage(p: &Option<IntOrString>, at: &FieldPath, v: &mut Violations) {
    match p {
        Some(p) => check_percentage(p, true, at, v),
        None => v.add(at, "must be defined"),
    }
}

impl Validate for HttpFault {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.abort.is_none() && self.delay.is_none() && self.response_bandwidth.is_none() {
            v.add(
                at,
                "must set at least one of abort, delay, responseBandwidth",
            );
        }
        if let Some(a) = &self.abort {
            let at = at.field("abort");
            match a.http_status {
                Some(s) if !(100..=599).contains(&s) => v.add(
                    &at.field("httpStatus"),
                    format!("must be an HTTP status code in the range 100-599 (got {s})"),
                ),
                Some(_) => {}
                None => v.add(&at.field("httpStatus"), "must be defined"),
            }
            check_required_percentage(&a.percentage, &at.field("percentage"), v);
        }
        if let Some(d) = &self.delay {
            let at = at.field("delay");
            match &d.value {
                Some(value) => value.validate(&at.field("value"), v),
                None => v.add(&at.field("value"), "must be defined"),
            }
            check_required_percentage(&d.percentage, &at.field("percentage"), v);
        }
        if let Some(b) = &self.response_bandwidth {
            let at = at.field("responseBandwidth");
            if b.limit.is_empty() {
                v.add(&at.field("limit"), "must be defined");
            } else if b.limit_kbps().is_none() {
                v.add(
                    &at.field("limit"),
                    format!(
                        "must be a bandwidth in kbps, Mbps or Gbps, e.g. 10kbps (got {:?})",
                        b.limit
                    ),
                );
            }
            check_required_percentage(&b.percentage, &at.field("percentage"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::{paths, policy};
    use serde_json::{Value, json};

    fn doc(spec: Value) -> Value {
        policy("MeshFaultInjection", "fi", spec)
    }

    #[test]
    fn accepts_a_full_document() {
        let faults = json!({"http": [
            {"abort": {"httpStatus": 503, "percentage": "2.5"},
             "delay": {"value": "1s", "percentage": 10},
             "responseBandwidth": {"limit": "100 Mbps", "percentage": 0}}]});
        let spec = json!({
            "targetRef": {"kind": "MeshSubset", "proxyTypes": ["Sidecar"], "tags": {"app": "b"}},
            "from": [{"targetRef": {"kind": "MeshService", "name": "frontend"}, "default": faults},
                     {"targetRef": {"kind": "Mesh", "name": "default"}, "default": faults}]
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
        let spec = json!({
            "targetRef": {"kind": "Dataplane", "labels": {"app": "b"}, "sectionName": "http"},
            "rules": [{"matches": [{"spiffeID": {"type": "Exact", "value": "spiffe://m/ns/x/sa/y"}}],
                "default": faults}]
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
        let spec = json!({
            "targetRef": {"kind": "MeshGateway", "name": "edge"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": faults}]
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let spec = json!({
            "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
            "from": [{"targetRef": {"kind": "Dataplane"}, "default": {"http": [
                {"abort": {"httpStatus": 700, "percentage": 101},
                 "delay": {"value": "5 seconds"},
                 "responseBandwidth": {"limit": "10kb", "percentage": "x"}},
                {}
            ]}}]
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.targetRef.kind",
                "spec.from[0].targetRef.kind",
                "spec.from[0].default.http[0].abort.httpStatus",
                "spec.from[0].default.http[0].abort.percentage",
                "spec.from[0].default.http[0].delay.value",
                "spec.from[0].default.http[0].delay.percentage",
                "spec.from[0].default.http[0].responseBandwidth.limit",
                "spec.from[0].default.http[0].responseBandwidth.percentage",
                "spec.from[0].default.http[1]",
            ]
        );
    }

    #[test]
    fn checks_sections_against_the_scope() {
        let spec = json!({
            "targetRef": {"kind": "Dataplane", "labels": {"app": "b"}},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {}}],
            "rules": [{"default": {}, "matches": [{"sni": {"type": "Prefix", "value": "a.b"}}]}],
            "to": [{"default": {}, "extra": 1}]
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.to[0].extra",
                "spec",
                "spec.to",
                "spec.rules[0].matches[0].sni.type",
                "spec.to[0].targetRef",
            ]
        );
    }
}
