//! The policies of one mesh, by kind: one map for every kind, so keeping a new kind needs no
//! new field anywhere.

use std::collections::BTreeMap;

use crate::Kind;
use crate::matching::PolicyView;

/// The policies of one mesh, by kind, each kind's sorted by name. Matching takes a kind's
/// policies as a slice, so a build borrows them instead of copying.
#[derive(Debug, Clone, Default)]
pub struct MeshPolicies {
    by_kind: BTreeMap<Kind, Vec<PolicyView>>,
}

impl MeshPolicies {
    /// The policies of `kind` (none when the kind has none, or is not a policy).
    pub fn of_kind(&self, kind: Kind) -> &[PolicyView] {
        self.by_kind.get(&kind).map_or(&[], Vec::as_slice)
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<&PolicyView> {
        let policies = self.of_kind(kind);
        let at = policies
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()?;
        policies.get(at)
    }

    /// Adds `view`, or replaces the policy of the same kind and name.
    pub fn upsert(&mut self, view: PolicyView) {
        let policies = self.by_kind.entry(view.kind).or_default();
        match policies.binary_search_by(|p| p.name.cmp(&view.name)) {
            Ok(at) => policies[at] = view,
            Err(at) => policies.insert(at, view),
        }
    }

    pub fn remove(&mut self, kind: Kind, name: &str) {
        if let Some(policies) = self.by_kind.get_mut(&kind)
            && let Ok(at) = policies.binary_search_by(|p| p.name.as_str().cmp(name))
        {
            policies.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use serde_json::json;

    fn timeout(name: &str, idle: &str) -> PolicyView {
        let r = Resource::from_value(json!({
            "type": "MeshTimeout", "mesh": "default", "name": name,
            "spec": {"to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}
        }))
        .expect("valid");
        PolicyView::from_resource(&r).expect("view")
    }

    #[test]
    fn keeps_each_kind_sorted_by_name_and_replaces_by_name() {
        let mut policies = MeshPolicies::default();
        policies.upsert(timeout("b", "1s"));
        policies.upsert(timeout("a", "1s"));
        policies.upsert(timeout("b", "2s"));
        let names: Vec<_> = policies
            .of_kind(Kind::MeshTimeout)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let b = policies.get(Kind::MeshTimeout, "b").expect("kept");
        assert_eq!(b.to[0].default, json!({"idleTimeout": "2s"}));
        assert!(policies.of_kind(Kind::MeshRetry).is_empty());
        policies.remove(Kind::MeshTimeout, "a");
        policies.remove(Kind::MeshTimeout, "zzz");
        assert!(policies.get(Kind::MeshTimeout, "a").is_none());
        assert_eq!(policies.of_kind(Kind::MeshTimeout).len(), 1);
    }
}
