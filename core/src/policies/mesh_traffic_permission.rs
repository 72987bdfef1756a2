//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshTrafficPermissionDoc = crate::kinds::Unchecked;
