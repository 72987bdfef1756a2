//! MeshTrafficPermission: which clients may reach the selected proxies' inbounds (allow, deny, or
//! allow while logging what a deny would have refused), by client tags (`from`) or by client identity
//! (`rules` with SPIFFE ID / SNI matches).

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    FromEntry, Match, PolicyDoc, TopLevelOpts, check_entry_target_ref, check_top_level,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind};
use crate::validate::{Validate, Violations};

/// The `MeshTrafficPermission` document: its spec is all that is kind-specific.
pub type MeshTrafficPermissionDoc = PolicyDoc<MeshTrafficPermissionSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTrafficPermissionSpec {
    /// The proxies whose inbounds are protected; the whole mesh when absent.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Permissions by client (deprecated in Kuma in favour of `rules`).
    #[serde(default)]
    pub from: Option<Vec<From>>,
    /// Permissions by client identity.
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
}

/// Clients selected by targetRef and what happens to their requests.
pub type From = FromEntry<Conf>;

string_enum! {
    /// What happens to a client's traffic.
    pub enum Action {
        Allow => "Allow",
        Deny => "Deny",
        AllowWithShadowDeny => "AllowWithShadowDeny",
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    #[serde(default)]
    pub action: Option<Action>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub default: RuleConf,
}

/// Identity-based lists. A client matching `deny` is refused even if it matches `allow`;
/// `allowWithShadowDeny` lets it through but logs it as denied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConf {
    #[serde(default)]
    pub deny: Option<Vec<Match>>,
    #[serde(default)]
    pub allow_with_shadow_deny: Option<Vec<Match>>,
    #[serde(default)]
    pub allow: Option<Vec<Match>>,
}

const TOP_KINDS: &[TargetRefKind] = &[
    TargetRefKind::Mesh,
    TargetRefKind::MeshSubset,
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
    TargetRefKind::Dataplane,
];

const FROM_KINDS: &[TargetRefKind] = &[
    TargetRefKind::Mesh,
    TargetRefKind::MeshSubset,
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
];

impl Validate for MeshTrafficPermissionSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let from = self.from.as_deref().unwrap_or_default();
        let rules = self.rules.as_deref().unwrap_or_default();
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: true,
                gateway_listener_tags: false,
            },
            v,
        );
        if !from.is_empty() && !rules.is_empty() {
            v.add(at, "'from' must be empty when 'rules' is defined");
        }
        if from.is_empty() && rules.is_empty() {
            v.add(at, "at least one of 'from' or 'rules' has to be defined");
        }
        for (i, f) in from.iter().enumerate() {
            let at = at.field("from").index(i);
            check_entry_target_ref(&f.target_ref, &at.field("targetRef"), FROM_KINDS, v);
            let action = at.field("default").field("action");
            match &f.default.action {
                None => v.add(
                    &action,
                    "must be defined (Allow, Deny or AllowWithShadowDeny)",
                ),
                Some(a) => a.validate(&action, v),
            }
        }
        for (i, r) in rules.iter().enumerate() {
            let at = at.field("rules").index(i);
            let d = &r.default;
            let lists = [
                ("deny", &d.deny),
                ("allowWithShadowDeny", &d.allow_with_shadow_deny),
                ("allow", &d.allow),
            ];
            if lists
                .iter()
                .all(|(_, l)| l.as_ref().is_none_or(Vec::is_empty))
            {
                v.add(
                    &at.field("default"),
                    "at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined",
                );
            }
            for (name, list) in lists {
                list.validate(&at.field("default").field(name), v);
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
type: MeshTrafficPermission
name: full
mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels: {app: backend}
    sectionName: http
  rules:
    - default:
        deny:
          - spiffeID: {type: Prefix, value: "spiffe://default.zone/ns/legacy"}
        allowWithShadowDeny:
          - sni: {type: Exact, value: backend.mesh}
        allow:
          - spiffeID: {type: Exact, value: "spiffe://default.zone/ns/test/sa/client"}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
        let doc = parse_document(
            r#"
type: MeshTrafficPermission
name: by-tags
spec:
  targetRef: {kind: MeshSubset, tags: {app: payments}}
  from:
    - targetRef: {kind: MeshService, name: orders}
      default: {action: AllowWithShadowDeny}
    - targetRef: {kind: Mesh}
      default: {action: Deny}
"#,
        )
        .expect("yaml");
        Resource::from_value(doc).expect("valid");
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let v = refused(
            r#"
type: MeshTrafficPermission
name: bad
spec:
  targetRef: {kind: MeshGateway, name: edge}
  from:
    - targetRef: {kind: Dataplane, name: dp-1}
      default: {action: Maybe}
    - targetRef: {kind: Mesh}
      default: {}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.targetRef.kind",
                "spec.from[0].targetRef.kind",
                "spec.from[0].default.action",
                "spec.from[1].default.action",
            ],
            "{v:?}"
        );
        assert!(v[2].1.contains("Allow, Deny, AllowWithShadowDeny"), "{v:?}");
    }

    #[test]
    fn refuses_mixing_from_and_rules_and_bad_matches() {
        let v = refused(
            r#"
type: MeshTrafficPermission
name: bad
spec:
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
  rules:
    - default:
        allow:
          - spiffeID: {type: Suffix, value: "http://nope"}
    - default: {}
"#,
        );
        assert_eq!(
            fields(&v),
            [
                "spec",
                "spec.rules[0].default.allow[0].spiffeID.type",
                "spec.rules[0].default.allow[0].spiffeID.value",
                "spec.rules[1].default",
            ],
            "{v:?}"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_empty_policies() {
        let v = refused(
            r#"
type: MeshTrafficPermission
name: bad
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: Mesh}
"#,
        );
        assert_eq!(fields(&v), ["spec.to", "spec"], "{v:?}");
        assert!(v[1].1.contains("at least one of"), "{v:?}");
    }
}
