//! Which kinds flow which way between the global control plane and its zones, and how a synced
//! copy is named. This table is the only place where kinds are told apart: the engine, the
//! naming and the wire encoding ask it and have no per-kind cases of their own.
//!
//! | kind | global -> zone | zone -> global | global relays to other zones | keeps its name from global |
//! |---|---|---|---|---|
//! | Mesh | yes | | | yes (meshes must match across zones) |
//! | the 16 targetRef policies | yes | yes (created in the zone) | | no |
//! | Secret | yes | | | yes (Meshes name their CA Secrets) |
//! | MeshExternalService | yes | | | no |
//! | MeshMultiZoneService | yes | | | no |
//! | HostnameGenerator | yes | | | yes (global-scoped, unique already) |
//! | Dataplane | | yes | | |
//! | ZoneEgress | | yes | | |
//! | ZoneIngress | | yes | yes | |
//! | MeshService | | yes | yes | |
//! | Zone | never | never | | |
//! | GlobalSecret `*-public-key` | yes | | | yes |
//! | other GlobalSecrets | never | never | | |
//!
//! Private token-signing keys never leave the control plane that made them, whatever their kind
//! (`resource_rule` below): the mesh Secret `dataplane-token-signing-key` and every GlobalSecret
//! but the public keys. Global publishes the public halves (`dataplane-token-public-key` per
//! mesh, GlobalSecret `zone-token-public-key`), so zones can verify the dataplane, ingress and
//! egress tokens global mints but cannot mint any, and a leaked zone store leaks no signing key.
//!
//! - **Policies flow both ways, each from where it was created**, as in Kuma 2.6+: a policy
//!   written on global goes to every zone; one written on a zone CP applies in that zone and goes
//!   up to global (hash-suffixed, `kuma.io/origin: zone`, `kuma.io/zone`) so global shows every
//!   policy in force. Global does not pass a zone's policy on to the other zones: it selects only
//!   its own zone's proxies. A zone's policy cannot be changed on global, nor global's in a zone.
//! - **MeshExternalService flows global -> zone**: it is mesh configuration an operator writes on
//!   global, like a policy (the brief did not list it; Kuma syncs it the same way).
//! - **Zone** is global's record of its zones; a zone never receives or sends it.
//! - Resources created in a zone always get a hashed name on global (zone names collide across
//!   zones: every zone has a `zone-ingress`). Resources created on global keep their name in the
//!   zones when `keeps_global_name`; the others get `<name>-<hash>` as in Kuma, which leaves the
//!   plain name free for a zone's own resources.
//! - A relayed resource (created in zone A, sent by global to zone B) keeps the name and labels it
//!   got on global, so every zone sees it under the same name.

use atoll_core::Kind;

/// One side of a KDS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Global,
    Zone,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Global => Side::Zone,
            Side::Zone => Side::Global,
        }
    }
}

/// One control plane in a KDS connection: global, or a zone by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Party {
    Global,
    Zone(String),
}

impl Party {
    pub fn zone(name: impl Into<String>) -> Party {
        Party::Zone(name.into())
    }

    pub fn side(&self) -> Side {
        match self {
            Party::Global => Side::Global,
            Party::Zone(_) => Side::Zone,
        }
    }

    /// The zone's name, for a zone.
    pub fn zone_name(&self) -> Option<&str> {
        match self {
            Party::Global => None,
            Party::Zone(z) => Some(z),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Party::Global => f.write_str("global"),
            Party::Zone(z) => write!(f, "zone {z:?}"),
        }
    }
}

/// What of one kind leaves one side for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// Resources created on this side are sent to the other side.
    pub own: bool,
    /// (Global only) resources global received from one zone are sent on to the other zones.
    pub relay: bool,
}

impl Flow {
    /// Nothing of the kind leaves this side.
    pub fn is_none(self) -> bool {
        !self.own && !self.relay
    }
}

/// The sync rule of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRule {
    /// Resources created on global are sent to every zone.
    pub global_to_zone: bool,
    /// Resources created in a zone are sent to global.
    pub zone_to_global: bool,
    /// Global sends what it received from one zone on to the other zones.
    pub relay_to_other_zones: bool,
    /// A resource sent by global keeps its name in the zones (no hash suffix).
    pub keeps_global_name: bool,
}

const NEVER: SyncRule = SyncRule {
    global_to_zone: false,
    zone_to_global: false,
    relay_to_other_zones: false,
    keeps_global_name: false,
};

const FROM_GLOBAL: SyncRule = SyncRule {
    global_to_zone: true,
    ..NEVER
};

const FROM_GLOBAL_SAME_NAME: SyncRule = SyncRule {
    global_to_zone: true,
    keeps_global_name: true,
    ..NEVER
};

const FROM_WHERE_CREATED: SyncRule = SyncRule {
    global_to_zone: true,
    zone_to_global: true,
    ..NEVER
};

const FROM_ZONE: SyncRule = SyncRule {
    zone_to_global: true,
    ..NEVER
};

const FROM_ZONE_RELAYED: SyncRule = SyncRule {
    zone_to_global: true,
    relay_to_other_zones: true,
    ..NEVER
};

/// The sync rule of a kind. Every kind is listed (no catch-all), so a new kind cannot be added
/// without deciding how it syncs.
pub fn rule(kind: Kind) -> SyncRule {
    match kind {
        Kind::Zone => NEVER,
        Kind::Mesh | Kind::Secret | Kind::HostnameGenerator | Kind::GlobalSecret => {
            FROM_GLOBAL_SAME_NAME
        }
        Kind::MeshExternalService | Kind::MeshMultiZoneService => FROM_GLOBAL,
        Kind::MeshTrafficPermission
        | Kind::MeshTimeout
        | Kind::MeshRetry
        | Kind::MeshHTTPRoute
        | Kind::MeshTCPRoute
        | Kind::MeshCircuitBreaker
        | Kind::MeshHealthCheck
        | Kind::MeshRateLimit
        | Kind::MeshAccessLog
        | Kind::MeshTrace
        | Kind::MeshMetric
        | Kind::MeshLoadBalancingStrategy
        | Kind::MeshFaultInjection
        | Kind::MeshPassthrough
        | Kind::MeshProxyPatch
        | Kind::MeshTLS => FROM_WHERE_CREATED,
        Kind::Dataplane | Kind::ZoneEgress => FROM_ZONE,
        Kind::ZoneIngress | Kind::MeshService => FROM_ZONE_RELAYED,
    }
}

/// Name of the mesh Secret holding a mesh's dataplane-token signing key: never synced.
pub const DATAPLANE_TOKEN_SIGNING_KEY: &str = "dataplane-token-signing-key";
/// Suffix of the GlobalSecrets global publishes to zones (public keys); no other GlobalSecret
/// leaves global.
pub const PUBLIC_KEY_SUFFIX: &str = "-public-key";

/// The sync rule of one resource: its kind's rule, except that private signing keys never sync.
pub fn resource_rule(kind: Kind, name: &str) -> SyncRule {
    match kind {
        Kind::Secret if name == DATAPLANE_TOKEN_SIGNING_KEY => NEVER,
        Kind::GlobalSecret if !name.ends_with(PUBLIC_KEY_SUFFIX) => NEVER,
        _ => rule(kind),
    }
}

/// What of one resource leaves side `from` for the other side.
pub fn resource_flows(kind: Kind, name: &str, from: Side) -> Flow {
    flow_of(resource_rule(kind, name), from)
}

/// What of `kind` leaves side `from` for the other side (some of its resources may still stay:
/// see [`resource_flows`]).
pub fn flows(kind: Kind, from: Side) -> Flow {
    flow_of(rule(kind), from)
}

fn flow_of(r: SyncRule, from: Side) -> Flow {
    match from {
        Side::Global => Flow {
            own: r.global_to_zone,
            relay: r.relay_to_other_zones,
        },
        Side::Zone => Flow {
            own: r.zone_to_global,
            relay: false,
        },
    }
}

/// The kinds that side `from` sends to the other side, in `Kind::ALL` order.
pub fn kinds_sent_by(from: Side) -> Vec<Kind> {
    Kind::ALL
        .iter()
        .copied()
        .filter(|k| !flows(*k, from).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_decided_direction() {
        let mut never = Vec::new();
        for kind in Kind::ALL.iter().copied() {
            let r = rule(kind);
            // Only policies flow both ways (each from where it was created); relaying is global
            // passing a zone's resource on.
            assert!(
                !(r.global_to_zone && r.zone_to_global) || kind.is_policy(),
                "{kind} flows both ways"
            );
            assert!(
                !r.relay_to_other_zones || r.zone_to_global,
                "{kind} relayed without coming from a zone"
            );
            assert!(!flows(kind, Side::Zone).relay, "zones relay nothing");
            if kind.is_policy() {
                assert_eq!(r, FROM_WHERE_CREATED, "{kind}");
            }
            if r == NEVER {
                never.push(kind);
            }
        }
        assert_eq!(never, [Kind::Zone]);
        assert!(rule(Kind::Mesh).keeps_global_name);
        let from_zone = kinds_sent_by(Side::Zone);
        let (policies, others): (Vec<Kind>, Vec<Kind>) =
            from_zone.into_iter().partition(|k| k.is_policy());
        assert_eq!(
            others,
            [
                Kind::ZoneIngress,
                Kind::ZoneEgress,
                Kind::Dataplane,
                Kind::MeshService
            ]
        );
        assert_eq!(policies.len(), 16);
        // Global sends its own kinds plus the relayed ones: everything but the never kinds and
        // the zone-only ones.
        let from_global = kinds_sent_by(Side::Global);
        assert_eq!(from_global.len(), Kind::ALL.len() - 1 - 2);
        assert!(from_global.contains(&Kind::ZoneIngress));
        assert!(!from_global.contains(&Kind::Dataplane));
        assert_eq!(Side::Zone.peer(), Side::Global);
    }

    #[test]
    fn private_signing_keys_never_sync_and_public_keys_do() {
        for side in [Side::Global, Side::Zone] {
            assert!(resource_flows(Kind::Secret, DATAPLANE_TOKEN_SIGNING_KEY, side).is_none());
            assert!(resource_flows(Kind::GlobalSecret, "zone-token-signing-key", side).is_none());
            assert!(resource_flows(Kind::GlobalSecret, "my-credentials", side).is_none());
        }
        assert!(resource_flows(Kind::GlobalSecret, "zone-token-public-key", Side::Global).own);
        assert!(resource_flows(Kind::Secret, "dataplane-token-public-key", Side::Global).own);
        assert!(resource_flows(Kind::Secret, "default.ca-builtin-cert-ca-1", Side::Global).own);
        assert!(resource_rule(Kind::GlobalSecret, "zone-token-public-key").keeps_global_name);
    }
}
