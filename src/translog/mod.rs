//! The verifiable transfer log's pure core: RFC 6962 Merkle tree, the tree's right edge,
//! signed checkpoints and receipts, canonical records, verification. No I/O, no async: the
//! sequencer that runs it against the store is [`crate::log`].

pub mod canonical;
pub mod compact;
pub mod edge;
pub mod merkle;
pub mod note;
pub mod verify;
