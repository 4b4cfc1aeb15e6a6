//! The verifiable transfer log's pure core: RFC 6962 Merkle tree, compact ranges (the tree's
//! right edge), signed checkpoints and receipts, canonical records, verification. No I/O, no
//! async: the sequencer and the proofs served from the store are [`crate::log`].

pub mod canonical;
pub mod compact;
pub mod cosignature;
pub mod merkle;
pub mod note;
pub mod verify;
pub mod witness;
