//! MeshRateLimit: local (per-proxy) rate limiting of the HTTP requests and TCP connections the
//! selected proxies receive (`from`, `rules`) or, on gateways, send (`to`).

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    FromEntry, HeaderSetAdd, PolicyDoc, PolicySpec, RuleEntry, ToEntry, TopLevelOpts,
    check_entry_target_ref, check_rule_matches, check_top_level, has_entries, includes_gateways,
    only_gateways, require_a_section,
};
use crate::target_ref::TargetRefKind as K;
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// The `MeshRateLimit` document: its spec is all that is kind-specific.
pub type MeshRateLimitDoc = PolicyDoc<MeshRateLimitSpec>;

/// `to`, `from` and `rules`, the three sections of a targetRef policy.
pub type MeshRateLimitSpec = PolicySpec<Conf>;

pub type From = FromEntry<Conf>;

pub type To = ToEntry<Conf>;

pub type Rule = RuleEntry<Conf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    /// Required.
    #[serde(default)]
    pub local: Option<Local>,
}

/// Limits enforced by each proxy on its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Local {
    #[serde(default)]
    pub http: Option<LocalHttp>,
    #[serde(default)]
    pub tcp: Option<LocalTcp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalHttp {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub request_rate: Option<Rate>,
    /// The answer to a limited request.
    #[serde(default)]
    pub on_rate_limit: Option<OnRateLimit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnRateLimit {
    /// HTTP status of the answer (Kuma's default: 429).
    #[serde(default)]
    pub status: Option<u32>,
    /// Headers added to the answer.
    #[serde(default)]
    pub headers: Option<HeaderSetAdd>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalTcp {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub connection_rate: Option<Rate>,
}

/// `num` requests or connections per `interval` (token bucket).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub num: u32,
    pub interval: Duration,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshGateway,
    K::MeshService,
    K::MeshServiceSubset,
    K::MeshHTTPRoute,
    K::Dataplane,
];
const ENTRY_KINDS: &[K] = &[K::Mesh];

impl Validate for MeshRateLimitSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        require_a_section(
            &[
                ("from", has_entries(&self.from)),
                ("to", has_entries(&self.to)),
                ("rules", has_entries(&self.rules)),
            ],
            at,
            v,
        );
        let to = self.to();
        let from = self.from();
        let rules = self.rules();
        if !rules.is_empty() && (!to.is_empty() || !from.is_empty()) {
            v.add(at, "'to' and 'from' must be empty when 'rules' is defined");
        }
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
        // Inbound limits (`from`, `rules`) apply to sidecars: refused when the scope is made of
        // gateways only. A scope that merely may hold gateways (Mesh, MeshSubset without
        // proxyTypes) applies them to its sidecars.
        const GATEWAY_ONLY: &str = "must not be defined when the top-level targetRef selects only gateways (MeshGateway, MeshHTTPRoute or proxyTypes: [Gateway]): use 'to'";
        let gateways_only = only_gateways(&self.target_ref);
        if gateways_only && !rules.is_empty() {
            v.add(&at.field("rules"), GATEWAY_ONLY);
        } else {
            for (i, r) in rules.iter().enumerate() {
                let at = at.field("rules").index(i);
                let by_spiffe_id = check_rule_matches(&r.matches, &at.field("matches"), v);
                let tcp = r.default.local.as_ref().and_then(|l| l.tcp.as_ref());
                if by_spiffe_id && tcp.is_some() {
                    v.add(
                        &at.field("default").field("local").field("tcp"),
                        "can't be set when matches contain spiffeID: connection limits cannot be conditioned on the client's identity",
                    );
                }
                r.default.validate(&at.field("default"), v);
            }
        }
        if gateways_only && !from.is_empty() {
            v.add(&at.field("from"), GATEWAY_ONLY);
        } else {
            for (i, f) in from.iter().enumerate() {
                let at = at.field("from").index(i);
                check_entry_target_ref(&f.target_ref, &at.field("targetRef"), ENTRY_KINDS, v);
                f.default.validate(&at.field("default"), v);
            }
        }
        if !includes_gateways(&self.target_ref) && !to.is_empty() {
            v.add(
                &at.field("to"),
                "must not be defined when the top-level targetRef selects no gateway: 'to' limits gateways' traffic",
            );
        } else {
            for (i, t) in to.iter().enumerate() {
                let at = at.field("to").index(i);
                check_entry_target_ref(&t.target_ref, &at.field("targetRef"), ENTRY_KINDS, v);
                t.default.validate(&at.field("default"), v);
            }
        }
    }
}

impl Validate for Conf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let at = at.field("local");
        let Some(local) = &self.local else {
            v.add(&at, "must be defined");
            return;
        };
        if local.http.is_none() && local.tcp.is_none() {
            v.add(&at, "must have at least one of 'tcp', 'http'");
        }
        if let Some(http) = &local.http {
            let at = at.field("http");
            if http.disabled.is_none()
                && http.request_rate.is_none()
                && http.on_rate_limit.is_none()
            {
                v.add(
                    &at,
                    "must have at least one of 'disabled', 'requestRate', 'onRateLimit'",
                );
            }
            http.request_rate.validate(&at.field("requestRate"), v);
            if let Some(on) = &http.on_rate_limit {
                let at = at.field("onRateLimit");
                if on.status.is_some_and(|s| !(100..=599).contains(&s)) {
                    v.add(&at.field("status"), "must be an HTTP status code (100-599)");
                }
                on.headers.validate(&at.field("headers"), v);
            }
        }
        if let Some(tcp) = &local.tcp {
            let at = at.field("tcp");
            if tcp.disabled.is_none() && tcp.connection_rate.is_none() {
                v.add(
                    &at,
                    "must have at least one of 'disabled', 'connectionRate'",
                );
            }
            tcp.connection_rate.validate(&at.field("connectionRate"), v);
        }
    }
}

impl Validate for Rate {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.num == 0 {
            v.add(&at.field("num"), "must be greater than zero");
        }
        let at = at.field("interval");
        match self.interval.as_std() {
            None => self.interval.validate(&at, v),
            Some(d) if d <= std::time::Duration::from_millis(50) => {
                v.add(&at, "must be longer than 50ms")
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Resource;
    use crate::format::parse_document;
    use crate::policies::common::test_support::{fields, refused};

    #[test]
    fn accepts_full_documents() {
        for yaml in [
            r#"
type: MeshRateLimit
name: inbound
spec:
  targetRef: {kind: Dataplane, labels: {app: backend}, sectionName: http}
  rules:
    - matches: [{spiffeID: {type: Prefix, value: "spiffe://default/ns/web"}}]
      default:
        local:
          http:
            disabled: false
            requestRate: {num: 5, interval: 10s}
            onRateLimit:
              status: 423
              headers:
                set: [{name: x-kuma-rate-limited, value: "true"}]
                add: [{name: x-limit, value: "5"}]
    - default:
        local:
          tcp: {disabled: false, connectionRate: {num: 100, interval: 100ms}}
"#,
            r#"
type: MeshRateLimit
name: gateway
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: Mesh}
      default:
        local:
          http: {requestRate: {num: 100, interval: 1s}}
"#,
        ] {
            let doc = parse_document(yaml).expect("yaml");
            Resource::from_value(doc).expect("valid");
        }
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshRateLimit
name: bad
spec:
  targetRef: {kind: MeshSubset, tags: {app: backend}, proxyTypes: [Sidecar]}
  from:
    - targetRef: {kind: MeshService, name: web}
      default:
        local:
          http:
            requestRate: {num: 0, interval: 10ms}
            onRateLimit: {status: 42}
          tcp: {}
    - targetRef: {kind: Mesh}
      default: {}
  to:
    - targetRef: {kind: Mesh}
      default: {local: {tcp: {disabled: true}}}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.from[0].targetRef.kind",
                "spec.from[0].default.local.http.requestRate.num",
                "spec.from[0].default.local.http.requestRate.interval",
                "spec.from[0].default.local.http.onRateLimit.status",
                "spec.from[0].default.local.tcp",
                "spec.from[1].default.local",
                "spec.to",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn gateway_scopes_and_identity_rules() {
        let v = refused(
            r#"
type: MeshRateLimit
name: bad
spec:
  targetRef: {kind: MeshHTTPRoute, name: route}
  from:
    - targetRef: {kind: Mesh}
      default: {local: {tcp: {disabled: true}}}
"#,
        );
        assert_eq!(fields(&v), ["spec.from"], "{v:?}");
        let v = refused(
            r#"
type: MeshRateLimit
name: bad
spec:
  targetRef: {kind: Dataplane, labels: {app: backend}}
  rules:
    - matches: [{spiffeID: {type: Exact, value: "spiffe://default/ns/web/sa/web"}}, {sni: {type: Exact}}]
      default: {local: {tcp: {connectionRate: {num: 1, interval: soon}}}}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.rules[0].matches[1].sni.value",
                "spec.rules[0].default.local.tcp",
                "spec.rules[0].default.local.tcp.connectionRate.interval",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_missing_rate_fields() {
        let v = refused(
            r#"
type: MeshRateLimit
name: bad
spec:
  rules:
    - default: {local: {http: {requestRate: {num: 1, interval: 1s, burst: 5}}}}
  global: {}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.rules[0].default.local.http.requestRate.burst",
                "spec.global"
            ],
            "{v:?}"
        );
        let v = refused(
            r#"
type: MeshRateLimit
name: bad
spec:
  rules:
    - default: {local: {http: {requestRate: {num: 1}}}}
"#,
        );
        assert_eq!(
            fields(&v),
            ["spec.rules[0].default.local.http.requestRate"],
            "{v:?}"
        );
        assert!(v[0].1.contains("interval"), "{v:?}");
    }
}
