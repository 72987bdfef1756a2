//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshTimeoutDoc = crate::kinds::Unchecked;
