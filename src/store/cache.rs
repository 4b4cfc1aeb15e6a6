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
/// Entries are collected while they are sent ([`Fill`]); what all fills in progress hold
/// together is limited to half the budget, beside the budget itself.
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
    /// Bumped by [`ChunkCache::forget`]: a fill started before cannot insert afterwards.
    generations: HashMap<(DatasetId, ParticipantId), u64>,
    /// Bytes held by fills in progress.
    filling: usize,
}

impl Inner {
    fn generation(&self, dataset: &DatasetId, extract: &Extract) -> u64 {
        match extract {
            Extract::Stored => 0,
            Extract::Masked { recipient, .. } => {
                self.generations.get(&(dataset.clone(), recipient.clone())).copied().unwrap_or(0)
            }
        }
    }
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
        // A panic elsewhere while holding the lock leaves a consistent map (every change is one
        // statement): keep serving rather than panic every later pull.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunks of a version's `extract`, if cached.
    pub fn get(&self, dataset: &DatasetId, version: u64, extract: &Extract) -> Option<VersionChunks> {
        self.lock().entries.get(&(dataset.clone(), version, extract.clone())).cloned()
    }

    /// Whether an entry of `bytes` bytes would be cached.
    fn admits(&self, bytes: usize) -> bool {
        bytes <= self.budget / 2
    }

    /// Starts collecting every chunk of a version's `extract` as it goes out, to be cached by
    /// [`Fill::finish`] when the whole version went out. Stored chunks must have been checked
    /// against their digests; an extract's are the masking of such chunks.
    pub fn fill(self: &Arc<Self>, dataset: &DatasetId, version: u64, extract: Extract) -> Fill {
        let generation = self.lock().generation(dataset, &extract);
        Fill {
            cache: self.clone(),
            key: Some((dataset.clone(), version, extract)),
            generation,
            chunks: Vec::new(),
            bytes: 0,
        }
    }

    /// Caches `chunks` under `key`, evicting the oldest entries to stay within budget, unless
    /// the recipient's extracts were forgotten since `generation` was read.
    fn insert(&self, key: Key, generation: u64, chunks: Vec<StoredChunk>) {
        let bytes = size(&chunks);
        if !self.admits(bytes) {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.contains_key(&key) || inner.generation(&key.0, &key.2) != generation {
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
        *inner.generations.entry((dataset.clone(), recipient.clone())).or_default() += 1;
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

/// Chunks of a whole version or extract collected while they go out ([`ChunkCache::fill`]).
/// It gives up (keeps nothing more) when the entry would exceed what the cache admits or the
/// fills in progress would hold more than half the budget; dropping it releases what it held.
#[derive(Debug)]
pub struct Fill {
    cache: Arc<ChunkCache>,
    /// `None` once given up.
    key: Option<Key>,
    generation: u64,
    chunks: Vec<StoredChunk>,
    bytes: usize,
}

impl Fill {
    /// Keeps `chunk` (the next one of the version).
    pub fn keep(&mut self, chunk: StoredChunk) {
        if self.key.is_none() {
            return;
        }
        let n = chunk.data.len();
        let fits = {
            let mut inner = self.cache.lock();
            let fits = self.cache.admits(self.bytes + n) && inner.filling + n <= self.cache.budget / 2;
            if fits {
                inner.filling += n;
            }
            fits
        };
        if fits {
            self.bytes += n;
            self.chunks.push(chunk);
        } else {
            self.give_up();
        }
    }

    fn give_up(&mut self) {
        self.key = None;
        self.chunks = Vec::new();
        self.cache.lock().filling -= std::mem::take(&mut self.bytes);
    }

    /// Caches what was kept if it is the whole version: `chunks` of them.
    pub fn finish(mut self, chunks: u64) {
        if let Some(key) = self.key.take() {
            if self.chunks.len() as u64 == chunks {
                let kept = std::mem::take(&mut self.chunks);
                self.cache.insert(key, self.generation, kept);
            }
        }
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.give_up();
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

    trait Put {
        fn put(&self, d: &DatasetId, version: u64, extract: Extract, chunks: Vec<StoredChunk>);
    }

    impl Put for Arc<ChunkCache> {
        fn put(&self, d: &DatasetId, version: u64, extract: Extract, chunks: Vec<StoredChunk>) {
            let mut fill = self.fill(d, version, extract);
            let n = chunks.len() as u64;
            chunks.into_iter().for_each(|c| fill.keep(c));
            fill.finish(n);
        }
    }

    #[test]
    fn the_oldest_entries_leave_first_and_large_ones_never_enter() {
        let cache = Arc::new(ChunkCache::new(100));
        let d = DatasetId::parse("d").unwrap();
        cache.put(&d, 1, Extract::Stored, chunks(40));
        cache.put(&d, 2, Extract::Stored, chunks(40));
        cache.put(&d, 3, Extract::Stored, chunks(40));
        assert!(cache.get(&d, 1, &Extract::Stored).is_none());
        assert!(cache.get(&d, 2, &Extract::Stored).is_some() && cache.get(&d, 3, &Extract::Stored).is_some());
        cache.put(&d, 4, Extract::Stored, chunks(51));
        assert!(cache.get(&d, 4, &Extract::Stored).is_none());
        assert_eq!(cache.bytes(), 80);
        assert_eq!(cache.lock().filling, 0, "fills release what they held");
    }

    #[test]
    fn fills_in_progress_hold_at_most_half_the_budget_together() {
        let cache = Arc::new(ChunkCache::new(100));
        let d = DatasetId::parse("d").unwrap();
        let mut a = cache.fill(&d, 1, Extract::Stored);
        let mut b = cache.fill(&d, 2, Extract::Stored);
        a.keep(chunks(30).remove(0));
        b.keep(chunks(30).remove(0));
        assert_eq!(cache.lock().filling, 30, "the second fill gave up");
        a.finish(1);
        b.finish(1);
        assert!(cache.get(&d, 1, &Extract::Stored).is_some() && cache.get(&d, 2, &Extract::Stored).is_none());
        assert_eq!(cache.lock().filling, 0);
        let mut partial = cache.fill(&d, 3, Extract::Stored);
        partial.keep(chunks(10).remove(0));
        partial.finish(2);
        assert!(cache.get(&d, 3, &Extract::Stored).is_none(), "not the whole version");
    }

    #[test]
    fn a_fill_started_before_its_recipient_was_forgotten_caches_nothing() {
        let cache = Arc::new(ChunkCache::new(1000));
        let d = DatasetId::parse("d").unwrap();
        let mut before = cache.fill(&d, 1, masked("a", 1));
        before.keep(chunks(10).remove(0));
        cache.forget(&d, &ParticipantId::parse("a").unwrap());
        before.finish(1);
        assert!(cache.get(&d, 1, &masked("a", 1)).is_none());
        cache.put(&d, 1, masked("a", 1), chunks(10));
        assert!(cache.get(&d, 1, &masked("a", 1)).is_some(), "a fill started afterwards caches");
    }

    #[test]
    fn extracts_are_kept_per_recipient_and_shape_and_forgotten_per_recipient() {
        let cache = Arc::new(ChunkCache::new(1000));
        let (d, e) = (DatasetId::parse("d").unwrap(), DatasetId::parse("e").unwrap());
        cache.put(&d, 1, Extract::Stored, chunks(10));
        cache.put(&d, 1, masked("a", 1), chunks(20));
        cache.put(&d, 1, masked("a", 2), chunks(30));
        cache.put(&d, 1, masked("b", 1), chunks(40));
        cache.put(&e, 1, masked("a", 1), chunks(50));
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
