//! PLACEHOLDER: to be replaced by the typed model.

pub type DataplaneDoc = crate::kinds::Unchecked;
