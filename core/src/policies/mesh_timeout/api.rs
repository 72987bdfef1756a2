//! MeshTimeout: connection, idle, request and stream timeouts of the selected proxies, for
//! outbound traffic (`to`) and inbound traffic (`from`, or `rules` optionally matched on client
//! identity).

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    FromEntry, PolicyDoc, PolicySpec, RuleEntry, ToEntry, TopLevelOpts, check_duration,
    check_entry_target_ref, check_rule_matches, check_top_level, top_level_kind,
};
use crate::target_ref::TargetRefKind as K;
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// The `MeshTimeout` document: its spec is all that is kind-specific.
pub type MeshTimeoutDoc = PolicyDoc<MeshTimeoutSpec>;

/// `to`, `from` and `rules`, the three sections of a targetRef policy.
pub type MeshTimeoutSpec = PolicySpec<Conf>;

pub type To = ToEntry<Conf>;

pub type From = FromEntry<Conf>;

pub type Rule = RuleEntry<Conf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    /// Time to establish a connection (Envoy cluster `connect_timeout`).
    #[serde(default)]
    pub connection_timeout: Option<Duration>,
    /// Time a connection may stay without traffic (TCP proxy / HTTP connection manager).
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
    #[serde(default)]
    pub http: Option<Http>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http {
    /// Time for the whole request/response exchange (route `timeout`).
    #[serde(default)]
    pub request_timeout: Option<Duration>,
    /// Time a stream may stay without activity.
    #[serde(default)]
    pub stream_idle_timeout: Option<Duration>,
    /// Maximum lifetime of a stream.
    #[serde(default)]
    pub max_stream_duration: Option<Duration>,
    /// Maximum lifetime of a connection.
    #[serde(default)]
    pub max_connection_duration: Option<Duration>,
    /// Time to receive the request headers.
    #[serde(default)]
    pub request_headers_timeout: Option<Duration>,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::Dataplane,
    K::MeshGateway,
    K::MeshService,
    K::MeshServiceSubset,
    K::MeshHTTPRoute,
];
const FROM_KINDS: &[K] = &[K::Mesh];
const TO_KINDS: &[K] = &[
    K::Mesh,
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
    K::MeshHTTPRoute,
];
const TO_KINDS_GATEWAY_OR_ROUTE: &[K] = &[K::Mesh, K::MeshExternalService];

impl Validate for MeshTimeoutSpec {
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
        if !rules.is_empty() && (!to.is_empty() || !from.is_empty()) {
            v.add(at, "'to' and 'from' must be empty when 'rules' is defined");
        }
        if rules.is_empty() && to.is_empty() && from.is_empty() {
            v.add(
                at,
                "at least one of 'from', 'to' or 'rules' has to be defined",
            );
        }
        let top = top_level_kind(&self.target_ref);
        let route_or_gateway = matches!(top, K::MeshHTTPRoute | K::MeshGateway);
        if route_or_gateway && !from.is_empty() {
            v.add(
                &at.field("from"),
                format!(
                    "must not be defined when the top-level targetRef is a {}",
                    top.as_str()
                ),
            );
        } else {
            for (i, f) in from.iter().enumerate() {
                let at = at.field("from").index(i);
                check_entry_target_ref(&f.target_ref, &at.field("targetRef"), FROM_KINDS, v);
                check_conf(&f.default, &top, &at.field("default"), v);
            }
        }
        let to_kinds = if route_or_gateway {
            TO_KINDS_GATEWAY_OR_ROUTE
        } else {
            TO_KINDS
        };
        for (i, t) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&t.target_ref, &at.field("targetRef"), to_kinds, v);
            check_conf(&t.default, &top, &at.field("default"), v);
        }
        for (i, r) in rules.iter().enumerate() {
            let at = at.field("rules").index(i);
            let by_spiffe_id = check_rule_matches(&r.matches, &at.field("matches"), v);
            if by_spiffe_id {
                check_source_conditioned(&r.default, &at.field("default"), v);
            }
            check_conf(&r.default, &top, &at.field("default"), v);
        }
    }
}

/// Timeouts Envoy applies per connection or before the client is known cannot depend on the
/// client's SPIFFE ID.
fn check_source_conditioned(conf: &Conf, at: &FieldPath, v: &mut Violations) {
    const WHY: &str = "can't be set when matches contain spiffeID: it cannot be conditioned on the client's identity";
    let http = conf.http.clone().unwrap_or_default();
    for (set, path) in [
        (
            conf.connection_timeout.is_some(),
            at.field("connectionTimeout"),
        ),
        (conf.idle_timeout.is_some(), at.field("idleTimeout")),
        (
            http.request_headers_timeout.is_some(),
            at.field("http").field("requestHeadersTimeout"),
        ),
        (
            http.max_stream_duration.is_some(),
            at.field("http").field("maxStreamDuration"),
        ),
        (
            http.max_connection_duration.is_some(),
            at.field("http").field("maxConnectionDuration"),
        ),
    ] {
        if set {
            v.add(&path, WHY);
        }
    }
}

fn check_conf(conf: &Conf, top: &K, at: &FieldPath, v: &mut Violations) {
    if conf.connection_timeout.is_none() && conf.idle_timeout.is_none() && conf.http.is_none() {
        v.add(at, "at least one timeout should be configured");
        return;
    }
    if *top == K::MeshHTTPRoute {
        const WHY: &str = "can't be set when the top-level targetRef is a MeshHTTPRoute";
        let http = conf.http.clone().unwrap_or_default();
        for (set, path) in [
            (
                conf.connection_timeout.is_some(),
                at.field("connectionTimeout"),
            ),
            (conf.idle_timeout.is_some(), at.field("idleTimeout")),
            (
                http.max_stream_duration.is_some(),
                at.field("http").field("maxStreamDuration"),
            ),
            (
                http.max_connection_duration.is_some(),
                at.field("http").field("maxConnectionDuration"),
            ),
        ] {
            if set {
                v.add(&path, WHY);
            }
        }
    }
    check_duration(
        &conf.connection_timeout,
        &at.field("connectionTimeout"),
        true,
        v,
    );
    check_duration(&conf.idle_timeout, &at.field("idleTimeout"), false, v);
    if let Some(http) = &conf.http {
        let at = at.field("http");
        let fields = [
            ("requestTimeout", &http.request_timeout),
            ("streamIdleTimeout", &http.stream_idle_timeout),
            ("maxStreamDuration", &http.max_stream_duration),
            ("maxConnectionDuration", &http.max_connection_duration),
            ("requestHeadersTimeout", &http.request_headers_timeout),
        ];
        if fields.iter().all(|(_, d)| d.is_none()) {
            v.add(
                &at,
                "at least one timeout in this section should be configured",
            );
        }
        for (name, d) in fields {
            check_duration(d, &at.field(name), false, v);
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
type: MeshTimeout
name: full
spec:
  targetRef: {kind: MeshSubset, tags: {app: frontend}, proxyTypes: [Sidecar]}
  from:
    - targetRef: {kind: Mesh}
      default:
        idleTimeout: 60s
        connectionTimeout: 2s
        http:
          requestTimeout: 10s
          streamIdleTimeout: 1h
          maxStreamDuration: 30m
          maxConnectionDuration: 30m
          requestHeadersTimeout: 500ms
  to:
    - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo, sectionName: http, _port: 3001}
      default:
        connectionTimeout: 1s
        http: {requestTimeout: 5s}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
        let doc = parse_document(
            r#"
type: MeshTimeout
name: by-identity
spec:
  targetRef: {kind: Dataplane, labels: {app: demo}, sectionName: http}
  rules:
    - matches: [{spiffeID: {type: Exact, value: "spiffe://default/ns/a/sa/b"}}]
      default: {http: {requestTimeout: 3s, streamIdleTimeout: 0s}}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_bad_durations_and_kinds_together() {
        let v = refused(
            r#"
type: MeshTimeout
name: bad
spec:
  targetRef: {kind: MeshExternalService, name: ext}
  to:
    - targetRef: {kind: MeshSubset, tags: {app: x}}
      default:
        connectionTimeout: 0s
        idleTimeout: ten seconds
        http: {requestTimeout: 5}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.targetRef.kind",
                "spec.to[0].targetRef.kind",
                "spec.to[0].default.connectionTimeout",
                "spec.to[0].default.idleTimeout",
                "spec.to[0].default.http.requestTimeout",
            ],
            "{v:?}"
        );
        assert!(v[2].1.contains("greater than zero"), "{v:?}");
        assert!(v[3].1.contains("duration"), "{v:?}");
    }

    #[test]
    fn applies_route_and_identity_restrictions() {
        let v = refused(
            r#"
type: MeshTimeout
name: bad
spec:
  targetRef: {kind: MeshHTTPRoute, name: route-1}
  from:
    - targetRef: {kind: Mesh}
      default: {idleTimeout: 1s}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {idleTimeout: 1s, http: {}}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.from",
                "spec.to[0].targetRef.kind",
                "spec.to[0].default.idleTimeout",
                "spec.to[0].default.http",
            ],
            "{v:?}"
        );
        let v = refused(
            r#"
type: MeshTimeout
name: bad
spec:
  rules:
    - matches: [{spiffeID: {type: Prefix, value: "spiffe://default"}}, {}]
      default: {connectionTimeout: 1s, http: {maxStreamDuration: 1m}}
  to:
    - targetRef: {kind: Mesh}
      default: {}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec",
                "spec.to[0].default",
                "spec.rules[0].matches[1]",
                "spec.rules[0].default.connectionTimeout",
                "spec.rules[0].default.http.maxStreamDuration",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_missing_target_ref() {
        let v = refused(
            r#"
type: MeshTimeout
name: bad
spec:
  to:
    - default: {idleTimeout: 1s, http: {requestTimeot: 1s, requestTimeout: 2s}}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.to[0].default.http.requestTimeot",
                "spec.to[0].targetRef"
            ],
            "{v:?}"
        );
        let v = refused("type: MeshTimeout\nname: empty\nspec: {}\n");
        assert_eq!(fields(&v), ["spec"], "{v:?}");
    }
}
