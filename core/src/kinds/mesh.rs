//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshDoc = crate::kinds::Unchecked;
