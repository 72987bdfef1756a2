//! The zone control plane's xDS server: delta ADS to Envoy.
//!
//! - `session`: the protocol (nonces, versions, ACK/NACK, subscriptions, make-before-break
//!   ordering) as a plain struct driven by requests and snapshots, tested without a network.
//! - `service`: the gRPC service, a thin loop feeding one session per stream.
//! - `grpc`: the response stream's gRPC framing (one exactly-sized buffer per message).
//! - `directory`: what the service asks of the rest of the control plane (authenticate a proxy,
//!   follow its snapshots, report its status).
//! - `metrics`: push/ACK/NACK counters, push -> ACK latency, connected proxies.

pub mod directory;
pub mod grpc;
pub mod metrics;
pub mod service;
pub mod session;
