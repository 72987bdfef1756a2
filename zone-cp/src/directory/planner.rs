//! Which proxies a batch of store changes concerns, and whether rebuilding their inbound side
//! is enough. Pure: it reads only what it is given (the changes, described with what they
//! touched, and what each proxy's last build reaches), so every rule is unit-tested here.

use std::collections::BTreeSet;

use atoll_core::matching::PolicyView;
use atoll_core::policies::reach;
use atoll_core::{Kind, ResourceKey};

use super::{ProxyKey, ProxyKind};

/// Whether `kind` is a policy that changes only outbounds, for the destinations its `to`
/// entries name (its package declares it: `atoll_core::policies::reach`).
pub fn is_outbound_policy(kind: Kind) -> bool {
    reach(kind).outbounds_only()
}

/// The services an outbound policy can change: the names of its `to` MeshServices, when every
/// `to` entry names one; `None` (any proxy) otherwise. A policy that does not exist (created or
/// deleted by this change) changes nothing on its side.
pub fn outbound_policy_services(view: Option<&PolicyView>) -> Option<BTreeSet<String>> {
    let Some(view) = view else {
        return Some(BTreeSet::new());
    };
    view.to
        .iter()
        .map(|entry| {
            let t = &entry.target_ref;
            match (t.kind.as_str(), &t.name) {
                ("MeshService", Some(name)) => Some(name.clone()),
                _ => None,
            }
        })
        .collect()
}

/// One store change, with what it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChange {
    pub key: ResourceKey,
    /// The services whose endpoints or offers a Dataplane or MeshService change touched
    /// (before and after it).
    pub services: BTreeSet<String>,
    /// For an outbound policy: the services its `to` entries name, before and after the change;
    /// `None` when it may concern any proxy of its mesh.
    pub policy_services: Option<BTreeSet<String>>,
}

impl StoreChange {
    /// A change that touched no service (the kinds whose reach does not depend on services).
    pub fn of(key: ResourceKey) -> Self {
        Self {
            key,
            services: BTreeSet::new(),
            policy_services: None,
        }
    }
}

/// What to rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildPlan {
    pub proxies: BTreeSet<ProxyKey>,
    /// Only inbound-reaching policies changed: sidecars rebuild just their inbound side.
    pub inbound_only: bool,
}

/// A known proxy as the planner sees it: its key, and the services its last build reaches
/// (`None` before its first build: it may reach anything).
pub type ProxyFacts<'a> = (&'a ProxyKey, Option<&'a BTreeSet<String>>);

/// Plans the rebuilds a batch of changes needs.
pub fn plan<'a>(
    changes: &[StoreChange],
    proxies: impl Iterator<Item = ProxyFacts<'a>> + Clone,
) -> RebuildPlan {
    let mut plan = RebuildPlan {
        inbound_only: !changes.is_empty()
            && changes.iter().all(|c| reach(c.key.kind).inbounds_only()),
        ..RebuildPlan::default()
    };
    for change in changes {
        plan.proxies.extend(
            proxies
                .clone()
                .filter(|(proxy, reaches)| concerns(change, proxy, *reaches))
                .map(|(proxy, _)| proxy.clone()),
        );
    }
    plan
}

/// Whether `change` can alter the config of `proxy`, whose last build reaches `reaches`.
pub fn concerns(
    change: &StoreChange,
    proxy: &ProxyKey,
    reaches: Option<&BTreeSet<String>>,
) -> bool {
    let key = &change.key;
    let reaches_any =
        |services: &BTreeSet<String>| reaches.is_none_or(|r| !r.is_disjoint(services));
    match proxy.kind {
        // Zone proxies serve every mesh's services (the ingress) or every mesh's remote and
        // external services (the egress).
        ProxyKind::Ingress | ProxyKind::Egress => match key.kind {
            Kind::Mesh | Kind::Secret | Kind::ZoneIngress | Kind::ZoneEgress => true,
            Kind::Dataplane => proxy.kind == ProxyKind::Ingress,
            Kind::MeshService | Kind::MeshExternalService => proxy.kind == ProxyKind::Egress,
            _ => false,
        },
        ProxyKind::Sidecar => match key.kind {
            Kind::Mesh => proxy.mesh == key.name,
            Kind::Dataplane => {
                proxy.mesh == key.mesh && (proxy.name == key.name || reaches_any(&change.services))
            }
            Kind::MeshService => proxy.mesh == key.mesh && reaches_any(&change.services),
            Kind::MeshExternalService | Kind::Secret => proxy.mesh == key.mesh,
            // Another zone's ingress or a local egress moved: every sidecar that reaches
            // another zone may route differently.
            Kind::ZoneIngress | Kind::ZoneEgress => true,
            kind if is_outbound_policy(kind) => {
                proxy.mesh == key.mesh && change.policy_services.as_ref().is_none_or(reaches_any)
            }
            // A policy with an inbound side may select any proxy of its mesh.
            kind => reach(kind).applies() && proxy.mesh == key.mesh,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn services(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// A zone with two meshes: in `default`, `web` reaches `backend`, `backend` reaches `db`,
    /// `fresh` has no build yet; `other` has `api`, reaching `backend` too; a zone ingress and
    /// a zone egress.
    struct Zone {
        proxies: Vec<(ProxyKey, Option<BTreeSet<String>>)>,
    }

    impl Zone {
        fn new() -> Self {
            Self {
                proxies: vec![
                    (
                        ProxyKey::sidecar("default", "web"),
                        Some(services(&["backend"])),
                    ),
                    (
                        ProxyKey::sidecar("default", "backend"),
                        Some(services(&["db"])),
                    ),
                    (ProxyKey::sidecar("default", "fresh"), None),
                    (
                        ProxyKey::sidecar("other", "api"),
                        Some(services(&["backend"])),
                    ),
                    (
                        ProxyKey::zone_proxy(ProxyKind::Ingress, "ingress"),
                        Some(services(&[])),
                    ),
                    (
                        ProxyKey::zone_proxy(ProxyKind::Egress, "egress"),
                        Some(services(&[])),
                    ),
                ],
            }
        }

        fn plan(&self, changes: &[StoreChange]) -> RebuildPlan {
            plan(changes, self.proxies.iter().map(|(k, s)| (k, s.as_ref())))
        }

        /// The names of the proxies a single change concerns (zone proxies by kind), sorted.
        fn rebuilt(&self, change: StoreChange) -> Vec<String> {
            let mut names: Vec<String> = self
                .plan(&[change])
                .proxies
                .into_iter()
                .map(|k| match k.kind {
                    ProxyKind::Sidecar => format!("{}/{}", k.mesh, k.name),
                    ProxyKind::Ingress => "ingress".to_string(),
                    ProxyKind::Egress => "egress".to_string(),
                })
                .collect();
            names.sort();
            names
        }
    }

    /// The names of a plan's proxies (sidecars of one mesh).
    fn names(plan: &RebuildPlan) -> Vec<&str> {
        plan.proxies.iter().map(|k| k.name.as_str()).collect()
    }

    fn change(kind: Kind, mesh: &str, name: &str, touched: &[&str]) -> StoreChange {
        StoreChange {
            key: ResourceKey::new(kind, mesh, name),
            services: services(touched),
            policy_services: None,
        }
    }

    fn policy(kind: Kind, named: Option<&[&str]>) -> StoreChange {
        StoreChange {
            key: ResourceKey::new(kind, "default", "p"),
            services: BTreeSet::new(),
            policy_services: named.map(services),
        }
    }

    #[test]
    fn a_dataplane_change_concerns_itself_the_clients_of_its_services_and_the_ingress() {
        let zone = Zone::new();
        assert_eq!(
            zone.rebuilt(change(Kind::Dataplane, "default", "backend", &["backend"])),
            ["default/backend", "default/fresh", "default/web", "ingress"],
            "`api` reaches a `backend` of another mesh: not this one"
        );
        // A dataplane whose services nobody reaches: only itself (and a proxy not built yet).
        assert_eq!(
            zone.rebuilt(change(Kind::Dataplane, "default", "web", &["web"])),
            ["default/fresh", "default/web", "ingress"]
        );
    }

    #[test]
    fn a_deleted_dataplane_concerns_the_clients_of_the_services_it_offered() {
        // Deleted: the change carries the services it offered when last seen.
        let zone = Zone::new();
        assert_eq!(
            zone.rebuilt(change(Kind::Dataplane, "default", "gone", &["db"])),
            ["default/backend", "default/fresh", "ingress"]
        );
    }

    #[test]
    fn a_mesh_change_concerns_its_sidecars_and_every_zone_proxy() {
        let zone = Zone::new();
        let mesh = StoreChange::of(ResourceKey::global(Kind::Mesh, "other"));
        assert_eq!(zone.rebuilt(mesh), ["egress", "ingress", "other/api"]);
    }

    #[test]
    fn a_secret_change_concerns_its_mesh_and_every_zone_proxy() {
        let zone = Zone::new();
        assert_eq!(
            zone.rebuilt(change(Kind::Secret, "other", "s", &[])),
            ["egress", "ingress", "other/api"]
        );
    }

    #[test]
    fn a_mesh_service_change_concerns_the_clients_of_its_service_and_the_egress() {
        let zone = Zone::new();
        assert_eq!(
            zone.rebuilt(change(
                Kind::MeshService,
                "other",
                "backend-zone-2",
                &["backend"]
            )),
            ["egress", "other/api"]
        );
        // A MeshService of this zone (no remote offer): only the egress looks at it, and a
        // proxy not built yet, which may reach anything.
        assert_eq!(
            zone.rebuilt(change(Kind::MeshService, "default", "web", &[])),
            ["default/fresh", "egress"]
        );
    }

    #[test]
    fn a_mesh_external_service_change_concerns_its_mesh_and_the_egress() {
        let zone = Zone::new();
        assert_eq!(
            zone.rebuilt(change(Kind::MeshExternalService, "other", "httpbin", &[])),
            ["egress", "other/api"]
        );
    }

    #[test]
    fn a_zone_proxy_change_concerns_every_proxy() {
        let zone = Zone::new();
        for kind in [Kind::ZoneIngress, Kind::ZoneEgress] {
            assert_eq!(
                zone.rebuilt(change(kind, "", "ingress-2", &[])).len(),
                zone.proxies.len(),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_inbound_policy_concerns_its_mesh_inbound_side_only() {
        let zone = Zone::new();
        let plan = zone.plan(&[policy(Kind::MeshTrafficPermission, None)]);
        assert!(plan.inbound_only);
        assert_eq!(names(&plan), ["backend", "fresh", "web"]);
    }

    #[test]
    fn an_outbound_policy_naming_services_concerns_their_clients() {
        let zone = Zone::new();
        for kind in [Kind::MeshTimeout, Kind::MeshRetry, Kind::MeshCircuitBreaker] {
            let plan = zone.plan(&[policy(kind, Some(&["db"]))]);
            assert!(!plan.inbound_only, "{kind}");
            assert_eq!(names(&plan), ["backend", "fresh"], "{kind}");
        }
    }

    #[test]
    fn an_outbound_policy_targeting_more_than_named_services_concerns_its_whole_mesh() {
        let zone = Zone::new();
        let plan = zone.plan(&[policy(Kind::MeshTimeout, None)]);
        assert_eq!(names(&plan), ["backend", "fresh", "web"]);
    }

    #[test]
    fn kinds_without_reach_concern_no_proxy() {
        let zone = Zone::new();
        for kind in [Kind::MeshMultiZoneService, Kind::HostnameGenerator] {
            assert!(
                zone.rebuilt(change(kind, "default", "t", &[])).is_empty(),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_batch_is_inbound_only_when_every_change_is() {
        let zone = Zone::new();
        let mtp = policy(Kind::MeshTrafficPermission, None);
        let dp = change(Kind::Dataplane, "default", "web", &["web"]);
        assert!(zone.plan(&[mtp.clone(), mtp.clone()]).inbound_only);
        let mixed = zone.plan(&[mtp, dp]);
        assert!(!mixed.inbound_only);
        assert!(
            mixed
                .proxies
                .contains(&ProxyKey::zone_proxy(ProxyKind::Ingress, "ingress"))
        );
        assert!(!zone.plan(&[]).inbound_only);
    }

    fn timeout(to: serde_json::Value) -> PolicyView {
        let mut r = atoll_core::Resource::new(Kind::MeshTimeout, "default", "t");
        r.spec.insert(
            "spec".into(),
            json!({"targetRef": {"kind": "Mesh"}, "to": to}),
        );
        PolicyView::from_resource(&r).expect("view")
    }

    #[test]
    fn an_outbound_policy_names_the_services_of_its_to_entries() {
        let named = timeout(json!([
            {"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {"idleTimeout": "1s"}},
            {"targetRef": {"kind": "MeshService", "name": "db"}, "default": {"idleTimeout": "2s"}},
        ]));
        assert_eq!(
            outbound_policy_services(Some(&named)),
            Some(services(&["backend", "db"]))
        );
        let mesh_wide = timeout(json!([
            {"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s"}},
        ]));
        assert_eq!(outbound_policy_services(Some(&mesh_wide)), None);
        // Created or deleted: the missing side names nothing.
        assert_eq!(outbound_policy_services(None), Some(BTreeSet::new()));
    }
}
