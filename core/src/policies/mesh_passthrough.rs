//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshPassthroughDoc = crate::kinds::Unchecked;
