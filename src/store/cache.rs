//! A bounded in-memory cache of whole versions as they go out: the verified stored chunks of a
//! version, and the masked extracts of it that particular recipients receive.
//!
//! Versions are immutable, so a chunk whose digest was checked once is served again without
//! reading or hashing it; an extract is a pure function of the version, the recipient's mask key
//! and the delivered shape (fields, masks, row filter), so a recipient pulling the same shape
//! again is served the same bytes without masking them again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::StoredChunk;
use crate::domain::ids::{DatasetId, ParticipantId};

/// Every chunk of one version (or extract), in order. Stored chunks were verified against their
/// digest; an extract's chunks carry the digest of their masked bytes.
pub type VersionChunks = Arc<Vec<StoredChunk>>;

/// Which bytes of a version an entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Extract {
    /// The stored chunks, every field in clear.
    Stored,
    /// What one recipient receives with one delivered shape.
    Masked {
        /// The recipient (its `HASH` key is derived from its id).
        recipient: ParticipantId,
        /// Digest of the delivered shape: fields, their types and masks, the row filter.
        shape: [u8; 32],
    },
}

/// Whole versions and extracts, evicted oldest-inserted first beyond `budget` bytes.
///
/// # Defaults
/// The server uses `cache_mib` of the configuration (512 MiB); an entry larger than half the
/// budget is never cached.
#[derive(Debug)]
pub struct ChunkCache {
    budget: usize,
    inner: Mutex<Inner>,
}

type Key = (DatasetId, u64, Extract);

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, VersionChunks>,
    order: VecDeque<Key>,
    bytes: usize,
}

fn size(chunks: &[StoredChunk]) -> usize {
    chunks.iter().map(|c| c.data.len()).sum()
}

impl ChunkCache {
    /// A cache holding at most `budget` bytes of chunk data.
    pub fn new(budget: usize) -> ChunkCache {
        ChunkCache { budget, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// The chunks of a version's `extract`, if cached.
    pub fn get(&self, dataset: &DatasetId, version: u64, extract: &Extract) -> Option<VersionChunks> {
        self.lock().entries.get(&(dataset.clone(), version, extract.clone())).cloned()
    }

    /// Whether an entry of `bytes` bytes would be cached.
    pub fn admits(&self, bytes: usize) -> bool {
        bytes <= self.budget / 2
    }

    /// Caches every chunk of a version's `extract` (precondition: stored chunks were checked
    /// against their digests; an extract's are the masking of such chunks), evicting the oldest
    /// entries to stay within budget.
    pub fn insert(&self, dataset: &DatasetId, version: u64, extract: Extract, chunks: Vec<StoredChunk>) {
        let bytes = size(&chunks);
        if !self.admits(bytes) {
            return;
        }
        let mut inner = self.lock();
        let key = (dataset.clone(), version, extract);
        if inner.entries.contains_key(&key) {
            return;
        }
        while inner.bytes + bytes > self.budget {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(v) = inner.entries.remove(&old) {
                inner.bytes -= size(&v);
            }
        }
        inner.bytes += bytes;
        inner.order.push_back(key.clone());
        inner.entries.insert(key, Arc::new(chunks));
    }

    /// Drops every extract of `dataset` prepared for `recipient` (its grant ended).
    pub fn forget(&self, dataset: &DatasetId, recipient: &ParticipantId) {
        let mut inner = self.lock();
        let gone =
            |(d, _, e): &Key| d == dataset && matches!(e, Extract::Masked { recipient: r, .. } if r == recipient);
        let mut freed = 0;
        inner.entries.retain(|k, v| {
            let keep = !gone(k);
            if !keep {
                freed += size(v);
            }
            keep
        });
        inner.order.retain(|k| !gone(k));
        inner.bytes -= freed;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Versions and extracts held.
    pub fn entries(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chunks(n: usize) -> Vec<StoredChunk> {
        vec![StoredChunk { seq: 0, rows: 1, sha256: [0; 32], data: Bytes::from(vec![0u8; n]) }]
    }

    fn masked(recipient: &str, shape: u8) -> Extract {
        Extract::Masked { recipient: ParticipantId::parse(recipient).unwrap(), shape: [shape; 32] }
    }

    #[test]
    fn the_oldest_entries_leave_first_and_large_ones_never_enter() {
        let cache = ChunkCache::new(100);
        let d = DatasetId::parse("d").unwrap();
        cache.insert(&d, 1, Extract::Stored, chunks(40));
        cache.insert(&d, 2, Extract::Stored, chunks(40));
        cache.insert(&d, 3, Extract::Stored, chunks(40));
        assert!(cache.get(&d, 1, &Extract::Stored).is_none());
        assert!(cache.get(&d, 2, &Extract::Stored).is_some() && cache.get(&d, 3, &Extract::Stored).is_some());
        cache.insert(&d, 4, Extract::Stored, chunks(51));
        assert!(cache.get(&d, 4, &Extract::Stored).is_none());
        assert_eq!(cache.bytes(), 80);
    }

    #[test]
    fn extracts_are_kept_per_recipient_and_shape_and_forgotten_per_recipient() {
        let cache = ChunkCache::new(1000);
        let (d, e) = (DatasetId::parse("d").unwrap(), DatasetId::parse("e").unwrap());
        cache.insert(&d, 1, Extract::Stored, chunks(10));
        cache.insert(&d, 1, masked("a", 1), chunks(20));
        cache.insert(&d, 1, masked("a", 2), chunks(30));
        cache.insert(&d, 1, masked("b", 1), chunks(40));
        cache.insert(&e, 1, masked("a", 1), chunks(50));
        assert_eq!(cache.get(&d, 1, &masked("a", 2)).unwrap()[0].data.len(), 30);
        assert!(cache.get(&d, 2, &masked("a", 2)).is_none(), "another version");
        cache.forget(&d, &ParticipantId::parse("a").unwrap());
        assert!(cache.get(&d, 1, &masked("a", 1)).is_none() && cache.get(&d, 1, &masked("a", 2)).is_none());
        assert!(cache.get(&d, 1, &masked("b", 1)).is_some(), "another recipient");
        assert!(cache.get(&e, 1, &masked("a", 1)).is_some(), "another dataset");
        assert!(cache.get(&d, 1, &Extract::Stored).is_some());
        assert_eq!((cache.bytes(), cache.entries()), (100, 3));
    }
}
