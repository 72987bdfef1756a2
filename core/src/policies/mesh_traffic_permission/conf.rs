//! MeshTrafficPermission as an ordered list of decisions for one inbound.
//!
//! Kuma 2.14 (`pkg/plugins/policies/meshtrafficpermission/plugin/v1alpha1/plugin.go`):
//! - without mTLS on the mesh (and no workload identity) the plugin is skipped: every client is
//!   let through, whatever the policies say;
//! - with mTLS, an inbound that no MeshTrafficPermission `from` entry concerns gets `denyRules()`:
//!   every client is refused. Kuma 2.x creates no MeshTrafficPermission with a new mesh (the
//!   `allow-all-<mesh>` it may create is a legacy TrafficPermission, only with
//!   `KUMA_DEFAULTS_CREATE_MESH_ROUTING_RESOURCES=true`, off by default; `pkg/defaults/mesh/mesh.go`),
//!   so a new mTLS mesh denies all traffic until one is applied.
//! - a client no rule selects is refused too (Envoy RBAC allows only what a policy allows).

use std::collections::BTreeMap;

use super::api::{Action, Conf};
use crate::matching::{PolicyView, ProxyView, inbound_rules};

/// One decision: clients whose tags contain `source_tags` (any client when `None`) get `action`.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRuleView {
    pub source_tags: Option<BTreeMap<String, String>>,
    pub action: Action,
}

/// The decisions for `proxy`'s inbound number `inbound` (an index into [`ProxyView::inbounds`]),
/// most specific first: the first rule whose `source_tags` match a client decides. Built from
/// the `from` entries of the MeshTrafficPermissions selecting the inbound (see
/// [`crate::matching::inbound_rules`]); a merged conf without an action, or that does not parse,
/// counts as `Deny`. The list always ends with a catch-all: the merged mesh-wide entry when there
/// is one, otherwise `Deny` (Kuma's default with mTLS on). `policies` are MeshTrafficPermissions;
/// `rules` (SPIFFE ID / SNI lists) are not part of this view.
pub fn inbound_permission_rules(
    policies: &[PolicyView],
    proxy: &ProxyView,
    inbound: usize,
) -> Vec<PermissionRuleView> {
    let mut out: Vec<PermissionRuleView> = inbound_rules(policies, proxy, inbound)
        .into_iter()
        .map(|r| {
            let action = r
                .typed::<Conf>()
                .ok()
                .and_then(|r| r.conf.action)
                .unwrap_or(Action::Deny);
            PermissionRuleView {
                source_tags: (!r.subset.0.is_empty()).then_some(r.subset.0),
                action,
            }
        })
        .collect();
    if out.last().is_none_or(|r| r.source_tags.is_some()) {
        out.push(default_permission());
    }
    out
}

/// What happens to a client no MeshTrafficPermission allows, on a mesh with mTLS: refused.
pub fn default_permission() -> PermissionRuleView {
    PermissionRuleView {
        source_tags: None,
        action: Action::Deny,
    }
}

/// The action for a client with these tags: the first matching rule's.
pub fn decide(rules: &[PermissionRuleView], client_tags: &BTreeMap<String, String>) -> Action {
    rules
        .iter()
        .find(|r| {
            r.source_tags
                .as_ref()
                .is_none_or(|t| crate::matching::tags_match(t, client_tags))
        })
        .map_or(Action::Deny, |r| r.action.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use crate::matching::InboundView;
    use serde_json::{Value, json};

    fn mtp(name: &str, target_ref: Value, from: Value) -> PolicyView {
        let doc = json!({"type": "MeshTrafficPermission", "name": name, "mesh": "default",
                         "spec": {"targetRef": target_ref, "from": from}});
        PolicyView::from_resource(&Resource::from_value(doc).expect("valid")).expect("view")
    }

    fn proxy() -> ProxyView {
        ProxyView {
            mesh: "default".into(),
            name: "backend-1".into(),
            inbounds: vec![InboundView {
                name: None,
                port: Some(8080),
                tags: BTreeMap::from([("kuma.io/service".into(), "backend".into())]),
            }],
            ..ProxyView::default()
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn subset_deny_overrides_mesh_wide_allow_for_that_subset_only() {
        let ps = vec![
            mtp(
                "allow-all",
                json!({"kind": "Mesh"}),
                json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]),
            ),
            mtp(
                "deny-legacy",
                json!({"kind": "MeshSubset", "tags": {"kuma.io/service": "backend"}}),
                json!([{"targetRef": {"kind": "MeshSubset", "tags": {"version": "v1"}}, "default": {"action": "Deny"}}]),
            ),
        ];
        let rules = inbound_permission_rules(&ps, &proxy(), 0);
        assert_eq!(
            rules,
            [
                PermissionRuleView {
                    source_tags: Some(tags(&[("version", "v1")])),
                    action: Action::Deny,
                },
                PermissionRuleView {
                    source_tags: None,
                    action: Action::Allow,
                },
            ]
        );
        assert_eq!(
            decide(
                &rules,
                &tags(&[("kuma.io/service", "web"), ("version", "v1")])
            ),
            Action::Deny
        );
        assert_eq!(
            decide(
                &rules,
                &tags(&[("kuma.io/service", "web"), ("version", "v2")])
            ),
            Action::Allow
        );
    }

    #[test]
    fn no_policy_denies_everything() {
        let rules = inbound_permission_rules(&[], &proxy(), 0);
        assert_eq!(rules, [default_permission()]);
        assert_eq!(
            decide(&rules, &tags(&[("kuma.io/service", "web")])),
            Action::Deny
        );
    }

    #[test]
    fn clients_outside_every_subset_are_denied() {
        let ps = vec![mtp(
            "web-only",
            json!({"kind": "Mesh"}),
            json!([{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "AllowWithShadowDeny"}}]),
        )];
        let rules = inbound_permission_rules(&ps, &proxy(), 0);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            decide(&rules, &tags(&[("kuma.io/service", "web")])),
            Action::AllowWithShadowDeny
        );
        assert_eq!(
            decide(&rules, &tags(&[("kuma.io/service", "api")])),
            Action::Deny
        );
    }
}
