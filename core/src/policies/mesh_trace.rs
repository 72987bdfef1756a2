//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshTraceDoc = crate::kinds::Unchecked;
