//! The name and labels a synced resource gets on the receiving side.
//!
//! As in Kuma, a synced copy is named `<name>-<hash>`:
//! - the hash is FNV-1a 64 over the UTF-8 bytes of the mesh (empty for global-scoped kinds), the
//!   original name and, for a resource created in a zone, the zone name, fed one after another;
//!   its 8 bytes (big-endian) are written as 16 hex digits and each digit is then mapped onto the
//!   alphabet `bcdfghjklmnpqrstvwxz2456789` (byte value modulo 27), Kubernetes'
//!   "safe encoding" that Kuma applies, so the suffix has no vowels and never spells words. The
//!   result is the name Kuma itself gives the same resource.
//! - the original name is cut to 236 characters so the whole stays within 253.
//! - the original name is the `kuma.io/display-name` label when the resource already has one
//!   (a Kubernetes-originated resource), its name otherwise.
//!
//! The mesh is hashed because two meshes may hold the same name; the zone because two zones may.
//! The fields are fed without separators, as Kuma does: no two resources can collide through
//! that, since the resulting name starts with the original name and the mesh is part of the key.
//!
//! Labels set on the copy: `kuma.io/display-name` (original name), `kuma.io/origin` (`global` or
//! `zone`) and, for zone-created resources, `kuma.io/zone`. Which kinds keep their name is
//! declared in `direction::rule` (`keeps_global_name`).

use atoll_core::Resource;
use atoll_core::fnv::Fnv1a;
use atoll_core::labels::{
    DISPLAY_NAME_LABEL, ORIGIN_GLOBAL, ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL,
};

use crate::direction::{Party, rule};

const MAX_NAME: usize = 253;
const SUFFIX_LEN: usize = 1 + 16;
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Where a resource was created, as its labels say. `None` for a resource without origin labels
/// (created locally by a writer that did not stamp it) or with inconsistent ones.
pub fn origin_of(resource: &Resource) -> Option<Party> {
    match resource.labels.get(ORIGIN_LABEL).map(String::as_str) {
        Some(ORIGIN_GLOBAL) => Some(Party::Global),
        Some(ORIGIN_ZONE) => resource
            .labels
            .get(ZONE_LABEL)
            .filter(|z| !z.is_empty())
            .map(|z| Party::Zone(z.clone())),
        _ => None,
    }
}

/// The name the author gave: `kuma.io/display-name` when set, the name otherwise.
pub fn display_name(resource: &Resource) -> &str {
    resource
        .labels
        .get(DISPLAY_NAME_LABEL)
        .filter(|n| !n.is_empty())
        .map_or(resource.name.as_str(), String::as_str)
}

/// `<name>-<hash>` for `name` in `mesh`, with `extra` values (the zone) in the hash.
pub fn hashed_name(mesh: &str, name: &str, extra: &[&str]) -> String {
    let mut h = Fnv1a::new();
    h.write(mesh.as_bytes());
    h.write(name.as_bytes());
    for e in extra {
        h.write(e.as_bytes());
    }
    let mut suffix = String::with_capacity(16);
    for byte in h.finish().to_be_bytes() {
        for nibble in [byte >> 4, byte & 0xf] {
            let hex = b"0123456789abcdef"[usize::from(nibble)];
            suffix.push(char::from(
                SAFE_ALPHABET[usize::from(hex) % SAFE_ALPHABET.len()],
            ));
        }
    }
    let keep = floor_char_boundary(name, MAX_NAME - SUFFIX_LEN);
    format!("{}-{suffix}", &name[..keep])
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

/// The copy of a local resource that `sender` sends to its peer: renamed and labelled. A
/// resource global relays (created in a zone) is sent as global holds it.
pub fn synced_copy(resource: &Resource, sender: &Party) -> Resource {
    let mut copy = resource.clone();
    copy.version = 0;
    copy.creation_time = None;
    copy.modification_time = None;
    let display = display_name(resource).to_string();
    match sender {
        Party::Global => {
            if matches!(origin_of(resource), Some(Party::Zone(_))) {
                return copy;
            }
            if !rule(resource.kind).keeps_global_name {
                copy.name = hashed_name(&resource.mesh, &display, &[]);
            }
            copy.labels.remove(ZONE_LABEL);
            copy.labels
                .insert(ORIGIN_LABEL.into(), ORIGIN_GLOBAL.into());
        }
        Party::Zone(zone) => {
            copy.name = hashed_name(&resource.mesh, &display, &[zone]);
            copy.labels.insert(ORIGIN_LABEL.into(), ORIGIN_ZONE.into());
            copy.labels.insert(ZONE_LABEL.into(), zone.clone());
        }
    }
    copy.labels.insert(DISPLAY_NAME_LABEL.into(), display);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::Kind;

    #[test]
    fn hashed_names_are_stable_and_distinct_across_zones_and_meshes() {
        let east = hashed_name("default", "backend", &["east"]);
        assert_eq!(east, hashed_name("default", "backend", &["east"]));
        let (prefix, suffix) = east.split_at("backend".len());
        assert_eq!(prefix, "backend");
        assert_eq!(suffix.len(), SUFFIX_LEN);
        assert!(suffix[1..].bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        let west = hashed_name("default", "backend", &["west"]);
        let other_mesh = hashed_name("other", "backend", &["east"]);
        let from_global = hashed_name("default", "backend", &[]);
        let all = [&east, &west, &other_mesh, &from_global];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // A fixed value, so a change of algorithm is noticed (names would change in every zone).
        assert_eq!(from_global, hashed_name("default", "backend", &[]));
        assert_eq!(
            hashed_name("", "x", &[]),
            format!("x-{}", {
                let mut h = Fnv1a::new();
                h.write(b"x");
                format!("{:016x}", h.finish())
                    .bytes()
                    .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % 27]))
                    .collect::<String>()
            })
        );
    }

    #[test]
    fn long_names_are_cut_to_fit() {
        let long = "a".repeat(253);
        let n = hashed_name("m", &long, &["z"]);
        assert_eq!(n.len(), 253);
        let mut v = atoll_core::Violations::new();
        atoll_core::name::check_resource_name(&n, &atoll_core::FieldPath::root(), &mut v);
        assert!(v.is_empty(), "{v}");
    }

    #[test]
    fn copies_get_labels_and_names_by_direction() {
        let mut policy = Resource::new(Kind::MeshTimeout, "default", "t1");
        policy.version = 7;
        let copy = synced_copy(&policy, &Party::Global);
        assert_eq!(copy.name, hashed_name("default", "t1", &[]));
        assert_eq!(copy.version, 0);
        assert_eq!(copy.labels[ORIGIN_LABEL], "global");
        assert_eq!(copy.labels[DISPLAY_NAME_LABEL], "t1");
        assert!(!copy.labels.contains_key(ZONE_LABEL));

        let mesh = Resource::new(Kind::Mesh, "", "default");
        assert_eq!(synced_copy(&mesh, &Party::Global).name, "default");
        let secret = Resource::new(Kind::Secret, "default", "default.ca-builtin-cert-ca-1");
        assert_eq!(
            synced_copy(&secret, &Party::Global).name,
            "default.ca-builtin-cert-ca-1"
        );

        let svc = Resource::new(Kind::MeshService, "default", "redis");
        let east = synced_copy(&svc, &Party::zone("east"));
        assert_eq!(east.name, hashed_name("default", "redis", &["east"]));
        assert_eq!(east.labels[ORIGIN_LABEL], "zone");
        assert_eq!(east.labels[ZONE_LABEL], "east");
        assert_eq!(east.labels[DISPLAY_NAME_LABEL], "redis");
        assert_eq!(origin_of(&east), Some(Party::zone("east")));
        // Global relays it unchanged to the other zones.
        assert_eq!(synced_copy(&east, &Party::Global), east);
        assert_eq!(origin_of(&svc), None);
    }
}
