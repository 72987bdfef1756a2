//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshHealthCheckDoc = crate::kinds::Unchecked;
