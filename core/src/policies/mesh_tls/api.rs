//! MeshTLS: the mTLS settings of the selected proxies' inbound traffic: Strict or Permissive
//! mode, TLS versions and cipher suites.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    DefaultRule, FromEntry, PolicyDoc, TopLevelOpts, check_entry_target_ref, check_top_level,
    has_entries, require_a_section, top_level_kind,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::validate::{Validate, Violations};

/// A MeshTLS document (the part after the envelope).
/// The `MeshTls` document: its spec is all that is kind-specific.
pub type MeshTlsDoc = PolicyDoc<MeshTlsSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsSpec {
    /// The proxies configured; the whole mesh when left out.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Per client (older form of `rules`).
    #[serde(default)]
    pub from: Option<Vec<MeshTlsFrom>>,
    #[serde(default)]
    pub rules: Option<Vec<MeshTlsRule>>,
}

pub type MeshTlsFrom = FromEntry<Option<MeshTlsConf>>;

pub type MeshTlsRule = DefaultRule<Option<MeshTlsConf>>;

string_enum! {
    /// Whether inbound traffic must use mTLS (`Strict`) or may be plaintext too (`Permissive`).
    pub enum MeshTlsMode {
        Permissive => "Permissive",
        Strict => "Strict",
    }
}

string_enum! {
    pub enum TlsVersionName {
        Auto => "TLSAuto",
        Tls10 => "TLS10",
        Tls11 => "TLS11",
        Tls12 => "TLS12",
        Tls13 => "TLS13",
    }
}

impl TlsVersionName {
    /// Order of specific versions (`TLSAuto` has none).
    pub fn rank(&self) -> Option<u8> {
        match self {
            TlsVersionName::Tls10 => Some(0),
            TlsVersionName::Tls11 => Some(1),
            TlsVersionName::Tls12 => Some(2),
            TlsVersionName::Tls13 => Some(3),
            _ => None,
        }
    }
}

string_enum! {
    pub enum TlsCipher {
        EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        EcdheEcdsaAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        EcdheEcdsaChacha20Poly1305 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
        EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
        EcdheRsaChacha20Poly1305 => "ECDHE-RSA-CHACHA20-POLY1305",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsVersion {
    #[serde(default)]
    pub min: Option<TlsVersionName>,
    #[serde(default)]
    pub max: Option<TlsVersionName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsConf {
    /// Only with a top-level targetRef of kind Mesh.
    #[serde(default)]
    pub tls_version: Option<TlsVersion>,
    /// Only with a top-level targetRef of kind Mesh.
    #[serde(default)]
    pub tls_ciphers: Option<Vec<TlsCipher>>,
    /// Default: the mesh's mTLS mode.
    #[serde(default)]
    pub mode: Option<MeshTlsMode>,
}

const TOP_KINDS: &[K] = &[K::Mesh, K::MeshSubset, K::Dataplane];
const FROM_KINDS: &[K] = &[K::Mesh];

impl Validate for MeshTlsSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let spec = self;
        require_a_section(
            &[
                ("from", has_entries(&spec.from)),
                ("rules", has_entries(&spec.rules)),
            ],
            at,
            v,
        );
        let from = spec.from.as_deref().unwrap_or_default();
        let rules = spec.rules.as_deref().unwrap_or_default();
        check_top_level(
            &spec.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: !from.is_empty() || !rules.is_empty(),
                gateway_listener_tags: false,
            },
            v,
        );
        if !from.is_empty() && !rules.is_empty() {
            v.add(at, "'from' must be empty when 'rules' is defined");
        }
        let whole_mesh = top_level_kind(&spec.target_ref) == K::Mesh;
        for (i, rule) in rules.iter().enumerate() {
            if let Some(d) = &rule.default {
                d.check(whole_mesh, &at.field("rules").index(i).field("default"), v);
            }
        }
        for (i, item) in from.iter().enumerate() {
            let at = at.field("from").index(i);
            check_entry_target_ref(&item.target_ref, &at.field("targetRef"), FROM_KINDS, v);
            if let Some(d) = &item.default {
                d.check(whole_mesh, &at.field("default"), v);
            }
        }
    }
}

impl MeshTlsConf {
    fn check(&self, whole_mesh: bool, at: &FieldPath, v: &mut Violations) {
        self.mode.validate(&at.field("mode"), v);
        if let Some(ciphers) = &self.tls_ciphers {
            let at = at.field("tlsCiphers");
            if !ciphers.is_empty() && !whole_mesh {
                v.add(
                    &at,
                    "can only be set when the top-level targetRef is kind Mesh",
                );
            } else {
                ciphers.validate(&at, v);
            }
        }
        if let Some(version) = &self.tls_version {
            let at = at.field("tlsVersion");
            if !whole_mesh {
                v.add(
                    &at,
                    "can only be set when the top-level targetRef is kind Mesh",
                );
                return;
            }
            version.min.validate(&at.field("min"), v);
            version.max.validate(&at.field("max"), v);
            let min = version.min.as_ref().and_then(TlsVersionName::rank);
            let max = version.max.as_ref().and_then(TlsVersionName::rank);
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                v.add(&at.field("min"), "must not be a later version than max");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::{paths, policy};
    use serde_json::{Value, json};

    fn doc(spec: Value) -> Value {
        policy("MeshTLS", "tls", spec)
    }

    #[test]
    fn accepts_a_full_document() {
        let spec = json!({
            "targetRef": {"kind": "Mesh"},
            "rules": [{"default": {
                "mode": "Strict",
                "tlsVersion": {"min": "TLS12", "max": "TLS13"},
                "tlsCiphers": ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"]}}]
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
        let spec = json!({
            "targetRef": {"kind": "Dataplane", "labels": {"app": "redis"}, "sectionName": "main"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"mode": "Permissive"}}]
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let spec = json!({
            "targetRef": {"kind": "MeshService", "name": "redis"},
            "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}},
                "default": {"mode": "Lenient", "tlsCiphers": ["RC4"], "tlsVersion": {"min": "TLS13"}}}],
            "rules": [{"default": {"mode": "Strict"}}]
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.targetRef.kind",
                "spec",
                "spec.from[0].targetRef.kind",
                "spec.from[0].default.mode",
                "spec.from[0].default.tlsCiphers",
                "spec.from[0].default.tlsVersion",
            ]
        );
    }

    #[test]
    fn checks_versions_and_ciphers_with_a_mesh_scope() {
        let spec = json!({
            "rules": [{"default": {"tlsVersion": {"min": "TLS13", "max": "TLS11"},
                "tlsCiphers": ["ECDHE-RSA-AES128-GCM-SHA256", "NULL"], "extra": true}}]
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.rules[0].default.extra",
                "spec.rules[0].default.tlsCiphers[1]",
                "spec.rules[0].default.tlsVersion.min",
            ]
        );
        let spec = json!({"rules": [{"default": {"tlsVersion": {"max": "TLS14"}}}],
            "from": [{"default": {}}]});
        assert_eq!(
            paths(doc(spec)),
            [
                "spec",
                "spec.rules[0].default.tlsVersion.max",
                "spec.from[0].targetRef",
            ]
        );
    }
}
