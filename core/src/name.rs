//! Resource names: what Kuma accepts in universal mode, so names survive a move to Kubernetes.

use crate::path::FieldPath;
use crate::validate::Violations;

/// Longest name accepted (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// Checks a resource name: 1-253 characters of letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
pub fn check_resource_name(name: &str, at: &FieldPath, v: &mut Violations) {
    if name.is_empty() {
        v.add(at, "must not be empty");
        return;
    }
    if name.len() > MAX_NAME_LEN {
        v.add(at, format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        v.add(
            at,
            format!("invalid character {c:?}: use letters, digits, '-', '_' and '.'"),
        );
        return;
    }
    let first_last_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok {
        v.add(at, "must start and end with a letter or digit");
    }
}

/// Checks a mesh name: a DNS label (lowercase letters, digits, '-'; at most 63 characters), since
/// it appears in SNI names, SPIFFE IDs and hostnames.
pub fn check_mesh_name(name: &str, at: &FieldPath, v: &mut Violations) {
    if name.is_empty() {
        v.add(at, "must not be empty");
        return;
    }
    if name.len() > 63 {
        v.add(at, "must be at most 63 characters");
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        v.add(
            at,
            "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(name: &str) -> usize {
        let mut v = Violations::new();
        check_resource_name(name, &FieldPath::root().field("name"), &mut v);
        v.len()
    }

    #[test]
    fn accepts_kuma_style_names() {
        for ok in [
            "backend",
            "backend-01",
            "web_default_svc_80",
            "redis.kuma-demo",
            "A1",
        ] {
            assert_eq!(errors(ok), 0, "{ok}");
        }
        for bad in ["", "-x", "x-", "has space", "a/b", &"x".repeat(254)] {
            assert!(errors(bad) > 0, "{bad}");
        }
    }
}
