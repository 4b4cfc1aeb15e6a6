//! The verifiable transfer log: RFC 6962 Merkle tree, signed checkpoints, canonical records,
//! and the sequencer that integrates records into it. Everything but the sequencer is pure.

pub mod canonical;
pub mod edge;
pub mod merkle;
pub mod note;
pub mod sequencer;
pub mod verify;
