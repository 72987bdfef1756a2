//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshTcpRouteDoc = crate::kinds::Unchecked;
