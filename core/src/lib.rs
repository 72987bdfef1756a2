//! Atoll's resource model: every Kuma-format kind, the universal YAML/JSON envelope, validation with
//! field paths, and the kind registry (names, plurals, scope).
//!
//! This crate owns no I/O: no files, no sockets, no tokio. Stores, servers and the CLI build on it.

pub mod defaults;
pub mod fnv;
pub mod format;
pub mod kind;
pub mod kinds;
pub mod labels;
pub mod matching;
pub mod name;
pub mod path;
pub mod policies;
pub mod quirks;
pub mod resource;
mod strict;
pub mod target_ref;
pub mod types;
pub mod validate;

pub use kind::{Kind, Scope};
pub use path::FieldPath;
pub use resource::{Resource, ResourceKey};
pub use validate::{Violation, Violations};
