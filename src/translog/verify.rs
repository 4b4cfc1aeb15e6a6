//! Whole-log verification, as `bth-gateway audit verify` runs it: every leaf re-hashed from its
//! stored canonical JSON, every stored checkpoint's root recomputed and signature checked, and
//! consistency with a checkpoint saved earlier. Pure: the caller feeds leaves and checkpoints in
//! order (from a database or a gateway) and fetches the one consistency proof asked for.
//!
//! Memory is O(log n): leaves are folded into the tree's compact range as they arrive.

use super::canonical::to_canonical_json;
use super::compact::CompactRange;
use super::merkle::{self, Hash, ProofError};
use super::note::{Checkpoint, NoteError, Verifier};

/// The first mismatch found. Every variant names the leaf index or the checkpoint (tree size).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A leaf is not JSON.
    #[error("leaf {index}: the stored leaf is not JSON ({reason})")]
    LeafNotJson {
        /// Leaf index.
        index: u64,
        /// The parser's complaint.
        reason: String,
    },
    /// A leaf is JSON but not in RFC 8785 canonical form (it was edited after it was written).
    #[error("leaf {index}: the stored JSON is not in canonical form (RFC 8785)")]
    LeafNotCanonical {
        /// Leaf index.
        index: u64,
    },
    /// Leaf indexes are not contiguous from 0: `expected` is missing, or leaves are out of place.
    #[error("leaf {expected} is missing or out of place: leaf index {found} was stored in its position")]
    LeafOrder {
        /// The index that should come next.
        expected: u64,
        /// The index found there.
        found: u64,
    },
    /// A stored interior node of the tree differs from the hash of the leaves beneath it (proofs
    /// served from it would not verify).
    #[error(
        "tree node at level {level}, index {index}: the stored hash differs from the hash of the leaves beneath it"
    )]
    TreeNode {
        /// Height above the leaves.
        level: u8,
        /// Position within its level.
        index: u64,
    },
    /// A complete subtree's node is not stored (proofs that need it cannot be served).
    #[error("tree node at level {level}, index {index}: not stored")]
    TreeNodeMissing {
        /// Height above the leaves.
        level: u8,
        /// Position within its level.
        index: u64,
    },
    /// The tree's stored leaf hash differs from the hash of the stored JSON.
    #[error("leaf {index}: the hash of the stored JSON differs from the tree's leaf hash")]
    LeafHash {
        /// Leaf index.
        index: u64,
    },
    /// Leaves exist beyond the latest signed checkpoint (or there is no checkpoint at all).
    #[error("leaf {index} is not covered by any signed checkpoint (latest checkpoint: tree size {latest})")]
    LeafUncovered {
        /// The first uncovered leaf.
        index: u64,
        /// The latest checkpoint's size (0: none).
        latest: u64,
    },
    /// Checkpoints were not fed in strictly ascending size order.
    #[error("checkpoint {size}: comes after checkpoint {previous}")]
    CheckpointOrder {
        /// Its size.
        size: u64,
        /// The previous checkpoint's size.
        previous: u64,
    },
    /// A checkpoint covers leaves the log does not have.
    #[error("checkpoint {size}: the log has only {leaves} leaves (leaf {leaves} is missing)")]
    CheckpointBeyondLog {
        /// Its size.
        size: u64,
        /// Leaves available.
        leaves: u64,
    },
    /// A checkpoint's signature does not verify with the verifier key.
    #[error("checkpoint {size}: {source}")]
    CheckpointSignature {
        /// Its size (as stored).
        size: u64,
        /// Why.
        source: NoteError,
    },
    /// A checkpoint signed for another log.
    #[error("checkpoint {size}: origin {found:?}, expected {expected:?}")]
    CheckpointOrigin {
        /// Its size.
        size: u64,
        /// The note's origin.
        found: String,
        /// The verifier key's name.
        expected: String,
    },
    /// The stored size or root differs from what the note signs.
    #[error("checkpoint {size}: the stored size or root differs from the signed note")]
    CheckpointNote {
        /// Its size (as stored).
        size: u64,
    },
    /// The root recomputed from the leaves differs from the signed root.
    #[error("checkpoint {size}: the root recomputed from leaves 0..{size} differs from the signed root")]
    CheckpointRoot {
        /// Its size.
        size: u64,
    },
    /// The trusted checkpoint does not verify.
    #[error("trusted checkpoint: {0}")]
    TrustedNote(NoteError),
    /// The trusted checkpoint was signed for another log.
    #[error("trusted checkpoint {size}: origin {found:?}, expected {expected:?}")]
    TrustedOrigin {
        /// Its size.
        size: u64,
        /// The note's origin.
        found: String,
        /// The verifier key's name.
        expected: String,
    },
    /// The log is smaller than a checkpoint saved earlier: it was truncated or replaced.
    #[error("trusted checkpoint {size}: the log now has only {leaves} signed leaves (truncated or replaced)")]
    TrustedBeyondLog {
        /// Its size.
        size: u64,
        /// Leaves under the latest checkpoint.
        leaves: u64,
    },
    /// The first `size` leaves no longer hash to the trusted root: history was rewritten.
    #[error("trusted checkpoint {size}: the root recomputed from leaves 0..{size} differs (history rewritten)")]
    TrustedRoot {
        /// Its size.
        size: u64,
    },
    /// The consistency proof from the trusted checkpoint to the latest one does not verify.
    #[error("trusted checkpoint {size}: no valid consistency proof to checkpoint {latest}: {source}")]
    TrustedConsistency {
        /// The trusted size.
        size: u64,
        /// The latest size.
        latest: u64,
        /// Why.
        source: ProofError,
    },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Leaves verified.
    pub leaves: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The latest checkpoint and its signed note; `None` for an empty log.
    pub latest: Option<(Checkpoint, String)>,
    /// The trusted checkpoint the log was shown consistent with.
    pub trusted: Option<Checkpoint>,
}

/// Verifies a log fed leaf by leaf and checkpoint by checkpoint, in ascending order.
///
/// Protocol: optionally [`LogVerifier::trust`] once; then for each stored checkpoint (ascending
/// size) feed the leaves up to its size with [`LogVerifier::leaf`] and then the checkpoint with
/// [`LogVerifier::checkpoint`]; feed any remaining leaves; fetch the proof
/// [`LogVerifier::needs_consistency`] asks for; call [`LogVerifier::finish`].
#[derive(Debug)]
pub struct LogVerifier {
    verifier: Verifier,
    /// The leaves folded in so far: the tree's right edge.
    tree: CompactRange,
    /// Checkpoints verified.
    checkpoints: u64,
    /// The latest verified checkpoint and its note.
    latest: Option<(Checkpoint, String)>,
    /// The checkpoint saved earlier, and whether the leaves reproduced its root.
    trusted: Option<(Checkpoint, bool)>,
    /// Interior nodes completed and not yet taken, when collecting ([`LogVerifier::collect_nodes`]).
    nodes: Option<Vec<(u8, u64, Hash)>>,
}

impl LogVerifier {
    /// A verifier of the log signed by `verifier`'s key; the origin must be the key's name.
    pub fn new(verifier: Verifier) -> LogVerifier {
        LogVerifier { verifier, tree: CompactRange::empty(0), checkpoints: 0, latest: None, trusted: None, nodes: None }
    }

    /// Keeps every node the leaves complete (the leaf hashes at level 0 and every perfect subtree
    /// above them), for comparison with a stored tree ([`LogVerifier::take_nodes`],
    /// [`check_tree_node`]).
    pub fn collect_nodes(&mut self) {
        self.nodes.get_or_insert_with(Vec::new);
    }

    /// The nodes completed since the last call: (level, index, hash).
    pub fn take_nodes(&mut self) -> Vec<(u8, u64, Hash)> {
        self.nodes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Leaves fed so far.
    pub fn size(&self) -> u64 {
        self.tree.end()
    }

    /// Sets the checkpoint saved earlier that the log must extend.
    ///
    /// # Errors
    /// [`VerifyError::TrustedNote`] / [`VerifyError::TrustedOrigin`] when it does not verify.
    pub fn trust(&mut self, note: &str) -> Result<Checkpoint, VerifyError> {
        let c = self.verifier.verify_note(note).map_err(VerifyError::TrustedNote)?;
        if c.origin != self.verifier.name() {
            return Err(VerifyError::TrustedOrigin {
                size: c.size,
                found: c.origin,
                expected: self.verifier.name().to_owned(),
            });
        }
        let reached = c.size == 0 && c.root == merkle::empty_root();
        self.trusted = Some((c.clone(), reached));
        if c.size == 0 && !reached {
            return Err(VerifyError::TrustedRoot { size: 0 });
        }
        Ok(c)
    }

    /// Feeds the next leaf: its index, its stored JSON and, when available, the leaf hash the
    /// stored tree holds for it.
    ///
    /// # Errors
    /// [`VerifyError::LeafOrder`], [`VerifyError::LeafNotJson`], [`VerifyError::LeafNotCanonical`],
    /// [`VerifyError::LeafHash`], or [`VerifyError::TrustedRoot`] when this leaf completes the
    /// trusted tree and its root differs.
    pub fn leaf(&mut self, index: u64, json: &str, tree_hash: Option<&Hash>) -> Result<(), VerifyError> {
        if index != self.size() {
            return Err(VerifyError::LeafOrder { expected: self.size(), found: index });
        }
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| VerifyError::LeafNotJson { index, reason: e.to_string() })?;
        if to_canonical_json(&value).ok().as_deref() != Some(json) {
            return Err(VerifyError::LeafNotCanonical { index });
        }
        let hash = merkle::leaf_hash(json.as_bytes());
        if tree_hash.is_some_and(|h| *h != hash) {
            return Err(VerifyError::LeafHash { index });
        }
        self.push(hash);
        if let Some((trusted, reached)) = &mut self.trusted {
            if trusted.size == self.tree.end() {
                if self.tree.root() != trusted.root {
                    return Err(VerifyError::TrustedRoot { size: trusted.size });
                }
                *reached = true;
            }
        }
        Ok(())
    }

    /// Feeds a stored checkpoint: its stored size and root and its signed note. Every leaf up to
    /// `size` must have been fed.
    ///
    /// # Errors
    /// [`VerifyError::CheckpointOrder`], [`VerifyError::CheckpointSignature`],
    /// [`VerifyError::CheckpointOrigin`], [`VerifyError::CheckpointNote`],
    /// [`VerifyError::CheckpointBeyondLog`] or [`VerifyError::CheckpointRoot`].
    pub fn checkpoint(&mut self, size: u64, root: &Hash, note: &str) -> Result<(), VerifyError> {
        let previous = self.latest.as_ref().map_or(0, |(c, _)| c.size);
        if size <= previous && self.latest.is_some() {
            return Err(VerifyError::CheckpointOrder { size, previous });
        }
        let c = self.verifier.verify_note(note).map_err(|source| VerifyError::CheckpointSignature { size, source })?;
        if c.origin != self.verifier.name() {
            return Err(VerifyError::CheckpointOrigin {
                size,
                found: c.origin,
                expected: self.verifier.name().to_owned(),
            });
        }
        if c.size != size || c.root != *root {
            return Err(VerifyError::CheckpointNote { size });
        }
        if self.size() != size {
            return Err(VerifyError::CheckpointBeyondLog { size, leaves: self.size() });
        }
        if self.tree.root() != c.root {
            return Err(VerifyError::CheckpointRoot { size });
        }
        self.checkpoints += 1;
        self.latest = Some((c, note.to_owned()));
        Ok(())
    }

    /// The consistency proof [`LogVerifier::finish`] needs: `(trusted size, latest size)`, when a
    /// trusted checkpoint is set and older than the latest one.
    pub fn needs_consistency(&self) -> Option<(u64, u64)> {
        let (trusted, _) = self.trusted.as_ref()?;
        let (latest, _) = self.latest.as_ref()?;
        (trusted.size < latest.size).then_some((trusted.size, latest.size))
    }

    /// Ends verification: every leaf is under the latest checkpoint, and the latest checkpoint
    /// extends the trusted one (its root recomputed from the leaves, and `consistency`, the proof
    /// asked for by [`LogVerifier::needs_consistency`], verified).
    ///
    /// # Errors
    /// [`VerifyError::LeafUncovered`], [`VerifyError::TrustedBeyondLog`],
    /// [`VerifyError::TrustedRoot`] or [`VerifyError::TrustedConsistency`].
    pub fn finish(self, consistency: Option<&[Hash]>) -> Result<Report, VerifyError> {
        let latest_size = self.latest.as_ref().map_or(0, |(c, _)| c.size);
        if self.size() > latest_size {
            return Err(VerifyError::LeafUncovered { index: latest_size, latest: latest_size });
        }
        let trusted = match self.trusted {
            None => None,
            Some((trusted, reached)) => {
                if trusted.size > latest_size {
                    return Err(VerifyError::TrustedBeyondLog { size: trusted.size, leaves: latest_size });
                }
                if !reached {
                    return Err(VerifyError::TrustedRoot { size: trusted.size });
                }
                if let Some((latest, _)) = &self.latest {
                    merkle::verify_consistency(
                        trusted.size,
                        latest.size,
                        &trusted.root,
                        &latest.root,
                        consistency.unwrap_or_default(),
                    )
                    .map_err(|source| VerifyError::TrustedConsistency {
                        size: trusted.size,
                        latest: latest.size,
                        source,
                    })?;
                }
                Some(trusted)
            }
        };
        Ok(Report { leaves: self.tree.end(), checkpoints: self.checkpoints, latest: self.latest, trusted })
    }

    fn push(&mut self, leaf: Hash) {
        let nodes = &mut self.nodes;
        self.tree.append(leaf, |id, hash| {
            if let Some(nodes) = nodes {
                nodes.push((id.level, id.index, *hash));
            }
        });
    }
}

/// Compares an interior node computed from the leaves with the one the tree stores.
///
/// # Errors
/// [`VerifyError::TreeNode`] when they differ, [`VerifyError::TreeNodeMissing`] when none is
/// stored.
pub fn check_tree_node(level: u8, index: u64, computed: &Hash, stored: Option<&Hash>) -> Result<(), VerifyError> {
    match stored {
        Some(h) if h == computed => Ok(()),
        Some(_) => Err(VerifyError::TreeNode { level, index }),
        None => Err(VerifyError::TreeNodeMissing { level, index }),
    }
}

/// One stored leaf: index, canonical JSON and (optionally) the tree's leaf hash.
pub type LeafItem = (u64, String, Option<Hash>);

/// One stored checkpoint: size, root and signed note.
pub type CheckpointItem = (u64, Hash, String);

/// Verifies a whole log from in-order iterators (see [`LogVerifier`]). `prove(old, new)` supplies
/// the consistency proof between the trusted and the latest checkpoint, when one is needed.
///
/// # Errors
/// The first mismatch.
pub fn verify_log(
    verifier: Verifier,
    leaves: impl IntoIterator<Item = LeafItem>,
    checkpoints: impl IntoIterator<Item = CheckpointItem>,
    trusted: Option<&str>,
    prove: impl FnOnce(u64, u64) -> Vec<Hash>,
) -> Result<Report, VerifyError> {
    let mut v = LogVerifier::new(verifier);
    if let Some(note) = trusted {
        v.trust(note)?;
    }
    let mut leaves = leaves.into_iter();
    for (size, root, note) in checkpoints {
        while v.size() < size {
            let Some((index, json, hash)) = leaves.next() else { break };
            v.leaf(index, &json, hash.as_ref())?;
        }
        v.checkpoint(size, &root, &note)?;
    }
    for (index, json, hash) in leaves {
        v.leaf(index, &json, hash.as_ref())?;
    }
    let proof = v.needs_consistency().map(|(old, new)| prove(old, new));
    v.finish(proof.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_nodes_are_the_perfect_subtrees_the_leaves_complete() {
        let verifier =
            Verifier::new(&Signer::from_seed("example.org/log", &[3u8; 32]).unwrap().verifier_key()).unwrap();
        let mut v = LogVerifier::new(verifier);
        v.collect_nodes();
        let leaves: Vec<String> = (0..5).map(|i| format!("{{\"n\":{i}}}")).collect();
        for (i, json) in leaves.iter().enumerate() {
            v.leaf(i as u64, json, None).unwrap();
        }
        let h: Vec<Hash> = leaves.iter().map(|j| merkle::leaf_hash(j.as_bytes())).collect();
        let (n10, n11) = (merkle::node_hash(&h[0], &h[1]), merkle::node_hash(&h[2], &h[3]));
        let mut expected: Vec<(u8, u64, Hash)> = h.iter().enumerate().map(|(i, h)| (0, i as u64, *h)).collect();
        expected.extend([(1, 0, n10), (1, 1, n11), (2, 0, merkle::node_hash(&n10, &n11))]);
        expected.sort();
        let mut got = v.take_nodes();
        got.sort();
        assert_eq!(got, expected, "leaf 4 completes nothing above level 0 yet");
        assert!(v.take_nodes().is_empty(), "taken once");
        assert!(check_tree_node(1, 0, &n10, Some(&n10)).is_ok());
        assert!(matches!(check_tree_node(1, 0, &n10, Some(&n11)), Err(VerifyError::TreeNode { level: 1, index: 0 })));
        assert!(matches!(check_tree_node(2, 0, &n10, None), Err(VerifyError::TreeNodeMissing { level: 2, index: 0 })));
    }
    use crate::translog::merkle::MemoryTree;
    use crate::translog::note::Signer;

    const ORIGIN: &str = "test.example/log";

    /// A log of `n` leaves with a checkpoint after every batch of `batch` leaves (and at the end).
    struct Log {
        leaves: Vec<LeafItem>,
        checkpoints: Vec<CheckpointItem>,
        tree: MemoryTree,
        signer: Signer,
    }

    impl Log {
        fn new(n: u64, batch: u64) -> Log {
            let signer = Signer::from_seed(ORIGIN, &[9u8; 32]).unwrap();
            let mut log = Log { leaves: Vec::new(), checkpoints: Vec::new(), tree: MemoryTree::new(), signer };
            log.extend(n, batch);
            log
        }

        fn extend(&mut self, n: u64, batch: u64) {
            let start = self.leaves.len() as u64;
            for i in start..start + n {
                let json = to_canonical_json(&serde_json::json!({"type": "x", "i": i, "who": "tj-stats"})).unwrap();
                let hash = merkle::leaf_hash(json.as_bytes());
                self.tree.push(json.as_bytes());
                self.leaves.push((i, json, Some(hash)));
                if (i + 1 - start).is_multiple_of(batch) || i + 1 == start + n {
                    let size = i + 1;
                    let root = merkle::root_at(size, &self.tree).unwrap();
                    let note = self.signer.sign_checkpoint(&Checkpoint { origin: ORIGIN.into(), size, root });
                    self.checkpoints.push((size, root, note));
                }
            }
        }

        fn verify(&self, trusted: Option<&str>) -> Result<Report, VerifyError> {
            verify_log(self.signer.verifier(), self.leaves.clone(), self.checkpoints.clone(), trusted, |old, new| {
                merkle::consistency_proof(old, new, &self.tree).unwrap()
            })
        }

        fn latest_note(&self) -> String {
            self.checkpoints.last().unwrap().2.clone()
        }
    }

    #[test]
    fn an_untouched_log_verifies_whatever_its_batches() {
        for (n, batch) in [(0, 1), (1, 1), (7, 3), (64, 64), (100, 7), (257, 1)] {
            let log = Log::new(n, batch);
            let report = log.verify(None).unwrap();
            assert_eq!(report.leaves, n);
            assert_eq!(report.checkpoints, log.checkpoints.len() as u64);
            assert_eq!(report.latest.map(|(c, _)| c.size).unwrap_or(0), n);
        }
    }

    #[test]
    fn one_changed_byte_names_the_leaf_with_tree_hashes_and_the_checkpoint_without() {
        let mut log = Log::new(40, 8);
        log.leaves[13].1 = log.leaves[13].1.replace("tj-stats", "tj-stbts");
        assert_eq!(log.verify(None), Err(VerifyError::LeafHash { index: 13 }));
        for l in &mut log.leaves {
            l.2 = None;
        }
        assert_eq!(log.verify(None), Err(VerifyError::CheckpointRoot { size: 16 }));
    }

    #[test]
    fn a_non_canonical_or_non_json_leaf_is_named() {
        let mut log = Log::new(10, 4);
        log.leaves[2].1 = log.leaves[2].1.replace(",", ", ");
        assert_eq!(log.verify(None), Err(VerifyError::LeafNotCanonical { index: 2 }));
        log.leaves[2].1 = "{".into();
        assert!(matches!(log.verify(None), Err(VerifyError::LeafNotJson { index: 2, .. })));
    }

    #[test]
    fn a_deleted_leaf_is_named_wherever_it_was() {
        let mut log = Log::new(20, 5);
        log.leaves.remove(7);
        assert_eq!(log.verify(None), Err(VerifyError::LeafOrder { expected: 7, found: 8 }));
        let mut log = Log::new(20, 5);
        log.leaves.pop();
        assert_eq!(log.verify(None), Err(VerifyError::CheckpointBeyondLog { size: 20, leaves: 19 }));
    }

    #[test]
    fn two_swapped_leaves_are_detected() {
        let mut log = Log::new(20, 5);
        let (a, b) = (log.leaves[3].1.clone(), log.leaves[11].1.clone());
        log.leaves[3].1 = b;
        log.leaves[11].1 = a;
        assert_eq!(log.verify(None), Err(VerifyError::LeafHash { index: 3 }));
        log.leaves.swap(3, 11);
        assert_eq!(log.verify(None), Err(VerifyError::LeafOrder { expected: 3, found: 11 }));
    }

    #[test]
    fn a_forged_signature_another_origin_or_a_mismatched_stored_root_is_named() {
        let log = Log::new(12, 4);
        let mut bad = log.clone_with(|l| {
            let note = &mut l.checkpoints[1].2;
            *note = note.replacen("8\n", "9\n", 1);
        });
        assert!(matches!(bad.verify(None), Err(VerifyError::CheckpointSignature { size: 8, .. })));
        let other = Signer::from_seed("other.example/log", &[9u8; 32]).unwrap();
        bad = log.clone_with(|l| {
            let (size, root, _) = l.checkpoints[2].clone();
            l.checkpoints[2].2 = other.sign_checkpoint(&Checkpoint { origin: "other.example/log".into(), size, root });
        });
        assert!(matches!(bad.verify(None), Err(VerifyError::CheckpointSignature { size: 12, .. })));
        bad = log.clone_with(|l| l.checkpoints[0].1[0] ^= 1);
        assert_eq!(bad.verify(None), Err(VerifyError::CheckpointNote { size: 4 }));
        bad = log.clone_with(|l| {
            l.leaves.push((12, "{\"i\":12}".into(), None));
        });
        assert_eq!(bad.verify(None), Err(VerifyError::LeafUncovered { index: 12, latest: 12 }));
    }

    #[test]
    fn a_later_log_is_consistent_with_a_saved_checkpoint_and_a_rewritten_one_is_not() {
        let mut log = Log::new(21, 4);
        let saved = log.latest_note();
        log.extend(30, 6);
        let report = log.verify(Some(&saved)).unwrap();
        assert_eq!(report.trusted.unwrap().size, 21);
        // The same size is consistent with itself.
        assert!(log.verify(Some(&log.latest_note())).is_ok());

        // A log rebuilt with one early leaf changed (and re-signed!) is not.
        let mut rewritten = Log::new(0, 1);
        rewritten.signer = Signer::from_seed(ORIGIN, &[9u8; 32]).unwrap();
        rewritten.leaves = log.leaves.clone();
        rewritten.leaves[5].1 = to_canonical_json(&serde_json::json!({"type": "x", "i": 5, "who": "other"})).unwrap();
        rewritten.leaves[5].2 = None;
        rewritten.tree = MemoryTree::new();
        for (_, json, _) in &rewritten.leaves {
            rewritten.tree.push(json.as_bytes());
        }
        rewritten.checkpoints = vec![{
            let root = merkle::root_at(51, &rewritten.tree).unwrap();
            (51, root, rewritten.signer.sign_checkpoint(&Checkpoint { origin: ORIGIN.into(), size: 51, root }))
        }];
        assert!(rewritten.verify(None).is_ok(), "on its own it is a valid log");
        assert_eq!(rewritten.verify(Some(&saved)), Err(VerifyError::TrustedRoot { size: 21 }));

        // A log shorter than the saved checkpoint.
        let short = Log::new(10, 5);
        assert_eq!(short.verify(Some(&saved)), Err(VerifyError::TrustedBeyondLog { size: 21, leaves: 10 }));

        // A wrong consistency proof is refused even when the leaves match.
        let r = verify_log(log.signer.verifier(), log.leaves.clone(), log.checkpoints.clone(), Some(&saved), |_, _| {
            vec![[0u8; 32]; 3]
        });
        assert!(matches!(r, Err(VerifyError::TrustedConsistency { size: 21, latest: 51, .. })));
    }

    impl Log {
        fn clone_with(&self, f: impl FnOnce(&mut Log)) -> Log {
            let mut l = Log {
                leaves: self.leaves.clone(),
                checkpoints: self.checkpoints.clone(),
                tree: MemoryTree::new(),
                signer: Signer::from_seed(ORIGIN, &[9u8; 32]).unwrap(),
            };
            for (_, json, _) in &l.leaves {
                l.tree.push(json.as_bytes());
            }
            f(&mut l);
            l
        }
    }
}
