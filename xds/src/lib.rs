//! Envoy configuration for Atoll's proxies.
//!
//! - `context`: what generation needs to know about one proxy, resolved from the store by the
//!   zone control plane (no store access here).
//! - `model`: Envoy's resources as plain serde types with Envoy's JSON field names, so generated
//!   config is readable (golden files, the `_config` inspect endpoint) and checkable by Envoy
//!   itself (`envoy --mode validate`). It lives in `atoll-envoy-model` (re-exported here) so that
//!   the policy packages in `atoll-core` can write Envoy resources without the protobuf stack.
//! - `proto`: the model converted to Envoy's protobuf types for the wire.
//! - `generate`: the pure, deterministic function (context -> resources).
//! - `bootstrap`: the Envoy bootstrap a dataplane starts with.
//! - `zone_context` and `zone_proxy`: the input of the zone ingress and the zone egress, and
//!   what they share with sidecars (names, SNIs, the endpoints of other zones and of the local
//!   egress, building blocks); the two roles' generation lives in `zone-ingress/` and
//!   `zone-egress/` (see `ZONE-PROXIES.md`).
//!
//! This crate never touches a store or a socket.

pub mod bootstrap;
pub mod context;
pub mod generate;
pub use atoll_envoy_model as model;
pub mod proto;
pub mod zone_context;
pub mod zone_proxy;

pub use model::type_urls;
