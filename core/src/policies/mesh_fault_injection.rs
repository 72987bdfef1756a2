//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshFaultInjectionDoc = crate::kinds::Unchecked;
