//! MeshHTTPRoute: HTTP routing of the selected proxies' outbound traffic (or a MeshGateway's
//! listeners): requests matched on path, method, query and headers are modified, redirected,
//! rewritten, mirrored and split across weighted backends.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    BACKEND_KINDS, BackendRef, HeaderKeyValue, HeaderMatch, IntOrString, PolicyDoc, TopLevelOpts,
    check_dns_subdomain, check_entry_target_ref, check_header_list, check_percentage,
    check_top_level, top_level_kind,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::validate::{Validate, Violations, check_port};

/// The `MeshHttpRoute` document: its spec is all that is kind-specific.
pub type MeshHttpRouteDoc = PolicyDoc<MeshHttpRouteSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshHttpRouteSpec {
    /// The proxies (or gateway) whose traffic is routed; the whole mesh when absent.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub to: Option<Vec<To>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct To {
    /// Host names the rules apply to (MeshGateway only).
    #[serde(default)]
    pub hostnames: Option<Vec<String>>,
    /// The destination whose traffic is routed. Required.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Required, at least one.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Requests the rule applies to (any of the matches); every request when absent.
    #[serde(default)]
    pub matches: Option<Vec<HttpMatch>>,
    #[serde(default)]
    pub default: RuleConf,
}

/// All conditions of one match must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    #[serde(default)]
    pub path: Option<PathMatch>,
    #[serde(default)]
    pub method: Option<Method>,
    #[serde(default)]
    pub query_params: Option<Vec<QueryParamsMatch>>,
    #[serde(default)]
    pub headers: Option<Vec<HeaderMatch>>,
}

string_enum! {
    pub enum PathMatchType {
        Exact => "Exact",
        PathPrefix => "PathPrefix",
        RegularExpression => "RegularExpression",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    pub value: String,
    #[serde(rename = "type")]
    pub match_type: PathMatchType,
}

string_enum! {
    pub enum Method {
        Connect => "CONNECT",
        Delete => "DELETE",
        Get => "GET",
        Head => "HEAD",
        Options => "OPTIONS",
        Patch => "PATCH",
        Post => "POST",
        Put => "PUT",
        Trace => "TRACE",
    }
}

string_enum! {
    pub enum QueryParamsMatchType {
        Exact => "Exact",
        RegularExpression => "RegularExpression",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryParamsMatch {
    #[serde(rename = "type")]
    pub match_type: QueryParamsMatchType,
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConf {
    #[serde(default)]
    pub filters: Option<Vec<Filter>>,
    #[serde(default)]
    pub backend_refs: Option<Vec<BackendRef>>,
}

string_enum! {
    pub enum FilterType {
        RequestHeaderModifier => "RequestHeaderModifier",
        ResponseHeaderModifier => "ResponseHeaderModifier",
        RequestRedirect => "RequestRedirect",
        UrlRewrite => "URLRewrite",
        RequestMirror => "RequestMirror",
    }
}

/// One filter; the field named by `type` holds its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(rename = "type")]
    pub filter_type: FilterType,
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default)]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default)]
    pub request_mirror: Option<RequestMirror>,
}

/// Headers to set, add or remove (at most 16 of each).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(default)]
    pub set: Option<Vec<HeaderKeyValue>>,
    #[serde(default)]
    pub add: Option<Vec<HeaderKeyValue>>,
    #[serde(default)]
    pub remove: Option<Vec<String>>,
}

string_enum! {
    pub enum Scheme {
        Http => "http",
        Https => "https",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    #[serde(default)]
    pub scheme: Option<Scheme>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<PathRewrite>,
    #[serde(default)]
    pub port: Option<i64>,
    /// 301, 302, 303, 307 or 308 (Kuma's default: 302).
    #[serde(default)]
    pub status_code: Option<i64>,
}

impl RequestRedirect {
    pub fn effective_status_code(&self) -> i64 {
        self.status_code.unwrap_or(302)
    }
}

string_enum! {
    pub enum PathRewriteType {
        ReplaceFullPath => "ReplaceFullPath",
        ReplacePrefixMatch => "ReplacePrefixMatch",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathRewrite {
    #[serde(rename = "type")]
    pub rewrite_type: PathRewriteType,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<PathRewrite>,
    /// Rewrite the Host header to the backend's host name (MeshGateway only).
    #[serde(default)]
    pub host_to_backend_hostname: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    /// Share of requests mirrored, 0-100 (an int or a decimal string); all when absent.
    #[serde(default)]
    pub percentage: Option<IntOrString>,
    pub backend_ref: BackendRef,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshGateway,
    K::MeshSubset,
    K::MeshService,
    K::MeshServiceSubset,
    K::Dataplane,
];
const TO_KINDS: &[K] = &[
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
];
const TO_KINDS_GATEWAY: &[K] = &[K::Mesh];
const MIRROR_KINDS: &[K] = &[K::MeshService, K::MeshServiceSubset];

impl Validate for MeshHttpRouteSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
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
        let gateway = top_level_kind(&self.target_ref) == K::MeshGateway;
        let to = self.to.as_deref().unwrap_or_default();
        if to.is_empty() {
            v.add(
                &at.field("to"),
                "must be defined: a route needs at least one 'to' entry",
            );
        }
        for (i, t) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            let kinds = if gateway { TO_KINDS_GATEWAY } else { TO_KINDS };
            check_entry_target_ref(&t.target_ref, &at.field("targetRef"), kinds, v);
            if let Some(hostnames) = &t.hostnames {
                if !gateway && !hostnames.is_empty() {
                    v.add(
                        &at.field("hostnames"),
                        "can only be set when the top-level targetRef is a MeshGateway",
                    );
                }
                for (j, h) in hostnames.iter().enumerate() {
                    if h.trim().is_empty() {
                        v.add(&at.field("hostnames").index(j), "must not be empty");
                    }
                }
            }
            if t.rules.is_empty() {
                v.add(&at.field("rules"), "must have at least one rule");
            }
            for (j, r) in t.rules.iter().enumerate() {
                check_rule(r, gateway, &at.field("rules").index(j), v);
            }
        }
    }
}

fn check_rule(rule: &Rule, gateway: bool, at: &FieldPath, v: &mut Violations) {
    let matches = rule.matches.as_deref().unwrap_or_default();
    for (i, m) in matches.iter().enumerate() {
        m.validate(&at.field("matches").index(i), v);
    }
    let all_prefix = matches.iter().all(|m| {
        m.path
            .as_ref()
            .is_some_and(|p| p.match_type == PathMatchType::PathPrefix)
    });
    let at = at.field("default");
    let filters = rule.default.filters.as_deref().unwrap_or_default();
    for (i, f) in filters.iter().enumerate() {
        check_filter(f, gateway, all_prefix, &at.field("filters").index(i), v);
    }
    let backends = rule.default.backend_refs.as_deref().unwrap_or_default();
    let redirects = filters
        .iter()
        .any(|f| f.filter_type == FilterType::RequestRedirect);
    if backends.is_empty() && gateway && !redirects {
        v.add(
            &at.field("backendRefs"),
            "must not be empty for a MeshGateway route unless it redirects",
        );
    }
    for (i, b) in backends.iter().enumerate() {
        b.check(&at.field("backendRefs").index(i), BACKEND_KINDS, v);
    }
}

impl Validate for HttpMatch {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(p) = &self.path {
            let at = at.field("path");
            p.match_type.validate(&at.field("type"), v);
            let value = at.field("value");
            match p.match_type {
                PathMatchType::PathPrefix if p.value != "/" => {
                    if !p.value.starts_with('/') {
                        v.add(&value, "must be an absolute path (start with '/')");
                    }
                    if p.value.ends_with('/') {
                        v.add(
                            &value,
                            "must not end with '/': only whole '/'-separated segments are matched",
                        );
                    }
                }
                PathMatchType::Exact if !p.value.starts_with('/') => {
                    v.add(&value, "must be an absolute path (start with '/')");
                }
                PathMatchType::RegularExpression if p.value.is_empty() => {
                    v.add(&value, "must not be empty");
                }
                _ => {}
            }
        }
        self.method.validate(&at.field("method"), v);
        let mut seen: Vec<&str> = Vec::new();
        for (i, q) in self.query_params.iter().flatten().enumerate() {
            let at = at.field("queryParams").index(i);
            q.match_type.validate(&at.field("type"), v);
            if q.name.is_empty() {
                v.add(&at.field("name"), "must not be empty");
            } else if seen.contains(&q.name.as_str()) {
                v.add(
                    &at.field("name"),
                    format!("multiple entries for name {:?}", q.name),
                );
            }
            seen.push(&q.name);
        }
        self.headers.validate(&at.field("headers"), v);
    }
}

fn check_filter(f: &Filter, gateway: bool, all_prefix: bool, at: &FieldPath, v: &mut Violations) {
    f.filter_type.validate(&at.field("type"), v);
    match f.filter_type {
        FilterType::RequestHeaderModifier => check_required(
            &f.request_header_modifier,
            &at.field("requestHeaderModifier"),
            v,
        ),
        FilterType::ResponseHeaderModifier => check_required(
            &f.response_header_modifier,
            &at.field("responseHeaderModifier"),
            v,
        ),
        FilterType::RequestRedirect => {
            let at = at.field("requestRedirect");
            let Some(r) = &f.request_redirect else {
                v.add(&at, "must be defined with type RequestRedirect");
                return;
            };
            r.scheme.validate(&at.field("scheme"), v);
            check_precise_hostname(&r.hostname, &at.field("hostname"), v);
            check_path_rewrite(&r.path, all_prefix, &at.field("path"), v);
            if let Some(port) = r.port {
                check_port(port, &at.field("port"), v);
            }
            if !matches!(r.effective_status_code(), 301 | 302 | 303 | 307 | 308) {
                v.add(
                    &at.field("statusCode"),
                    "must be one of: 301, 302, 303, 307, 308",
                );
            }
        }
        FilterType::UrlRewrite => {
            let at = at.field("urlRewrite");
            let Some(r) = &f.url_rewrite else {
                v.add(&at, "must be defined with type URLRewrite");
                return;
            };
            check_precise_hostname(&r.hostname, &at.field("hostname"), v);
            check_path_rewrite(&r.path, all_prefix, &at.field("path"), v);
            if r.host_to_backend_hostname == Some(true) {
                let field = at.field("hostToBackendHostname");
                if !gateway {
                    v.add(
                        &field,
                        "can only be set when the top-level targetRef is a MeshGateway",
                    );
                }
                if r.hostname.is_some() {
                    v.add(&field, "cannot be set together with hostname");
                }
            }
        }
        FilterType::RequestMirror => {
            let at = at.field("requestMirror");
            let Some(m) = &f.request_mirror else {
                v.add(&at, "must be defined with type RequestMirror");
                return;
            };
            if let Some(p) = &m.percentage {
                check_percentage(p, true, &at.field("percentage"), v);
            }
            m.backend_ref
                .check(&at.field("backendRef"), MIRROR_KINDS, v);
        }
        FilterType::Unknown(_) => {}
    }
}

fn check_required(m: &Option<HeaderModifier>, at: &FieldPath, v: &mut Violations) {
    match m {
        None => v.add(at, "must be defined for this filter type"),
        Some(m) => m.validate(at, v),
    }
}

impl Validate for HeaderModifier {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.set.is_none() && self.add.is_none() && self.remove.is_none() {
            v.add(at, "must have at least one of 'set', 'add', 'remove'");
            return;
        }
        check_header_list(&self.set, &at.field("set"), v);
        check_header_list(&self.add, &at.field("add"), v);
        if self.remove.as_ref().is_some_and(|r| r.len() > 16) {
            v.add(&at.field("remove"), "must have at most 16 items");
        }
        let mut seen: Vec<String> = Vec::new();
        let names = [("set", &self.set), ("add", &self.add)]
            .into_iter()
            .flat_map(|(field, list)| {
                list.iter()
                    .flatten()
                    .enumerate()
                    .map(move |(i, h)| (at.field(field).index(i).field("name"), h.name.clone()))
            })
            .chain(
                self.remove
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, n)| (at.field("remove").index(i), n.clone())),
            );
        for (path, name) in names {
            let lower = name.to_ascii_lowercase();
            if seen.contains(&lower) {
                v.add(&path, "duplicate header name");
            }
            seen.push(lower);
        }
    }
}

fn check_precise_hostname(hostname: &Option<String>, at: &FieldPath, v: &mut Violations) {
    let Some(h) = hostname else { return };
    if h.parse::<std::net::IpAddr>().is_ok() {
        v.add(at, "cannot be an IP address");
    } else if let Err(why) = check_dns_subdomain(h) {
        v.add(at, why);
    }
}

fn check_path_rewrite(
    p: &Option<PathRewrite>,
    all_prefix: bool,
    at: &FieldPath,
    v: &mut Violations,
) {
    let Some(p) = p else { return };
    p.rewrite_type.validate(&at.field("type"), v);
    match p.rewrite_type {
        PathRewriteType::ReplaceFullPath if p.replace_full_path.is_none() => v.add(
            &at.field("replaceFullPath"),
            "must be defined with type ReplaceFullPath",
        ),
        PathRewriteType::ReplacePrefixMatch if p.replace_prefix_match.is_none() => v.add(
            &at.field("replacePrefixMatch"),
            "must be defined with type ReplacePrefixMatch",
        ),
        _ => {}
    }
    if p.replace_prefix_match.is_some() && !all_prefix {
        v.add(
            &at.field("replacePrefixMatch"),
            "can only be used when every match of the rule matches a path prefix",
        );
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
type: MeshHTTPRoute
name: full
spec:
  targetRef: {kind: Dataplane, labels: {app: frontend}}
  to:
    - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo, sectionName: http, _port: 3001}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /api}
              method: GET
              queryParams: [{type: Exact, name: version, value: "2"}]
              headers: [{type: Exact, name: x-user, value: alice}, {type: Absent, name: x-debug}]
          default:
            filters:
              - type: RequestHeaderModifier
                requestHeaderModifier:
                  set: [{name: x-custom, value: xyz}]
                  add: [{name: x-trace, value: "1"}]
                  remove: [x-internal]
              - type: ResponseHeaderModifier
                responseHeaderModifier: {remove: [server]}
              - type: URLRewrite
                urlRewrite:
                  hostname: backend.internal
                  path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
              - type: RequestMirror
                requestMirror:
                  percentage: "12.5"
                  backendRef: {kind: MeshService, name: shadow, namespace: kuma-demo, port: 8080}
            backendRefs:
              - {kind: MeshService, name: backend, namespace: kuma-demo, port: 3001, weight: 90, _version: v1}
              - {kind: MeshMultiZoneService, name: backend-global, port: 3001, weight: 10}
        - matches: [{path: {type: Exact, value: /old}}]
          default:
            filters:
              - type: RequestRedirect
                requestRedirect: {scheme: https, hostname: example.com, port: 8443, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /new}}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshHTTPRoute
name: bad
spec:
  targetRef: {kind: MeshSubset, tags: {app: frontend}}
  to:
    - targetRef: {kind: Mesh}
      hostnames: [example.com]
      rules:
        - matches:
            - path: {type: PathPrefix, value: "api/"}
              method: FETCH
              queryParams: [{type: Exact, name: a, value: "1"}, {type: Exact, name: a, value: "2"}]
          default:
            filters:
              - type: RequestRedirect
                requestRedirect: {statusCode: 200, port: 70000, hostname: 10.0.0.1}
            backendRefs:
              - {kind: MeshMultiZoneService, name: backend}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.to[0].targetRef.kind",
                "spec.to[0].hostnames",
                "spec.to[0].rules[0].matches[0].path.value",
                "spec.to[0].rules[0].matches[0].path.value",
                "spec.to[0].rules[0].matches[0].method",
                "spec.to[0].rules[0].matches[0].queryParams[1].name",
                "spec.to[0].rules[0].default.filters[0].requestRedirect.hostname",
                "spec.to[0].rules[0].default.filters[0].requestRedirect.port",
                "spec.to[0].rules[0].default.filters[0].requestRedirect.statusCode",
                "spec.to[0].rules[0].default.backendRefs[0].port",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn checks_gateway_routes_and_filters() {
        let v = refused(
            r#"
type: MeshHTTPRoute
name: bad
spec:
  targetRef: {kind: MeshGateway, name: edge, tags: {port: http-80}}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches: [{path: {type: Exact, value: /a}}]
          default:
            filters:
              - type: RequestHeaderModifier
              - type: URLRewrite
                urlRewrite: {hostname: a.com, hostToBackendHostname: true, path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}
              - type: RequestMirror
                requestMirror: {percentage: 150, backendRef: {kind: MeshExternalService, name: ext}}
              - type: ResponseHeaderModifier
                responseHeaderModifier: {set: [{name: X-A, value: "1"}], remove: [x-a]}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.to[0].targetRef.kind",
                "spec.to[0].rules[0].default.filters[0].requestHeaderModifier",
                "spec.to[0].rules[0].default.filters[1].urlRewrite.path.replacePrefixMatch",
                "spec.to[0].rules[0].default.filters[1].urlRewrite.hostToBackendHostname",
                "spec.to[0].rules[0].default.filters[2].requestMirror.percentage",
                "spec.to[0].rules[0].default.filters[2].requestMirror.backendRef.kind",
                "spec.to[0].rules[0].default.filters[3].responseHeaderModifier.set[0].name",
                "spec.to[0].rules[0].default.filters[3].responseHeaderModifier.remove[0]",
                "spec.to[0].rules[0].default.backendRefs",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_missing_parts() {
        let v = refused(
            r#"
type: MeshHTTPRoute
name: bad
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend, colour: blue}
      rules: []
"#,
        );
        // Every violation at once: the unknown field by its own path, and the empty rules.
        assert_eq!(
            fields(&v),
            ["spec.to[0].targetRef.colour", "spec.to[0].rules"],
            "{v:?}"
        );
        assert_eq!(v[0].1, "unknown field", "{v:?}");
        let v = refused(
            r#"
type: MeshHTTPRoute
name: bad
spec:
  to:
    - rules: []
      timeout: 5s
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.to[0].timeout",
                "spec.to[0].targetRef",
                "spec.to[0].rules"
            ],
            "{v:?}"
        );
    }
}
