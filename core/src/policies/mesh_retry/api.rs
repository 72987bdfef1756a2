//! MeshRetry: how the selected proxies retry failed outbound connections (TCP), requests (HTTP)
//! and calls (gRPC): how many times, on which failures, with which back-off.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    HeaderMatch, PolicyDoc, ToEntry, TopLevelOpts, check_duration, check_entry_target_ref,
    check_header_name, check_top_level, has_entries, require_a_section, top_level_kind,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// The `MeshRetry` document: its spec is all that is kind-specific.
pub type MeshRetryDoc = PolicyDoc<MeshRetrySpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshRetrySpec {
    /// The proxies configured; the whole mesh when absent.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Retry settings per destination.
    #[serde(default)]
    pub to: Option<Vec<To>>,
}

pub type To = ToEntry<Conf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    #[serde(default)]
    pub tcp: Option<Tcp>,
    #[serde(default)]
    pub http: Option<Http>,
    #[serde(default)]
    pub grpc: Option<Grpc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tcp {
    /// How many times to try to connect before giving up (at least 1).
    #[serde(default)]
    pub max_connect_attempt: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http {
    #[serde(default)]
    pub num_retries: Option<u32>,
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    #[serde(default)]
    pub back_off: Option<BackOff>,
    #[serde(default)]
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    /// Conditions that trigger a retry: a named condition, `HttpMethod<Method>`, or a status code.
    #[serde(default)]
    pub retry_on: Option<Vec<HttpRetryOn>>,
    /// Responses with one of these headers are retried.
    #[serde(default)]
    pub retriable_response_headers: Option<Vec<HeaderMatch>>,
    /// Only requests with one of these headers are retried.
    #[serde(default)]
    pub retriable_request_headers: Option<Vec<HeaderMatch>>,
    /// How the host of a retry is chosen.
    #[serde(default)]
    pub host_selection: Option<Vec<Predicate>>,
    /// How many times host selection is attempted before using the chosen host anyway.
    #[serde(default)]
    pub host_selection_max_attempts: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grpc {
    #[serde(default)]
    pub num_retries: Option<u32>,
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    #[serde(default)]
    pub back_off: Option<BackOff>,
    #[serde(default)]
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    #[serde(default)]
    pub retry_on: Option<Vec<GrpcRetryOn>>,
}

/// Exponential back-off between retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackOff {
    #[serde(default)]
    pub base_interval: Option<Duration>,
    #[serde(default)]
    pub max_interval: Option<Duration>,
}

/// Back-off driven by the upstream's rate-limit reset headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitedBackOff {
    /// Required.
    #[serde(default)]
    pub reset_headers: Option<Vec<ResetHeader>>,
    #[serde(default)]
    pub max_interval: Option<Duration>,
}

string_enum! {
    /// How a reset header's value is read.
    pub enum RateLimitFormat {
        Seconds => "Seconds",
        UnixTimestamp => "UnixTimestamp",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetHeader {
    pub name: String,
    pub format: RateLimitFormat,
}

string_enum! {
    /// Host selection predicates.
    pub enum PredicateType {
        OmitPreviousHosts => "OmitPreviousHosts",
        OmitHostsWithTags => "OmitHostsWithTags",
        OmitPreviousPriorities => "OmitPreviousPriorities",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    pub predicate: PredicateType,
    /// Hosts with these tags are skipped (`OmitHostsWithTags`).
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// How often the priority load is recomputed (`OmitPreviousPriorities`; Kuma's default: 2).
    #[serde(default)]
    pub update_frequency: Option<i32>,
}

string_enum! {
    /// gRPC status conditions that trigger a retry.
    pub enum GrpcRetryOn {
        Canceled => "Canceled",
        DeadlineExceeded => "DeadlineExceeded",
        Internal => "Internal",
        ResourceExhausted => "ResourceExhausted",
        Unavailable => "Unavailable",
    }
}

/// Named HTTP retry conditions; `retryOn` also takes HTTP status codes, kept as [`HttpRetryOn`].
const HTTP_RETRY_ON: &[&str] = &[
    "5xx",
    "GatewayError",
    "Reset",
    "Retriable4xx",
    "ConnectFailure",
    "EnvoyRatelimited",
    "RefusedStream",
    "Http3PostConnectFailure",
    "HttpMethodConnect",
    "HttpMethodDelete",
    "HttpMethodGet",
    "HttpMethodHead",
    "HttpMethodOptions",
    "HttpMethodPatch",
    "HttpMethodPost",
    "HttpMethodPut",
    "HttpMethodTrace",
];

/// One HTTP retry condition as written: a name from the list above or a status code (`"503"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRetryOn(pub String);

impl<'de> Deserialize<'de> for HttpRetryOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HttpRetryOn(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

impl HttpRetryOn {
    /// The status code this condition names, if it is one.
    pub fn status_code(&self) -> Option<u16> {
        self.0
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    }

    /// The HTTP method this condition names (`HttpMethodGet` -> `GET`), if it is one.
    pub fn method(&self) -> Option<String> {
        self.0
            .strip_prefix("HttpMethod")
            .map(|m| m.to_ascii_uppercase())
    }
}

impl Validate for HttpRetryOn {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if !HTTP_RETRY_ON.contains(&self.0.as_str()) && self.status_code().is_none() {
            v.add(
                at,
                format!(
                    "must be an HTTP status code or one of: {} (got {:?})",
                    HTTP_RETRY_ON.join(", "),
                    self.0
                ),
            );
        }
    }
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
const TO_KINDS: &[K] = &[
    K::Mesh,
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
    K::MeshHTTPRoute,
];
const TO_KINDS_GATEWAY_OR_ROUTE: &[K] = &[K::Mesh, K::MeshExternalService];

impl Validate for MeshRetrySpec {
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
        let to = self.to.as_deref().unwrap_or_default();
        let to_kinds = match top_level_kind(&self.target_ref) {
            K::MeshGateway | K::MeshHTTPRoute => TO_KINDS_GATEWAY_OR_ROUTE,
            _ => TO_KINDS,
        };
        for (i, t) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&t.target_ref, &at.field("targetRef"), to_kinds, v);
            t.default.validate(&at.field("default"), v);
        }
    }
}

impl Validate for Conf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.tcp.is_none() && self.http.is_none() && self.grpc.is_none() {
            v.add(
                at,
                "at least one of 'tcp', 'http', 'grpc' must be specified",
            );
        }
        if let Some(tcp) = &self.tcp {
            let at = at.field("tcp");
            match tcp.max_connect_attempt {
                None => v.add(&at.field("maxConnectAttempt"), "must be defined"),
                Some(0) => v.add(&at.field("maxConnectAttempt"), "must be greater than zero"),
                Some(_) => {}
            }
        }
        if let Some(http) = &self.http {
            http.validate(&at.field("http"), v);
        }
        if let Some(grpc) = &self.grpc {
            grpc.validate(&at.field("grpc"), v);
        }
    }
}

impl Validate for Http {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.num_retries.is_none()
            && self.per_try_timeout.is_none()
            && self.back_off.is_none()
            && self.rate_limited_back_off.is_none()
            && self.retry_on.is_none()
            && self.retriable_response_headers.is_none()
            && self.retriable_request_headers.is_none()
            && self.host_selection.is_none()
            && self.host_selection_max_attempts.is_none()
        {
            v.add(at, "must not be empty");
        }
        check_duration(&self.per_try_timeout, &at.field("perTryTimeout"), false, v);
        self.back_off.validate(&at.field("backOff"), v);
        self.rate_limited_back_off
            .validate(&at.field("rateLimitedBackOff"), v);
        self.retry_on.validate(&at.field("retryOn"), v);
        self.retriable_response_headers
            .validate(&at.field("retriableResponseHeaders"), v);
        self.retriable_request_headers
            .validate(&at.field("retriableRequestHeaders"), v);
        let mut priorities_seen = false;
        for (i, p) in self.host_selection.iter().flatten().enumerate() {
            let at = at.field("hostSelection").index(i);
            p.predicate.validate(&at.field("predicate"), v);
            match p.predicate {
                PredicateType::OmitHostsWithTags
                    if p.tags.as_ref().is_none_or(BTreeMap::is_empty) =>
                {
                    v.add(&at.field("tags"), "must be defined with OmitHostsWithTags");
                }
                PredicateType::OmitPreviousPriorities => {
                    if priorities_seen {
                        v.add(
                            &at.field("predicate"),
                            "OmitPreviousPriorities must only be specified once",
                        );
                    }
                    priorities_seen = true;
                    if p.update_frequency.is_some_and(|f| f <= 0) {
                        v.add(&at.field("updateFrequency"), "must be greater than zero");
                    }
                }
                _ => {}
            }
        }
        if self.host_selection_max_attempts.is_some_and(|n| n < 0) {
            v.add(
                &at.field("hostSelectionMaxAttempts"),
                "must not be negative",
            );
        }
    }
}

impl Validate for Grpc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.num_retries.is_none()
            && self.per_try_timeout.is_none()
            && self.back_off.is_none()
            && self.rate_limited_back_off.is_none()
            && self.retry_on.is_none()
        {
            v.add(at, "must not be empty");
        }
        check_duration(&self.per_try_timeout, &at.field("perTryTimeout"), false, v);
        self.back_off.validate(&at.field("backOff"), v);
        self.rate_limited_back_off
            .validate(&at.field("rateLimitedBackOff"), v);
        self.retry_on.validate(&at.field("retryOn"), v);
    }
}

impl Validate for BackOff {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.base_interval.is_none() && self.max_interval.is_none() {
            v.add(at, "must not be empty: set baseInterval and/or maxInterval");
        }
        check_duration(&self.base_interval, &at.field("baseInterval"), true, v);
        check_duration(&self.max_interval, &at.field("maxInterval"), true, v);
        if let (Some(base), Some(max)) = (
            self.base_interval.as_ref().and_then(Duration::as_std),
            self.max_interval.as_ref().and_then(Duration::as_std),
        ) && max < base
        {
            v.add(
                &at.field("maxInterval"),
                "must not be shorter than baseInterval",
            );
        }
    }
}

impl Validate for RateLimitedBackOff {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_duration(&self.max_interval, &at.field("maxInterval"), true, v);
        match &self.reset_headers {
            None => v.add(&at.field("resetHeaders"), "must be defined"),
            Some(headers) => {
                for (i, h) in headers.iter().enumerate() {
                    let at = at.field("resetHeaders").index(i);
                    check_header_name(&h.name, &at.field("name"), v);
                    h.format.validate(&at.field("format"), v);
                }
            }
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
type: MeshRetry
name: full
spec:
  targetRef: {kind: Dataplane, labels: {app: web}}
  to:
    - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo, sectionName: http, _port: 8080}
      default:
        tcp: {maxConnectAttempt: 5}
        http:
          numRetries: 10
          perTryTimeout: 2s
          backOff: {baseInterval: 15s, maxInterval: 20m}
          rateLimitedBackOff:
            maxInterval: 1m
            resetHeaders:
              - {name: retry-after, format: Seconds}
              - {name: x-ratelimit-reset, format: UnixTimestamp}
          retryOn: ["5xx", GatewayError, HttpMethodGet, "429", 503]
          retriableResponseHeaders: [{name: x-retry, type: Present}]
          retriableRequestHeaders: [{name: x-idempotent, value: "true"}]
          hostSelection:
            - predicate: OmitPreviousHosts
            - predicate: OmitHostsWithTags
              tags: {zone: east}
            - predicate: OmitPreviousPriorities
              updateFrequency: 2
          hostSelectionMaxAttempts: 3
        grpc:
          numRetries: 5
          perTryTimeout: 1s
          backOff: {baseInterval: 5s, maxInterval: 1m}
          retryOn: [DeadlineExceeded, Unavailable]
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshRetry
name: bad
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        tcp: {maxConnectAttempt: 0}
        http:
          perTryTimeout: soon
          retryOn: ["5xx", "42", Sometimes]
          hostSelection:
            - predicate: OmitHostsWithTags
            - predicate: OmitPreviousPriorities
            - predicate: OmitPreviousPriorities
              updateFrequency: 0
        grpc: {retryOn: [Aborted]}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.to[0].targetRef.kind",
                "spec.to[0].default.tcp.maxConnectAttempt",
                "spec.to[0].default.http.perTryTimeout",
                "spec.to[0].default.http.retryOn[1]",
                "spec.to[0].default.http.retryOn[2]",
                "spec.to[0].default.http.hostSelection[0].tags",
                "spec.to[0].default.http.hostSelection[2].predicate",
                "spec.to[0].default.http.hostSelection[2].updateFrequency",
                "spec.to[0].default.grpc.retryOn[0]",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_empty_sections_and_bad_back_off() {
        let v = refused(
            r#"
type: MeshRetry
name: bad
spec:
  to:
    - targetRef: {kind: Mesh}
      default:
        http:
          backOff: {}
          rateLimitedBackOff: {maxInterval: 0s}
        grpc: {}
    - targetRef: {kind: Mesh}
      default: {}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.to[0].default.http.backOff",
                "spec.to[0].default.http.rateLimitedBackOff.maxInterval",
                "spec.to[0].default.http.rateLimitedBackOff.resetHeaders",
                "spec.to[0].default.grpc",
                "spec.to[1].default",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_misplaced_kinds() {
        let v = refused(
            r#"
type: MeshRetry
name: bad
spec:
  targetRef: {kind: MeshExternalService, name: ext}
  from: []
"#,
        );
        assert_eq!(
            fields(&v),
            ["spec.from", "spec", "spec.targetRef.kind"],
            "{v:?}"
        );
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let v = refused("type: MeshRetry\nname: empty\nspec: {}\n");
        assert_eq!(fields(&v), ["spec"], "{v:?}");
        assert!(format!("{v:?}").contains("'to' has to be defined"), "{v:?}");
    }
}
