//! PLACEHOLDER: to be replaced by the typed model.

pub type MeshLoadBalancingStrategyDoc = crate::kinds::Unchecked;
