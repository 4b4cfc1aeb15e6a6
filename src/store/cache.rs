//! A bounded in-memory cache of verified chunks of published versions. Versions are immutable,
//! so a chunk whose digest was checked once is served again without reading or hashing it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::StoredChunk;
use crate::domain::ids::DatasetId;

/// Every chunk of one version, in order, each verified against its digest.
pub type VersionChunks = Arc<Vec<StoredChunk>>;

/// Whole versions, evicted oldest-inserted first beyond `budget` bytes.
///
/// # Defaults
/// The server uses 256 MiB; a version larger than half the budget is never cached.
#[derive(Debug)]
pub struct ChunkCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    versions: HashMap<(DatasetId, u64), VersionChunks>,
    order: VecDeque<(DatasetId, u64)>,
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

    /// The verified chunks of a version, if cached.
    pub fn get(&self, dataset: &DatasetId, version: u64) -> Option<VersionChunks> {
        self.inner.lock().expect("not poisoned").versions.get(&(dataset.clone(), version)).cloned()
    }

    /// Whether a version of `bytes` bytes would be cached.
    pub fn admits(&self, bytes: usize) -> bool {
        bytes <= self.budget / 2
    }

    /// Caches the verified chunks of a whole version (precondition: every chunk's digest was
    /// checked), evicting the oldest versions to stay within budget.
    pub fn insert(&self, dataset: &DatasetId, version: u64, chunks: Vec<StoredChunk>) {
        let bytes = size(&chunks);
        if !self.admits(bytes) {
            return;
        }
        let mut inner = self.inner.lock().expect("not poisoned");
        let key = (dataset.clone(), version);
        if inner.versions.contains_key(&key) {
            return;
        }
        while inner.bytes + bytes > self.budget {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(v) = inner.versions.remove(&old) {
                inner.bytes -= size(&v);
            }
        }
        inner.bytes += bytes;
        inner.order.push_back(key.clone());
        inner.versions.insert(key, Arc::new(chunks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chunks(n: usize) -> Vec<StoredChunk> {
        vec![StoredChunk { seq: 0, rows: 1, sha256: [0; 32], data: Bytes::from(vec![0u8; n]) }]
    }

    #[test]
    fn the_oldest_versions_leave_first_and_large_ones_never_enter() {
        let cache = ChunkCache::new(100);
        let d = DatasetId::parse("d").unwrap();
        cache.insert(&d, 1, chunks(40));
        cache.insert(&d, 2, chunks(40));
        cache.insert(&d, 3, chunks(40));
        assert!(cache.get(&d, 1).is_none());
        assert!(cache.get(&d, 2).is_some() && cache.get(&d, 3).is_some());
        cache.insert(&d, 4, chunks(51));
        assert!(cache.get(&d, 4).is_none());
    }
}
