//! PLACEHOLDER: to be replaced by the typed model.

pub type HostnameGeneratorDoc = crate::kinds::Unchecked;
