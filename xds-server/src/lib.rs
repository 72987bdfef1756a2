//! The zone control plane's xDS server: delta ADS to Envoy.
//!
//! `session` holds the protocol (nonces, versions, ACK/NACK, subscriptions, make-before-break
//! ordering) as a plain struct driven by requests and snapshots, tested without a network. The
//! gRPC service around it is a thin loop.

pub mod session;
