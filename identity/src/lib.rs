//! Mesh identities (being written).
