//! PLACEHOLDER: to be replaced by the typed model.

pub type ZoneDoc = crate::kinds::Unchecked;
