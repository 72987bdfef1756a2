//! `targetRef`: how a policy names what it applies to (top level), whom it concerns (`from`) and
//! where traffic goes (`to`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::path::FieldPath;
use crate::string_enum;
use crate::validate::{Validate, Violations};

string_enum! {
    /// The kinds a targetRef may name.
    pub enum TargetRefKind {
        Mesh => "Mesh",
        MeshSubset => "MeshSubset",
        MeshService => "MeshService",
        MeshServiceSubset => "MeshServiceSubset",
        MeshGateway => "MeshGateway",
        MeshHTTPRoute => "MeshHTTPRoute",
        MeshExternalService => "MeshExternalService",
        MeshMultiZoneService => "MeshMultiZoneService",
        Dataplane => "Dataplane",
    }
}

string_enum! {
    pub enum ProxyType {
        Sidecar => "Sidecar",
        Gateway => "Gateway",
    }
}

/// A reference from a policy to the resources it selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub kind: TargetRefKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_types: Option<Vec<ProxyType>>,
}

impl TargetRef {
    pub fn mesh() -> Self {
        TargetRef {
            kind: TargetRefKind::Mesh,
            name: None,
            namespace: None,
            section_name: None,
            mesh: None,
            tags: None,
            labels: None,
            proxy_types: None,
        }
    }

    /// Checks the reference itself and that its kind is one of `allowed` at this position.
    pub fn check(&self, at: &FieldPath, allowed: &[TargetRefKind], v: &mut Violations) {
        self.validate(at, v);
        if self.kind.is_known() && !allowed.contains(&self.kind) {
            let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
            v.add(
                &at.field("kind"),
                format!(
                    "value {:?} is not supported here; allowed: {}",
                    self.kind.as_str(),
                    names.join(", ")
                ),
            );
        }
    }
}

impl Validate for TargetRef {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        use TargetRefKind as K;
        self.kind.validate(&at.field("kind"), v);
        let has_name = self.name.as_deref().is_some_and(|n| !n.is_empty());
        let has_labels = self.labels.as_ref().is_some_and(|l| !l.is_empty());
        match &self.kind {
            K::Mesh => {
                if self.name.is_some() {
                    v.add(&at.field("name"), "must not be set with kind Mesh");
                }
                if self.tags.is_some() {
                    v.add(&at.field("tags"), "must not be set with kind Mesh");
                }
                if self.labels.is_some() {
                    v.add(&at.field("labels"), "must not be set with kind Mesh");
                }
            }
            K::MeshSubset => {
                if self.name.is_some() {
                    v.add(&at.field("name"), "must not be set with kind MeshSubset");
                }
            }
            K::MeshServiceSubset => {
                if !has_name {
                    v.add(&at.field("name"), "must be set with kind MeshServiceSubset");
                }
            }
            K::MeshGateway | K::MeshHTTPRoute => {
                if !has_name {
                    v.add(
                        &at.field("name"),
                        format!("must be set with kind {}", self.kind.as_str()),
                    );
                }
            }
            K::MeshService | K::MeshExternalService | K::MeshMultiZoneService | K::Dataplane => {
                if has_name && has_labels {
                    v.add(
                        &at.field("labels"),
                        "must not be set together with name: select by name or by labels",
                    );
                }
                if !has_name && !has_labels && self.kind != K::Dataplane {
                    v.add(
                        &at.field("name"),
                        format!(
                            "name or labels must be set with kind {}",
                            self.kind.as_str()
                        ),
                    );
                }
                if self.tags.is_some() {
                    if self.kind == K::Dataplane {
                        // Kuma's documentation still shows this older form.
                        v.warn(
                            &at.field("tags"),
                            "deprecated with kind Dataplane: select dataplanes with labels",
                        );
                    } else {
                        v.add(
                            &at.field("tags"),
                            format!("must not be set with kind {}", self.kind.as_str()),
                        );
                    }
                }
            }
            K::Unknown(_) => {}
        }
        if let Some(pt) = &self.proxy_types {
            if !matches!(self.kind, K::Mesh | K::MeshSubset) {
                v.add(
                    &at.field("proxyTypes"),
                    "can only be set with kind Mesh or MeshSubset",
                );
            }
            pt.iter()
                .enumerate()
                .for_each(|(i, p)| p.validate(&at.field("proxyTypes").index(i), v));
        }
        if let Some(tags) = &self.tags {
            for (k, val) in tags {
                if k.is_empty() {
                    v.add(&at.field("tags"), "tag names must not be empty");
                }
                if val.is_empty() {
                    v.add(&at.field("tags").key(k), "tag value must not be empty");
                }
            }
        }
    }
}
