//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshProxyPatchDoc = crate::kinds::Unchecked;
