//! KDS, the sync between the global control plane and its zones: which kinds flow which way
//! (`direction`), the names and labels of synced copies (`naming`), the encoding of a resource in
//! Envoy's delta discovery messages (`wire`), and the sans-IO sync engine (`engine`): a `Sender`
//! and a `Receiver` per stream, unit-tested without sockets. Around it: the gRPC service
//! `atoll.kds.v1.KdsSync` (`transport`) and the loops that run the engine against a store
//! (`sync`), used by both control planes; see README.md for the transport decision.

pub mod direction;
pub mod engine;
pub mod naming;
pub mod stats;
pub mod sync;
pub mod transport;
pub mod wire;

pub use direction::{Flow, Party, Side, SyncRule, flows, kinds_sent_by};
pub use engine::{
    Action, EngineError, LocalChange, Marker, Received, Receiver, ReceiverConfig, Rejection,
    SendStatus, Sender, SenderConfig, SenderOutcome,
};
