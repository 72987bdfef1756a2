//! The `kuma.io/*` tags and labels Atoll reads and writes, named once so that every crate
//! spells them the same way (they are Kuma's wire contract: a typo is a silent mismatch).

/// The tag naming the service an inbound belongs to.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The tag giving an inbound's application protocol.
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";

/// Label naming where a resource was created: [`ORIGIN_GLOBAL`] or [`ORIGIN_ZONE`].
pub const ORIGIN_LABEL: &str = "kuma.io/origin";
/// `kuma.io/origin` value of resources created on global.
pub const ORIGIN_GLOBAL: &str = "global";
/// `kuma.io/origin` value of resources created in a zone.
pub const ORIGIN_ZONE: &str = "zone";
/// Label naming the zone a resource was created in.
pub const ZONE_LABEL: &str = "kuma.io/zone";
/// Label holding a resource's name as its author wrote it (synced copies are renamed).
pub const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";
/// Label holding a policy's role (Kubernetes namespaces).
pub const POLICY_ROLE_LABEL: &str = "kuma.io/policy-role";
/// Label naming the program that derived a resource (the zone CP's MeshServices).
pub const MANAGED_BY_LABEL: &str = "kuma.io/managed-by";
