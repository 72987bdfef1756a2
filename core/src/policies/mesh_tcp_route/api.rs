//! MeshTCPRoute: TCP routing of the selected proxies' outbound traffic (or a MeshGateway's
//! listeners): connections to a destination are split across weighted backends.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    BACKEND_KINDS, BackendRef, DefaultRule, PolicyDoc, TopLevelOpts, check_entry_target_ref,
    check_top_level, top_level_kind,
};
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::validate::{Validate, Violations};

/// The `MeshTcpRoute` document: its spec is all that is kind-specific.
pub type MeshTcpRouteDoc = PolicyDoc<MeshTcpRouteSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTcpRouteSpec {
    /// The proxies (or gateway) whose traffic is routed; the whole mesh when absent.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub to: Option<Vec<To>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct To {
    /// The destination whose traffic is routed. Required.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Exactly one rule.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

pub type Rule = DefaultRule<RuleConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConf {
    /// Where connections go, split by weight. Required.
    #[serde(default)]
    pub backend_refs: Option<Vec<BackendRef>>,
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
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
];
const TO_KINDS_GATEWAY: &[K] = &[K::Mesh];

impl Validate for MeshTcpRouteSpec {
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
        let kinds = if top_level_kind(&self.target_ref) == K::MeshGateway {
            TO_KINDS_GATEWAY
        } else {
            TO_KINDS
        };
        let to = self.to.as_deref().unwrap_or_default();
        if to.is_empty() {
            v.add(
                &at.field("to"),
                "must be defined: a route needs at least one 'to' entry",
            );
        }
        for (i, t) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&t.target_ref, &at.field("targetRef"), kinds, v);
            if t.rules.len() != 1 {
                v.add(
                    &at.field("rules"),
                    format!("must have exactly one rule (got {})", t.rules.len()),
                );
            }
            for (j, r) in t.rules.iter().enumerate() {
                let at = at
                    .field("rules")
                    .index(j)
                    .field("default")
                    .field("backendRefs");
                match r.default.backend_refs.as_deref() {
                    None | Some([]) => v.add(&at, "must be defined"),
                    Some(refs) => {
                        for (k, b) in refs.iter().enumerate() {
                            b.check(&at.index(k), BACKEND_KINDS, v);
                        }
                    }
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
type: MeshTCPRoute
name: full
spec:
  targetRef: {kind: Dataplane, labels: {app: frontend}}
  to:
    - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo, sectionName: tcp, _port: 3001}
      rules:
        - default:
            backendRefs:
              - {kind: MeshService, name: backend, namespace: kuma-demo, port: 3001, weight: 90}
              - {kind: MeshServiceSubset, name: backend_kuma-demo_svc_3001, tags: {version: v2}, weight: 5}
              - {kind: MeshExternalService, name: legacy, weight: 3}
              - {kind: MeshMultiZoneService, name: backend-all, port: 3001, weight: 2}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshTCPRoute
name: bad
spec:
  targetRef: {kind: MeshHTTPRoute, name: r}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - default:
            backendRefs:
              - {kind: Mesh}
              - {kind: MeshService, name: b, port: 0}
        - default: {}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.targetRef.kind",
                "spec.to[0].targetRef.kind",
                "spec.to[0].rules",
                "spec.to[0].rules[0].default.backendRefs[0].kind",
                "spec.to[0].rules[0].default.backendRefs[1].port",
                "spec.to[0].rules[1].default.backendRefs",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn gateway_routes_target_the_mesh() {
        let v = refused(
            r#"
type: MeshTCPRoute
name: bad
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - default:
            backendRefs: [{kind: MeshService, name: backend, weight: 1}]
"#,
        );
        assert_eq!(fields(&v), ["spec.to[0].targetRef.kind"], "{v:?}");
        assert!(v[0].1.contains("allowed: Mesh"), "{v:?}");
        let v = refused(
            r#"
type: MeshTCPRoute
name: bad
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - default:
            backendRefs: [{kind: MeshService, name: backend, weight: -1}]
"#,
        );
        assert_eq!(
            fields(&v),
            ["spec.to[0].rules[0].default.backendRefs[0].weight"],
            "{v:?}"
        );
        assert!(v[0].1.contains("non-negative"), "{v:?}");
    }

    #[test]
    fn refuses_unknown_fields_and_empty_routes() {
        let v = refused(
            r#"
type: MeshTCPRoute
name: bad
spec:
  targetRef: {kind: Mesh}
  from: []
"#,
        );
        assert_eq!(fields(&v), ["spec.from", "spec.to"], "{v:?}");
    }
}
