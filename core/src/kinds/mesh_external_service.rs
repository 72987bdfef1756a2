//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshExternalServiceDoc = crate::kinds::Unchecked;
