//! Audit: checkpoints, entries, inclusion and consistency proofs, and the transfer records.
//!
//! Who sees what: officers and auditors see everything; any other participant may fetch
//! checkpoints and consistency proofs (only hashes), and the entries and inclusion proofs of the
//! records about its own transfers (its id is their recipient or exporter facet).
//!
//! The proofs themselves are computed from the stored tree by [`crate::log::proofs`].

use chrono::{DateTime, Utc};

use super::{Caller, Gateway, ServiceError};
use crate::domain::participant::Role;
use crate::domain::record::{RecordKind, TransferFacets};
use crate::log::proofs;
use crate::log::sequencer::Receipt;
use crate::store::{Store, StoredCheckpoint, StoredTransfer, TransferFilter};
use crate::translog::merkle::Hash;

/// Largest page of [`entries`].
pub const MAX_ENTRIES_PAGE: u32 = 1000;
/// Page of [`entries`] when none is asked for.
pub const DEFAULT_ENTRIES_PAGE: u32 = 100;
/// Largest page of [`list_transfers`].
pub const MAX_TRANSFERS_PAGE: u32 = 500;
/// Page of [`list_transfers`] when none is asked for.
pub const DEFAULT_TRANSFERS_PAGE: u32 = 100;

/// Does this caller see every record?
fn sees_everything(caller: &Caller) -> bool {
    caller.participant.has_role(Role::Officer) || caller.participant.has_role(Role::Auditor)
}

/// Is this record about one of the caller's transfers?
fn is_party(caller: &Caller, facets: Option<&TransferFacets>) -> bool {
    let me = caller.participant.id.as_str();
    facets.is_some_and(|f| f.recipient == me || f.exporter == me)
}

/// The largest tree size or leaf index a request may name: the store keeps them as signed
/// 64-bit integers, and no log grows beyond that.
pub const MAX_LOG_POSITION: u64 = i64::MAX as u64;

/// A tree size or leaf index from a request, named `field`.
///
/// # Errors
/// `InvalidArgument` above [`MAX_LOG_POSITION`] (it must never wrap around to a small size).
pub fn log_position(field: &str, n: u64) -> Result<u64, ServiceError> {
    if n > MAX_LOG_POSITION {
        return Err(ServiceError::invalid(field, format!("must be at most {MAX_LOG_POSITION} (2^63 - 1)")));
    }
    Ok(n)
}

/// The latest tree size (0 for an empty log).
async fn latest_size(store: &dyn Store) -> Result<u64, ServiceError> {
    Ok(store.checkpoint(None).await?.map_or(0, |c| c.size))
}

/// Refuses a non-officer access to leaves `[from, to)` unless every one is about its transfers.
async fn require_own_leaves(gw: &Gateway, caller: &Caller, from: u64, to: u64) -> Result<(), ServiceError> {
    if sees_everything(caller) || from >= to {
        return Ok(());
    }
    let facets = gw.store.leaf_facets(from, to).await?;
    let mut expected = from;
    for (index, f) in &facets {
        if *index != expected || !is_party(caller, f.as_ref()) {
            break;
        }
        expected += 1;
    }
    if expected == to {
        return Ok(());
    }
    Err(ServiceError::PermissionDenied(format!(
        "leaf {expected} is not a record of a transfer of participant {} (officers and auditors see every record)",
        caller.participant.id
    )))
}

/// The latest checkpoint (`size` `None`), or the one of exactly `size`.
///
/// # Errors
/// `InvalidArgument` naming `tree_size` above [`MAX_LOG_POSITION`]; `NotFound` when no such
/// checkpoint is stored.
pub async fn checkpoint(gw: &Gateway, _caller: &Caller, size: Option<u64>) -> Result<StoredCheckpoint, ServiceError> {
    let size = size.map(|n| log_position("tree_size", n)).transpose()?;
    gw.store.checkpoint(size).await?.ok_or_else(|| match size {
        Some(n) => ServiceError::NotFound(format!("checkpoint of tree size {n}")),
        None => ServiceError::NotFound("checkpoint (the log is empty)".into()),
    })
}

/// The oldest checkpoint whose tree size is at least `size`.
///
/// # Errors
/// `InvalidArgument` naming `tree_size` above [`MAX_LOG_POSITION`]; `NotFound` when the latest
/// checkpoint is smaller.
pub async fn checkpoint_at_least(gw: &Gateway, _caller: &Caller, size: u64) -> Result<StoredCheckpoint, ServiceError> {
    let size = log_position("tree_size", size)?;
    gw.store
        .checkpoints(size.saturating_sub(1), 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::NotFound(format!("checkpoint of tree size {size} or more")))
}

/// Stored checkpoints of trees larger than `after`, ascending, at most `page_size` of them (0:
/// [`DEFAULT_ENTRIES_PAGE`]). Any participant may list them: they reveal only hashes.
///
/// # Errors
/// `InvalidArgument` for `page_size` above [`MAX_ENTRIES_PAGE`] or `after_size` above
/// [`MAX_LOG_POSITION`].
pub async fn checkpoints(
    gw: &Gateway,
    _caller: &Caller,
    after: u64,
    page_size: u32,
) -> Result<Vec<StoredCheckpoint>, ServiceError> {
    let after = log_position("after_size", after)?;
    let page = page(page_size, DEFAULT_ENTRIES_PAGE, MAX_ENTRIES_PAGE)?;
    Ok(gw.store.checkpoints(after, page).await?)
}

/// One leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Leaf index.
    pub index: u64,
    /// Record type.
    pub kind: RecordKind,
    /// The leaf: canonical JSON.
    pub json: String,
    /// The leaf hash the tree holds.
    pub leaf_hash: Hash,
}

/// A page of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntriesPage {
    /// Contiguous from the requested start.
    pub entries: Vec<Entry>,
    /// Where the next page starts; `None` when the range is exhausted.
    pub next_start: Option<u64>,
}

/// Leaves `[start, end)` (`end` `None`: the latest tree size), at most `page_size` of them (0:
/// [`DEFAULT_ENTRIES_PAGE`]).
///
/// # Errors
/// `InvalidArgument` (`page_size` above [`MAX_ENTRIES_PAGE`], `end` beyond the latest tree size,
/// `start` beyond `end`); `PermissionDenied` when a non-officer asks for a leaf not about its
/// transfers; `DataLoss` when a leaf or its hash is missing.
pub async fn entries(
    gw: &Gateway,
    caller: &Caller,
    start: u64,
    end: Option<u64>,
    page_size: u32,
) -> Result<EntriesPage, ServiceError> {
    let start = log_position("start", start)?;
    let end = end.map(|n| log_position("end", n)).transpose()?;
    let page = page(page_size, DEFAULT_ENTRIES_PAGE, MAX_ENTRIES_PAGE)?;
    let latest = latest_size(gw.store.as_ref()).await?;
    let end = end.unwrap_or(latest);
    if end > latest {
        return Err(ServiceError::invalid("end", format!("exceeds the latest tree size {latest}")));
    }
    if start > end {
        return Err(ServiceError::invalid("start", format!("exceeds the end of the range ({end})")));
    }
    let stop = end.min(start + u64::from(page));
    require_own_leaves(gw, caller, start, stop).await?;
    let records = gw.store.leaves(start, (stop - start) as u32).await?;
    let hashes = proofs::leaf_hashes(gw.store.as_ref(), start, stop).await?;
    let mut entries = Vec::with_capacity(records.len());
    for ((expected, r), leaf_hash) in (start..stop).zip(&records).zip(hashes) {
        if r.leaf_index != Some(expected) {
            return Err(ServiceError::DataLoss(format!("the transfer log's leaf {expected}")));
        }
        entries.push(Entry { index: expected, kind: r.kind, json: r.json.clone(), leaf_hash });
    }
    if entries.len() as u64 != stop - start {
        return Err(ServiceError::DataLoss(format!("the transfer log's leaf {}", start + entries.len() as u64)));
    }
    Ok(EntriesPage { entries, next_start: (stop < end).then_some(stop) })
}

/// An inclusion proof with what a client needs to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf.
    pub index: u64,
    /// The tree.
    pub size: u64,
    /// The leaf hash the tree holds.
    pub leaf_hash: Hash,
    /// The audit path, leaf sibling first.
    pub proof: Vec<Hash>,
    /// The root of the tree of `size` leaves.
    pub root: Hash,
    /// The signed checkpoint of `size`, when one was signed at exactly that size.
    pub checkpoint: Option<StoredCheckpoint>,
}

/// The receipt of a state change's record ([`proofs::receipt`]), or `None` (logged with the
/// reason) when it cannot be produced: the change is already committed with its record, which
/// the sequencer integrates at the latest on its next idle sweep, so the caller is not told it
/// failed.
pub async fn receipt_if_integrated(gw: &Gateway, seq: u64) -> Option<Receipt> {
    match proofs::receipt(&gw.log, gw.store.as_ref(), seq).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(record = seq, error = %e, "no receipt for a committed state change");
            None
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (`None`: the latest).
///
/// # Errors
/// `InvalidArgument` unless `index < size ≤ latest` (naming `leaf_index` or `tree_size`);
/// `PermissionDenied` for a non-officer's leaf not about its transfers; `DataLoss` when stored
/// nodes are missing.
pub async fn inclusion_proof(
    gw: &Gateway,
    caller: &Caller,
    index: u64,
    size: Option<u64>,
) -> Result<InclusionProof, ServiceError> {
    let index = log_position("leaf_index", index)?;
    let size = size.map(|n| log_position("tree_size", n)).transpose()?;
    let latest = gw.store.checkpoint(None).await?;
    let latest_size = latest.as_ref().map_or(0, |c| c.size);
    let size = size.unwrap_or(latest_size);
    if size > latest_size {
        return Err(ServiceError::invalid("tree_size", format!("exceeds the latest tree size {latest_size}")));
    }
    if index >= size {
        return Err(ServiceError::invalid("leaf_index", format!("must be below the tree size {size}")));
    }
    require_own_leaves(gw, caller, index, index + 1).await?;
    let proofs::Inclusion { leaf_hash, proof, root } = proofs::inclusion(gw.store.as_ref(), index, size).await?;
    let checkpoint = match latest {
        Some(c) if c.size == size => Some(c),
        _ => gw.store.checkpoint(Some(size)).await?,
    };
    if checkpoint.as_ref().is_some_and(|c| c.root != root) {
        return Err(ServiceError::DataLoss(format!("the transfer log's tree at size {size}")));
    }
    Ok(InclusionProof { index, size, leaf_hash, proof, root, checkpoint })
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// The proof.
    pub proof: Vec<Hash>,
}

/// The consistency proof from `old_size` to `new_size` (`None`: the latest). Public: it reveals
/// only hashes.
///
/// # Errors
/// `InvalidArgument` unless `old_size ≤ new_size ≤ latest`; `DataLoss` when nodes are missing.
pub async fn consistency_proof(
    gw: &Gateway,
    _caller: &Caller,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyProof, ServiceError> {
    let old_size = log_position("old_size", old_size)?;
    let new_size = new_size.map(|n| log_position("new_size", n)).transpose()?;
    let latest = latest_size(gw.store.as_ref()).await?;
    let new_size = new_size.unwrap_or(latest);
    if new_size > latest {
        return Err(ServiceError::invalid("new_size", format!("exceeds the latest tree size {latest}")));
    }
    if old_size > new_size {
        return Err(ServiceError::invalid("old_size", format!("exceeds new_size {new_size}")));
    }
    let proof = proofs::consistency(gw.store.as_ref(), old_size, new_size).await?.proof;
    Ok(ConsistencyProof { old_size, new_size, proof })
}

/// Where the next page of [`list_transfers`] starts: after `(at, seq)` in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferCursor {
    /// The last record's time.
    pub at: DateTime<Utc>,
    /// The last record's sequence number.
    pub seq: u64,
}

impl TransferCursor {
    /// The opaque page token: `<at microseconds>.<seq>`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.at.timestamp_micros(), self.seq)
    }

    /// Parses a page token.
    ///
    /// # Errors
    /// `InvalidArgument` naming `page_token`.
    pub fn parse(token: &str) -> Result<TransferCursor, ServiceError> {
        let bad = || ServiceError::invalid("page_token", "is not a token this service returned");
        let (at, seq) = token.split_once('.').ok_or_else(bad)?;
        let at = DateTime::from_timestamp_micros(at.parse().map_err(|_| bad())?).ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if seq > MAX_LOG_POSITION {
            return Err(bad());
        }
        Ok(TransferCursor { at, seq })
    }
}

/// A page of transfer records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransfersPage {
    /// Newest first.
    pub transfers: Vec<StoredTransfer>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TransferCursor>,
}

/// Transfer records matching `query`, newest first; a participant that is neither officer nor
/// auditor sees only its own transfers (recipient or exporter).
///
/// # Errors
/// `InvalidArgument` for a page size above [`MAX_TRANSFERS_PAGE`] or `from` after `to`.
pub async fn list_transfers(
    gw: &Gateway,
    caller: &Caller,
    mut filter: TransferFilter,
    page_size: u32,
    after: Option<TransferCursor>,
) -> Result<TransfersPage, ServiceError> {
    let page = page(page_size, DEFAULT_TRANSFERS_PAGE, MAX_TRANSFERS_PAGE)?;
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from > to {
            return Err(ServiceError::invalid("from", "is after `to`"));
        }
    }
    // The caller's view and the page position are the use case's, whatever the request said.
    filter.party = (!sees_everything(caller)).then(|| caller.participant.id.to_string());
    filter.before = after.map(|c| (c.at, c.seq));
    let mut transfers = gw.store.transfers(&filter, page + 1).await?;
    let more = transfers.len() > page as usize;
    transfers.truncate(page as usize);
    let next = more.then(|| transfers.last().map(|t| TransferCursor { at: t.at, seq: t.seq })).flatten();
    Ok(TransfersPage { transfers, next })
}

/// A page size: 0 means `default`; above `max` is refused naming `page_size`.
fn page(page_size: u32, default: u32, max: u32) -> Result<u32, ServiceError> {
    match page_size {
        0 => Ok(default),
        n if n > max => Err(ServiceError::invalid("page_size", format!("at most {max}"))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_and_garbage_is_refused() {
        let c = TransferCursor { at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), seq: 42 };
        assert_eq!(TransferCursor::parse(&c.token()).unwrap(), c);
        for bad in ["", "x", "1.", ".2", "1.2.3", "-1.x", "1.9223372036854775808"] {
            assert!(matches!(
                TransferCursor::parse(bad),
                Err(ServiceError::InvalidArgument { field, .. }) if field == "page_token"
            ));
        }
    }
}
