//! MeshLoadBalancingStrategy: how the selected proxies balance requests across the endpoints of a
//! destination (round robin, least request, ring hash, random, Maglev, hash policies) and how they
//! prefer endpoints by locality (local zone affinity, cross-zone failover).

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    IntOrString, PolicyDoc, ToEntry, TopLevelOpts, check_entry_target_ref, check_percentage,
    check_top_level, has_entries, require_a_section, top_level_kind,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::types::Duration;
use crate::validate::{Validate, Violations};

/// A MeshLoadBalancingStrategy document (the part after the envelope).
/// The `MeshLoadBalancingStrategy` document: its spec is all that is kind-specific.
pub type MeshLoadBalancingStrategyDoc = PolicyDoc<MeshLoadBalancingStrategySpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshLoadBalancingStrategySpec {
    /// The proxies configured; the whole mesh when left out.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Per destination.
    #[serde(default)]
    pub to: Option<Vec<LoadBalancingTo>>,
}

pub type LoadBalancingTo = ToEntry<Option<LoadBalancingConf>>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancingConf {
    #[serde(default)]
    pub locality_awareness: Option<LocalityAwareness>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    /// Hash policies for RingHash and Maglev; the only field allowed towards a MeshHTTPRoute.
    #[serde(default)]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalityAwareness {
    /// Turn locality-aware balancing off. Default false.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Preferences among endpoints of the local zone.
    #[serde(default)]
    pub local_zone: Option<LocalZone>,
    /// Which other zones to fail over to, in order.
    #[serde(default)]
    pub cross_zone: Option<CrossZone>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalZone {
    /// Tags (in order of priority) whose values the endpoint should share with the client.
    #[serde(default)]
    pub affinity_tags: Option<Vec<AffinityTag>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AffinityTag {
    #[serde(default)]
    pub key: String,
    /// Relative weight; all tags or none must have one. Default: 9 times the next tag's.
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossZone {
    #[serde(default)]
    pub failover: Option<Vec<Failover>>,
    /// Fail over once the share of healthy local endpoints falls below this percentage.
    #[serde(default)]
    pub failover_threshold: Option<FailoverThreshold>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// The zones of the clients this rule is for; all zones when left out.
    #[serde(default)]
    pub from: Option<FromZones>,
    /// Required.
    #[serde(default)]
    pub to: Option<ToZones>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromZones {
    #[serde(default)]
    pub zones: Vec<String>,
}

string_enum! {
    /// Which zones a failover rule targets.
    pub enum ToZoneType {
        None => "None",
        Only => "Only",
        Any => "Any",
        AnyExcept => "AnyExcept",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToZones {
    #[serde(default, rename = "type")]
    pub zone_type: Option<ToZoneType>,
    /// Required with `Only` and `AnyExcept`; not allowed with `Any` and `None`.
    #[serde(default)]
    pub zones: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverThreshold {
    /// Required; 0 (excluded) to 100.
    #[serde(default)]
    pub percentage: Option<IntOrString>,
}

string_enum! {
    pub enum LoadBalancerType {
        RoundRobin => "RoundRobin",
        LeastRequest => "LeastRequest",
        RingHash => "RingHash",
        Random => "Random",
        Maglev => "Maglev",
    }
}

/// The balancing algorithm: `type` plus the settings of that type.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Required.
    #[serde(default, rename = "type")]
    pub lb_type: Option<LoadBalancerType>,
    #[serde(default)]
    pub round_robin: Option<EmptyConf>,
    #[serde(default)]
    pub least_request: Option<LeastRequest>,
    #[serde(default)]
    pub ring_hash: Option<RingHash>,
    #[serde(default)]
    pub random: Option<EmptyConf>,
    #[serde(default)]
    pub maglev: Option<Maglev>,
}

/// A type without settings (`roundRobin: {}`, `random: {}`).
#[derive(Debug, Clone, Deserialize)]
pub struct EmptyConf {}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeastRequest {
    /// How many random endpoints are compared; at least 2. Default 2.
    #[serde(default)]
    pub choice_count: Option<i64>,
    /// How strongly active requests weigh (a decimal, at least 0). Default 1.0.
    #[serde(default)]
    pub active_request_bias: Option<IntOrString>,
}

string_enum! {
    pub enum HashFunction {
        XxHash => "XXHash",
        MurmurHash2 => "MurmurHash2",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// Default XXHash.
    #[serde(default)]
    pub hash_function: Option<HashFunction>,
    /// 1-8000000. Default 1024.
    #[serde(default)]
    pub min_ring_size: Option<i64>,
    /// 1-8000000. Default 8M.
    #[serde(default)]
    pub max_ring_size: Option<i64>,
    #[serde(default)]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    /// 1-5000011 (Envoy wants a prime). Default 65537.
    #[serde(default)]
    pub table_size: Option<i64>,
    #[serde(default)]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

string_enum! {
    pub enum HashPolicyType {
        Header => "Header",
        Cookie => "Cookie",
        Connection => "Connection",
        SourceIp => "SourceIP",
        QueryParameter => "QueryParameter",
        FilterState => "FilterState",
    }
}

/// What a request is hashed on.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HashPolicy {
    /// Required.
    #[serde(default, rename = "type")]
    pub policy_type: Option<HashPolicyType>,
    /// Stop at this policy when it produced a hash. Default false.
    #[serde(default)]
    pub terminal: Option<bool>,
    #[serde(default)]
    pub header: Option<NamedHash>,
    #[serde(default)]
    pub cookie: Option<CookieHash>,
    #[serde(default)]
    pub connection: Option<ConnectionHash>,
    #[serde(default)]
    pub query_parameter: Option<NamedHash>,
    #[serde(default)]
    pub filter_state: Option<FilterStateHash>,
}

/// A header or query parameter, by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedHash {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CookieHash {
    #[serde(default)]
    pub name: String,
    /// When set, Envoy generates the cookie with this lifetime if it is missing.
    #[serde(default)]
    pub ttl: Option<Duration>,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionHash {
    /// Hash on the source IP address.
    #[serde(default, rename = "sourceIP")]
    pub source_ip: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterStateHash {
    #[serde(default)]
    pub key: String,
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
    K::MeshMultiZoneService,
    K::MeshHTTPRoute,
];
const TO_KINDS_GATEWAY: &[K] = &[K::Mesh, K::MeshService, K::MeshMultiZoneService];
const TO_KINDS_GATEWAY_LB: &[K] = &[K::Mesh];

impl Validate for MeshLoadBalancingStrategySpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let spec = self;
        require_a_section(&[("to", has_entries(&spec.to))], at, v);
        check_top_level(
            &spec.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: false,
                gateway_listener_tags: true,
            },
            v,
        );
        let top = top_level_kind(&spec.target_ref);
        for (i, item) in spec.to.iter().flatten().enumerate() {
            let at = at.field("to").index(i);
            let has_lb = item
                .default
                .as_ref()
                .is_some_and(|d| d.load_balancer.is_some());
            let kinds = match (&top, has_lb) {
                (K::MeshGateway, true) => TO_KINDS_GATEWAY_LB,
                (K::MeshGateway, false) => TO_KINDS_GATEWAY,
                _ => TO_KINDS,
            };
            check_entry_target_ref(&item.target_ref, &at.field("targetRef"), kinds, v);
            if let Some(d) = &item.default {
                d.check(item.target_ref.as_ref(), &at.field("default"), v);
            }
        }
    }
}

impl LoadBalancingConf {
    fn check(&self, target: Option<&TargetRef>, at: &FieldPath, v: &mut Violations) {
        check_hash_policies(&self.hash_policies, &at.field("hashPolicies"), v);
        if target.is_some_and(|t| t.kind == K::MeshHTTPRoute) {
            for (name, set) in [
                ("loadBalancer", self.load_balancer.is_some()),
                ("localityAwareness", self.locality_awareness.is_some()),
            ] {
                if set {
                    v.add(
                        &at.field(name),
                        "must not be set towards a MeshHTTPRoute: only hashPolicies is supported",
                    );
                }
            }
            return;
        }
        if let Some(lb) = &self.load_balancer {
            let lb_at = at.field("loadBalancer");
            lb.validate(&lb_at, v);
            if self.hash_policies.is_some() {
                if lb
                    .ring_hash
                    .as_ref()
                    .is_some_and(|r| r.hash_policies.is_some())
                {
                    v.add(
                        &lb_at.field("ringHash").field("hashPolicies"),
                        "must not be set: hashPolicies is already set at the top of default",
                    );
                }
                if lb
                    .maglev
                    .as_ref()
                    .is_some_and(|m| m.hash_policies.is_some())
                {
                    v.add(
                        &lb_at.field("maglev").field("hashPolicies"),
                        "must not be set: hashPolicies is already set at the top of default",
                    );
                }
            }
        }
        if let Some(la) = &self.locality_awareness {
            la.check(target, &at.field("localityAwareness"), v);
        }
    }
}

impl LocalityAwareness {
    fn check(&self, target: Option<&TargetRef>, at: &FieldPath, v: &mut Violations) {
        if let Some(lz) = &self.local_zone {
            let at = at.field("localZone").field("affinityTags");
            let tags = lz.affinity_tags.as_deref().unwrap_or_default();
            let mut weighted = 0;
            for (i, tag) in tags.iter().enumerate() {
                let at = at.index(i);
                if tag.key.is_empty() {
                    v.add(&at.field("key"), "must not be empty");
                }
                if let Some(w) = tag.weight {
                    weighted += 1;
                    if !(1..=i64::from(u32::MAX)).contains(&w) {
                        v.add(&at.field("weight"), "must be greater than 0");
                    }
                }
            }
            if weighted > 0 && weighted != tags.len() {
                v.add(&at, "all affinity tags or none must have a weight");
            }
        }
        if let Some(cz) = &self.cross_zone {
            let at = at.field("crossZone");
            if let Some(t) = target {
                let has_section = t.section_name.as_deref().is_some_and(|s| !s.is_empty());
                let has_labels = t.labels.as_ref().is_some_and(|l| !l.is_empty());
                if t.kind == K::MeshService && (has_section || has_labels) {
                    v.add(
                        &at,
                        "must not be set: traffic to a MeshService selected by labels or \
                         sectionName stays in its zone",
                    );
                }
            }
            for (i, f) in cz.failover.iter().flatten().enumerate() {
                f.validate(&at.field("failover").index(i), v);
            }
            if let Some(th) = &cz.failover_threshold {
                let at = at.field("failoverThreshold").field("percentage");
                match &th.percentage {
                    Some(p) => check_percentage(p, false, &at, v),
                    None => v.add(&at, "must be defined"),
                }
            }
        }
    }
}

impl Validate for Failover {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(from) = &self.from {
            let at = at.field("from").field("zones");
            if from.zones.is_empty() {
                v.add(&at, "must not be empty");
            }
            for (i, z) in from.zones.iter().enumerate() {
                if z.is_empty() {
                    v.add(&at.index(i), "must not be empty");
                }
            }
        }
        let at = at.field("to");
        let Some(to) = &self.to else {
            v.add(&at, "must be defined");
            return;
        };
        let zones = to.zones.as_deref().unwrap_or_default();
        match &to.zone_type {
            None => v.add(
                &at.field("type"),
                "must be defined: one of None, Only, Any, AnyExcept",
            ),
            Some(t @ (ToZoneType::Any | ToZoneType::None)) if !zones.is_empty() => v.add(
                &at.field("zones"),
                format!("must be empty when type is {}", t.as_str()),
            ),
            Some(t @ (ToZoneType::Only | ToZoneType::AnyExcept)) if zones.is_empty() => v.add(
                &at.field("zones"),
                format!("must not be empty when type is {}", t.as_str()),
            ),
            Some(t) => t.validate(&at.field("type"), v),
        }
    }
}

impl Validate for LoadBalancer {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        use LoadBalancerType as T;
        let set = [
            ("roundRobin", self.round_robin.is_some()),
            ("leastRequest", self.least_request.is_some()),
            ("ringHash", self.ring_hash.is_some()),
            ("random", self.random.is_some()),
            ("maglev", self.maglev.is_some()),
        ];
        match &self.lb_type {
            None => v.add(
                &at.field("type"),
                "must be defined: one of RoundRobin, LeastRequest, RingHash, Random, Maglev",
            ),
            Some(t) => {
                t.validate(&at.field("type"), v);
                if t.is_known() {
                    let wanted = match t {
                        T::RoundRobin => "roundRobin",
                        T::LeastRequest => "leastRequest",
                        T::RingHash => "ringHash",
                        T::Random => "random",
                        _ => "maglev",
                    };
                    for (name, _) in set.iter().filter(|(n, s)| *s && *n != wanted) {
                        v.add(
                            &at.field(name),
                            format!("must not be set when type is {}", t.as_str()),
                        );
                    }
                }
            }
        }
        if let Some(lr) = &self.least_request {
            let at = at.field("leastRequest");
            if let Some(c) = lr.choice_count
                && !(2..=i64::from(u32::MAX)).contains(&c)
            {
                v.add(
                    &at.field("choiceCount"),
                    format!("must be at least 2 (got {c})"),
                );
            }
            if let Some(b) = &lr.active_request_bias {
                let at = at.field("activeRequestBias");
                match b.as_f64() {
                    None => v.add(
                        &at,
                        format!(
                            "must be a number or a string holding a number (got {})",
                            b.0
                        ),
                    ),
                    Some(n) if n < 0.0 => v.add(&at, "must be greater than or equal to 0"),
                    Some(_) => {}
                }
            }
        }
        if let Some(rh) = &self.ring_hash {
            let at = at.field("ringHash");
            rh.hash_function.validate(&at.field("hashFunction"), v);
            for (name, size) in [
                ("minRingSize", rh.min_ring_size),
                ("maxRingSize", rh.max_ring_size),
            ] {
                if let Some(s) = size
                    && !(1..=8_000_000).contains(&s)
                {
                    v.add(
                        &at.field(name),
                        format!("must be in the range 1-8000000 (got {s})"),
                    );
                }
            }
            if let (Some(min), Some(max)) = (rh.min_ring_size, rh.max_ring_size)
                && min > max
            {
                v.add(
                    &at.field("minRingSize"),
                    "must not be greater than maxRingSize",
                );
            }
            check_hash_policies(&rh.hash_policies, &at.field("hashPolicies"), v);
        }
        if let Some(m) = &self.maglev {
            let at = at.field("maglev");
            if let Some(s) = m.table_size
                && !(1..=5_000_011).contains(&s)
            {
                v.add(
                    &at.field("tableSize"),
                    format!("must be in the range 1-5000011 (got {s})"),
                );
            }
            check_hash_policies(&m.hash_policies, &at.field("hashPolicies"), v);
        }
    }
}

fn check_hash_policies(policies: &Option<Vec<HashPolicy>>, at: &FieldPath, v: &mut Violations) {
    policies.validate(at, v);
}

impl Validate for HashPolicy {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        use HashPolicyType as T;
        let Some(t) = &self.policy_type else {
            v.add(
                &at.field("type"),
                "must be defined: one of Header, Cookie, Connection, SourceIP, QueryParameter, FilterState",
            );
            return;
        };
        t.validate(&at.field("type"), v);
        let wanted = match t {
            T::Header => Some(("header", self.header.is_some())),
            T::Cookie => Some(("cookie", self.cookie.is_some())),
            T::Connection | T::SourceIp => Some(("connection", self.connection.is_some())),
            T::QueryParameter => Some(("queryParameter", self.query_parameter.is_some())),
            T::FilterState => Some(("filterState", self.filter_state.is_some())),
            T::Unknown(_) => None,
        };
        if let Some((name, false)) = wanted {
            v.add(
                &at.field(name),
                format!("must be defined when type is {}", t.as_str()),
            );
        }
        if let Some(h) = &self.header
            && h.name.is_empty()
        {
            v.add(&at.field("header").field("name"), "must not be empty");
        }
        if let Some(q) = &self.query_parameter
            && q.name.is_empty()
        {
            v.add(
                &at.field("queryParameter").field("name"),
                "must not be empty",
            );
        }
        if let Some(f) = &self.filter_state
            && f.key.is_empty()
        {
            v.add(&at.field("filterState").field("key"), "must not be empty");
        }
        if let Some(c) = &self.cookie {
            let at = at.field("cookie");
            if c.name.is_empty() {
                v.add(&at.field("name"), "must not be empty");
            }
            c.ttl.validate(&at.field("ttl"), v);
            if let Some(p) = &c.path
                && !p.starts_with('/')
            {
                v.add(&at.field("path"), "must be an absolute path");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::{paths, policy};
    use serde_json::{Value, json};

    fn doc(spec: Value) -> Value {
        policy("MeshLoadBalancingStrategy", "lb", spec)
    }

    #[test]
    fn accepts_a_full_document() {
        let spec = json!({
            "targetRef": {"kind": "Mesh"},
            "to": [
                {"targetRef": {"kind": "MeshService", "name": "backend", "_port": 8080},
                 "default": {
                    "localityAwareness": {
                        "disabled": false,
                        "localZone": {"affinityTags": [{"key": "k8s.io/node", "weight": 90},
                                                       {"key": "k8s.io/az", "weight": 9}]},
                        "crossZone": {
                            "failover": [
                                {"from": {"zones": ["us-1"]}, "to": {"type": "Only", "zones": ["us-2"]}},
                                {"to": {"type": "AnyExcept", "zones": ["us-3"]}},
                                {"to": {"type": "Any"}}],
                            "failoverThreshold": {"percentage": "12.5"}}},
                    "loadBalancer": {"type": "RingHash", "ringHash": {
                        "hashFunction": "MurmurHash2", "minRingSize": 64, "maxRingSize": 1024,
                        "hashPolicies": [
                            {"type": "Header", "header": {"name": "x-user"}, "terminal": true},
                            {"type": "Cookie", "cookie": {"name": "s", "ttl": "1h", "path": "/"}},
                            {"type": "Connection", "connection": {"sourceIP": true}},
                            {"type": "QueryParameter", "queryParameter": {"name": "u"}},
                            {"type": "FilterState", "filterState": {"key": "k"}}]}}}},
                {"targetRef": {"kind": "MeshMultiZoneService", "name": "b"},
                 "default": {"loadBalancer": {"type": "LeastRequest",
                    "leastRequest": {"choiceCount": 3, "activeRequestBias": "0.5"}}}},
                {"targetRef": {"kind": "Mesh"},
                 "default": {"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 65537}},
                    "hashPolicies": [{"type": "SourceIP", "connection": {"sourceIP": true}}]}},
                {"targetRef": {"kind": "MeshHTTPRoute", "name": "route"},
                 "default": {"hashPolicies": [{"type": "Header", "header": {"name": "x"}}]}}
            ]
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let spec = json!({
            "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
            "to": [{
                "targetRef": {"kind": "MeshExternalService", "name": "ext"},
                "default": {
                    "localityAwareness": {
                        "localZone": {"affinityTags": [{"key": "a", "weight": 1}, {"key": ""}]},
                        "crossZone": {
                            "failover": [{"from": {"zones": []}, "to": {"type": "Any", "zones": ["z"]}},
                                         {"to": {"type": "Only"}}, {}],
                            "failoverThreshold": {"percentage": 0}}},
                    "loadBalancer": {"type": "RingHash",
                        "ringHash": {"minRingSize": 0, "hashPolicies": [{"type": "Cookie"}]},
                        "maglev": {"tableSize": 9000000}}
                }
            }]
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.targetRef.kind",
                "spec.to[0].targetRef.kind",
                "spec.to[0].default.loadBalancer.maglev",
                "spec.to[0].default.loadBalancer.ringHash.minRingSize",
                "spec.to[0].default.loadBalancer.ringHash.hashPolicies[0].cookie",
                "spec.to[0].default.loadBalancer.maglev.tableSize",
                "spec.to[0].default.localityAwareness.localZone.affinityTags[1].key",
                "spec.to[0].default.localityAwareness.localZone.affinityTags",
                "spec.to[0].default.localityAwareness.crossZone.failover[0].from.zones",
                "spec.to[0].default.localityAwareness.crossZone.failover[0].to.zones",
                "spec.to[0].default.localityAwareness.crossZone.failover[1].to.zones",
                "spec.to[0].default.localityAwareness.crossZone.failover[2].to",
                "spec.to[0].default.localityAwareness.crossZone.failoverThreshold.percentage",
            ]
        );
    }

    #[test]
    fn route_and_gateway_restrictions() {
        let spec = json!({
            "targetRef": {"kind": "MeshGateway", "name": "edge"},
            "to": [
                {"targetRef": {"kind": "MeshService", "name": "b"},
                 "default": {"loadBalancer": {"type": "Random", "random": {}, "bogus": 1}}},
                {"targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
                 "default": {"loadBalancer": {"type": "Random"}, "localityAwareness": {}}}
            ]
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.to[0].default.loadBalancer.bogus",
                "spec.to[0].targetRef.kind",
                "spec.to[1].targetRef.kind",
                "spec.to[1].default.loadBalancer",
                "spec.to[1].default.localityAwareness",
            ]
        );
        let spec = json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {
            "hashPolicies": [{"type": "Header", "header": {"name": "x"}}],
            "loadBalancer": {"type": "Maglev", "maglev": {"hashPolicies": []}},
            "localityAwareness": {"crossZone": {"failover": [{"to": {"type": "Everywhere"}}]}}}}]});
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.to[0].default.loadBalancer.maglev.hashPolicies",
                "spec.to[0].default.localityAwareness.crossZone.failover[0].to.type",
            ]
        );
    }
}
