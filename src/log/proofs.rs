//! Proofs served from the stored tree: inclusion and consistency proofs with their roots, and
//! leaf hashes, each with ONE store round trip for the nodes it reads.
//!
//! The nodes a proof reads depend only on its index and sizes, never on hashes: they are first
//! listed by running the proof algorithm against a `Recorder` that answers with dummy hashes,
//! then fetched together, then the proof is computed from the fetched [`NodeMap`].

use std::cell::RefCell;
use std::collections::HashSet;

use super::{Receipt, TransferLog};
use crate::store::{Store, StoreError};
use crate::translog::merkle::{self, Hash, NodeMap, NodeSource, NotHeld};

/// Why a proof cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The inclusion of a leaf the tree does not hold was asked for (`index >= size`).
    #[error("leaf index {index} is not below the tree size {size}")]
    LeafBeyondTree {
        /// The leaf asked for.
        index: u64,
        /// The tree asked for.
        size: u64,
    },
    /// Consistency with a larger old tree was asked for (`old_size > new_size`).
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    OldBeyondNew {
        /// The older tree asked for.
        old_size: u64,
        /// The newer tree asked for.
        new_size: u64,
    },
    /// A node the answer needs is not stored: the stored tree is damaged.
    #[error("the stored tree lacks a node: {0}")]
    Missing(NotHeld),
    /// The store could not be read.
    #[error("the stored tree cannot be read")]
    Store(#[from] StoreError),
    /// A receipt was asked for a record the sequencer did not integrate in time.
    #[error("record {seq} was not integrated into the log in time")]
    NotIntegrated {
        /// The record.
        seq: u64,
    },
    /// A receipt was asked for a record that is not stored, or the tree holding it has no
    /// checkpoint: the store contradicts the caller that stored it.
    #[error("record {seq} is not stored, or not under a checkpoint")]
    NotStored {
        /// The record.
        seq: u64,
    },
}

impl From<NotHeld> for ProofError {
    fn from(e: NotHeld) -> Self {
        ProofError::Missing(e)
    }
}

impl From<std::convert::Infallible> for ProofError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl<E: Into<ProofError>> From<merkle::ProofRequestError<E>> for ProofError {
    fn from(e: merkle::ProofRequestError<E>) -> Self {
        match e {
            merkle::ProofRequestError::IndexOutOfRange { index, size } => ProofError::LeafBeyondTree { index, size },
            merkle::ProofRequestError::OldSizeExceedsNewSize { old_size, new_size } => {
                ProofError::OldBeyondNew { old_size, new_size }
            }
            merkle::ProofRequestError::Source(e) => e.into(),
        }
    }
}

/// A leaf's inclusion in a tree, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The leaf hash the tree holds.
    pub leaf_hash: Hash,
    /// The audit path, leaf sibling first.
    pub proof: Vec<Hash>,
    /// The root of the tree.
    pub root: Hash,
}

/// The consistency of two trees, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    /// The proof, as RFC 6962 §2.1.2 orders it.
    pub proof: Vec<Hash>,
    /// The root of the older tree.
    pub old_root: Hash,
    /// The root of the newer tree.
    pub new_root: Hash,
}

/// A [`NodeSource`] that records which nodes are read and answers with zeros. The set of nodes
/// the proof functions read depends only on their index and size arguments, never on hashes.
#[derive(Debug, Default)]
struct Recorder(RefCell<Vec<(u8, u64)>>);

impl Recorder {
    /// The nodes read so far, without duplicates, in first-read order.
    fn coordinates(&self) -> Vec<(u8, u64)> {
        let mut seen = HashSet::new();
        self.0.borrow().iter().copied().filter(|c| seen.insert(*c)).collect()
    }
}

impl NodeSource for Recorder {
    type Error = std::convert::Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.0.borrow_mut().push((level, index));
        Ok([0u8; 32])
    }
}

/// Fetches `coordinates` with one store call.
async fn fetch(store: &dyn Store, coordinates: &[(u8, u64)]) -> Result<NodeMap, StoreError> {
    store.tree_nodes(coordinates).await.map(NodeMap)
}

/// How long [`receipt`] waits for the sequencer to integrate a record.
const RECEIPT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The leaf index and canonical JSON of the record a state change stored (its sequence number
/// `seq`), once the sequencer has integrated it (asking it to).
///
/// # Errors
/// `NotIntegrated` when the record is not integrated within ten seconds; `NotStored` when it is
/// absent.
pub async fn integrated(log: &TransferLog, store: &dyn Store, seq: u64) -> Result<(u64, String), ProofError> {
    let mut integrated = log.integrated();
    integrated.borrow_and_update();
    log.kick();
    let deadline = tokio::time::Instant::now() + RECEIPT_WAIT;
    loop {
        let record = store.records(seq.saturating_sub(1), 1).await?.into_iter().find(|r| r.seq == seq);
        let Some(record) = record else { return Err(ProofError::NotStored { seq }) };
        match record.leaf_index {
            Some(index) => return Ok((index, record.json)),
            None if tokio::time::Instant::now() < deadline => {
                // Woken by this process's next integration; looked at again after a while
                // anyway, as another replica sharing the store may integrate it.
                let wake = deadline.min(tokio::time::Instant::now() + std::time::Duration::from_millis(250));
                if let Ok(Err(_)) = tokio::time::timeout_at(wake, integrated.changed()).await {
                    // The sequencer stopped: nothing will wake this up.
                    tokio::time::sleep_until(wake).await;
                }
            }
            None => return Err(ProofError::NotIntegrated { seq }),
        }
    }
}

/// The receipt of a record a state change stored (its sequence number `seq`): waits until the
/// sequencer has integrated it (asking it to), then proves it in the latest signed checkpoint.
///
/// # Errors
/// As [`integrated`]; `Missing` when a node the proof needs is not stored; `NotStored` when the
/// checkpoint is absent.
pub async fn receipt(log: &TransferLog, store: &dyn Store, seq: u64) -> Result<Receipt, ProofError> {
    let (index, json) = integrated(log, store, seq).await?;
    let checkpoint = store.checkpoint(None).await?.ok_or(ProofError::NotStored { seq })?;
    let inclusion = inclusion(store, index, checkpoint.size).await?;
    Ok(Receipt {
        index,
        leaf_hash: inclusion.leaf_hash,
        proof: inclusion.proof,
        checkpoint: checkpoint.note,
        record: json,
    })
}

/// The inclusion proof of leaf `index` in the stored tree of `size` leaves, its leaf hash and
/// root. The caller checks that a tree of `size` leaves was integrated.
///
/// # Errors
/// [`ProofError::LeafBeyondTree`] unless `index < size`; [`ProofError::Missing`] when a node
/// the proof needs is not stored; [`ProofError::Store`].
pub async fn inclusion(store: &dyn Store, index: u64, size: u64) -> Result<Inclusion, ProofError> {
    let recorder = Recorder::default();
    let Ok(_) = recorder.node(0, index);
    merkle::inclusion_proof(index, size, &recorder)?;
    let Ok(_) = merkle::root_at(size, &recorder);
    let nodes = fetch(store, &recorder.coordinates()).await?;
    let leaf_hash = nodes.node(0, index)?;
    let proof = merkle::inclusion_proof(index, size, &nodes)?;
    let root = merkle::root_at(size, &nodes)?;
    Ok(Inclusion { leaf_hash, proof, root })
}

/// The consistency proof from the stored tree of `old_size` leaves to the one of `new_size`,
/// and both roots. The caller checks that a tree of `new_size` leaves was integrated.
///
/// # Errors
/// [`ProofError::OldBeyondNew`] unless `old_size <= new_size`; [`ProofError::Missing`] when a
/// node is not stored; [`ProofError::Store`].
pub async fn consistency(store: &dyn Store, old_size: u64, new_size: u64) -> Result<Consistency, ProofError> {
    let recorder = Recorder::default();
    merkle::consistency_proof(old_size, new_size, &recorder)?;
    let Ok(_) = merkle::root_at(old_size, &recorder);
    let Ok(_) = merkle::root_at(new_size, &recorder);
    let nodes = fetch(store, &recorder.coordinates()).await?;
    let proof = merkle::consistency_proof(old_size, new_size, &nodes)?;
    let old_root = merkle::root_at(old_size, &nodes)?;
    let new_root = merkle::root_at(new_size, &nodes)?;
    Ok(Consistency { proof, old_root, new_root })
}

/// The leaf hashes the tree holds for leaves `[from, to)`, in order.
///
/// # Errors
/// [`ProofError::Missing`] naming the first leaf whose hash is not stored; [`ProofError::Store`].
pub async fn leaf_hashes(store: &dyn Store, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    let coordinates: Vec<(u8, u64)> = (from..to).map(|i| (0, i)).collect();
    let nodes = fetch(store, &coordinates).await?;
    (from..to).map(|i| Ok(nodes.node(0, i)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::merkle::MemoryTree;

    #[test]
    fn a_recorded_proof_reads_the_same_nodes_as_a_real_one() {
        let mut tree = MemoryTree::new();
        for i in 0..1000u32 {
            tree.push(&i.to_be_bytes());
        }
        for (index, size) in [(0u64, 1u64), (5, 8), (999, 1000), (123, 777), (512, 513)] {
            let recorder = Recorder::default();
            merkle::inclusion_proof(index, size, &recorder).unwrap();
            let _ = merkle::root_at(size, &recorder);
            let map =
                NodeMap(recorder.coordinates().into_iter().map(|(l, i)| ((l, i), tree.node(l, i).unwrap())).collect());
            let proof = merkle::inclusion_proof(index, size, &map).unwrap();
            assert_eq!(proof, merkle::inclusion_proof(index, size, &tree).unwrap());
            assert!(map.0.len() <= 2 * 64);
        }
        for (old, new) in [(1u64, 8u64), (6, 8), (300, 1000), (999, 1000), (0, 10)] {
            let recorder = Recorder::default();
            merkle::consistency_proof(old, new, &recorder).unwrap();
            let map =
                NodeMap(recorder.coordinates().into_iter().map(|(l, i)| ((l, i), tree.node(l, i).unwrap())).collect());
            assert_eq!(
                merkle::consistency_proof(old, new, &map).unwrap(),
                merkle::consistency_proof(old, new, &tree).unwrap()
            );
        }
    }
}
