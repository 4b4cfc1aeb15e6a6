//! The storage contract every backend implements, and the backends.
//!
//! The contract is split by concern, as the use cases need it: [`CatalogStore`],
//! [`GrantStore`], [`OversightStore`], [`LogStore`], [`LedgerStore`], [`TableStore`]; [`Store`] is
//! all of them.
//! Both SQL backends are one implementation ([`sql::SqlStore`]) over a [`sql::Dialect`].
//!
//! Contract for every method that takes a [`NewRecord`]: the state change and the record are
//! stored in one transaction — both or neither. A method that returns `Ok` has made both durable.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{Participant, ParticipantStatus};
use crate::domain::record::{NewRecord, PreparedRecord, StoredRecord};

pub mod cache;
mod codec;
#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod rows;
pub mod sql;
pub mod sqlite;

/// What can go wrong in a store. Client-facing messages never include the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A row with the same key exists (`what` names it).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A compare-and-set lost: the row changed since it was read (`what` names it).
    #[error("{0} changed concurrently")]
    Conflict(String),
    /// The database cannot be reached or written (busy, full, read-only, I/O).
    #[error("storage unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Stored content does not decode or fails its digest (`what` names it).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else.
    #[error("storage error")]
    Other(#[source] sqlx::Error),
}

/// A chunk of a version: the encoded fields of one `RowBatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// Position in the version, from 0.
    pub seq: u64,
    /// Rows in the chunk.
    pub rows: u32,
    /// SHA-256 of `data`.
    pub sha256: [u8; 32],
    /// Encoded `RowBatch` fields.
    pub data: Bytes,
}

/// The facts of a new version; the store assigns its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// The dataset.
    pub dataset: DatasetId,
    /// Rows.
    pub rows: u64,
    /// Chunks staged under the upload.
    pub chunks: u64,
    /// SHA-256 of the chunks' bytes concatenated in order.
    pub sha256: [u8; 32],
    /// Who published it.
    pub publisher: ParticipantId,
    /// The publisher's idempotency key.
    pub idempotency_key: String,
    /// When it becomes visible.
    pub published_at: DateTime<Utc>,
}

/// A record waiting to be integrated into the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// Store order.
    pub seq: u64,
    /// The leaf (canonical JSON).
    pub json: String,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: [u8; 32],
    /// The signed note.
    pub note: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
}

/// What an integration stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    /// `(seq, leaf index)` of each integrated record.
    pub leaves: Vec<(u64, u64)>,
    /// Every perfect subtree completed, level 0 included.
    pub nodes: Vec<(u8, u64, [u8; 32])>,
    /// The checkpoint of the new tree.
    pub checkpoint: StoredCheckpoint,
}

/// Computes an integration from the current tree size and the queued records; `Ok(None)` when
/// there is nothing to integrate, `Err` (a reason) to roll everything back.
pub type Integrator<'a> = dyn Fn(&TreeHead, &[QueuedRecord]) -> Result<Option<Integration>, String> + Send + Sync + 'a;

/// The stored tree as an integration finds it, read inside its transaction (so another gateway
/// process sharing the database cannot have changed it since).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeHead {
    /// Leaves integrated: the size of the latest checkpoint.
    pub size: u64,
    /// The stored nodes of the tree's right edge (`translog::compact::decomposition(size)`).
    pub edge: HashMap<(u8, u64), [u8; 32]>,
}

/// An approval with who recorded and revoked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApproval {
    /// The approval as the rules read it.
    pub approval: crate::policy::Approval,
    /// The officer who recorded it.
    pub recorded_by: String,
    /// When.
    pub recorded_at: DateTime<Utc>,
    /// Who revoked it and why, when revoked.
    pub revoked_by: Option<String>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
    /// The second officer who confirmed it (maker-checker), when confirmed.
    pub confirmed_by: Option<String>,
    /// When it was confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The sequence number of its `approval.recorded` record (set by the store when it is
    /// inserted; ignored on insert). `None` for a row nobody recorded.
    pub record_seq: Option<u64>,
}

/// The persons of one transfer, for [`Store::count_persons`].
#[derive(Debug, Clone)]
pub struct PersonCount<'a> {
    /// The exporter whose ledger counts.
    pub exporter: &'a str,
    /// The transfer's calendar year (Asia/Shanghai).
    pub year: i32,
    /// Earlier years inside the window: 0 for `CN2024`, 1 for `CN2022`.
    pub years_back: i32,
    /// Keyed hashes of the distinct persons in the non-sensitive bucket (`None`: no `PI` field).
    pub nonsensitive: Option<&'a [[u8; 32]]>,
    /// Keyed hashes of the distinct persons in the sensitive bucket (`None`: no `SPI` field).
    pub sensitive: Option<&'a [[u8; 32]]>,
}

/// Distinct persons in the window before a transfer, and how many of the transfer's persons
/// the window did not count yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerCounts {
    /// Entries the exporter's ledger had before (a kept transfer's entry is the next one).
    pub position: u64,
    /// Non-sensitive persons counted before.
    pub nonsensitive_before: u64,
    /// Of this transfer's non-sensitive persons, those new to the window.
    pub nonsensitive_new: u64,
    /// Sensitive persons counted before.
    pub sensitive_before: u64,
    /// Of this transfer's sensitive persons, those new to the window.
    pub sensitive_new: u64,
}

/// Decides, from the ledger counts, whether a transfer's persons enter the ledger.
pub type Keep<'a> = dyn Fn(&LedgerCounts) -> bool + Send + Sync + 'a;

/// The outcome of committing an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A new version is visible.
    Created(VersionInfo),
    /// A version with the same idempotency key already existed; the upload was discarded.
    Existing(VersionInfo),
}

/// Which transfer records [`Store::transfers`] returns: every `Some` narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferFilter {
    /// Records at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Records before this time.
    pub to: Option<DateTime<Utc>>,
    /// The dataset.
    pub dataset: Option<String>,
    /// The recipient participant.
    pub recipient: Option<String>,
    /// The exporter (dataset owner).
    pub exporter: Option<String>,
    /// The recipient's region.
    pub region: Option<String>,
    /// Export (`true`) or domestic (`false`).
    pub export: Option<bool>,
    /// The mechanism the rules required.
    pub mechanism: Option<String>,
    /// The action.
    pub action: Option<crate::domain::record::TransferAction>,
    /// The record type.
    pub kind: Option<crate::domain::record::RecordKind>,
    /// Only records whose recipient or exporter is this participant (a participant's own view).
    pub party: Option<String>,
    /// Keyset cursor: only records after this `(at, seq)` in newest-first order.
    pub before: Option<(DateTime<Utc>, u64)>,
    /// The transfer id.
    pub transfer: Option<String>,
    /// Only records of transfers that have no completion record (a decision whose pull or
    /// table never ended: the gateway stopped while it streamed).
    pub unfinished: bool,
}

/// Which holds [`OversightStore::holds`] returns: every `Some` narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldFilter {
    /// Holds in this state.
    pub status: Option<HoldStatus>,
    /// Holds of this dataset.
    pub dataset: Option<DatasetId>,
    /// Holds of this consumer.
    pub consumer: Option<ParticipantId>,
    /// Holds of this exporter.
    pub exporter: Option<ParticipantId>,
    /// Holds created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// An integrated transfer record and the facets it was filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransfer {
    /// Store order.
    pub seq: u64,
    /// Its leaf index.
    pub leaf_index: u64,
    /// Decision or completion.
    pub kind: crate::domain::record::RecordKind,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The leaf (canonical JSON).
    pub json: String,
    /// Its searchable facts.
    pub facets: crate::domain::record::TransferFacets,
}

/// The catalog: participants, datasets, their versions and the uploads that become versions.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Registers a participant. `AlreadyExists` when the id is taken.
    async fn insert_participant(&self, p: &Participant, rec: &NewRecord) -> Result<(), StoreError>;

    /// The participant with this id; `None` when there is none.
    async fn participant(&self, id: &ParticipantId) -> Result<Option<Participant>, StoreError>;

    /// Every participant, ordered by id.
    async fn participants(&self) -> Result<Vec<Participant>, StoreError>;

    /// Sets a participant's status; `None` when there is no such participant (nothing stored).
    async fn set_participant_status(
        &self,
        id: &ParticipantId,
        status: ParticipantStatus,
        rec: &NewRecord,
    ) -> Result<Option<Participant>, StoreError>;

    /// Registers a dataset. `AlreadyExists` when the id is taken.
    async fn insert_dataset(&self, d: &Dataset, rec: &NewRecord) -> Result<(), StoreError>;

    /// The dataset with this id; `None` when there is none.
    async fn dataset(&self, id: &DatasetId) -> Result<Option<Dataset>, StoreError>;

    /// Up to `limit` datasets with ids greater than `after`, ordered by id.
    async fn datasets(&self, after: Option<&DatasetId>, limit: u32) -> Result<Vec<Dataset>, StoreError>;

    /// A dataset's published versions, newest first.
    async fn versions(&self, dataset: &DatasetId) -> Result<Vec<VersionInfo>, StoreError>;

    /// Version `version` (whatever its review status), or the latest RELEASED one when `None`;
    /// `None` when there is no such version.
    async fn version(&self, dataset: &DatasetId, version: Option<u64>) -> Result<Option<VersionInfo>, StoreError>;

    /// Dataset `dataset`'s review policy; `None` when its versions are released when published.
    async fn review_policy(
        &self,
        dataset: &DatasetId,
    ) -> Result<Option<crate::domain::review::ReviewPolicy>, StoreError>;

    /// Sets (or with `None` removes) a dataset's review policy, with its record. Versions
    /// published after it are reviewed under it; those already in review keep theirs.
    async fn set_review_policy(
        &self,
        dataset: &DatasetId,
        policy: Option<&crate::domain::review::ReviewPolicy>,
        rec: &NewRecord,
    ) -> Result<u64, StoreError>;

    /// Records a review step of version `v`: its review becomes `after` (and its status
    /// `after.status()`) with `rec`, only if its review is still `v.review`; returns the
    /// record's sequence number.
    ///
    /// # Errors
    /// `Conflict` when the review changed meanwhile (another step was taken).
    async fn review_version(
        &self,
        v: &VersionInfo,
        after: &crate::domain::review::VersionReview,
        rec: &NewRecord,
    ) -> Result<u64, StoreError>;

    /// Sets (or with `None` removes) the release cadence a dataset's owner declared, as of `at`,
    /// with its record.
    async fn set_cadence(
        &self,
        dataset: &DatasetId,
        cadence: Option<&str>,
        at: DateTime<Utc>,
        rec: &NewRecord,
    ) -> Result<u64, StoreError>;

    /// Every declared cadence: `(dataset, schedule text, declared at)`, by dataset.
    async fn cadences(&self) -> Result<Vec<(DatasetId, String, DateTime<Utc>)>, StoreError>;

    /// Every version awaiting review, by dataset and version.
    async fn versions_in_review(&self) -> Result<Vec<VersionInfo>, StoreError>;

    /// The version published with this idempotency key, if any.
    async fn version_by_key(&self, dataset: &DatasetId, key: &str) -> Result<Option<VersionInfo>, StoreError>;

    /// Starts staging an upload; returns its id. Nothing staged is visible to readers.
    async fn begin_upload(&self, dataset: &DatasetId, upload_id: &str) -> Result<(), StoreError>;

    /// Stages one chunk of an upload (one statement).
    async fn put_chunk(&self, upload_id: &str, chunk: &StoredChunk) -> Result<(), StoreError>;

    /// Makes an upload visible as the dataset's next version, together with its record.
    /// When a version with the same idempotency key exists, discards the upload and returns
    /// [`Committed::Existing`] (no record is written).
    async fn commit_upload(&self, upload_id: &str, v: &NewVersion, rec: &NewRecord) -> Result<Committed, StoreError>;

    /// Deletes an upload's staged chunks. Idempotent.
    async fn abort_upload(&self, upload_id: &str) -> Result<(), StoreError>;

    /// Deletes every staged upload started before `started_before` that no version names
    /// (left by a crash). Returns how many. Replicas sharing a database pass a time well before
    /// any upload still in flight.
    async fn purge_abandoned_uploads(&self, started_before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The chunks of a published version from `from_seq` on, in order.
    fn chunks(
        &self,
        dataset: &DatasetId,
        version: u64,
        from_seq: u64,
    ) -> BoxStream<'_, Result<StoredChunk, StoreError>>;
}

/// Grants: which consumer may receive which fields of a dataset.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new grant. `AlreadyExists` when the id is taken.
    async fn insert_grant(&self, g: &Grant, rec: &NewRecord) -> Result<(), StoreError>;

    /// The grant with this id; `None` when there is none.
    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// Replaces a grant if its stored status is still `expected`; `Conflict` otherwise. Returns
    /// the record's sequence number.
    async fn update_grant(&self, g: &Grant, expected: GrantStatus, rec: &NewRecord) -> Result<u64, StoreError>;

    /// Grants where `participant` is the consumer or owns the dataset, optionally for one
    /// dataset, oldest first.
    async fn grants_visible_to(
        &self,
        participant: &ParticipantId,
        dataset: Option<&DatasetId>,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Grants of `consumer` on `dataset`, oldest first.
    async fn grants_of(&self, consumer: &ParticipantId, dataset: &DatasetId) -> Result<Vec<Grant>, StoreError>;
}

/// The officers' side: approvals and the holds they release.
#[async_trait]
pub trait OversightStore: Send + Sync {
    /// Records an approval. `AlreadyExists` when the id is taken.
    /// Returns the record's sequence number (its receipt is asked for by it).
    async fn insert_approval(&self, a: &StoredApproval, rec: &NewRecord) -> Result<u64, StoreError>;

    /// Marks an approval revoked, returning it and the record's sequence number; `None` when
    /// there is none; `Conflict` when already revoked.
    async fn revoke_approval(
        &self,
        id: &str,
        by: &ParticipantId,
        reason: &str,
        at: DateTime<Utc>,
        rec: &NewRecord,
    ) -> Result<Option<(StoredApproval, u64)>, StoreError>;

    /// Records that officer `by` confirmed approval `id` at `at`, if it is neither confirmed nor
    /// revoked (compare-and-set); returns it and the record's sequence number. `None` when there
    /// is no such approval; `Conflict` when it is already confirmed or revoked.
    async fn confirm_approval(
        &self,
        id: &str,
        by: &ParticipantId,
        at: DateTime<Utc>,
        rec: &NewRecord,
    ) -> Result<Option<(StoredApproval, u64)>, StoreError>;

    /// The approval with this id.
    async fn approval(&self, id: &str) -> Result<Option<StoredApproval>, StoreError>;

    /// Approvals of one exporter, or all, oldest first.
    async fn approvals(&self, exporter: Option<&str>) -> Result<Vec<StoredApproval>, StoreError>;

    /// Stores a new hold. `AlreadyExists` when the id is taken.
    async fn insert_hold(&self, h: &Hold, rec: &NewRecord) -> Result<(), StoreError>;

    /// Every hold of `grant` for `mechanism`, whatever its status, oldest first (a retry joins
    /// the open one of its shape; a refused one keeps refusing it).
    async fn holds_for(&self, grant: &str, mechanism: &str) -> Result<Vec<Hold>, StoreError>;

    /// The hold with this id.
    async fn hold(&self, id: &str) -> Result<Option<Hold>, StoreError>;

    /// Holds matching `filter`, oldest first.
    async fn holds(&self, filter: &HoldFilter) -> Result<Vec<Hold>, StoreError>;

    /// Stores a hold's resolution if it is still open; `Conflict` otherwise. Returns the
    /// record's sequence number.
    async fn resolve_hold(&self, h: &Hold, rec: &NewRecord) -> Result<u64, StoreError>;
}

/// The transfer log: records, their integration into the tree, checkpoints and what proofs and listings read.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// The log's group commit, in one transaction: stores `new` records, then hands every
    /// queued (not yet integrated) record — those stored earlier first, then `new`, in store
    /// order, at most [`INTEGRATION_BATCH`] earlier ones — with the current tree's size and
    /// right-edge nodes ([`TreeHead`]) to `integrator`, and stores what it returns (leaf
    /// indexes, tree nodes, the signed checkpoint). The integrator must place the queued records
    /// at leaf indexes `size..` in the order given (new records are stored with those indexes
    /// already; anything else is `Corrupt` and rolls back), and may return `None` only for an
    /// empty queue. Returns the sequence numbers of `new`, in order. When `integrator` fails,
    /// nothing is stored. Implementations serialise integrations (one tree, no forks).
    async fn integrate(&self, new: &[PreparedRecord], integrator: &Integrator<'_>) -> Result<Vec<u64>, StoreError>;

    /// The latest checkpoint, or the one of tree size `size`.
    async fn checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Up to `limit` checkpoints with sizes above `after`, ascending.
    async fn checkpoints(&self, after: u64, limit: u32) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// The stored tree nodes among `coordinates` (`(level, index)`); missing ones are absent.
    async fn tree_nodes(&self, coordinates: &[(u8, u64)]) -> Result<HashMap<(u8, u64), [u8; 32]>, StoreError>;

    /// Up to `limit` integrated records with leaf indexes from `from`, ascending.
    async fn leaves(&self, from: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError>;

    /// Up to `limit` records with `seq > after`, in order (integrated or not).
    async fn records(&self, after: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError>;

    /// The latest `limit` records about `subject` ([`crate::domain::record::RecordBody::subject`]),
    /// oldest first (integrated or not).
    async fn records_about(&self, subject: &str, limit: u32) -> Result<Vec<StoredRecord>, StoreError>;

    /// Up to `limit` integrated transfer records (records with facets) matching `filter`, newest
    /// first: `at` descending, then `seq` descending. Records not yet integrated are absent.
    async fn transfers(&self, filter: &TransferFilter, limit: u32) -> Result<Vec<StoredTransfer>, StoreError>;

    /// The facets of the integrated records with leaf indexes in `[from, to)`, ascending by leaf
    /// index: `None` for a record about no transfer. Indexes without an integrated record are
    /// absent (the caller decides whether that is corruption).
    async fn leaf_facets(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Option<crate::domain::record::TransferFacets>)>, StoreError>;
}

/// The export person ledger.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Counts a transfer's persons into the exporter's ledger, in one serialised transaction:
    /// reads the window's distinct counts, adds the persons (keyed hashes) of this transfer for
    /// the current year, and calls `keep` with the counts before and the persons new to the
    /// window; the additions are committed only when `keep` returns true. Two concurrent calls
    /// for the same exporter never both read the same "before" (no lost updates).
    async fn count_persons(&self, count: &PersonCount<'_>, keep: &Keep<'_>) -> Result<LedgerCounts, StoreError>;

    /// The persons of every (exporter, year, bucket) of the ledger, for `audit replay`.
    async fn ledger_totals(&self) -> Result<Vec<LedgerTotal>, StoreError>;
}

/// The persons one bucket of an exporter's ledger holds for one year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTotal {
    /// The exporter.
    pub exporter: String,
    /// The Asia/Shanghai year.
    pub year: i32,
    /// `N` (non-sensitive) or `S` (sensitive).
    pub bucket: String,
    /// Distinct persons.
    pub persons: u64,
}

/// One published table cell in the release ledger (docs/tables.md §5).
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedCell {
    /// What the value is: `COUNT` (distinct contributors) or `SUM:<measure>`.
    pub quantity: String,
    /// The cell: canonical JSON of `{field: [categories…]}` (a field absent is not restricted).
    pub cell: String,
    /// The value published.
    pub value: f64,
}

/// A table's release, for [`TableStore::record_table`].
#[derive(Debug, Clone)]
pub struct TableRelease<'a> {
    /// The table's id.
    pub table: &'a str,
    /// The ledger scope (the recipient, or its widened group).
    pub scope: &'a str,
    /// The recipient.
    pub recipient: &'a str,
    /// The dataset.
    pub dataset: &'a DatasetId,
    /// The version.
    pub version: u64,
    /// How many ledger rows of `(scope, dataset, version)` the table was protected against.
    pub checked: u64,
    /// The cells it publishes (a cell already in the ledger is not added twice).
    pub cells: &'a [ReleasedCell],
    /// The officers' suppression report (JSON), if any.
    pub report: Option<&'a str>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A table's suppression report as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The dataset tabulated.
    pub dataset: String,
    /// The recipient.
    pub recipient: String,
    /// The report (JSON).
    pub report: String,
}

/// Tables: the release ledger, the officers' suppression reports, ledger scopes.
#[async_trait]
pub trait TableStore: Send + Sync {
    /// The ledger scope of `participant`: the group an officer widened its ledger to, or `None`
    /// (the participant is its own scope).
    async fn ledger_scope(&self, participant: &ParticipantId) -> Result<Option<String>, StoreError>;

    /// Widens (or, with `scope` equal to the participant, resets) a participant's ledger scope,
    /// with its record.
    async fn set_ledger_scope(
        &self,
        participant: &ParticipantId,
        scope: &str,
        rec: &NewRecord,
    ) -> Result<u64, StoreError>;

    /// The cells released to `scope` from `version` of `dataset`, in the order stored.
    async fn released(&self, scope: &str, dataset: &DatasetId, version: u64) -> Result<Vec<ReleasedCell>, StoreError>;

    /// Stores a table's decision record, its ledger rows and its report in one transaction,
    /// serialised per scope (across processes): `Conflict` when the scope's ledger for the
    /// version no longer has `checked` rows (another table was released meanwhile: protect
    /// again), and then nothing is stored. Returns the record's sequence number; the record is
    /// integrated into the log afterwards like every state change's.
    async fn record_table(&self, release: &TableRelease<'_>, rec: &NewRecord) -> Result<u64, StoreError>;

    /// A dataset owner's table parameters `(domestic, export)` (JSON), if set.
    async fn dataset_table_rules(&self, dataset: &DatasetId) -> Result<Option<(String, String)>, StoreError>;

    /// Sets (replaces) a dataset owner's table parameters, with its record.
    async fn set_dataset_table_rules(
        &self,
        dataset: &DatasetId,
        domestic: &str,
        export: &str,
        rec: &NewRecord,
    ) -> Result<u64, StoreError>;

    /// The suppression report of a table, if one was stored.
    async fn table_report(&self, table: &str) -> Result<Option<TableReport>, StoreError>;
}

/// A gateway's persistent state: every concern's store, and the store's health.
///
/// Implementations are safe to share between tasks and, for server backends, between gateway
/// processes: every multi-row change is one transaction.
#[async_trait]
pub trait Store:
    CatalogStore
    + GrantStore
    + OversightStore
    + LogStore
    + LedgerStore
    + TableStore
    + ReportStore
    + WitnessStore
    + Send
    + Sync
    + 'static
{
    /// Proves the store can write now: rewrites one row (the health probe). `Unavailable` on a
    /// full disk or a read-only database.
    async fn probe_write(&self, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Leaves the database whole on disk; called once on a clean stop, after the last write
    /// (SQLite: the write-ahead log checkpointed into the database file and truncated, so that
    /// copying the file alone copies the database).
    async fn settle(&self) -> Result<(), StoreError>;

    /// Whether other gateway processes may share this store (then a transfer without completion
    /// may still be streaming from one of them).
    fn shared(&self) -> bool {
        false
    }
}

/// A standing report as stored (docs/reports.md); the service parses its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// `r-…`.
    pub id: String,
    /// The dataset tabulated.
    pub dataset: DatasetId,
    /// Who defined it (an officer or the dataset's owner).
    pub definer: ParticipantId,
    /// Its schedule's text (`monthly:5`).
    pub schedule: String,
    /// The table asked for, JSON.
    pub request: String,
    /// Its recipients and their slices, JSON.
    pub recipients: String,
    /// When it was defined.
    pub defined_at: DateTime<Utc>,
    /// On-release: the latest released version when it was defined.
    pub latest_at_definition: Option<u64>,
    /// The last period claimed, if any.
    pub last_period: Option<String>,
}

/// One recipient's run of one period of a standing report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    /// The report.
    pub report: String,
    /// The period (`2026-03`, `2026-Q2`, `v7`).
    pub period: String,
    /// The recipient.
    pub recipient: ParticipantId,
    /// `PENDING`, `PRODUCED` or `NOT_PRODUCED`.
    pub status: String,
    /// When it was claimed (a pending run claimed long ago is claimed again).
    pub claimed_at: DateTime<Utc>,
    /// Periods owed before this one that were skipped (caught up once).
    pub missed: u32,
    /// Why it was not produced (empty otherwise).
    pub reason: String,
    /// The table produced (`tb-…`).
    pub table_id: Option<String>,
    /// The version tabulated.
    pub version: Option<u64>,
    /// The cells produced, JSON.
    pub cells: Option<String>,
    /// SHA-256 of the published cells, hex.
    pub sha256: Option<String>,
    /// The sequence number of its `report.run` record.
    pub record_seq: Option<u64>,
}

/// Most runs [`ReportStore::runs`] returns.
pub const RUNS_LISTED: u32 = 1000;

/// Standing reports and their runs (docs/reports.md).
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores a new report with its record; returns the record's sequence number.
    async fn insert_report(&self, r: &StoredReport, rec: &NewRecord) -> Result<u64, StoreError>;

    /// Every report, by id.
    async fn reports(&self) -> Result<Vec<StoredReport>, StoreError>;

    /// Claims `period` of report `report` for `runs` (all `PENDING`): sets its last period from
    /// `expected_last` to `period` and stores the runs, in one transaction. `false` (nothing
    /// stored) when the last period is no longer `expected_last`: another replica claimed it.
    async fn claim_period(
        &self,
        report: &str,
        expected_last: Option<&str>,
        period: &str,
        runs: &[StoredRun],
    ) -> Result<bool, StoreError>;

    /// `PENDING` runs claimed before `before` (their claimer stopped).
    async fn stale_runs(&self, before: DateTime<Utc>) -> Result<Vec<StoredRun>, StoreError>;

    /// Claims a stale run again as of `at`; `false` when another replica did first.
    async fn reclaim_run(&self, run: &StoredRun, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Ends a `PENDING` run as `run` says (status, reason, table, cells) with its record, if it is
    /// still claimed as of `run.claimed_at`; returns the record's sequence number.
    ///
    /// # Errors
    /// `Conflict` when it was claimed again or ended meanwhile.
    async fn finish_run(&self, run: &StoredRun, rec: &NewRecord) -> Result<u64, StoreError>;

    /// Runs, newest period first: of `report`, and/or for `recipient`; at most
    /// [`RUNS_LISTED`].
    async fn runs(&self, report: Option<&str>, recipient: Option<&ParticipantId>)
        -> Result<Vec<StoredRun>, StoreError>;
}

/// What the gateway keeps of the witnesses it feeds (`crate::log::witnesses`).
#[async_trait]
pub trait WitnessStore: Send + Sync {
    /// The size `witness` holds of this log and the largest it cosigned for this gateway
    /// (`None`: never fed).
    async fn witness_feed(&self, witness: &str) -> Result<Option<(u64, u64)>, StoreError>;

    /// Records what `witness` holds (`size`) and, after a cosignature, the size it cosigned (the
    /// stored cosigned size never decreases).
    async fn set_witness_feed(&self, witness: &str, size: u64, cosigned: Option<u64>) -> Result<(), StoreError>;

    /// The note of the checkpoint of `size` with `line` (a cosignature) among its signatures,
    /// replacing an earlier line of the same key: `false` when there is no such checkpoint.
    async fn add_cosignature(&self, size: u64, line: &str) -> Result<bool, StoreError>;
}

/// Most records one integration takes from the queue of records stored and not yet integrated.
pub(crate) const INTEGRATION_BATCH: usize = 4096;

/// Opens the store a database URL names: `sqlite:PATH` (created and migrated when missing) or
/// `postgres://…` / `postgresql://…` (an existing database, migrated), with the default pool.
///
/// # Errors
/// An unsupported scheme, or a database that cannot be opened or migrated.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_with(url, postgres::DEFAULT_POOL).await
}

fn unsupported(url: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unsupported database URL scheme (expected sqlite: or postgres:): {}",
        url.split(':').next().unwrap_or("")
    )
}

/// Opens the store a database URL names for reading only: nothing is created, migrated or
/// written (`audit verify`).
///
/// # Errors
/// An unsupported scheme, or a database that cannot be opened.
pub async fn open_read_only(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open_read_only(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PostgresStore::open_read_only(url).await?))
    } else {
        Err(unsupported(url))
    }
}

/// As [`open`], with at most `pool` connections to PostgreSQL (SQLite, which serialises its
/// writers, keeps its own small pool).
///
/// # Errors
/// As [`open`]; a pool of 0.
pub async fn open_with(url: &str, pool: u32) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        anyhow::ensure!(pool > 0, "database_pool must be at least 1");
        Ok(Arc::new(postgres::PostgresStore::connect(url.parse()?, pool).await?))
    } else {
        Err(unsupported(url))
    }
}
