//! The verifiable transfer log: RFC 6962 Merkle tree, signed checkpoints, canonical records.

pub mod canonical;
pub mod merkle;
pub mod note;
