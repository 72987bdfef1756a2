//! PLACEHOLDER: to be replaced by the typed model.

pub type ZoneEgressDoc = crate::kinds::Unchecked;
