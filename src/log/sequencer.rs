//! The sequencer: one task per gateway that group-commits records into the log, integrates
//! every queued record in store order, signs a checkpoint per batch and hands out receipts.
//!
//! A batch closes at `batch_max` entries or `batch_wait` after its first entry; when the
//! previous batch held a single entry (nobody else is appending), it closes with what is already
//! queued, without waiting, so that a lone append is not delayed. Callers beyond the bounded
//! queue are refused at once (`LogError::Full`) rather than held in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::domain::record::{NewRecord, PreparedRecord};
use crate::store::{Integration, QueuedRecord, Store, StoreError, StoredCheckpoint, TreeHead};
use crate::translog::compact::{decomposition, CompactRange};
use crate::translog::merkle::{self, Hash, NodeMap};
use crate::translog::note::{self, Checkpoint, Signer};

/// How the sequencer batches.
///
/// # Defaults
/// 64 entries, 2 ms, a queue of 8192 entries, an idle integration every second (records
/// written by state changes and the offline CLI are integrated at the latest then).
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The checkpoint origin line (also the signing key's name).
    pub origin: String,
    /// Entries per batch.
    pub batch_max: usize,
    /// How long a batch waits for more entries after its first.
    pub batch_wait: Duration,
    /// Entries waiting beyond which appends are refused.
    pub queue: usize,
    /// Integration of records queued by state changes when nothing else happens.
    pub idle: Duration,
}

impl LogSettings {
    /// The defaults with `origin`.
    pub fn new(origin: impl Into<String>) -> LogSettings {
        LogSettings {
            origin: origin.into(),
            batch_max: 64,
            batch_wait: Duration::from_millis(2),
            queue: 8192,
            idle: Duration::from_secs(1),
        }
    }
}

/// Why an append has no receipt. In every case the operation that needed it must not proceed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The queue is full.
    #[error("the transfer log queue is full")]
    Full,
    /// The record or the checkpoint could not be stored.
    #[error("the transfer log cannot be written")]
    Unavailable(#[source] StoreError),
    /// The sequencer has stopped (the gateway is shutting down).
    #[error("the transfer log sequencer stopped")]
    Stopped,
}

/// Proof that a record is in the log: verifiable offline against the gateway's verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The record's leaf index.
    pub index: u64,
    /// `SHA-256(0x00 ‖ leaf)`.
    pub leaf_hash: Hash,
    /// Inclusion proof in the checkpoint's tree.
    pub proof: Vec<Hash>,
    /// The signed checkpoint (C2SP tlog-checkpoint note).
    pub checkpoint: String,
    /// The record itself: its canonical JSON, the leaf the proof is about. Sent beside the
    /// receipt so that a recipient verifies what it received offline, in one step.
    pub record: String,
}

impl Receipt {
    /// The receipt in the C2SP `tlog-proof` text format.
    pub fn text(&self) -> String {
        note::format_receipt(self.index, &self.proof, &self.checkpoint)
    }
}

struct Job {
    record: Option<PreparedRecord>,
    reply: Option<oneshot::Sender<Result<Receipt, LogError>>>,
}

/// The handle of the transfer log: cheap to clone.
#[derive(Clone)]
pub struct TransferLog {
    jobs: mpsc::Sender<Job>,
    verifier_key: Arc<str>,
    /// Since when integrations have been failing (`None`: the last one succeeded).
    failing: Arc<Mutex<Option<Instant>>>,
    /// The tree size after this sequencer's latest integration.
    integrated: watch::Receiver<u64>,
}

impl std::fmt::Debug for TransferLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferLog").field("verifier_key", &self.verifier_key).finish_non_exhaustive()
    }
}

/// Loads the right edge of the stored tree and checks it against the latest signed checkpoint.
async fn load_edge(store: &dyn Store) -> anyhow::Result<CompactRange> {
    let Some(latest) = store.checkpoint(None).await? else { return Ok(CompactRange::empty(0)) };
    let coordinates = decomposition(latest.size);
    let nodes = NodeMap(store.tree_nodes(&coordinates).await?);
    let edge = CompactRange::load(0, latest.size, &nodes).map_err(|e| anyhow::anyhow!("the stored log lacks {e}"))?;
    anyhow::ensure!(
        edge.root() == latest.root,
        "the stored log's nodes do not match its latest checkpoint (size {}): run `bth-gateway audit verify`",
        latest.size
    );
    Ok(edge)
}

impl TransferLog {
    /// Starts the sequencer on `store`, signing with `signer`. Integrates whatever is queued.
    ///
    /// # Errors
    /// When the stored tree does not match its latest checkpoint (the gateway refuses to extend
    /// a log it cannot vouch for), or the store cannot be read.
    pub async fn start(store: Arc<dyn Store>, signer: Signer, settings: LogSettings) -> anyhow::Result<TransferLog> {
        anyhow::ensure!(signer.name() == settings.origin, "the log key's name must be the log origin");
        let edge = load_edge(store.as_ref()).await?;
        let (jobs, rx) = mpsc::channel(settings.queue);
        let verifier_key: Arc<str> = signer.verifier_key().into();
        let failing = Arc::new(Mutex::new(None));
        let (integrated_tx, integrated) = watch::channel(edge.end());
        tokio::spawn(run(rx, store, signer, settings, edge, failing.clone(), integrated_tx));
        let log = TransferLog { jobs, verifier_key, failing, integrated };
        log.kick();
        Ok(log)
    }

    /// Appends a record; returns once it is durable, integrated and covered by a signed
    /// checkpoint.
    ///
    /// # Errors
    /// [`LogError`]: the caller must not proceed.
    pub async fn append(&self, record: NewRecord) -> Result<Receipt, LogError> {
        // The leaf is computed here, by each caller, not by the one sequencer.
        let record = PreparedRecord::new(record)
            .map_err(|e| LogError::Unavailable(crate::store::StoreError::Corrupt(format!("record: {e}"))))?;
        let (reply, receipt) = oneshot::channel();
        self.jobs.try_send(Job { record: Some(record), reply: Some(reply) }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LogError::Full,
            mpsc::error::TrySendError::Closed(_) => LogError::Stopped,
        })?;
        receipt.await.map_err(|_| LogError::Stopped)?
    }

    /// Asks for records that state changes stored to be integrated soon. Never blocks.
    pub fn kick(&self) {
        let _ = self.jobs.try_send(Job { record: None, reply: None });
    }

    /// How long integrations have been failing (`None` while the log integrates). Records that
    /// state changes stored meanwhile stay queued and are integrated once the store accepts
    /// writes again (the sequencer retries every idle period).
    pub fn failing_for(&self) -> Option<Duration> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).map(|since| since.elapsed())
    }

    /// The tree size after each integration this sequencer makes: wait on it for a record
    /// stored with a state change to be integrated (instead of polling the store).
    pub fn integrated(&self) -> watch::Receiver<u64> {
        self.integrated.clone()
    }

    /// `<name>+<hex key id>+<base64(0x01 ‖ public key)>`: what verifiers need.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }
}

/// A batch of leaf hashes appended to the log's right edge.
struct Appended {
    /// The right edge after the batch.
    edge: CompactRange,
    /// Every node the batch completed, its leaves included: what the store keeps.
    nodes: Vec<(u8, u64, Hash)>,
    /// The root of the new tree.
    root: Hash,
    /// The old edge and the new nodes: every node the new leaves' inclusion proofs read.
    held: NodeMap,
}

/// Appends `leaves` to the tree whose right edge is `edge`.
fn append(edge: &CompactRange, leaves: &[Hash]) -> Appended {
    let mut new = edge.clone();
    let mut nodes = Vec::with_capacity(2 * leaves.len());
    for leaf in leaves {
        new.append(*leaf, |id, hash| nodes.push((id.level, id.index, *hash)));
    }
    // In the tree table's key order, level by level, so that the store inserts in order.
    nodes.sort_unstable_by_key(|&(level, index, _)| (level, index));
    let old = edge.nodes().iter().map(|(id, hash)| ((id.level, id.index), *hash));
    let held = NodeMap(old.chain(nodes.iter().map(|&(level, index, hash)| ((level, index), hash))).collect());
    Appended { root: new.root(), edge: new, nodes, held }
}

/// What a successful integration leaves for the replies.
struct Integrated {
    appended: Appended,
    index_of: HashMap<u64, u64>,
    hash_of: HashMap<u64, Hash>,
    note: String,
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<dyn Store>,
    signer: Signer,
    settings: LogSettings,
    mut edge: CompactRange,
    failing: Arc<Mutex<Option<Instant>>>,
    integrated_size: watch::Sender<u64>,
) {
    let mut last_batch = 0usize;
    loop {
        let first = match tokio::time::timeout(settings.idle, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => Job { record: None, reply: None },
        };
        let mut jobs = vec![first];
        while jobs.len() < settings.batch_max {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Under load (the last batch had company) wait a little for more; alone, go now.
        let wait = if last_batch > 1 || jobs.len() > 1 { settings.batch_wait } else { Duration::ZERO };
        let deadline = Instant::now() + wait;
        while jobs.len() < settings.batch_max && !wait.is_zero() {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => jobs.push(job),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        last_batch = jobs.len();
        let mut records = Vec::new();
        let mut replies = Vec::new();
        for job in jobs {
            if let (Some(record), Some(reply)) = (job.record, job.reply) {
                records.push(record);
                replies.push(reply);
            }
        }
        let outcome: Mutex<Option<Integrated>> = Mutex::new(None);
        let integrator = |head: &TreeHead, queued: &[QueuedRecord]| -> Result<Option<Integration>, String> {
            if queued.is_empty() {
                return Ok(None);
            }
            // Another gateway process sharing the database may have extended the tree since this
            // sequencer's last batch: then build on the edge read inside this transaction.
            let loaded;
            let base = if head.size == edge.end() {
                &edge
            } else {
                let nodes = NodeMap(head.edge.clone());
                loaded = CompactRange::load(0, head.size, &nodes).map_err(|e| format!("the stored tree lacks {e}"))?;
                &loaded
            };
            let size = base.end();
            let hashes: Vec<Hash> = queued.iter().map(|q| merkle::leaf_hash(q.json.as_bytes())).collect();
            let appended = append(base, &hashes);
            let new_size = appended.edge.end();
            let note = signer.sign_checkpoint(&Checkpoint {
                origin: settings.origin.clone(),
                size: new_size,
                root: appended.root,
            });
            let leaves: Vec<(u64, u64)> = queued.iter().enumerate().map(|(i, q)| (q.seq, size + i as u64)).collect();
            let integration = Integration {
                leaves: leaves.clone(),
                nodes: appended.nodes.clone(),
                checkpoint: StoredCheckpoint {
                    size: new_size,
                    root: appended.root,
                    note: note.clone(),
                    at: Utc::now(),
                },
            };
            *outcome.lock().expect("not poisoned") = Some(Integrated {
                index_of: leaves.into_iter().collect(),
                hash_of: queued.iter().zip(&hashes).map(|(q, h)| (q.seq, *h)).collect(),
                appended,
                note,
            });
            Ok(Some(integration))
        };
        let result = store.integrate(&records, &integrator).await;
        let outcome = outcome.into_inner().expect("not poisoned");
        {
            let mut failing = failing.lock().unwrap_or_else(|p| p.into_inner());
            match (&result, *failing) {
                (Ok(_), _) => *failing = None,
                (Err(_), None) => *failing = Some(Instant::now()),
                (Err(_), Some(_)) => {}
            }
        }
        match result {
            Ok(seqs) => {
                let integrated = outcome;
                if let Some(i) = &integrated {
                    edge = i.appended.edge.clone();
                    integrated_size.send_replace(edge.end());
                    tracing::debug!(size = edge.end(), entries = i.index_of.len(), "log checkpoint signed");
                }
                for ((seq, reply), record) in seqs.into_iter().zip(replies).zip(&records) {
                    let receipt = integrated.as_ref().and_then(|i| {
                        let index = *i.index_of.get(&seq)?;
                        let proof = merkle::inclusion_proof(index, i.appended.edge.end(), &i.appended.held).ok()?;
                        Some(Receipt {
                            index,
                            leaf_hash: i.hash_of[&seq],
                            proof,
                            checkpoint: i.note.clone(),
                            record: record.leaf().to_owned(),
                        })
                    });
                    let _ = reply.send(receipt.ok_or_else(|| {
                        LogError::Unavailable(StoreError::Corrupt("record stored but not integrated".into()))
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "log integration failed; nothing of this batch was stored");
                for reply in replies {
                    let _ = reply.send(Err(LogError::Unavailable(StoreError::Corrupt("log batch rolled back".into()))));
                }
                match load_edge(store.as_ref()).await {
                    Ok(e) => edge = e,
                    Err(e) => tracing::error!(error = %e, "cannot reload the log's edge"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::merkle::{inclusion_proof, verify_inclusion, MemoryTree, NodeSource};

    #[test]
    fn batches_of_any_size_give_the_root_of_the_whole_tree_and_prove_their_leaves_from_memory() {
        let mut reference = MemoryTree::new();
        let mut edge = CompactRange::empty(0);
        let mut next = 0u32;
        for batch in [1usize, 2, 3, 5, 8, 13, 1, 1, 64, 7] {
            let leaves: Vec<Hash> = (0..batch)
                .map(|_| {
                    next += 1;
                    merkle::leaf_hash(&next.to_be_bytes())
                })
                .collect();
            let first = edge.end();
            let a = append(&edge, &leaves);
            for l in &leaves {
                reference.push_leaf_hash(*l);
            }
            assert_eq!(a.root, reference.root());
            for &(level, index, hash) in &a.nodes {
                assert_eq!(reference.node(level, index), Ok(hash));
            }
            assert!(a.nodes.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "in key order, once each");
            for (k, l) in leaves.iter().enumerate() {
                let index = first + k as u64;
                let proof = inclusion_proof(index, a.edge.end(), &a.held).expect("proof from memory");
                verify_inclusion(l, index, a.edge.end(), &proof, &a.root).unwrap();
            }
            edge = a.edge;
            assert_eq!(edge.root(), reference.root());
        }
    }
}
