//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshRateLimitDoc = crate::kinds::Unchecked;
