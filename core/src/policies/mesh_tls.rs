//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshTlsDoc = crate::kinds::Unchecked;
