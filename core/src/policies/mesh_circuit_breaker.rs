//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshCircuitBreakerDoc = crate::kinds::Unchecked;
