//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshMultiZoneServiceDoc = crate::kinds::Unchecked;
