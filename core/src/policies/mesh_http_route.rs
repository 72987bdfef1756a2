//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshHttpRouteDoc = crate::kinds::Unchecked;
