//! The transfer log as a running service, above the store: the sequencer that group-commits
//! records, integrates them into the RFC 6962 tree, signs checkpoints and hands out receipts, and
//! the proofs served from the stored tree. The tree, notes, canonical JSON and verification they
//! use are the pure [`crate::translog`].

pub mod proofs;
pub mod sequencer;
pub mod witnesses;

pub use proofs::ProofError;
pub use sequencer::{LogError, LogSettings, Receipt, TransferLog};
