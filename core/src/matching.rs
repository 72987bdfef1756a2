//! Which targetRef policies apply to a proxy, in which order, and what they merge to — Kuma's
//! "policy matching" (Kuma 2.14, `pkg/plugins/policies/core/matchers/dataplane.go` and
//! `pkg/plugins/policies/core/rules/`). Pure: no store, no I/O.
//!
//! # Selection (top-level `targetRef`)
//! | kind | selects |
//! | --- | --- |
//! | absent / `Mesh` | every inbound of the proxy, when `proxyTypes` is empty or lists its type |
//! | `MeshSubset` | the inbounds whose tags contain every `tags` entry (`*` matches any value), same `proxyTypes` rule |
//! | `Dataplane` | the proxy when the ref names no `name`/`labels` (all), names it (`name`), or all `labels` equal the proxy's labels; then every inbound, or with `sectionName` the inbound whose `name` (else its port as a string) equals it |
//! | `MeshService` | the inbounds whose `kuma.io/service` tag equals `name` |
//! | `MeshServiceSubset` | the inbounds whose tags match `kuma.io/service: name` plus `tags` |
//! | `MeshGateway`, `MeshHTTPRoute`, others | nothing here (they need other resources resolved first) |
//!
//! A delegated gateway (`networking.gateway`) has no inbounds: it is selected when the tag selector
//! matches the gateway's tags. A policy created in one zone (`kuma.io/origin: zone` + `kuma.io/zone`)
//! does not select a zone-originated proxy of another zone. A policy applies when it selects at
//! least one inbound, or the delegated gateway.
//!
//! # Order
//! Policies are sorted least specific first (the later wins when folding):
//! 1. top-level kind, Kuma's order: Mesh < Dataplane < MeshSubset < MeshGateway < MeshService <
//!    MeshExternalService < MeshMultiZoneService < MeshServiceSubset < MeshHTTPRoute
//!    (`api/common/v1alpha1/targetref.go`, `order`); between two `Dataplane` refs, by labels < by
//!    name, then without < with `sectionName` (`CompareDataplaneKind`);
//! 2. origin: `global` < no origin label < `zone` (a zone's own policy wins; `ResourceOrigin.Compare`);
//! 3. `kuma.io/policy-role`: system < producer < consumer < workload-owner (Kubernetes namespaces);
//! 4. name (`kuma.io/display-name` when set), *descending*: of two equal policies the one whose
//!    name is lexicographically smaller is merged last and wins (MADR 054, `CompareByDisplayName`).
//!
//! `to` entries are sorted with the same keys, the entry's kind (same order; for `MeshService`,
//! without < with `sectionName`) coming after the role and before the name
//! (`rules/outbound/sort.go`). `default` blocks are then folded with [`fold_confs`].

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::kind::Kind;
use crate::kinds::dataplane::{DataplaneDoc, Tags};
use crate::labels::{DISPLAY_NAME_LABEL, ORIGIN_LABEL, POLICY_ROLE_LABEL, SERVICE_TAG, ZONE_LABEL};
use crate::policies::common::{Match, SpiffeIdMatchType};
use crate::resource::Resource;
use crate::target_ref::{ProxyType, TargetRef, TargetRefKind};
use crate::validate::Violations;
use crate::{FieldPath, quirks};

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// One inbound of a proxy, as policy matching sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundView {
    /// The inbound's `name`, if any.
    pub name: Option<String>,
    /// The inbound's `port`.
    pub port: Option<i64>,
    pub tags: Tags,
}

impl InboundView {
    /// The name a `sectionName` selects this inbound by: its `name`, else its port.
    pub fn section_name(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => self.port.map(|p| p.to_string()).unwrap_or_default(),
        }
    }
}

/// A proxy (a Dataplane) as policy matching sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyView {
    pub mesh: String,
    /// The Dataplane's name.
    pub name: String,
    /// The Dataplane's labels (`kuma.io/origin`, `kuma.io/zone`, user labels...).
    pub labels: BTreeMap<String, String>,
    pub inbounds: Vec<InboundView>,
    /// The tags of `networking.gateway` when the proxy is a gateway.
    pub gateway: Option<Tags>,
}

impl ProxyView {
    /// The view of a Dataplane resource's typed document.
    pub fn from_dataplane(
        mesh: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        dp: &DataplaneDoc,
    ) -> Self {
        let networking = dp.networking.clone().unwrap_or_default();
        ProxyView {
            mesh: mesh.to_string(),
            name: name.to_string(),
            labels: labels.clone(),
            inbounds: networking
                .inbound
                .iter()
                .map(|i| InboundView {
                    name: i.name.clone(),
                    port: i.port,
                    tags: i.tags.clone(),
                })
                .collect(),
            gateway: networking.gateway.as_ref().map(|g| g.tags.clone()),
        }
    }

    fn proxy_type(&self) -> ProxyType {
        if self.gateway.is_some() {
            ProxyType::Gateway
        } else {
            ProxyType::Sidecar
        }
    }
}

/// A `to` / `from` entry: its targetRef and its `default` as written.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryView {
    pub target_ref: TargetRef,
    pub default: Value,
}

/// A `rules` entry: its identity matches (empty: every client) and its `default` as written.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub matches: Vec<Match>,
    pub default: Value,
}

/// A targetRef policy of any kind, reduced to what matching needs; `default` blocks stay as
/// written (JSON), to be folded and then parsed into the kind's typed conf.
#[derive(Debug, Clone)]
pub struct PolicyView {
    pub kind: Kind,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The top-level targetRef; `None` means the whole mesh.
    pub target_ref: Option<TargetRef>,
    pub to: Vec<EntryView>,
    pub from: Vec<EntryView>,
    pub rules: Vec<RuleView>,
    /// `spec.default` of single-item policies (MeshTrace, MeshMetric, MeshProxyPatch...).
    pub default: Option<Value>,
}

impl PolicyView {
    /// Reads a stored policy (already validated). Entries without a targetRef are skipped.
    pub fn from_resource(r: &Resource) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let written = Value::Object(r.spec.clone());
        let doc = quirks::typed_view(r.kind, &written, &mut v).unwrap_or(written);
        let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
        let at = FieldPath::root().field("spec");
        let target_ref = match spec.get("targetRef") {
            None | Some(Value::Null) => None,
            Some(t) => match serde_json::from_value::<TargetRef>(t.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    v.add(&at.field("targetRef"), e.to_string());
                    None
                }
            },
        };
        let entries = |field: &str, v: &mut Violations| -> Vec<EntryView> {
            let mut out = Vec::new();
            for (i, e) in items(&spec, field).iter().enumerate() {
                match e.get("targetRef").cloned().map(serde_json::from_value) {
                    Some(Ok(target_ref)) => out.push(EntryView {
                        target_ref,
                        default: e.get("default").cloned().unwrap_or(Value::Null),
                    }),
                    Some(Err(err)) => v.add(
                        &at.field(field).index(i).field("targetRef"),
                        err.to_string(),
                    ),
                    None => {}
                }
            }
            out
        };
        let to = entries("to", &mut v);
        let from = entries("from", &mut v);
        let mut rules = Vec::new();
        for (i, e) in items(&spec, "rules").iter().enumerate() {
            let matches = match e.get("matches") {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(m) => serde_json::from_value::<Vec<Match>>(m.clone()),
            };
            match matches {
                Ok(matches) => rules.push(RuleView {
                    matches,
                    default: e.get("default").cloned().unwrap_or(Value::Null),
                }),
                Err(err) => v.add(
                    &at.field("rules").index(i).field("matches"),
                    err.to_string(),
                ),
            }
        }
        v.into_result()?;
        Ok(PolicyView {
            kind: r.kind,
            name: r.name.clone(),
            labels: r.labels.clone(),
            target_ref,
            to,
            from,
            rules,
            default: spec.get("default").cloned(),
        })
    }

    /// `kuma.io/display-name` when set, the name otherwise.
    pub fn display_name(&self) -> &str {
        self.labels
            .get(DISPLAY_NAME_LABEL)
            .map_or(self.name.as_str(), String::as_str)
    }

    fn top_kind(&self) -> TargetRefKind {
        self.target_ref
            .as_ref()
            .map_or(TargetRefKind::Mesh, |t| t.kind.clone())
    }
}

fn items(spec: &Value, field: &str) -> Vec<Value> {
    spec.get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Selection
// ---------------------------------------------------------------------------------------------

/// What a policy's top-level targetRef selects on one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Indexes into [`ProxyView::inbounds`].
    pub inbounds: Vec<usize>,
    /// The (delegated) gateway itself is selected.
    pub gateway: bool,
}

impl Selection {
    /// Whether the policy applies to the proxy at all.
    pub fn applies(&self) -> bool {
        !self.inbounds.is_empty() || self.gateway
    }
}

/// Whether every tag of `selector` is in `tags` with the same value (`*` matches any value); an
/// empty selector matches everything (Kuma's `TagSelector.Matches`).
pub fn tags_match(selector: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(k, v)| tags.get(k).is_some_and(|t| v == "*" || t == v))
}

/// The inbounds (and gateway) of `proxy` that `policy`'s top-level targetRef selects.
pub fn select(policy: &PolicyView, proxy: &ProxyView) -> Selection {
    if !selected_by_zone(policy, proxy) {
        return Selection::default();
    }
    let mesh = TargetRef::mesh();
    let t = policy.target_ref.as_ref().unwrap_or(&mesh);
    let proxy_type_ok = t
        .proxy_types
        .as_ref()
        .is_none_or(|p| p.is_empty() || p.contains(&proxy.proxy_type()));
    let by_tags = |selector: BTreeMap<String, String>| Selection {
        inbounds: (0..proxy.inbounds.len())
            .filter(|&i| tags_match(&selector, &proxy.inbounds[i].tags))
            .collect(),
        gateway: proxy
            .gateway
            .as_ref()
            .is_some_and(|g| tags_match(&selector, g)),
    };
    match t.kind {
        TargetRefKind::Mesh if proxy_type_ok => by_tags(BTreeMap::new()),
        TargetRefKind::MeshSubset if proxy_type_ok => by_tags(t.tags.clone().unwrap_or_default()),
        TargetRefKind::MeshService => by_tags(service_selector(t)),
        TargetRefKind::MeshServiceSubset => {
            let mut selector = service_selector(t);
            selector.extend(t.tags.clone().unwrap_or_default());
            by_tags(selector)
        }
        TargetRefKind::Dataplane => {
            let name = t.name.as_deref().unwrap_or_default();
            let all = name.is_empty()
                && t.namespace.as_deref().unwrap_or_default().is_empty()
                && t.labels.is_none();
            let by_name = !name.is_empty() && name == proxy.name;
            let by_labels = t
                .labels
                .as_ref()
                .is_some_and(|l| l.iter().all(|(k, v)| proxy.labels.get(k) == Some(v)));
            if !(all || by_name || by_labels) {
                return Selection::default();
            }
            let section = t.section_name.as_deref().unwrap_or_default();
            Selection {
                inbounds: (0..proxy.inbounds.len())
                    .filter(|&i| section.is_empty() || proxy.inbounds[i].section_name() == section)
                    .collect(),
                gateway: proxy.gateway.is_some(),
            }
        }
        _ => Selection::default(),
    }
}

fn service_selector(t: &TargetRef) -> BTreeMap<String, String> {
    BTreeMap::from([(SERVICE_TAG.to_string(), t.name.clone().unwrap_or_default())])
}

/// Kuma's `dppSelectedByZone`: a zone-originated policy naming its zone only selects proxies of
/// that zone (proxies without a zone origin are selected by every policy).
fn selected_by_zone(policy: &PolicyView, proxy: &ProxyView) -> bool {
    if proxy.labels.get(ORIGIN_LABEL).is_none_or(|o| o == "global") {
        return true;
    }
    if policy.labels.get(ORIGIN_LABEL).map(String::as_str) != Some("zone") {
        return true;
    }
    match policy.labels.get(ZONE_LABEL) {
        None => true,
        Some(zone) => proxy.labels.get(ZONE_LABEL) == Some(zone),
    }
}

// ---------------------------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------------------------

/// Kuma's specificity rank of a targetRef kind (`order` in `api/common/v1alpha1/targetref.go`).
pub fn kind_rank(kind: &TargetRefKind) -> u8 {
    match kind {
        TargetRefKind::Mesh => 1,
        TargetRefKind::Dataplane => 2,
        TargetRefKind::MeshSubset => 3,
        TargetRefKind::MeshGateway => 4,
        TargetRefKind::MeshService => 5,
        TargetRefKind::MeshExternalService => 6,
        TargetRefKind::MeshMultiZoneService => 7,
        TargetRefKind::MeshServiceSubset => 8,
        TargetRefKind::MeshHTTPRoute => 9,
        TargetRefKind::Unknown(_) => 0,
    }
}

fn compare_dataplane_refs(a: Option<&TargetRef>, b: Option<&TargetRef>) -> Ordering {
    let (Some(a), Some(b)) = (a, b) else {
        return Ordering::Equal;
    };
    if a.kind != TargetRefKind::Dataplane || b.kind != TargetRefKind::Dataplane {
        return Ordering::Equal;
    }
    let by_name = |t: &TargetRef| t.name.as_deref().is_some_and(|n| !n.is_empty());
    let by_labels = |t: &TargetRef| t.labels.is_some();
    let has_section = |t: &TargetRef| t.section_name.as_deref().is_some_and(|s| !s.is_empty());
    if by_name(a) && by_labels(b) {
        return Ordering::Greater;
    }
    if by_labels(a) && by_name(b) {
        return Ordering::Less;
    }
    has_section(a).cmp(&has_section(b))
}

fn origin_rank(p: &PolicyView) -> u8 {
    match p.labels.get(ORIGIN_LABEL).map(String::as_str) {
        Some("global") => 1,
        Some("zone") => 3,
        _ => 2,
    }
}

fn role_rank(p: &PolicyView) -> u8 {
    match p.labels.get(POLICY_ROLE_LABEL).map(String::as_str) {
        Some("system") => 1,
        Some("producer") => 2,
        Some("consumer") => 3,
        Some("workload-owner") => 4,
        _ => 0,
    }
}

/// Compares policies by specificity without the name (kind, Dataplane ref, origin, role).
fn compare_attributes(a: &PolicyView, b: &PolicyView) -> Ordering {
    kind_rank(&a.top_kind())
        .cmp(&kind_rank(&b.top_kind()))
        .then_with(|| compare_dataplane_refs(a.target_ref.as_ref(), b.target_ref.as_ref()))
        .then_with(|| origin_rank(a).cmp(&origin_rank(b)))
        .then_with(|| role_rank(a).cmp(&role_rank(b)))
}

/// Kuma's policy order: least specific first, so that the last one wins when folding.
pub fn compare_policies(a: &PolicyView, b: &PolicyView) -> Ordering {
    compare_attributes(a, b).then_with(|| b.display_name().cmp(a.display_name()))
}

/// The policies that apply to `proxy`, least specific first, with what each selects.
pub fn matching_policies<'a>(
    policies: &'a [PolicyView],
    proxy: &ProxyView,
) -> Vec<(&'a PolicyView, Selection)> {
    let mut out: Vec<_> = policies
        .iter()
        .map(|p| (p, select(p, proxy)))
        .filter(|(_, s)| s.applies())
        .collect();
    out.sort_by(|(a, _), (b, _)| compare_policies(a, b));
    out
}

fn selecting_inbound<'a>(
    policies: &'a [PolicyView],
    proxy: &ProxyView,
    inbound: usize,
) -> Vec<&'a PolicyView> {
    matching_policies(policies, proxy)
        .into_iter()
        .filter(|(_, s)| s.inbounds.contains(&inbound))
        .map(|(p, _)| p)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Folding
// ---------------------------------------------------------------------------------------------

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes a key, anything else
/// (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Folds `default` blocks the way Kuma's `merge.Confs` does: RFC 7386 merge patch in order (the
/// later wins), except that a written `null` counts as absent (Kuma merges its typed confs, where
/// null and absent are the same) and that arrays under keys starting with `append` (MeshMetric
/// `appendProfiles`, MeshPassthrough `appendMatch`, MeshProxyPatch `appendModifications`) are
/// concatenated instead of replaced. `None` when there is nothing to fold.
pub fn fold_confs<'a>(confs: impl IntoIterator<Item = &'a Value>) -> Option<Value> {
    let mut out: Option<Value> = None;
    for conf in confs {
        let conf = strip_nulls(conf);
        match &mut out {
            None => out = Some(conf),
            Some(acc) => {
                let appended = collect_appends(acc, &conf);
                merge_patch(acc, &conf);
                for (path, list) in appended {
                    set_path(acc, &path, Value::Array(list));
                }
            }
        }
    }
    out
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `append*` arrays of `acc` and `patch` concatenated, by path (objects only, as in Kuma).
fn collect_appends(acc: &Value, patch: &Value) -> Vec<(Vec<String>, Vec<Value>)> {
    let mut out = Vec::new();
    walk_appends(acc, patch, &mut Vec::new(), &mut out);
    out
}

fn walk_appends(
    acc: &Value,
    patch: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Vec<Value>)>,
) {
    let Value::Object(p) = patch else { return };
    for (k, pv) in p {
        let av = acc.get(k).unwrap_or(&Value::Null);
        path.push(k.clone());
        match pv {
            Value::Array(list) if k.starts_with("append") => {
                let mut all = av.as_array().cloned().unwrap_or_default();
                all.extend(list.iter().cloned());
                out.push((path.clone(), all));
            }
            Value::Object(_) => walk_appends(av, pv, path, out),
            _ => {}
        }
        path.pop();
    }
}

fn set_path(target: &mut Value, path: &[String], value: Value) {
    let mut cur = target;
    for (i, k) in path.iter().enumerate() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == path.len() {
            obj.insert(k.clone(), value);
            return;
        }
        cur = obj.entry(k.clone()).or_insert(Value::Object(Map::new()));
    }
}

/// Parses a folded conf into the policy's typed conf.
pub fn parse_conf<C: DeserializeOwned>(conf: &Value) -> Result<C, serde_json::Error> {
    serde_json::from_value(conf.clone())
}

// ---------------------------------------------------------------------------------------------
// Inbound rules (`from`)
// ---------------------------------------------------------------------------------------------

/// A set of clients by tags: all the tags must match; empty selects every client.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubsetSelector(pub BTreeMap<String, String>);

impl SubsetSelector {
    /// Whether a client with these tags is in the subset.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        tags_match(&self.0, tags)
    }

    /// Whether every client of `self` is in `other` (`other`'s tags are a subset of ours).
    pub fn within(&self, other: &SubsetSelector) -> bool {
        other.0.iter().all(|(k, v)| self.0.get(k) == Some(v))
    }

    fn union(&self, other: &SubsetSelector) -> Option<SubsetSelector> {
        let mut out = self.0.clone();
        for (k, v) in &other.0 {
            match out.get(k) {
                Some(x) if x != v => return None,
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Some(SubsetSelector(out))
    }

    /// The subset a `from` targetRef selects (Kuma's `asSubset`): Mesh is everyone, MeshSubset its
    /// tags, MeshService `kuma.io/service: name`, MeshServiceSubset both. Other kinds: `None`.
    pub fn of(t: &TargetRef) -> Option<SubsetSelector> {
        let tags = t.tags.clone().unwrap_or_default();
        match t.kind {
            TargetRefKind::Mesh => Some(SubsetSelector::default()),
            TargetRefKind::MeshSubset => Some(SubsetSelector(tags)),
            TargetRefKind::MeshService => Some(SubsetSelector(service_selector(t))),
            TargetRefKind::MeshServiceSubset => {
                let mut s = service_selector(t);
                s.extend(tags);
                Some(SubsetSelector(s))
            }
            _ => None,
        }
    }
}

/// A merged conf for a subset of clients. Rules come most specific first: the first whose subset
/// matches a client's tags is the one that applies to it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRule<C> {
    pub subset: SubsetSelector,
    pub conf: C,
    /// Names of the policies that contributed, in merge order.
    pub origins: Vec<String>,
}

impl InboundRule<Value> {
    /// The same rule with its conf parsed into the policy's typed conf.
    pub fn typed<C: DeserializeOwned>(&self) -> Result<InboundRule<C>, serde_json::Error> {
        Ok(InboundRule {
            subset: self.subset.clone(),
            conf: parse_conf(&self.conf)?,
            origins: self.origins.clone(),
        })
    }
}

/// Kuma's inbound rules of one inbound from the `from` entries of the policies selecting it.
///
/// Kuma (`BuildRules`, MADR 007) splits clients into subsets with negated tags; the same result is
/// reached here with positive subsets read first-match: every union of compatible entry subsets
/// is a rule whose conf folds, in policy order, the entries whose subset contains it; rules are
/// sorted by number of tags, most first. For any client, the first matching rule is the union of
/// all entry subsets it belongs to, i.e. exactly the entries that concern it.
pub fn inbound_rules(
    policies: &[PolicyView],
    proxy: &ProxyView,
    inbound: usize,
) -> Vec<InboundRule<Value>> {
    let mut entries: Vec<(SubsetSelector, &Value, &str)> = Vec::new();
    for p in selecting_inbound(policies, proxy, inbound) {
        for e in &p.from {
            if let Some(s) = SubsetSelector::of(&e.target_ref) {
                entries.push((s, &e.default, &p.name));
            }
        }
    }
    let mut subsets: Vec<SubsetSelector> = Vec::new();
    for (s, _, _) in &entries {
        if !subsets.contains(s) {
            subsets.push(s.clone());
        }
    }
    let mut i = 0;
    while i < subsets.len() {
        for j in 0..i {
            if let Some(u) = subsets[i].union(&subsets[j])
                && !subsets.contains(&u)
            {
                subsets.push(u);
            }
        }
        i += 1;
    }
    subsets.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
    subsets
        .into_iter()
        .filter_map(|ss| {
            let relevant: Vec<_> = entries.iter().filter(|(s, _, _)| ss.within(s)).collect();
            let conf = fold_confs(relevant.iter().map(|(_, c, _)| *c))?;
            let mut origins: Vec<String> = Vec::new();
            for (_, _, name) in &relevant {
                if !origins.iter().any(|o| o == name) {
                    origins.push(name.to_string());
                }
            }
            Some(InboundRule {
                subset: ss,
                conf,
                origins,
            })
        })
        .collect()
}

/// The conf of the first rule matching a client's tags.
pub fn conf_for_client<'a, C>(
    rules: &'a [InboundRule<C>],
    tags: &BTreeMap<String, String>,
) -> Option<&'a C> {
    rules
        .iter()
        .find(|r| r.subset.matches(tags))
        .map(|r| &r.conf)
}

// ---------------------------------------------------------------------------------------------
// Inbound rules (`rules`)
// ---------------------------------------------------------------------------------------------

/// One `rules[]` entry for one of its matches (Kuma's `inbound.Rule`): Kuma keeps them apart
/// rather than merging them.
#[derive(Debug, Clone)]
pub struct MatchRule {
    /// `None`: every client.
    pub matches: Option<Match>,
    pub conf: Value,
    pub origin: String,
}

/// The `rules[]` entries of the policies selecting an inbound, each match on its own, ordered as
/// Kuma does (`rules/inbound/sort.go`): policies in [`compare_policies`] order, then, stably, by
/// match: with a SPIFFE ID first (Exact before Prefix), then with an SNI, then catch-alls.
pub fn inbound_match_rules(
    policies: &[PolicyView],
    proxy: &ProxyView,
    inbound: usize,
) -> Vec<MatchRule> {
    let mut out = Vec::new();
    for p in selecting_inbound(policies, proxy, inbound) {
        for r in &p.rules {
            if r.matches.is_empty() {
                out.push(MatchRule {
                    matches: None,
                    conf: r.default.clone(),
                    origin: p.name.clone(),
                });
            }
            for m in &r.matches {
                out.push(MatchRule {
                    matches: Some(m.clone()),
                    conf: r.default.clone(),
                    origin: p.name.clone(),
                });
            }
        }
    }
    let score = |m: &Option<Match>| {
        let m = m.as_ref();
        let spiffe = m
            .and_then(|m| m.spiffe_id.as_ref())
            .map_or(0, |s| match s.match_type {
                Some(SpiffeIdMatchType::Exact) => 3,
                Some(SpiffeIdMatchType::Prefix) => 2,
                Some(SpiffeIdMatchType::Unknown(_)) | None => 1,
            });
        let sni = m.is_some_and(|m| m.sni.is_some());
        (spiffe, sni)
    };
    out.sort_by_key(|r| std::cmp::Reverse(score(&r.matches)));
    out
}

/// The fold of the catch-all `rules` (no matches), in order (Kuma's `MatchesAllIncomingTraffic`).
pub fn catch_all_conf(rules: &[MatchRule]) -> Option<Value> {
    fold_confs(
        rules
            .iter()
            .filter(|r| r.matches.is_none())
            .map(|r| &r.conf),
    )
}

// ---------------------------------------------------------------------------------------------
// Outbound (`to`) and single-item policies
// ---------------------------------------------------------------------------------------------

/// Where outbound traffic goes, as a `to` entry names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// Every destination (`kind: Mesh`).
    Mesh,
    /// One destination by kind and name (MeshService, MeshExternalService, MeshMultiZoneService);
    /// `section_name` narrows a MeshService to one port.
    Named {
        kind: String,
        name: String,
        section_name: Option<String>,
    },
}

impl Destination {
    fn of(t: &TargetRef) -> Option<Destination> {
        match t.kind {
            TargetRefKind::Mesh => Some(Destination::Mesh),
            TargetRefKind::MeshService
            | TargetRefKind::MeshExternalService
            | TargetRefKind::MeshMultiZoneService => Some(Destination::Named {
                kind: t.kind.as_str().to_string(),
                name: t.name.clone().filter(|n| !n.is_empty())?,
                section_name: t.section_name.clone().filter(|s| !s.is_empty()),
            }),
            _ => None,
        }
    }

    /// Whether an entry naming `self` configures traffic to `to`.
    fn covers(&self, to: &Destination) -> bool {
        match (self, to) {
            (Destination::Mesh, _) => true,
            (Destination::Named { .. }, Destination::Mesh) => false,
            (
                Destination::Named {
                    kind,
                    name,
                    section_name,
                },
                Destination::Named {
                    kind: k2,
                    name: n2,
                    section_name: s2,
                },
            ) => kind == k2 && name == n2 && (section_name.is_none() || section_name == s2),
        }
    }
}

/// The merged outbound conf for one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRule<C> {
    pub destination: Destination,
    pub conf: C,
    pub origins: Vec<String>,
}

/// The `to` entries of the policies applying to `proxy`, in Kuma's outbound order
/// (`rules/outbound/sort.go`).
fn sorted_to_entries<'a>(
    policies: &'a [PolicyView],
    proxy: &ProxyView,
) -> Vec<(&'a PolicyView, Destination, &'a Value)> {
    let mut out = Vec::new();
    for (p, _) in matching_policies(policies, proxy) {
        for e in &p.to {
            if let Some(d) = Destination::of(&e.target_ref) {
                out.push((p, d, &e.target_ref, &e.default));
            }
        }
    }
    let section = |t: &TargetRef| {
        t.kind == TargetRefKind::MeshService
            && t.section_name.as_deref().is_some_and(|s| !s.is_empty())
    };
    out.sort_by(|(pa, _, ta, _), (pb, _, tb, _)| {
        compare_attributes(pa, pb)
            .then_with(|| kind_rank(&ta.kind).cmp(&kind_rank(&tb.kind)))
            .then_with(|| section(ta).cmp(&section(tb)))
            .then_with(|| pb.display_name().cmp(pa.display_name()))
    });
    out.into_iter().map(|(p, d, _, c)| (p, d, c)).collect()
}

/// The merged outbound conf of every destination the applying policies name, plus
/// [`Destination::Mesh`] (every other destination) when some entry targets the whole mesh.
pub fn outbound_rules(policies: &[PolicyView], proxy: &ProxyView) -> Vec<OutboundRule<Value>> {
    let entries = sorted_to_entries(policies, proxy);
    let mut destinations: Vec<Destination> = entries.iter().map(|(_, d, _)| d.clone()).collect();
    destinations.sort();
    destinations.dedup();
    destinations
        .into_iter()
        .filter_map(|d| outbound_rule(&entries, d))
        .collect()
}

/// The merged outbound conf for traffic to `destination`.
pub fn outbound_conf_for(
    policies: &[PolicyView],
    proxy: &ProxyView,
    destination: &Destination,
) -> Option<OutboundRule<Value>> {
    outbound_rule(&sorted_to_entries(policies, proxy), destination.clone())
}

/// The merged outbound conf of `policies` (all of one kind) for traffic to `destination`,
/// parsed into the kind's `default` type; `None` when no entry concerns it, or when the merge
/// does not parse (stored policies were validated, so that is not expected).
pub fn typed_outbound_conf<C: DeserializeOwned>(
    policies: &[PolicyView],
    proxy: &ProxyView,
    destination: &Destination,
) -> Option<C> {
    let rule = outbound_conf_for(policies, proxy, destination)?;
    serde_json::from_value(rule.conf).ok()
}

fn outbound_rule(
    entries: &[(&PolicyView, Destination, &Value)],
    destination: Destination,
) -> Option<OutboundRule<Value>> {
    let relevant: Vec<_> = entries
        .iter()
        .filter(|(_, d, _)| d.covers(&destination))
        .collect();
    let conf = fold_confs(relevant.iter().map(|(_, _, c)| *c))?;
    let mut origins: Vec<String> = Vec::new();
    for (p, _, _) in &relevant {
        if !origins.contains(&p.name) {
            origins.push(p.name.clone());
        }
    }
    Some(OutboundRule {
        destination,
        conf,
        origins,
    })
}

/// The fold of `spec.default` of single-item policies (MeshTrace, MeshMetric, MeshProxyPatch,
/// MeshPassthrough) applying to `proxy`, in policy order.
pub fn single_item_conf(policies: &[PolicyView], proxy: &ProxyView) -> Option<Value> {
    let matched = matching_policies(policies, proxy);
    fold_confs(matched.iter().filter_map(|(p, _)| p.default.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn policy(kind: &str, name: &str, labels: Value, spec: Value) -> PolicyView {
        let doc =
            json!({"type": kind, "name": name, "mesh": "default", "labels": labels, "spec": spec});
        let r = Resource::from_value(doc).expect("valid policy");
        PolicyView::from_resource(&r).expect("view")
    }

    /// A view of a policy written as given, without validation (the fold does not care which
    /// entry kinds a given policy type accepts).
    fn raw(kind: &str, name: &str, labels: Value, spec: Value) -> PolicyView {
        let r = Resource {
            kind: Kind::from_name(kind).expect("kind"),
            mesh: "default".into(),
            name: name.into(),
            labels: serde_json::from_value(labels).expect("labels"),
            spec: Map::from_iter([("spec".to_string(), spec)]),
            version: 0,
            creation_time: None,
            modification_time: None,
        };
        PolicyView::from_resource(&r).expect("view")
    }

    pub(crate) fn proxy() -> ProxyView {
        let tags = |svc: &str, extra: &[(&str, &str)]| {
            let mut t = BTreeMap::from([(SERVICE_TAG.to_string(), svc.to_string())]);
            t.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            t
        };
        ProxyView {
            mesh: "default".into(),
            name: "web-1".into(),
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            inbounds: vec![
                InboundView {
                    name: Some("http".into()),
                    port: Some(8080),
                    tags: tags("web", &[("version", "v1")]),
                },
                InboundView {
                    name: None,
                    port: Some(9090),
                    tags: tags("admin", &[]),
                },
            ],
            gateway: None,
        }
    }

    fn timeout(name: &str, labels: Value, target_ref: Value, idle: &str) -> PolicyView {
        raw(
            "MeshTimeout",
            name,
            labels,
            json!({"targetRef": target_ref, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}),
        )
    }

    fn names(ps: &[(&PolicyView, Selection)]) -> Vec<String> {
        ps.iter().map(|(p, _)| p.name.clone()).collect()
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut target,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            target,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
        let mut scalar = json!({"a": 1});
        merge_patch(&mut scalar, &json!(["x"]));
        assert_eq!(scalar, json!(["x"]));
    }

    #[test]
    fn fold_treats_null_as_absent_and_appends_append_lists() {
        let a = json!({"idleTimeout": "1s", "http": {"requestTimeout": "2s"}, "appendModifications": [1]});
        let b = json!({"idleTimeout": null, "http": {"streamIdleTimeout": "3s"}, "appendModifications": [2]});
        let c = json!({"tags": ["x"]});
        let d = json!({"tags": ["y"]});
        assert_eq!(
            fold_confs([&a, &b]),
            Some(
                json!({"idleTimeout": "1s", "http": {"requestTimeout": "2s", "streamIdleTimeout": "3s"}, "appendModifications": [1, 2]})
            )
        );
        assert_eq!(fold_confs([&c, &d]), Some(json!({"tags": ["y"]})));
        assert_eq!(fold_confs(std::iter::empty::<&Value>()), None);
    }

    #[test]
    fn policies_are_ordered_by_specificity_origin_then_name() {
        let ps = vec![
            timeout(
                "dp-section",
                json!({}),
                json!({"kind": "Dataplane", "name": "web-1", "sectionName": "http"}),
                "6s",
            ),
            timeout(
                "dp-name",
                json!({}),
                json!({"kind": "Dataplane", "name": "web-1"}),
                "5s",
            ),
            timeout(
                "subset",
                json!({}),
                json!({"kind": "MeshSubset", "tags": {"version": "v1"}}),
                "4s",
            ),
            timeout(
                "dp-labels",
                json!({}),
                json!({"kind": "Dataplane", "labels": {"app": "web"}}),
                "3s",
            ),
            timeout(
                "mesh-zone",
                json!({"kuma.io/origin": "zone"}),
                json!({"kind": "Mesh"}),
                "2s",
            ),
            timeout(
                "mesh-global",
                json!({"kuma.io/origin": "global"}),
                json!({"kind": "Mesh"}),
                "1s",
            ),
            timeout("bbb", json!({}), json!({"kind": "Mesh"}), "1s"),
            timeout("aaa", json!({}), json!({"kind": "Mesh"}), "1s"),
        ];
        let matched = matching_policies(&ps, &proxy());
        assert_eq!(
            names(&matched),
            [
                "mesh-global",
                "bbb",
                "aaa",
                "mesh-zone",
                "dp-labels",
                "dp-name",
                "dp-section",
                "subset"
            ]
        );
        // The most specific policy's conf wins for the whole `to`.
        let rules = outbound_rules(&ps, &proxy());
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].destination, Destination::Mesh);
        assert_eq!(rules[0].conf, json!({"idleTimeout": "4s"}));
    }

    #[test]
    fn name_tie_break_lets_the_smaller_name_win() {
        let ps = vec![
            timeout("aaa", json!({}), json!({"kind": "Mesh"}), "1s"),
            timeout("bbb", json!({}), json!({"kind": "Mesh"}), "2s"),
        ];
        let rules = outbound_rules(&ps, &proxy());
        assert_eq!(rules[0].conf, json!({"idleTimeout": "1s"}));
        assert_eq!(rules[0].origins, ["bbb", "aaa"]);
    }

    #[test]
    fn mesh_subset_selects_inbounds_by_all_tags() {
        let p = |tags: Value| {
            timeout(
                "s",
                json!({}),
                json!({"kind": "MeshSubset", "tags": tags}),
                "1s",
            )
        };
        assert_eq!(select(&p(json!({"version": "v1"})), &proxy()).inbounds, [0]);
        assert_eq!(
            select(&p(json!({"kuma.io/service": "*"})), &proxy()).inbounds,
            [0, 1]
        );
        let none = p(json!({"kuma.io/service": "web", "version": "v2"}));
        assert!(!select(&none, &proxy()).applies());
        let svc = timeout(
            "svc",
            json!({}),
            json!({"kind": "MeshService", "name": "admin"}),
            "1s",
        );
        assert_eq!(select(&svc, &proxy()).inbounds, [1]);
        let sidecars_only = timeout(
            "gw",
            json!({}),
            json!({"kind": "Mesh", "proxyTypes": ["Gateway"]}),
            "1s",
        );
        assert!(!select(&sidecars_only, &proxy()).applies());
    }

    #[test]
    fn section_name_selects_one_inbound_by_name_or_port() {
        let p = |section: &str| {
            policy(
                "MeshTimeout",
                "dp",
                json!({}),
                json!({"targetRef": {"kind": "Dataplane", "name": "web-1", "sectionName": section},
                       "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s"}}]}),
            )
        };
        assert_eq!(select(&p("http"), &proxy()).inbounds, [0]);
        assert_eq!(select(&p("9090"), &proxy()).inbounds, [1]);
        assert!(!select(&p("grpc"), &proxy()).applies());
        let other = policy(
            "MeshTimeout",
            "other",
            json!({}),
            json!({"targetRef": {"kind": "Dataplane", "name": "web-2"},
                   "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s"}}]}),
        );
        assert!(!select(&other, &proxy()).applies());
        // The section-scoped policy only reaches the inbound it names.
        let ps = vec![p("http")];
        assert_eq!(inbound_rules(&ps, &proxy(), 0).len(), 1);
        assert!(inbound_rules(&ps, &proxy(), 1).is_empty());
    }

    #[test]
    fn zone_policies_do_not_select_proxies_of_other_zones() {
        let p = timeout(
            "z",
            json!({"kuma.io/origin": "zone", "kuma.io/zone": "east"}),
            json!({"kind": "Mesh"}),
            "1s",
        );
        let mut west = proxy();
        west.labels.extend([
            ("kuma.io/origin".into(), "zone".into()),
            ("kuma.io/zone".into(), "west".into()),
        ]);
        assert!(!select(&p, &west).applies());
        assert!(select(&p, &proxy()).applies());
    }

    #[test]
    fn inbound_rules_split_clients_into_subsets_most_specific_first() {
        let ps = vec![raw(
            "MeshTimeout",
            "in",
            json!({}),
            json!({"targetRef": {"kind": "Mesh"}, "from": [
                {"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s", "connectionTimeout": "1s"}},
                {"targetRef": {"kind": "MeshService", "name": "a"}, "default": {"idleTimeout": "2s"}},
                {"targetRef": {"kind": "MeshSubset", "tags": {"env": "prod"}}, "default": {"connectionTimeout": "3s"}}
            ]}),
        )];
        let rules = inbound_rules(&ps, &proxy(), 0);
        let subsets: Vec<_> = rules.iter().map(|r| r.subset.0.len()).collect();
        assert_eq!(subsets, [2, 1, 1, 0]);
        let client = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let conf = |c| conf_for_client(&rules, &c).cloned();
        assert_eq!(
            conf(client(&[("kuma.io/service", "a"), ("env", "prod")])),
            Some(json!({"idleTimeout": "2s", "connectionTimeout": "3s"}))
        );
        assert_eq!(
            conf(client(&[("kuma.io/service", "a")])),
            Some(json!({"idleTimeout": "2s", "connectionTimeout": "1s"}))
        );
        assert_eq!(
            conf(client(&[("kuma.io/service", "b")])),
            Some(json!({"idleTimeout": "1s", "connectionTimeout": "1s"}))
        );
        let typed = rules[0]
            .typed::<crate::policies::mesh_timeout::Conf>()
            .expect("typed");
        assert_eq!(typed.conf.idle_timeout.map(|d| d.0), Some("2s".to_string()));
    }

    #[test]
    fn outbound_entries_merge_per_destination() {
        let ps = vec![
            policy(
                "MeshTimeout",
                "zzz",
                json!({}),
                json!({"targetRef": {"kind": "Mesh"}, "to": [
                    {"targetRef": {"kind": "MeshService", "name": "db", "sectionName": "5432"}, "default": {"idleTimeout": "3s"}},
                    {"targetRef": {"kind": "MeshService", "name": "db"}, "default": {"idleTimeout": "2s", "http": {"requestTimeout": "9s"}}}
                ]}),
            ),
            timeout("aaa", json!({}), json!({"kind": "Mesh"}), "1s"),
        ];
        let named = |section: Option<&str>| Destination::Named {
            kind: "MeshService".into(),
            name: "db".into(),
            section_name: section.map(str::to_string),
        };
        let rules = outbound_rules(&ps, &proxy());
        let dests: Vec<_> = rules.iter().map(|r| r.destination.clone()).collect();
        assert_eq!(dests, [Destination::Mesh, named(None), named(Some("5432"))]);
        assert_eq!(rules[0].conf, json!({"idleTimeout": "1s"}));
        assert_eq!(
            rules[1].conf,
            json!({"idleTimeout": "2s", "http": {"requestTimeout": "9s"}})
        );
        assert_eq!(
            rules[2].conf,
            json!({"idleTimeout": "3s", "http": {"requestTimeout": "9s"}})
        );
        let other = Destination::Named {
            kind: "MeshService".into(),
            name: "cache".into(),
            section_name: None,
        };
        assert_eq!(
            outbound_conf_for(&ps, &proxy(), &other).map(|r| r.conf),
            Some(json!({"idleTimeout": "1s"}))
        );
    }

    #[test]
    fn rules_entries_keep_matches_apart_and_fold_catch_alls() {
        let ps = vec![policy(
            "MeshTimeout",
            "r",
            json!({}),
            json!({"rules": [
                {"default": {"idleTimeout": "1s"}},
                {"matches": [{"sni": {"type": "Exact", "value": "a.local"}},
                             {"spiffeID": {"type": "Prefix", "value": "spiffe://td"}},
                             {"spiffeID": {"type": "Exact", "value": "spiffe://td/a"}}],
                 "default": {"http": {"requestTimeout": "2s"}}},
                {"default": {"connectionTimeout": "3s"}}
            ]}),
        )];
        let rules = inbound_match_rules(&ps, &proxy(), 0);
        let kinds: Vec<_> = rules
            .iter()
            .map(|r| match &r.matches {
                None => "all",
                Some(m) if m.sni.is_some() => "sni",
                Some(m) => match m.spiffe_id.as_ref().and_then(|s| s.match_type.clone()) {
                    Some(SpiffeIdMatchType::Exact) => "exact",
                    _ => "prefix",
                },
            })
            .collect();
        assert_eq!(kinds, ["exact", "prefix", "sni", "all", "all"]);
        assert_eq!(
            catch_all_conf(&rules),
            Some(json!({"idleTimeout": "1s", "connectionTimeout": "3s"}))
        );
    }

    #[test]
    fn no_policy_means_no_rules() {
        assert!(matching_policies(&[], &proxy()).is_empty());
        assert!(inbound_rules(&[], &proxy(), 0).is_empty());
        assert!(outbound_rules(&[], &proxy()).is_empty());
        assert_eq!(single_item_conf(&[], &proxy()), None);
    }

    #[test]
    fn proxy_view_reads_a_dataplane() {
        let doc = json!({"type": "Dataplane", "name": "dp-1", "mesh": "default", "labels": {"team": "a"},
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "name": "http", "tags": {"kuma.io/service": "web"}}]}});
        let r = Resource::from_value(doc).expect("valid");
        let dp: DataplaneDoc =
            serde_json::from_value(Value::Object(r.spec.clone())).expect("typed");
        let view = ProxyView::from_dataplane(&r.mesh, &r.name, &r.labels, &dp);
        assert_eq!(view.inbounds[0].section_name(), "http");
        assert_eq!(view.labels["team"], "a");
        assert!(view.gateway.is_none());
    }
}
