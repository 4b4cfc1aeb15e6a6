//! RFC 6962 / RFC 9162 Merkle tree hashing, O(log n) proof generation from stored perfect subtrees, and proof verification.

use std::collections::HashMap;

use ring::digest;

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix hashed before leaf data (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;

/// Domain-separation prefix hashed before two child hashes (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Hash of one leaf: `SHA-256(0x00 ‖ data)`. Accepts any data, including empty.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], data])
}

/// Hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`. Order matters: `left` covers the lower leaf indices.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[NODE_PREFIX], left, right])
}

/// Root of the empty tree (size 0): `SHA-256("")`, i.e. `e3b0c442…b855`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// Read access to stored perfect-subtree hashes.
///
/// Node `(level, index)` is the root of the perfect subtree covering leaves
/// `[index << level, (index + 1) << level)`; level 0 nodes are leaf hashes.
/// The functions of this module only ask for nodes whose whole leaf range lies
/// inside the tree size they were given, so an implementation may treat any
/// other request as an error (e.g. "not stored").
pub trait NodeSource {
    /// Error returned when a node cannot be read (missing, I/O failure, …).
    type Error;

    /// Returns the hash of the perfect subtree `(level, index)`.
    ///
    /// # Errors
    /// Implementation-defined, typically when the node is not (yet) stored.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Error of [`inclusion_proof`] / [`consistency_proof`]: an invalid request or a failed node read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofRequestError<E> {
    /// Returned when an inclusion proof is asked for a leaf index that is not `< size`.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Requested tree size.
        size: u64,
    },
    /// Returned when a consistency proof is asked with `old_size > new_size`.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    OldSizeExceedsNewSize {
        /// Requested old size.
        old_size: u64,
        /// Requested new size.
        new_size: u64,
    },
    /// Returned when the [`NodeSource`] failed to provide a node.
    #[error("node source error: {0}")]
    Source(E),
}

/// Hash of the leaf range `[start, end)` where `start` is a multiple of the
/// smallest power of two `>= end - start` (true for every range that the
/// RFC 6962 recursion produces). Uses one node read per set bit of the length.
fn range_hash<S: NodeSource>(start: u64, end: u64, src: &S) -> Result<Hash, S::Error> {
    debug_assert!(start < end);
    let len = end - start;
    let mut parts: Vec<Hash> = Vec::with_capacity(len.count_ones() as usize);
    let mut offset = start;
    for level in (0..64u32).rev() {
        if len & (1u64 << level) != 0 {
            parts.push(src.node(level as u8, offset >> level)?);
            offset += 1u64 << level;
        }
    }
    let mut acc = parts.pop().expect("non-empty range has at least one part");
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// Largest power of two strictly smaller than `n`. Precondition: `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Root hash (RFC 6962 MTH) of the first `size` leaves.
///
/// Returns [`empty_root`] for `size == 0`. Reads one node per set bit of `size`
/// (at most 64). Requires that every perfect subtree inside `[0, size)` is stored.
///
/// # Errors
/// Propagates the first error returned by `src`.
pub fn root_at<S: NodeSource>(size: u64, src: &S) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, src)
}

/// RFC 6962 §2.1.1 audit path `PATH(index, D[0:size])`, ordered from the leaf upward.
///
/// Performs O(log size) node reads. The proof is empty when `size == 1`.
///
/// # Errors
/// [`ProofRequestError::IndexOutOfRange`] if `index >= size`;
/// [`ProofRequestError::Source`] if a node read fails.
pub fn inclusion_proof<S: NodeSource>(
    index: u64,
    size: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if index >= size {
        return Err(ProofRequestError::IndexOutOfRange { index, size });
    }
    // Walk from the root down, collecting siblings top-down, then reverse.
    let mut path = Vec::new();
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        let mid = start + k;
        if index < mid {
            path.push(range_hash(mid, end, src).map_err(ProofRequestError::Source)?);
            end = mid;
        } else {
            path.push(range_hash(start, mid, src).map_err(ProofRequestError::Source)?);
            start = mid;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 6962 §2.1.2 consistency proof `PROOF(old_size, D[0:new_size])` (the SUBPROOF algorithm).
///
/// Returns an empty proof when `old_size == 0` or `old_size == new_size` (nothing to prove).
/// Performs O(log new_size) node reads.
///
/// # Errors
/// [`ProofRequestError::OldSizeExceedsNewSize`] if `old_size > new_size`;
/// [`ProofRequestError::Source`] if a node read fails.
pub fn consistency_proof<S: NodeSource>(
    old_size: u64,
    new_size: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if old_size > new_size {
        return Err(ProofRequestError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], b), iteratively; nodes collected top-down then reversed.
    let mut proof = Vec::new();
    let (mut start, mut end, mut m, mut complete) = (0u64, new_size, old_size, true);
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(range_hash(start, end, src).map_err(ProofRequestError::Source)?);
            }
            break;
        }
        let k = split_point(n);
        let mid = start + k;
        if m <= k {
            proof.push(range_hash(mid, end, src).map_err(ProofRequestError::Source)?);
            end = mid;
        } else {
            proof.push(range_hash(start, mid, src).map_err(ProofRequestError::Source)?);
            start = mid;
            m -= k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Why a proof was rejected by [`verify_inclusion`] or [`verify_consistency`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Inclusion: returned when `index >= size` (no such leaf in the tree).
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Claimed tree size.
        size: u64,
    },
    /// Consistency: returned when `old_size > new_size`.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    OldSizeExceedsNewSize {
        /// Claimed old size.
        old_size: u64,
        /// Claimed new size.
        new_size: u64,
    },
    /// Returned when the proof does not have the exact number of hashes the
    /// (index, size) or (old_size, new_size) pair requires.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// Number of hashes supplied.
        got: usize,
        /// Number of hashes required.
        expected: usize,
    },
    /// Returned when the root recomputed from the proof differs from the
    /// expected root (inclusion root, or the new root of a consistency proof).
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
    /// Consistency: returned when the old root recomputed from the proof differs
    /// from the supplied old root (for `old_size == 0`, when it is not [`empty_root`]).
    /// When `old_size` is a power of two the old root seeds the computation, so a
    /// wrong old root is reported as [`ProofError::RootMismatch`] instead.
    #[error("recomputed old root does not match the supplied old root")]
    OldRootMismatch,
}

/// Number of proof hashes for inclusion of `index` in a tree of `size` (`index < size`).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies an RFC 9162 §2.1.3.2 inclusion proof of `leaf_hash` at `index` in the tree of `size` with `root`.
///
/// `leaf_hash` is the leaf *hash* ([`leaf_hash`] of the entry), not the entry bytes.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] if `index >= size`; [`ProofError::WrongProofLength`]
/// if `proof` does not have the length the index/size pair requires;
/// [`ProofError::RootMismatch`] if the recomputed root differs from `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { got: proof.len(), expected });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongProofLength { got: proof.len(), expected });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength { got: proof.len(), expected });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies an RFC 9162 §2.1.4.2 consistency proof that the tree (`old_size`, `old_root`)
/// is a prefix of the tree (`new_size`, `new_root`).
///
/// Edge cases: `old_size == new_size` requires an empty proof and equal roots;
/// `old_size == 0` requires an empty proof and `old_root == empty_root()`.
///
/// # Errors
/// [`ProofError::OldSizeExceedsNewSize`] if `old_size > new_size`;
/// [`ProofError::WrongProofLength`] if `proof` has the wrong number of hashes;
/// [`ProofError::OldRootMismatch`] / [`ProofError::RootMismatch`] if the recomputed
/// old / new root differs from the supplied one.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength { got: proof.len(), expected: 0 });
        }
        if old_size == 0 {
            return if *old_root == empty_root() { Ok(()) } else { Err(ProofError::OldRootMismatch) };
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    // 0 < old_size < new_size.
    let shift = old_size.trailing_zeros();
    let old_is_pow2 = old_size == 1u64 << shift;
    let inner = (64 - ((old_size - 1) ^ (new_size - 1)).leading_zeros()) - shift;
    let border = (old_size - 1).checked_shr(inner + shift).unwrap_or(0).count_ones();
    let expected = usize::from(!old_is_pow2) + (inner + border) as usize;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { got: proof.len(), expected });
    }
    // RFC 9162 §2.1.4.2, step 2: prepend old_root if old_size is a power of two.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_is_pow2 {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongProofLength { got: proof.len(), expected });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength { got: proof.len(), expected });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Error of [`MemoryTree`]'s [`NodeSource`] impl: the requested node is not complete in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node (level {level}, index {index}) is not stored")]
pub struct MissingNode {
    /// Requested level.
    pub level: u8,
    /// Requested index within the level.
    pub index: u64,
}

/// In-memory append-only Merkle tree storing every complete perfect-subtree node.
///
/// Invariant: `levels[l][i]` is node `(l, i)`, and `levels[l].len() == size >> l`
/// for every stored level. Intended for tests and offline verification tooling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Creates an empty tree (size 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry (hashed with [`leaf_hash`]) and returns its leaf index.
    pub fn push(&mut self, leaf_bytes: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(leaf_bytes))
    }

    /// Appends an already-computed leaf hash and returns its leaf index.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let index = self.levels[0].len() as u64;
        self.levels[0].push(hash);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(h);
            level += 1;
        }
        index
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Root hash of the whole tree ([`empty_root`] when empty).
    pub fn root(&self) -> Hash {
        root_at(self.size(), self).expect("all nodes of the current size are stored")
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

/// Node hashes held in memory by `(level, index)`: nodes fetched for a proof, or the edge and
/// the new nodes of a batch. Asking for any other node is an error.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn rfc_tree() -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in LEAVES {
            t.push(&hex::decode(l).unwrap());
        }
        t
    }

    /// Naive recursive RFC 6962 MTH over leaf hashes.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn flip(mut x: Hash) -> Hash {
        x[7] ^= 0x10;
        x
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(empty_root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_eq!(root_at(0, &MemoryTree::new()).unwrap(), empty_root());
        assert_eq!(MemoryTree::new().root(), empty_root());
    }

    #[test]
    fn rfc6962_roots() {
        let t = rfc_tree();
        for (i, r) in ROOTS.iter().enumerate() {
            assert_eq!(root_at(i as u64 + 1, &t).unwrap(), h(r), "size {}", i + 1);
        }
        assert_eq!(t.root(), h(ROOTS[7]));
    }

    #[test]
    fn rfc6962_inclusion_vectors() {
        let t = rfc_tree();
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(index, size, &t).unwrap();
            assert_eq!(got, want, "index {index} size {size}");
            let leaf = leaf_hash(&hex::decode(LEAVES[index as usize]).unwrap());
            verify_inclusion(&leaf, index, size, &got, &h(ROOTS[size as usize - 1])).unwrap();
        }
    }

    #[test]
    fn rfc6962_consistency_vectors() {
        let t = rfc_tree();
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(old, new, &t).unwrap();
            assert_eq!(got, want, "{old} -> {new}");
            verify_consistency(old, new, &h(ROOTS[old as usize - 1]), &h(ROOTS[new as usize - 1]), &got).unwrap();
        }
    }

    #[test]
    fn request_errors() {
        let t = rfc_tree();
        assert_eq!(inclusion_proof(8, 8, &t), Err(ProofRequestError::IndexOutOfRange { index: 8, size: 8 }));
        assert_eq!(
            consistency_proof(5, 4, &t),
            Err(ProofRequestError::OldSizeExceedsNewSize { old_size: 5, new_size: 4 })
        );
        assert_eq!(inclusion_proof(0, 9, &t), Err(ProofRequestError::Source(MissingNode { level: 0, index: 8 })));
        assert_eq!(root_at(9, &t), Err(MissingNode { level: 0, index: 8 }));
        assert_eq!(consistency_proof(0, 8, &t), Ok(vec![]));
    }

    #[test]
    fn verify_error_kinds() {
        let t = rfc_tree();
        let root = t.root();
        let leaf = t.node(0, 3).unwrap();
        let proof = inclusion_proof(3, 8, &t).unwrap();
        assert_eq!(
            verify_inclusion(&leaf, 8, 8, &proof, &root),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            verify_inclusion(&leaf, 3, 8, &proof[..2], &root),
            Err(ProofError::WrongProofLength { got: 2, expected: 3 })
        );
        assert_eq!(verify_inclusion(&leaf, 3, 8, &proof, &flip(root)), Err(ProofError::RootMismatch));
        let r4 = root_at(4, &t).unwrap();
        let cp = consistency_proof(4, 8, &t).unwrap();
        assert_eq!(
            verify_consistency(8, 4, &root, &r4, &cp),
            Err(ProofError::OldSizeExceedsNewSize { old_size: 8, new_size: 4 })
        );
        // A power-of-two old size uses old_root as the proof seed, so a wrong old
        // root surfaces as a new-root mismatch.
        assert_eq!(verify_consistency(4, 8, &flip(r4), &root, &cp), Err(ProofError::RootMismatch));
        let r6 = root_at(6, &t).unwrap();
        let cp6 = consistency_proof(6, 8, &t).unwrap();
        assert_eq!(verify_consistency(6, 8, &flip(r6), &root, &cp6), Err(ProofError::OldRootMismatch));
        assert_eq!(verify_consistency(4, 8, &r4, &flip(root), &cp), Err(ProofError::RootMismatch));
        assert_eq!(
            verify_consistency(4, 8, &r4, &root, &[]),
            Err(ProofError::WrongProofLength { got: 0, expected: 1 })
        );
        // Edge cases.
        verify_consistency(8, 8, &root, &root, &[]).unwrap();
        assert_eq!(verify_consistency(8, 8, &root, &r4, &[]), Err(ProofError::RootMismatch));
        verify_consistency(0, 8, &empty_root(), &root, &[]).unwrap();
        assert_eq!(verify_consistency(0, 8, &r4, &root, &[]), Err(ProofError::OldRootMismatch));
        assert_eq!(
            verify_consistency(0, 8, &empty_root(), &root, &[r4]),
            Err(ProofError::WrongProofLength { got: 1, expected: 0 })
        );
    }

    /// Counts node reads to check the O(log n) bound.
    struct Counting<'a>(&'a MemoryTree, std::cell::Cell<usize>);
    impl NodeSource for Counting<'_> {
        type Error = MissingNode;
        fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
            self.1.set(self.1.get() + 1);
            self.0.node(level, index)
        }
    }

    #[test]
    fn exhaustive_up_to_200() {
        const MAX: usize = 200;
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..MAX as u32 {
            let data = i.to_be_bytes();
            leaves.push(leaf_hash(&data));
            tree.push(&data);
        }
        let roots: Vec<Hash> = (0..=MAX).map(|n| reference_root(&leaves[..n])).collect();
        let counting = Counting(&tree, std::cell::Cell::new(0));
        for n in 0..=MAX {
            let size = n as u64;
            let log = 64 - size.leading_zeros() as usize; // bit length
            counting.1.set(0);
            assert_eq!(root_at(size, &counting).unwrap(), roots[n], "root {n}");
            assert!(counting.1.get() <= log);

            // Inclusion proofs.
            for (i, leaf) in leaves[..n].iter().enumerate() {
                let index = i as u64;
                counting.1.set(0);
                let proof = inclusion_proof(index, size, &counting).unwrap();
                assert!(counting.1.get() <= 2 * log + 1, "reads {n} {i}");
                verify_inclusion(leaf, index, size, &proof, &roots[n]).unwrap_or_else(|e| panic!("incl {i}/{n}: {e}"));
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j] = flip(bad[j]);
                    assert!(verify_inclusion(leaf, index, size, &bad, &roots[n]).is_err());
                }
                assert!(verify_inclusion(&flip(*leaf), index, size, &proof, &roots[n]).is_err());
                let mut bad = proof.clone();
                bad.push(roots[n]);
                assert!(verify_inclusion(leaf, index, size, &bad, &roots[n]).is_err());
                if !proof.is_empty() {
                    assert!(verify_inclusion(leaf, index, size, &proof[..proof.len() - 1], &roots[n]).is_err());
                }
                // Altered index: every other index differing by one bit or by one.
                let mut others: Vec<u64> = (0..8).map(|b| index ^ (1 << b)).collect();
                others.push(index.wrapping_sub(1));
                others.push(index + 1);
                for other in others {
                    if other != index && other < size + 2 {
                        assert!(
                            verify_inclusion(leaf, other, size, &proof, &roots[n]).is_err(),
                            "index {i}->{other} size {n}"
                        );
                    }
                }
                // Altered size, paired with the true root of the altered size.
                for other in [n.wrapping_sub(1), n + 1] {
                    if other <= MAX && other != n {
                        assert!(
                            verify_inclusion(leaf, index, other as u64, &proof, &roots[other]).is_err(),
                            "size {n}->{other} index {i}"
                        );
                    }
                }
            }

            // Consistency proofs.
            for m in 0..=n {
                let old = m as u64;
                counting.1.set(0);
                let proof = consistency_proof(old, size, &counting).unwrap();
                assert!(counting.1.get() <= 2 * log + 1, "reads {m} {n}");
                verify_consistency(old, size, &roots[m], &roots[n], &proof)
                    .unwrap_or_else(|e| panic!("cons {m}->{n}: {e}"));
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j] = flip(bad[j]);
                    assert!(
                        verify_consistency(old, size, &roots[m], &roots[n], &bad).is_err(),
                        "cons {m}->{n} hash {j}"
                    );
                }
                assert!(verify_consistency(old, size, &flip(roots[m]), &roots[n], &proof).is_err());
                if m != 0 {
                    // Any new root is consistent with the empty tree.
                    assert!(verify_consistency(old, size, &roots[m], &flip(roots[n]), &proof).is_err());
                }
                let mut bad = proof.clone();
                bad.push(roots[n]);
                assert!(verify_consistency(old, size, &roots[m], &roots[n], &bad).is_err());
                if !proof.is_empty() {
                    assert!(verify_consistency(old, size, &roots[m], &roots[n], &proof[..proof.len() - 1]).is_err());
                }
                // Altered old size / new size, each paired with its true root.
                // (Skipped when the altered claim is true and has this very proof.)
                for other in [m.wrapping_sub(1), m + 1] {
                    if other <= n && other != m && consistency_proof(other as u64, size, &tree).unwrap() != proof {
                        assert!(
                            verify_consistency(other as u64, size, &roots[other], &roots[n], &proof).is_err(),
                            "old size {m}->{other} new {n}"
                        );
                    }
                }
                for other in [n.wrapping_sub(1), n + 1] {
                    if other <= MAX
                        && other != n
                        && other >= m
                        && consistency_proof(old, other as u64, &tree).unwrap() != proof
                    {
                        assert!(
                            verify_consistency(old, other as u64, &roots[m], &roots[other], &proof).is_err(),
                            "new size {n}->{other} old {m}"
                        );
                    }
                }
            }
        }
    }
}
