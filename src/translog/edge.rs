//! The right edge of the log (its "compact range"): what the sequencer keeps in memory so that
//! appending a batch, computing the new root and the new leaves' inclusion proofs read nothing
//! from storage.

use std::collections::HashMap;

use super::merkle::{self, Hash, NodeSource};

/// The perfect subtrees a tree of `size` leaves decomposes into, left to right (largest first):
/// one per set bit of `size`.
pub fn decomposition(size: u64) -> Vec<(u8, u64)> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            out.push((level, start >> level));
            start += width;
        }
    }
    out
}

/// Perfect-subtree hashes by `(level, index)`; asking for any other node is an error.
#[derive(Debug, Clone, Default)]
pub struct NodeMap(pub HashMap<(u8, u64), Hash>);

/// A node a [`NodeMap`] does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node ({0}, {1}) is not held")]
pub struct NotHeld(pub u8, pub u64);

impl NodeSource for NodeMap {
    type Error = NotHeld;
    fn node(&self, level: u8, index: u64) -> Result<Hash, NotHeld> {
        self.0.get(&(level, index)).copied().ok_or(NotHeld(level, index))
    }
}

/// The decomposition nodes of a tree of `size` leaves.
///
/// Invariant: `nodes` holds exactly the nodes of [`decomposition`]`(size)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    size: u64,
    nodes: Vec<(u8, u64, Hash)>,
}

/// The outcome of appending leaves to an [`Edge`].
#[derive(Debug, Clone)]
pub struct Appended {
    /// The edge after the append.
    pub edge: Edge,
    /// Every perfect subtree completed by the append (level 0 included): what to store.
    pub nodes: Vec<(u8, u64, Hash)>,
    /// The root of the new tree.
    pub root: Hash,
    /// The old edge and the new nodes: enough for the new leaves' inclusion proofs in the new tree.
    pub source: NodeMap,
}

impl Edge {
    /// The edge of the empty tree.
    pub fn empty() -> Edge {
        Edge::default()
    }

    /// Builds the edge of a tree of `size` leaves from its decomposition nodes, read with `src`.
    ///
    /// # Errors
    /// The first failed read.
    pub fn load<S: NodeSource>(size: u64, src: &S) -> Result<Edge, S::Error> {
        let nodes = decomposition(size)
            .into_iter()
            .map(|(level, index)| src.node(level, index).map(|h| (level, index, h)))
            .collect::<Result<_, _>>()?;
        Ok(Edge { size, nodes })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree.
    pub fn root(&self) -> Hash {
        let map = NodeMap(self.nodes.iter().map(|&(l, i, h)| ((l, i), h)).collect());
        merkle::root_at(self.size, &map).expect("the edge holds the decomposition")
    }

    /// Appends leaf hashes.
    pub fn append(&self, leaf_hashes: &[Hash]) -> Appended {
        let mut map = NodeMap(self.nodes.iter().map(|&(l, i, h)| ((l, i), h)).collect());
        let nodes = merkle::nodes_to_store(self.size, leaf_hashes, &map).expect("nodes_to_store reads the edge only");
        map.0.extend(nodes.iter().map(|&(l, i, h)| ((l, i), h)));
        let size = self.size + leaf_hashes.len() as u64;
        let edge = Edge::load(size, &map).expect("the new edge is made of old edge and new nodes");
        let root = merkle::root_at(size, &map).expect("the new root reads the new edge");
        Appended { edge, nodes, root, source: map }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::merkle::{inclusion_proof, verify_inclusion, MemoryTree};

    #[test]
    fn decomposition_follows_the_bits() {
        assert_eq!(decomposition(0), vec![]);
        assert_eq!(decomposition(6), vec![(2, 0), (1, 2)]);
        assert_eq!(decomposition(7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(decomposition(8), vec![(3, 0)]);
    }

    #[test]
    fn appending_in_uneven_batches_matches_a_tree_built_at_once_and_proves_new_leaves() {
        let mut reference = MemoryTree::new();
        let mut edge = Edge::empty();
        let mut next = 0u32;
        for batch in [1usize, 2, 3, 5, 8, 13, 1, 1, 64, 7] {
            let leaves: Vec<Hash> = (0..batch)
                .map(|_| {
                    next += 1;
                    merkle::leaf_hash(&next.to_be_bytes())
                })
                .collect();
            for l in &leaves {
                reference.push_leaf_hash(*l);
            }
            let first = edge.size();
            let a = edge.append(&leaves);
            assert_eq!(a.root, reference.root());
            for (k, l) in leaves.iter().enumerate() {
                let index = first + k as u64;
                let proof = inclusion_proof(index, a.edge.size(), &a.source).expect("proof from memory");
                verify_inclusion(l, index, a.edge.size(), &proof, &a.root).unwrap();
            }
            edge = a.edge;
            assert_eq!(edge.root(), reference.root());
        }
    }
}
