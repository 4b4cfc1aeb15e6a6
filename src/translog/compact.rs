//! Compact ranges of the RFC 6962 tree, after transparency-dev/merkle's `compact.Range`: the
//! fewest perfect subtrees covering leaves `[begin, end)`. The log's right edge is the range from
//! leaf 0; the sequencer appends a batch to it and the verifier folds leaves into it, and both
//! learn from the visitor which nodes the append completed (what the store keeps).

use super::merkle::{empty_root, node_hash, Hash, NodeSource};

/// A node of the tree: the root of the perfect subtree covering leaves
/// `[index << level, (index + 1) << level)`. Level 0 nodes are leaf hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height above the leaves.
    pub level: u8,
    /// Position within its level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The node `(level, index)`.
    pub const fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }

    fn parent(self) -> NodeId {
        NodeId { level: self.level + 1, index: self.index >> 1 }
    }

    /// The left sibling of a right child; `None` for a left child.
    fn left_sibling(self) -> Option<NodeId> {
        (self.index & 1 == 1).then(|| NodeId { level: self.level, index: self.index - 1 })
    }
}

/// The nodes of the compact range `[begin, end)`, left to right: every leaf of the range lies
/// under exactly one of them, and none of them has a sibling among them (so none can be merged).
/// Sizes first grow, then shrink. Empty when `begin >= end`.
pub fn range_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut pos = begin;
    while pos < end {
        // The largest subtree that starts at `pos` (aligned) and ends by `end`.
        let level = pos.trailing_zeros().min(63 - (end - pos).leading_zeros());
        out.push(NodeId::new(level as u8, pos >> level));
        pos += 1 << level;
    }
    out
}

/// The right edge of a tree of `size` leaves: the nodes of the range `[0, size)` as
/// `(level, index)`, largest first, one per set bit of `size`. The store reads these to resume
/// appending (`Store::integrate`'s `TreeHead::edge`).
pub fn decomposition(size: u64) -> Vec<(u8, u64)> {
    range_nodes(0, size).into_iter().map(|n| (n.level, n.index)).collect()
}

/// [`CompactRange::append_range`] was given a range that does not start where this one ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ranges are not adjacent: one ends at leaf {end}, the other begins at leaf {begin}")]
pub struct NotAdjacent {
    /// Where the extended range ends.
    pub end: u64,
    /// Where the appended range begins.
    pub begin: u64,
}

/// The hashes of the perfect subtrees covering leaves `[begin, end)`.
///
/// Invariant: `nodes` lists exactly [`range_nodes`]`(begin, end)`, each with its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactRange {
    begin: u64,
    end: u64,
    nodes: Vec<(NodeId, Hash)>,
}

impl CompactRange {
    /// The empty range `[begin, begin)`: appends grow it from leaf `begin`.
    pub fn empty(begin: u64) -> CompactRange {
        CompactRange { begin, end: begin, nodes: Vec::new() }
    }

    /// The range `[begin, end)` from its nodes ([`range_nodes`]), read with `src`.
    ///
    /// # Errors
    /// The first failed read.
    ///
    /// # Panics
    /// If `begin > end`.
    pub fn load<S: NodeSource>(begin: u64, end: u64, src: &S) -> Result<CompactRange, S::Error> {
        assert!(begin <= end, "a range cannot end (leaf {end}) before it begins (leaf {begin})");
        let nodes = range_nodes(begin, end)
            .into_iter()
            .map(|id| src.node(id.level, id.index).map(|hash| (id, hash)))
            .collect::<Result<_, _>>()?;
        Ok(CompactRange { begin, end, nodes })
    }

    /// The first leaf covered.
    pub fn begin(&self) -> u64 {
        self.begin
    }

    /// One past the last leaf covered: the tree size, for a range from leaf 0.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The covering nodes and their hashes, left to right.
    pub fn nodes(&self) -> &[(NodeId, Hash)] {
        &self.nodes
    }

    /// Appends the leaf hash of leaf `end`. `visit` is called with every node this completes,
    /// bottom up: the leaf itself first, then each parent it completes.
    ///
    /// # Panics
    /// If the range already ends at leaf `u64::MAX`.
    pub fn append(&mut self, leaf: Hash, mut visit: impl FnMut(NodeId, &Hash)) {
        let id = NodeId::new(0, self.end);
        self.end = self.end.checked_add(1).expect("a tree holds fewer than 2^64 leaves");
        visit(id, &leaf);
        self.push(id, leaf, &mut visit);
    }

    /// Appends `other`, which must begin where this range ends. `visit` is called with every
    /// node the merge completes (parents of nodes of both ranges), bottom up; the nodes of
    /// `other` are not visited again.
    ///
    /// # Errors
    /// [`NotAdjacent`] when `other` does not begin at [`CompactRange::end`]; nothing changes.
    pub fn append_range(
        &mut self,
        other: &CompactRange,
        mut visit: impl FnMut(NodeId, &Hash),
    ) -> Result<(), NotAdjacent> {
        if other.begin != self.end {
            return Err(NotAdjacent { end: self.end, begin: other.begin });
        }
        for &(id, hash) in &other.nodes {
            self.push(id, hash, &mut visit);
        }
        self.end = other.end;
        Ok(())
    }

    /// The root (RFC 6962 MTH) of the tree of the first [`CompactRange::end`] leaves;
    /// [`empty_root`] for the empty tree.
    ///
    /// # Panics
    /// If the range does not begin at leaf 0 (only a whole tree has a root).
    pub fn root(&self) -> Hash {
        assert_eq!(self.begin, 0, "only a range from leaf 0 is a tree with a root");
        let mut nodes = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else { return empty_root() };
        for (_, left) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// Puts node `id`, which starts where the last node ends, at the right of the range,
    /// merging it with its left sibling as long as that is the last node.
    fn push(&mut self, mut id: NodeId, mut hash: Hash, visit: &mut impl FnMut(NodeId, &Hash)) {
        while let Some(&(last, left)) = self.nodes.last() {
            if id.left_sibling() != Some(last) {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            id = id.parent();
            visit(id, &hash);
        }
        self.nodes.push((id, hash));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::translog::merkle::{self, leaf_hash, MemoryTree};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// RFC 6962 §2.1 MTH, word for word: split at the largest power of two below `n`.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// The maximal perfect subtrees inside `[begin, end)`, by descent from a root above every
    /// leaf: a node inside the range is taken whole, a node straddling it is split.
    fn covering(begin: u64, end: u64) -> Vec<NodeId> {
        fn descend(level: u32, index: u128, begin: u128, end: u128, out: &mut Vec<NodeId>) {
            let (start, stop) = (index << level, (index + 1) << level);
            if stop <= begin || end <= start {
                return;
            }
            if begin <= start && stop <= end {
                out.push(NodeId::new(level as u8, index as u64));
                return;
            }
            descend(level - 1, 2 * index, begin, end, out);
            descend(level - 1, 2 * index + 1, begin, end, out);
        }
        let mut out = Vec::new();
        descend(64, 0, u128::from(begin), u128::from(end), &mut out);
        out
    }

    /// Every node whose leaves all lie in `[0, size)` and the last of them in `[from, size)`:
    /// what appending leaves `from..size` to a tree of `from` leaves must store, computed from
    /// the leaves beneath each node.
    fn completed(leaves: &[Hash], from: u64, size: u64) -> BTreeMap<NodeId, Hash> {
        let mut out = BTreeMap::new();
        for level in 0..64u32 {
            for index in 0..(size >> level) {
                let (start, stop) = (index << level, (index + 1) << level);
                if stop > from {
                    out.insert(NodeId::new(level as u8, index), mth(&leaves[start as usize..stop as usize]));
                }
            }
        }
        out
    }

    /// A range of `leaves[begin..end]` appended one by one, and what it visited.
    fn built(leaves: &[Hash], begin: u64, end: u64) -> (CompactRange, Vec<(NodeId, Hash)>) {
        let mut range = CompactRange::empty(begin);
        let mut visited = Vec::new();
        for leaf in &leaves[begin as usize..end as usize] {
            range.append(*leaf, |id, h| visited.push((id, *h)));
        }
        (range, visited)
    }

    #[test]
    fn decomposition_follows_the_bits() {
        assert_eq!(decomposition(0), vec![]);
        assert_eq!(decomposition(6), vec![(2, 0), (1, 2)]);
        assert_eq!(decomposition(7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(decomposition(8), vec![(3, 0)]);
        assert_eq!(decomposition(u64::MAX).len(), 64);
    }

    #[test]
    fn a_range_inside_the_tree_grows_then_shrinks() {
        // [6, 29): 6..8 (one of 2), 8..16, 16..24, 24..28, 28.
        let ids = range_nodes(6, 29);
        assert_eq!(ids, [(1, 3), (3, 1), (3, 2), (2, 6), (0, 28)].map(|(l, i)| NodeId::new(l, i)).to_vec(), "[6, 29)");
        assert_eq!(range_nodes(5, 5), vec![]);
        assert_eq!(range_nodes(7, 3), vec![]);
        assert_eq!(range_nodes(u64::MAX - 1, u64::MAX), vec![NodeId::new(0, u64::MAX - 1)]);
    }

    #[test]
    fn the_empty_tree_has_the_empty_root_and_a_lone_leaf_is_its_own_root() {
        let mut range = CompactRange::empty(0);
        assert_eq!(range.root(), empty_root());
        let leaf = leaf_hash(b"first");
        let mut visited = Vec::new();
        range.append(leaf, |id, h| visited.push((id, *h)));
        assert_eq!(range.root(), leaf);
        assert_eq!(visited, vec![(NodeId::new(0, 0), leaf)]);
    }

    #[test]
    fn appending_a_range_that_does_not_start_at_the_end_changes_nothing() {
        let hashes = leaves(8);
        let (mut left, _) = built(&hashes, 0, 3);
        let before = left.clone();
        let (gap, _) = built(&hashes, 4, 8);
        assert_eq!(left.append_range(&gap, |_, _| panic!("nothing is visited")), Err(NotAdjacent { end: 3, begin: 4 }));
        assert_eq!(left, before);
    }

    #[test]
    #[should_panic(expected = "only a range from leaf 0")]
    fn a_range_that_does_not_start_at_leaf_0_has_no_root() {
        let _ = built(&leaves(4), 1, 3).0.root();
    }

    #[test]
    fn the_root_of_every_tree_up_to_300_leaves_is_the_rfc_6962_root() {
        let hashes = leaves(300);
        let mut tree = MemoryTree::new();
        let mut range = CompactRange::empty(0);
        for (n, leaf) in hashes.iter().enumerate() {
            tree.push_leaf_hash(*leaf);
            range.append(*leaf, |_, _| {});
            assert_eq!(range.root(), mth(&hashes[..=n]), "size {}", n + 1);
            assert_eq!(range.root(), merkle::root_at(n as u64 + 1, &tree).unwrap());
            assert_eq!(CompactRange::load(0, n as u64 + 1, &tree).unwrap(), range);
        }
    }

    proptest! {
        #[test]
        fn range_nodes_are_the_maximal_subtrees_inside_the_range(begin in any::<u64>(), len in any::<u64>()) {
            let end = begin.saturating_add(len >> (len % 64));
            prop_assert_eq!(range_nodes(begin, end), covering(begin, end));
        }

        #[test]
        fn the_root_is_the_rfc_6962_root(n in 0u64..600) {
            let hashes = leaves(n);
            let (range, _) = built(&hashes, 0, n);
            prop_assert_eq!(range.root(), mth(&hashes));
            prop_assert_eq!(range.nodes().iter().map(|(id, _)| *id).collect::<Vec<_>>(), range_nodes(0, n));
        }

        #[test]
        fn a_batch_appended_visits_exactly_the_nodes_it_completes(from in 0u64..300, batch in 0u64..300) {
            let hashes = leaves(from + batch);
            let mut tree = MemoryTree::new();
            for h in &hashes[..from as usize] {
                tree.push_leaf_hash(*h);
            }
            let mut range = CompactRange::load(0, from, &tree).unwrap();
            let mut visited = BTreeMap::new();
            for leaf in &hashes[from as usize..] {
                range.append(*leaf, |id, h| assert!(visited.insert(id, *h).is_none(), "{id:?} visited twice"));
            }
            prop_assert_eq!(visited, completed(&hashes, from, from + batch));
        }

        #[test]
        fn merging_ranges_in_any_order_equals_appending_leaf_by_leaf(
            n in 0u64..400,
            cuts in proptest::collection::vec(any::<u64>(), 0..12),
            order in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let hashes = leaves(n);
            let (whole, one_by_one) = built(&hashes, 0, n);
            let mut bounds: Vec<u64> = cuts.iter().map(|c| c % (n + 1)).chain([0, n]).collect();
            bounds.sort_unstable();
            bounds.dedup();
            let mut visited: BTreeMap<NodeId, Hash> = BTreeMap::new();
            let mut record = |id: NodeId, h: &Hash| assert!(visited.insert(id, *h).is_none(), "{id:?} visited twice");
            let mut pieces: Vec<CompactRange> = if n == 0 {
                vec![CompactRange::empty(0)]
            } else {
                bounds
                    .windows(2)
                    .map(|w| {
                        let (piece, nodes) = built(&hashes, w[0], w[1]);
                        nodes.into_iter().for_each(|(id, h)| record(id, &h));
                        piece
                    })
                    .collect()
            };
            // Merge adjacent pieces in the order drawn, then whatever is left from the left.
            for k in order.into_iter().chain(std::iter::repeat(0)) {
                if pieces.len() == 1 {
                    break;
                }
                let at = k % (pieces.len() - 1);
                let right = pieces.remove(at + 1);
                pieces[at].append_range(&right, &mut record).unwrap();
            }
            prop_assert_eq!(&pieces[0], &whole);
            prop_assert_eq!(visited, one_by_one.into_iter().collect::<BTreeMap<_, _>>());
        }
    }
}
