//! The transfer log as a running service, above the store: the sequencer that group-commits
//! records, integrates them into the RFC 6962 tree, signs checkpoints and hands out receipts.
//! The tree, notes, canonical JSON and verification it uses are the pure [`crate::translog`].

pub mod sequencer;

pub use sequencer::{LogError, LogSettings, Receipt, TransferLog};
