//! Building blocks shared by several targetRef policies: identity matches (`spiffeID`/`sni`),
//! header matches and modifiers, backend references, decimal values written as an int or a string,
//! and the targetRef checks that depend on the policy (which kinds, inbound or outbound).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::path::FieldPath;
use crate::string_enum;
use crate::target_ref::{ProxyType, TargetRef, TargetRefKind};
use crate::types::Duration;
use crate::validate::{Validate, Violations, check_port};

// ---------------------------------------------------------------------------------------------
// targetRef helpers
// ---------------------------------------------------------------------------------------------

/// The kind a policy's top-level targetRef selects: `Mesh` when the policy names none.
pub fn top_level_kind(target_ref: &Option<TargetRef>) -> TargetRefKind {
    target_ref
        .as_ref()
        .map_or(TargetRefKind::Mesh, |t| t.kind.clone())
}

/// What a policy allows in its top-level targetRef beyond the list of kinds.
#[derive(Debug, Clone, Copy, Default)]
pub struct TopLevelOpts {
    /// The policy configures inbound traffic (`from` or `rules`): only then may a `Dataplane`
    /// reference name a `sectionName` (one inbound of the selected proxies).
    pub inbound: bool,
    /// A `MeshGateway` reference may select listeners by `tags`.
    pub gateway_listener_tags: bool,
}

/// Checks a policy's top-level targetRef (absent means the whole mesh, always allowed).
pub fn check_top_level(
    target_ref: &Option<TargetRef>,
    at: &FieldPath,
    allowed: &[TargetRefKind],
    opts: TopLevelOpts,
    v: &mut Violations,
) {
    let Some(t) = target_ref else { return };
    t.check(at, allowed, v);
    if t.kind == TargetRefKind::Dataplane && !opts.inbound && t.section_name.is_some() {
        v.add(
            &at.field("sectionName"),
            "can only be used by policies with 'from' or 'rules' (inbound policies)",
        );
    }
    if t.kind == TargetRefKind::MeshGateway
        && !opts.gateway_listener_tags
        && t.tags.as_ref().is_some_and(|tags| !tags.is_empty())
    {
        v.add(
            &at.field("tags"),
            "must not be set with kind MeshGateway for this policy",
        );
    }
}

/// Checks the targetRef of a `to` / `from` entry (required) against the kinds allowed there.
pub fn check_entry_target_ref(
    target_ref: &Option<TargetRef>,
    at: &FieldPath,
    allowed: &[TargetRefKind],
    v: &mut Violations,
) {
    let Some(t) = target_ref else {
        v.add(at, "must be defined");
        return;
    };
    t.check(at, allowed, v);
    if t.kind == TargetRefKind::Dataplane && t.section_name.is_some() {
        v.add(
            &at.field("sectionName"),
            "can only be used in the top-level targetRef of inbound policies",
        );
    }
}

/// Whether the policy's scope may contain gateways: a `MeshGateway`, a `MeshHTTPRoute`, or `Mesh` /
/// `MeshSubset` whose `proxyTypes` is empty or lists `Gateway`.
pub fn includes_gateways(target_ref: &Option<TargetRef>) -> bool {
    let Some(t) = target_ref else { return true };
    match t.kind {
        TargetRefKind::MeshGateway | TargetRefKind::MeshHTTPRoute => true,
        TargetRefKind::Mesh | TargetRefKind::MeshSubset => t
            .proxy_types
            .as_ref()
            .is_none_or(|p| p.is_empty() || p.contains(&ProxyType::Gateway)),
        _ => false,
    }
}

/// Whether the policy's scope is made of gateways only: a `MeshGateway`, a `MeshHTTPRoute`, or
/// `Mesh` / `MeshSubset` with `proxyTypes: [Gateway]`.
pub fn only_gateways(target_ref: &Option<TargetRef>) -> bool {
    let Some(t) = target_ref else { return false };
    match t.kind {
        TargetRefKind::MeshGateway | TargetRefKind::MeshHTTPRoute => true,
        TargetRefKind::Mesh | TargetRefKind::MeshSubset => t
            .proxy_types
            .as_ref()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|x| *x == ProxyType::Gateway)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Policy documents and specs
// ---------------------------------------------------------------------------------------------

/// A targetRef policy's document beside the envelope: its `spec`, the one kind-specific part.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDoc<S> {
    pub spec: S,
}

impl<S: Validate> Validate for PolicyDoc<S> {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        self.spec.validate(&at.field("spec"), v);
    }
}

/// The spec of a policy with all three sections: `to` (outbound traffic, per destination),
/// `from` (inbound traffic, per client; deprecated in Kuma for `rules`) and `rules` (inbound
/// traffic, for every client or by client identity). Entries carry the policy's `default`
/// type `C`; `R` is its rule item ([`RuleEntry`] with identity matches, or [`DefaultRule`]).
/// Each policy validates its own instance (which kinds each section takes, its conf checks).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "C: Deserialize<'de> + Default, R: Deserialize<'de>")
)]
pub struct PolicySpec<C, R = RuleEntry<C>> {
    /// The proxies configured; the whole mesh when absent.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub to: Option<Vec<ToEntry<C>>>,
    #[serde(default)]
    pub from: Option<Vec<FromEntry<C>>>,
    #[serde(default)]
    pub rules: Option<Vec<R>>,
}

impl<C, R> PolicySpec<C, R> {
    /// The `to` entries (none when absent).
    pub fn to(&self) -> &[ToEntry<C>] {
        self.to.as_deref().unwrap_or_default()
    }

    /// The `from` entries (none when absent).
    pub fn from(&self) -> &[FromEntry<C>] {
        self.from.as_deref().unwrap_or_default()
    }

    /// The `rules` items (none when absent).
    pub fn rules(&self) -> &[R] {
        self.rules.as_deref().unwrap_or_default()
    }

    /// Whether the policy configures inbound traffic (`from` or `rules`).
    pub fn is_inbound(&self) -> bool {
        !self.from().is_empty() || !self.rules().is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Policy entries: the `to` / `from` / `rules` items most policies share
// ---------------------------------------------------------------------------------------------

/// A `to[]` or `from[]` item: the destinations (`to`) or clients (`from`) selected by
/// `targetRef` get `default` (the policy's conf, `Conf` or `Option<Conf>` as the policy declares it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetedEntry<C> {
    /// Required.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub default: C,
}

/// A `to[]` item.
pub type ToEntry<C> = TargetedEntry<C>;
/// A `from[]` item.
pub type FromEntry<C> = TargetedEntry<C>;

/// A `rules[]` item with identity matches: the clients matching any of `matches` (every client
/// when absent) get `default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEntry<C> {
    /// Client identities the rule applies to; every client when absent.
    #[serde(default)]
    pub matches: Option<Vec<Match>>,
    #[serde(default)]
    pub default: C,
}

/// A `rules[]` item of a policy whose rules take no `matches` (every client gets `default`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultRule<C> {
    #[serde(default)]
    pub default: C,
}

// ---------------------------------------------------------------------------------------------
// Durations and numbers
// ---------------------------------------------------------------------------------------------

/// A policy must say something: at least one of its sections (`to`, `from`, `rules`; each
/// given as its name and whether it holds an entry) is set. An empty policy is refused rather
/// than stored and silently ignored.
pub fn require_a_section(sections: &[(&str, bool)], at: &FieldPath, v: &mut Violations) {
    if sections.iter().any(|(_, set)| *set) {
        return;
    }
    let names: Vec<String> = sections.iter().map(|(n, _)| format!("'{n}'")).collect();
    let message = match names.as_slice() {
        [one] => format!("{one} has to be defined with at least one entry"),
        _ => format!("at least one of {} has to be defined", names.join(", ")),
    };
    v.add(at, message);
}

/// Whether an optional list section holds an entry.
pub fn has_entries<T>(section: &Option<Vec<T>>) -> bool {
    section.as_ref().is_some_and(|s| !s.is_empty())
}

/// A validated duration as Envoy takes it (millisecond precision); `None` when unset (or, for a
/// policy that skipped validation, unreadable: the default then stays).
pub fn envoy_duration(d: &Option<Duration>) -> Option<atoll_envoy_model::Duration> {
    let d = d.as_ref()?.as_std()?;
    Some(atoll_envoy_model::Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// Checks an optional duration: valid syntax (negatives are refused by the syntax) and, when
/// `positive`, strictly greater than zero.
pub fn check_duration(d: &Option<Duration>, at: &FieldPath, positive: bool, v: &mut Violations) {
    let Some(d) = d else { return };
    match d.as_std() {
        None => d.validate(at, v),
        Some(s) if positive && s.is_zero() => v.add(at, "must be greater than zero"),
        Some(_) => {}
    }
}

/// Checks an optional count that must be greater than zero when set.
pub fn check_positive<T: Into<i64> + Copy>(n: &Option<T>, at: &FieldPath, v: &mut Violations) {
    if let Some(n) = n
        && (*n).into() <= 0
    {
        v.add(at, "must be greater than zero");
    }
}

/// Checks a percentage written as an int or a decimal string: 0..=100, and above 0 unless
/// `allow_zero`.
pub fn check_percentage(p: &IntOrString, allow_zero: bool, at: &FieldPath, v: &mut Violations) {
    match p.as_f64() {
        None => v.add(
            at,
            format!(
                "must be a number or a string holding a number (got {})",
                p.0
            ),
        ),
        Some(n) if !(0.0..=100.0).contains(&n) => v.add(at, "must be in the range 0-100"),
        Some(n) if n == 0.0 && !allow_zero => v.add(at, "must be greater than zero"),
        Some(_) => {}
    }
}

/// Checks an optional integer percentage: 0..=100.
pub fn check_percent<T: Into<i64> + Copy>(n: &Option<T>, at: &FieldPath, v: &mut Violations) {
    if let Some(n) = n
        && !(0..=100).contains(&(*n).into())
    {
        v.add(at, "must be in the range 0-100");
    }
}

/// A number Kuma accepts as an integer or as a string holding a decimal (`50`, `"50"`, `"0.5"`).
/// Kept as written; `as_f64` reads it. Any scalar deserializes, `validate` refuses non-numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct IntOrString(pub Value);

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(IntOrString(Value::deserialize(d)?))
    }
}

impl IntOrString {
    /// The value as a number, when it is one (a JSON number or a string holding one).
    pub fn as_f64(&self) -> Option<f64> {
        let n = match &self.0 {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }?;
        n.is_finite().then_some(n)
    }

    /// Checks that the value is a number in `min..=max`.
    pub fn check_range(&self, min: f64, max: f64, at: &FieldPath, v: &mut Violations) {
        match self.as_f64() {
            None => v.add(
                at,
                format!(
                    "must be a number or a string holding a number (got {})",
                    self.0
                ),
            ),
            Some(n) if n < min || n > max => v.add(at, format!("must be in the range {min}-{max}")),
            Some(_) => {}
        }
    }

    /// Checks that the value is a number greater than zero.
    pub fn check_positive(&self, at: &FieldPath, v: &mut Violations) {
        match self.as_f64() {
            None => v.add(
                at,
                format!(
                    "must be a number or a string holding a number (got {})",
                    self.0
                ),
            ),
            Some(n) if n <= 0.0 => v.add(at, "must be greater than zero"),
            Some(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identity matches (`rules[].matches`, MeshTrafficPermission allow/deny lists)
// ---------------------------------------------------------------------------------------------

string_enum! {
    /// How a SPIFFE ID is compared.
    pub enum SpiffeIdMatchType {
        Exact => "Exact",
        Prefix => "Prefix",
    }
}

string_enum! {
    /// How an SNI is compared (only exact matching exists).
    pub enum SniMatchType {
        Exact => "Exact",
    }
}

/// Selects clients by identity: their SPIFFE ID and/or the SNI they asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    #[serde(default, rename = "spiffeID")]
    pub spiffe_id: Option<SpiffeIdMatch>,
    #[serde(default)]
    pub sni: Option<SniMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpiffeIdMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<SpiffeIdMatchType>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SniMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<SniMatchType>,
    #[serde(default)]
    pub value: Option<String>,
}

impl Match {
    pub fn is_empty(&self) -> bool {
        self.spiffe_id.is_none() && self.sni.is_none()
    }
}

impl Validate for Match {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(s) = &self.spiffe_id {
            let at = at.field("spiffeID");
            match &s.match_type {
                None => v.add(&at.field("type"), "must be set (Exact or Prefix)"),
                Some(t) => t.validate(&at.field("type"), v),
            }
            match s.value.as_deref() {
                None | Some("") => v.add(&at.field("value"), "must be set"),
                Some(id) => {
                    if let Err(why) = check_spiffe_id(id) {
                        v.add(
                            &at.field("value"),
                            format!("must be a valid SPIFFE ID: {why}"),
                        );
                    }
                }
            }
        }
        if let Some(s) = &self.sni {
            let at = at.field("sni");
            match &s.match_type {
                None => v.add(&at.field("type"), "must be set (Exact)"),
                Some(t) => t.validate(&at.field("type"), v),
            }
            match s.value.as_deref() {
                None | Some("") => v.add(&at.field("value"), "must be set"),
                Some(host) => {
                    if let Err(why) = check_dns_subdomain(host) {
                        v.add(&at.field("value"), why);
                    }
                }
            }
        }
    }
}

/// Checks identity matches of a `rules[]` entry the way MeshTimeout and MeshRateLimit do: every
/// match names a `spiffeID` or an `sni`. Returns whether any match is on a SPIFFE ID.
pub fn check_rule_matches(
    matches: &Option<Vec<Match>>,
    at: &FieldPath,
    v: &mut Violations,
) -> bool {
    let mut has_spiffe = false;
    for (i, m) in matches.iter().flatten().enumerate() {
        let at = at.index(i);
        m.validate(&at, v);
        if m.is_empty() {
            v.add(&at, "must specify at least one of 'spiffeID' or 'sni'");
        }
        has_spiffe |= m.spiffe_id.is_some();
    }
    has_spiffe
}

/// `spiffe://<trust domain>[/<segment>...]`, as the SPIFFE specification defines it.
fn check_spiffe_id(id: &str) -> Result<(), String> {
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or_else(|| "must start with spiffe://".to_string())?;
    let (domain, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if domain.is_empty() {
        return Err("the trust domain is missing".into());
    }
    if !domain
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    {
        return Err(
            "the trust domain may only hold lower case letters, digits, '.', '-' and '_'".into(),
        );
    }
    if path.is_empty() {
        return Ok(());
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return Err("the path must not have empty segments or a trailing '/'".into());
        }
        if segment == "." || segment == ".." {
            return Err("the path must not have '.' or '..' segments".into());
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err("the path may only hold letters, digits, '.', '-' and '_'".into());
        }
    }
    Ok(())
}

/// A DNS-1123 subdomain: lower case labels of letters, digits and '-', separated by '.'.
pub fn check_dns_subdomain(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be a lower case DNS name (labels of a-z, 0-9 and '-' separated by '.'), got {host:?}"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/// Checks an HTTP header name as Kuma does: 1-256 characters of lower case token characters.
pub fn check_header_name(name: &str, at: &FieldPath, v: &mut Violations) {
    let valid_char = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '.'
                    | '^'
                    | '_'
                    | '`'
                    | '|'
                    | '~'
            )
    };
    if name.is_empty() {
        v.add(at, "must not be empty");
    } else if name.len() > 256 {
        v.add(at, "must be no more than 256 characters");
    } else if !name.chars().all(valid_char) {
        v.add(
            at,
            format!("must be a lower case HTTP header name (got {name:?})"),
        );
    }
}

string_enum! {
    /// How a header is matched.
    pub enum HeaderMatchType {
        Exact => "Exact",
        Present => "Present",
        RegularExpression => "RegularExpression",
        Absent => "Absent",
        Prefix => "Prefix",
    }
}

/// Matches a request or response header. `type` defaults to `Exact`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<HeaderMatchType>,
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

impl HeaderMatch {
    /// The match type, `Exact` when not written.
    pub fn effective_type(&self) -> HeaderMatchType {
        self.match_type.clone().unwrap_or(HeaderMatchType::Exact)
    }
}

impl Validate for HeaderMatch {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        self.match_type.validate(&at.field("type"), v);
        check_header_name(&self.name, &at.field("name"), v);
        let valueless = matches!(
            self.effective_type(),
            HeaderMatchType::Present | HeaderMatchType::Absent
        );
        if valueless && self.value.as_deref().is_some_and(|s| !s.is_empty()) {
            v.add(
                &at.field("value"),
                format!(
                    "must not be set with type {}",
                    self.effective_type().as_str()
                ),
            );
        }
    }
}

/// A header name and value to set or add.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderKeyValue {
    pub name: String,
    pub value: String,
}

/// Headers to set (replace) or add (append), at most 16 of each.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderSetAdd {
    #[serde(default)]
    pub set: Option<Vec<HeaderKeyValue>>,
    #[serde(default)]
    pub add: Option<Vec<HeaderKeyValue>>,
}

impl Validate for HeaderSetAdd {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_header_list(&self.set, &at.field("set"), v);
        check_header_list(&self.add, &at.field("add"), v);
    }
}

/// Checks a list of headers to set or add: at most 16, valid names.
pub fn check_header_list(list: &Option<Vec<HeaderKeyValue>>, at: &FieldPath, v: &mut Violations) {
    let Some(list) = list else { return };
    if list.len() > 16 {
        v.add(at, "must have at most 16 items");
    }
    for (i, h) in list.iter().enumerate() {
        check_header_name(&h.name, &at.index(i).field("name"), v);
    }
}

// ---------------------------------------------------------------------------------------------
// Backend references (routes, mirrors)
// ---------------------------------------------------------------------------------------------

/// Where a route sends traffic: a targetRef plus a weight and, for real services, a port.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    pub kind: TargetRefKind,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub section_name: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub proxy_types: Option<Vec<ProxyType>>,
    /// Relative share of the traffic (Kuma's default: 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Port of the MeshService / MeshMultiZoneService; required for MeshMultiZoneService.
    #[serde(default)]
    pub port: Option<i64>,
    /// Rendering hint of Kuma's documentation; ignored.
    #[serde(default, rename = "_port")]
    pub doc_port: Option<Value>,
    /// Rendering hint of Kuma's documentation; ignored.
    #[serde(default, rename = "_version")]
    pub doc_version: Option<Value>,
}

impl BackendRef {
    /// The reference part, as a targetRef.
    pub fn target_ref(&self) -> TargetRef {
        TargetRef {
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            section_name: self.section_name.clone(),
            mesh: self.mesh.clone(),
            tags: self.tags.clone(),
            labels: self.labels.clone(),
            proxy_types: self.proxy_types.clone(),
        }
    }

    /// The weight, Kuma's default (1) when not written.
    pub fn effective_weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// Checks the reference, its kind against `allowed`, and the port.
    pub fn check(&self, at: &FieldPath, allowed: &[TargetRefKind], v: &mut Violations) {
        self.target_ref().check(at, allowed, v);
        match self.port {
            Some(p) => check_port(p, &at.field("port"), v),
            None if self.kind == TargetRefKind::MeshMultiZoneService => v.add(
                &at.field("port"),
                "must be defined with kind MeshMultiZoneService",
            ),
            None => {}
        }
    }
}

/// Kinds a route's backendRefs may name.
pub const BACKEND_KINDS: &[TargetRefKind] = &[
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
    TargetRefKind::MeshExternalService,
    TargetRefKind::MeshMultiZoneService,
];

// ---------------------------------------------------------------------------------------------
// Observability backends (MeshAccessLog, MeshTrace, MeshMetric)
// ---------------------------------------------------------------------------------------------

string_enum! {
    /// Kinds of backend resources observability policies may point at.
    pub enum BackendResourceKind {
        MeshOpenTelemetryBackend => "MeshOpenTelemetryBackend",
    }
}

/// A reference to a backend resource of the same mesh, selected by labels (the oldest match wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendResourceRef {
    pub kind: BackendResourceKind,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Validate for BackendResourceRef {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        self.kind.validate(&at.field("kind"), v);
        if self.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            v.add(
                &at.field("labels"),
                "must be set: the backend is selected by labels",
            );
        }
    }
}

/// Checks an OpenTelemetry target at `at`: exactly one of `endpoint` (`host:port`, not a URL) and
/// `backendRef`.
pub fn check_otel_endpoint_or_ref(
    endpoint: Option<&str>,
    backend_ref: Option<&BackendResourceRef>,
    at: &FieldPath,
    v: &mut Violations,
) {
    let endpoint = endpoint.filter(|e| !e.is_empty());
    match (endpoint, backend_ref) {
        (Some(_), Some(_)) => v.add(at, "must have only one of 'endpoint' or 'backendRef'"),
        (None, None) => v.add(at, "must have exactly one of 'endpoint' or 'backendRef'"),
        (None, Some(r)) => r.validate(&at.field("backendRef"), v),
        (Some(e), None) => {
            if e.contains(['/', '?', '#']) {
                v.add(
                    &at.field("endpoint"),
                    "must be in host:port format, not a URL",
                );
            }
        }
    }
}

/// Checks an OpenTelemetry attribute name: lower case letters, digits, '.' and '_', starting with
/// a letter, ending with a letter or digit, no consecutive delimiters, no `otel.` prefix, no
/// `%placeholders%`.
pub fn check_otel_attribute_name(name: &str, at: &FieldPath, v: &mut Violations) {
    if name.is_empty() {
        v.add(at, "must be defined");
    } else if name.contains('%') {
        v.add(
            at,
            "must be a static OpenTelemetry attribute name; placeholders are only supported in values",
        );
    } else if name.starts_with("otel.") {
        v.add(at, "must not use the reserved OpenTelemetry prefix 'otel.'");
    } else {
        let delim = |c: char| c == '.' || c == '_';
        let chars_ok = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || delim(c));
        let starts_ok = name.starts_with(|c: char| c.is_ascii_lowercase());
        let ends_ok = name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        let no_double = !name
            .as_bytes()
            .windows(2)
            .any(|w| delim(w[0] as char) && delim(w[1] as char));
        if !(chars_ok && starts_ok && ends_ok && no_double) {
            v.add(
                at,
                "must start with a lowercase letter, use only lowercase letters, digits, '.' or '_', \
                 avoid consecutive delimiters, and end with a letter or digit",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        assert!(check_spiffe_id("spiffe://my-mesh.us-east-2.mesh.local").is_ok());
        assert!(check_spiffe_id("spiffe://td/ns/test/sa/client").is_ok());
        for bad in [
            "http://td",
            "spiffe://",
            "spiffe://TD",
            "spiffe://td/",
            "spiffe://td//a",
        ] {
            assert!(check_spiffe_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals() {
        let d = |v: Value| IntOrString(v).as_f64();
        assert_eq!(d(serde_json::json!(50)), Some(50.0));
        assert_eq!(d(serde_json::json!("0.5")), Some(0.5));
        assert_eq!(d(serde_json::json!(1.9)), Some(1.9));
        assert_eq!(d(serde_json::json!("half")), None);
        assert_eq!(d(serde_json::json!("NaN")), None);
    }

    /// The shared entries keep each policy's field paths: an unknown key in a `to` / `from` /
    /// `rules` item is reported under that item, a missing entry targetRef names it, and `matches`
    /// stays unknown where a policy's rules take none.
    #[test]
    fn generic_entries_keep_each_policys_paths() {
        use super::test_support::{paths, policy};
        let cases = [
            ("MeshAccessLog", "to"),
            ("MeshAccessLog", "from"),
            ("MeshAccessLog", "rules"),
            ("MeshCircuitBreaker", "to"),
            ("MeshCircuitBreaker", "from"),
            ("MeshCircuitBreaker", "rules"),
            ("MeshFaultInjection", "to"),
            ("MeshFaultInjection", "from"),
            ("MeshFaultInjection", "rules"),
            ("MeshHealthCheck", "to"),
            ("MeshLoadBalancingStrategy", "to"),
            ("MeshRateLimit", "to"),
            ("MeshRateLimit", "from"),
            ("MeshRateLimit", "rules"),
            ("MeshRetry", "to"),
            ("MeshTimeout", "to"),
            ("MeshTimeout", "from"),
            ("MeshTimeout", "rules"),
            ("MeshTLS", "from"),
            ("MeshTLS", "rules"),
            ("MeshTrafficPermission", "from"),
        ];
        for (kind, section) in cases {
            let entry = if section == "rules" {
                serde_json::json!({"bogus": 1})
            } else {
                serde_json::json!({"targetRef": {"kind": "Mesh"}, "bogus": 1})
            };
            let spec = serde_json::json!({"targetRef": {"kind": "Mesh"}, section: [entry]});
            let got = paths(policy(kind, "p", spec));
            let want = format!("spec.{section}[0].bogus");
            assert!(got.contains(&want), "{kind} {section}: {got:?}");
            if section != "rules" {
                let spec = serde_json::json!({section: [{"default": {}}]});
                let got = paths(policy(kind, "p", spec));
                let want = format!("spec.{section}[0].targetRef");
                assert!(got.contains(&want), "{kind} {section}: {got:?}");
            }
        }
        for kind in ["MeshCircuitBreaker", "MeshTLS"] {
            let spec = serde_json::json!({"rules": [{"matches": [], "default": {}}]});
            let got = paths(policy(kind, "p", spec));
            assert!(
                got.contains(&"spec.rules[0].matches".to_string()),
                "{kind}: {got:?}"
            );
        }
        let spec = serde_json::json!({"to": [{"targetRef": {"kind": "Mesh"}, "rules": [{"matches": [], "default": {}}]}]});
        let got = paths(policy("MeshTCPRoute", "p", spec));
        assert!(
            got.contains(&"spec.to[0].rules[0].matches".to_string()),
            "{got:?}"
        );
    }

    #[test]
    fn dns_names() {
        assert!(check_dns_subdomain("example.com").is_ok());
        assert!(check_dns_subdomain("Example.com").is_err());
        assert!(check_dns_subdomain("-a.com").is_err());
        assert!(check_dns_subdomain("a..com").is_err());
    }
}

/// Helpers shared by the policies' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::{Value, json};

    use crate::Resource;
    use crate::format::parse_document;

    /// The violations of a YAML document that must be refused, as (field, message) pairs.
    pub fn refused(yaml: &str) -> Vec<(String, String)> {
        let doc = parse_document(yaml).expect("yaml");
        match Resource::from_value(doc) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(v) => v
                .iter()
                .map(|x| (x.field.clone(), x.message.clone()))
                .collect(),
        }
    }

    /// The fields of (field, message) pairs.
    pub fn fields(v: &[(String, String)]) -> Vec<&str> {
        v.iter().map(|(f, _)| f.as_str()).collect()
    }

    /// The violations of a document as (field, message) pairs; empty when it is accepted.
    pub fn violations(doc: Value) -> Vec<(String, String)> {
        match Resource::from_value(doc) {
            Ok(_) => Vec::new(),
            Err(v) => v
                .iter()
                .map(|x| (x.field.clone(), x.message.clone()))
                .collect(),
        }
    }

    /// The fields of a document's violations; empty when it is accepted.
    pub fn paths(doc: Value) -> Vec<String> {
        violations(doc).into_iter().map(|(f, _)| f).collect()
    }

    /// A universal document of `kind` named `name` in mesh `default` with this spec.
    pub fn policy(kind: &str, name: &str, spec: Value) -> Value {
        json!({"type": kind, "name": name, "mesh": "default", "spec": spec})
    }
}
