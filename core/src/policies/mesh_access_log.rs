//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshAccessLogDoc = crate::kinds::Unchecked;
