//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshRetryDoc = crate::kinds::Unchecked;
