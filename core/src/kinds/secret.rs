//! PLACEHOLDER: to be replaced by the typed model.

pub type SecretDoc = crate::kinds::Unchecked;
