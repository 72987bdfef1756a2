//! PLACEHOLDER: to be replaced by the typed model.

pub type ZoneIngressDoc = crate::kinds::Unchecked;
