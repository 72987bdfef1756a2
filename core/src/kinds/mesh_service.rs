//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshServiceDoc = crate::kinds::Unchecked;
