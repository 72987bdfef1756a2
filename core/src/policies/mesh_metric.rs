//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshMetricDoc = crate::kinds::Unchecked;
