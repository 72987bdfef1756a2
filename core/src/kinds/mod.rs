//! Kinds that are not targetRef policies: meshes, zones, proxies, services, secrets.

pub mod dataplane;
pub mod hostname_generator;
pub mod mesh;
pub mod mesh_external_service;
pub mod mesh_multizone_service;
pub mod mesh_service;
pub mod secret;
pub mod zone;
pub mod zone_egress;
pub mod zone_ingress;

/// TRANSITIONAL: accepts any object while a kind's typed model is being written.
#[derive(Debug, serde::Deserialize)]
pub struct Unchecked(#[allow(dead_code)] serde_json::Value);

impl crate::validate::Validate for Unchecked {
    fn validate(&self, _: &crate::path::FieldPath, _: &mut crate::validate::Violations) {}
}
