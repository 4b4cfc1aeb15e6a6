//! The one SQL implementation of [`Store`], over any sqlx driver that implements [`Dialect`]:
//! every query is written once, with `$N` placeholders (sqlx binds them on SQLite too), and
//! every row decodes through one `FromRow` struct of [`super::rows`]. A dialect supplies only
//! what its database does differently: how a writer takes its locks, batch inserts and lookups
//! (multi-row `VALUES` or `UNNEST` of arrays), and the classification of its errors.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};

use super::codec::{check_placement, micros, scope_to_json};
use super::rows::{
    ApprovalRow, CheckpointRow, ChunkRow, DatasetRow, GrantRow, HoldRow, LeafFacetsRow, NodeRow, ParticipantRow,
    QueuedRow, RecordRow, ReportRow, RunRow, TransferRow, VersionRow,
};
use super::{
    CatalogStore, Committed, GrantStore, HoldFilter, Integrator, Keep, LedgerCounts, LedgerStore, LedgerTotal,
    LogStore, NewVersion, OversightStore, PersonCount, QueuedRecord, ReleasedCell, Store, StoreError, StoredApproval,
    StoredCheckpoint, StoredChunk, StoredReport, StoredRun, StoredTransfer, TableRelease, TableReport, TableStore,
    TransferFilter, TreeHead, INTEGRATION_BATCH,
};
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::hold::Hold;
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{Participant, ParticipantStatus};
use crate::domain::record::{NewRecord, PreparedRecord, RecordKind, StoredRecord, TransferFacets};
use crate::domain::review::{ReviewPolicy, VersionReview, VersionStatus};
use crate::translog::compact::decomposition;

/// A store in a SQL database: three pools on it, so that no kind of work can starve another —
/// `pool` for the control plane (catalog, grants, oversight, audit reads), `bulk` for reading
/// chunks (a pull holds one of its connections only while it reads one chunk, never while the
/// client is slow), and `log` for the sequencer's integrations.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) bulk: Pool<DB>,
    pub(super) log: Pool<DB>,
}

impl<DB: Database> SqlStore<DB> {
    /// Closes every pool (connections in use close when given back).
    pub async fn close(&self) {
        for pool in [&self.pool, &self.bulk, &self.log] {
            pool.close().await;
        }
    }
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore { pool: self.pool.clone(), bulk: self.bulk.clone(), log: self.log.clone() }
    }
}

impl<DB: Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("database", &DB::NAME).field("pool", &self.pool.size()).finish()
    }
}

/// A serialisation point a writer takes inside its transaction, held until it ends.
#[derive(Debug, Clone, Copy)]
pub enum Lock<'a> {
    /// The log's integrations: one tree, no forks.
    Log,
    /// One exporter's person ledger: no two counts read the same "before".
    Ledger(&'a str),
    /// One dataset's version numbers and idempotency keys.
    Versions(&'a str),
    /// One release-ledger scope: no two tables are protected against the same ledger and both
    /// released.
    Release(&'a str),
}

/// What a database error means for the store's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be reached or written now (busy, full, read-only, I/O, shutting down).
    Unavailable,
    /// The database's own files are damaged.
    Corrupt,
    /// Anything else.
    Other,
}

/// Maps a driver error onto the store's contract. A unique violation is `AlreadyExists`
/// without the database's words (table and column names stay in the server's log).
fn classify<DB: Dialect>(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            tracing::debug!(error = %db.message(), "unique violation");
            StoreError::AlreadyExists("a row with the same key".into())
        }
        sqlx::Error::Database(db) => match DB::database_error(db.as_ref()) {
            Failure::Unavailable => StoreError::Unavailable(e),
            Failure::Corrupt => StoreError::Corrupt(format!("{} database", DB::NAME)),
            Failure::Other => StoreError::Other(e),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
        _ => StoreError::Other(e),
    }
}

/// What one SQL database does differently from the others.
#[async_trait]
pub trait Dialect: Database {
    /// Whether other gateway processes may share a database of this kind.
    const SHARED: bool;

    /// What an error the database reported (other than a unique violation) means for the
    /// store's contract.
    fn database_error(e: &dyn sqlx::error::DatabaseError) -> Failure;

    /// Rows an `INSERT`, `UPDATE` or `DELETE` changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Starts a transaction that will write.
    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error>;

    /// Leaves the database whole on disk after a clean stop (SQLite: the WAL checkpointed into
    /// the main file and truncated, so that the file alone is the database).
    async fn settle(pool: &Pool<Self>) -> Result<(), sqlx::Error>;

    /// Takes `lock` for the rest of the transaction on `conn`.
    async fn lock(conn: &mut Self::Connection, lock: Lock<'_>) -> Result<(), sqlx::Error>;

    /// Inserts records with their leaves, in order, in one statement; returns their sequence
    /// numbers, ascending. With `first_index`, the records are integrated at once: leaf
    /// indexes from `first_index` on (the caller integrates them in this transaction).
    async fn insert_records(
        conn: &mut Self::Connection,
        recs: &[(&NewRecord, &str)],
        first_index: Option<u64>,
    ) -> Result<Vec<u64>, sqlx::Error>;

    /// The stored tree nodes among `coordinates` (`(level, idx)`).
    async fn tree_nodes_in(conn: &mut Self::Connection, coordinates: &[(u8, u64)])
        -> Result<Vec<NodeRow>, sqlx::Error>;

    /// Sets the leaf index of each `(seq, index)`; returns how many records were updated.
    async fn set_leaf_indexes(conn: &mut Self::Connection, leaves: &[(u64, u64)]) -> Result<u64, sqlx::Error>;

    /// Stores tree nodes `(level, idx, hash)`.
    async fn insert_tree_nodes(conn: &mut Self::Connection, nodes: &[(u8, u64, [u8; 32])]) -> Result<(), sqlx::Error>;

    /// Adds persons (keyed hashes) to one bucket of the ledger, ignoring those already there;
    /// returns how many were new.
    async fn insert_persons(
        conn: &mut Self::Connection,
        count: &PersonCount<'_>,
        bucket: &str,
        persons: &[[u8; 32]],
    ) -> Result<u64, sqlx::Error>;
}

/// SQL both dialects run as written.
pub(super) mod text {
    /// Columns of `versions` as [`super::VersionRow`] reads them.
    macro_rules! version_columns {
        () => {
            "dataset_id, version, rows, chunks, sha256, publisher, published_at, idempotency_key, status, review"
        };
    }

    pub const INSERT_PARTICIPANT: &str =
        "INSERT INTO participants (id, display_name, kind, recipient_type, region, in_tianjin_ftz, roles, clearance, status, registered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    pub const PARTICIPANT: &str = "SELECT * FROM participants WHERE id = $1";
    pub const PARTICIPANTS: &str = "SELECT * FROM participants ORDER BY id";
    pub const SET_PARTICIPANT_STATUS: &str = "UPDATE participants SET status = $1 WHERE id = $2 RETURNING *";

    pub const INSERT_DATASET: &str =
        "INSERT INTO datasets (id, owner, title, description, government_data, fields, person_key_field, contributor_key_field, registered_at, holding_key_field)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    pub const DATASET: &str = "SELECT * FROM datasets WHERE id = $1";
    pub const DATASETS: &str = "SELECT * FROM datasets WHERE id > $1 ORDER BY id LIMIT $2";

    pub const VERSIONS: &str =
        concat!("SELECT ", version_columns!(), " FROM versions WHERE dataset_id = $1 ORDER BY version DESC");
    pub const VERSION: &str =
        concat!("SELECT ", version_columns!(), " FROM versions WHERE dataset_id = $1 AND version = $2");
    pub const LATEST_VERSION: &str = concat!(
        "SELECT ",
        version_columns!(),
        " FROM versions WHERE dataset_id = $1 AND status = 'RELEASED' ORDER BY version DESC LIMIT 1"
    );
    pub const VERSIONS_IN_REVIEW: &str = concat!(
        "SELECT ",
        version_columns!(),
        " FROM versions WHERE status = 'IN_REVIEW' ORDER BY dataset_id, version"
    );
    pub const REVIEW_POLICY: &str = "SELECT review_policy FROM datasets WHERE id = $1";
    pub const INSERT_REPORT: &str =
        "INSERT INTO reports (id, dataset_id, definer, schedule, request, recipients, defined_at,
                                                     latest_at_definition)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub const REPORTS: &str = "SELECT id, dataset_id, definer, schedule, request, recipients, defined_at,
                latest_at_definition, last_period FROM reports ORDER BY id";
    pub const CLAIM_PERIOD: &str = "UPDATE reports SET last_period = $1 WHERE id = $2 AND last_period = $3";
    pub const INSERT_RUN: &str = "INSERT INTO report_runs (report_id, period, recipient, status, claimed_at, missed)
         VALUES ($1, $2, $3, 'PENDING', $4, $5)";
    pub const RUN_COLUMNS_FROM: &str =
        "SELECT report_id, period, recipient, status, claimed_at, missed, reason, table_id,
                version, cells, sha256, record_seq FROM report_runs";
    pub const RECLAIM_RUN: &str = "UPDATE report_runs SET claimed_at = $1
         WHERE report_id = $2 AND period = $3 AND recipient = $4 AND status = 'PENDING' AND claimed_at = $5";
    pub const FINISH_RUN: &str =
        "UPDATE report_runs SET status = $1, reason = $2, table_id = $3, version = $4, cells = $5,
                sha256 = $6, record_seq = $7
         WHERE report_id = $8 AND period = $9 AND recipient = $10 AND status = 'PENDING' AND claimed_at = $11";
    pub const SET_CADENCE: &str = "UPDATE datasets SET cadence = $1, cadence_at = $2 WHERE id = $3";
    pub const CADENCES: &str =
        "SELECT id, cadence, CAST(cadence_at AS BIGINT) FROM datasets WHERE cadence IS NOT NULL ORDER BY id";
    pub const SET_REVIEW_POLICY: &str = "UPDATE datasets SET review_policy = $1 WHERE id = $2";
    /// Compare-and-set on the review as read: a concurrent step of the same version fails.
    pub const REVIEW_VERSION: &str =
        "UPDATE versions SET status = $1, review = $2 WHERE dataset_id = $3 AND version = $4 AND review = $5";
    pub const VERSION_BY_KEY: &str =
        concat!("SELECT ", version_columns!(), " FROM versions WHERE dataset_id = $1 AND idempotency_key = $2");
    pub const INSERT_VERSION: &str = concat!(
        "INSERT INTO versions (dataset_id, version, upload_id, rows, chunks, sha256, publisher, published_at, idempotency_key,
                               status, review)
         VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE dataset_id = $1), $2, $3, $4, $5, $6, $7, $8,
                 $9, $10)
         RETURNING ",
        version_columns!()
    );

    pub const BEGIN_UPLOAD: &str = "INSERT INTO uploads (id, dataset_id, started_at) VALUES ($1, $2, $3)";
    pub const PUT_CHUNK: &str = "INSERT INTO chunks (upload_id, seq, rows, sha256, data) VALUES ($1, $2, $3, $4, $5)";
    pub const DISCARD_CHUNKS: &str = "DELETE FROM chunks WHERE upload_id = $1";
    pub const DISCARD_UPLOAD: &str = "DELETE FROM uploads WHERE id = $1";
    pub const ABORT_CHUNKS: &str =
        "DELETE FROM chunks WHERE upload_id = $1 AND NOT EXISTS (SELECT 1 FROM versions WHERE upload_id = $1)";
    pub const ABORT_UPLOAD: &str =
        "DELETE FROM uploads WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM versions WHERE upload_id = $1)";
    pub const PURGE_CHUNKS: &str = "DELETE FROM chunks WHERE upload_id IN
         (SELECT id FROM uploads WHERE started_at < $1 AND id NOT IN (SELECT upload_id FROM versions))";
    pub const PURGE_UPLOADS: &str =
        "DELETE FROM uploads WHERE started_at < $1 AND id NOT IN (SELECT upload_id FROM versions)";
    /// One chunk of a published version: `$1` dataset, `$2` version, `$3` seq.
    pub const CHUNK: &str =
        "SELECT c.seq, c.rows, c.sha256, c.data FROM versions v JOIN chunks c ON c.upload_id = v.upload_id
         WHERE v.dataset_id = $1 AND v.version = $2 AND c.seq = $3";

    pub const INSERT_GRANT: &str =
        "INSERT INTO grants (id, dataset_id, consumer, status, body, requested_at) VALUES ($1, $2, $3, $4, $5, $6)";
    pub const GRANT: &str = "SELECT body FROM grants WHERE id = $1";
    /// The record stored with a grant's latest change.
    /// Compare-and-set: a concurrent update of the same row waits for this one, then re-checks
    /// `status`.
    pub const UPDATE_GRANT: &str = "UPDATE grants SET status = $1, body = $2 WHERE id = $3 AND status = $4";
    pub const GRANTS_VISIBLE_TO: &str = "SELECT g.body FROM grants g JOIN datasets d ON d.id = g.dataset_id
         WHERE (g.consumer = $1 OR d.owner = $1) AND (CAST($2 AS TEXT) IS NULL OR g.dataset_id = $2)
         ORDER BY g.requested_at, g.id";
    pub const GRANTS_OF: &str =
        "SELECT body FROM grants WHERE consumer = $1 AND dataset_id = $2 ORDER BY requested_at, id";

    pub const TREE_SIZE: &str = "SELECT CAST(COALESCE(MAX(size), 0) AS BIGINT) FROM checkpoints";
    pub const QUEUED: &str = "SELECT seq, json FROM records WHERE leaf_index IS NULL ORDER BY seq LIMIT $1";
    pub const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (size, root, note, at) VALUES ($1, $2, $3, $4)";
    pub const CHECKPOINT: &str = "SELECT size, root, note, at FROM checkpoints WHERE size = $1";
    pub const LATEST_CHECKPOINT: &str = "SELECT size, root, note, at FROM checkpoints ORDER BY size DESC LIMIT 1";
    pub const CHECKPOINTS: &str = "SELECT size, root, note, at FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2";
    pub const LEAVES: &str =
        "SELECT seq, leaf_index, kind, json FROM records WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2";
    pub const RECORDS: &str = "SELECT seq, leaf_index, kind, json FROM records WHERE seq > $1 ORDER BY seq LIMIT $2";
    pub const RECORDS_ABOUT: &str = "SELECT seq, leaf_index, kind, json FROM
         (SELECT seq, leaf_index, kind, json FROM records WHERE subject = $1 ORDER BY seq DESC LIMIT $2) latest
         ORDER BY seq";
    pub const LEAF_FACETS: &str =
        "SELECT leaf_index, transfer, dataset, recipient, exporter, region, export, mechanism, action
         FROM records WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index";
    pub const TRANSFERS: &str =
        "SELECT seq, leaf_index, kind, at, json, transfer, dataset, recipient, exporter, region, \
         export, mechanism, action FROM records WHERE transfer IS NOT NULL AND leaf_index IS NOT NULL";

    pub const INSERT_APPROVAL: &str =
        "INSERT INTO approvals (id, kind, exporter, reference, issued, expires, revoked, scope, recorded_by, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $8, $9)";
    pub const APPROVAL: &str = "SELECT * FROM approvals WHERE id = $1";
    /// The approval.recorded record stored with the row.
    pub const APPROVAL_RECORD_SEQ: &str = "UPDATE approvals SET record_seq = $1 WHERE id = $2";
    /// Compare-and-set: confirmed once, never once revoked.
    pub const CONFIRM_APPROVAL: &str = "UPDATE approvals SET confirmed_by = $1, confirmed_at = $2
         WHERE id = $3 AND confirmed_by IS NULL AND revoked = FALSE RETURNING *";
    /// Compare-and-set: two concurrent revocations never both succeed.
    pub const REVOKE_APPROVAL: &str =
        "UPDATE approvals SET revoked = TRUE, revoked_by = $1, revoked_at = $2, revoke_reason = $3
         WHERE id = $4 AND revoked = FALSE RETURNING *";
    pub const APPROVALS: &str =
        "SELECT * FROM approvals WHERE (CAST($1 AS TEXT) IS NULL OR exporter = $1) ORDER BY recorded_at, id";

    pub const INSERT_HOLD: &str =
        "INSERT INTO holds (id, status, grant_id, dataset, consumer, exporter, mechanism, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    pub const HOLDS_FOR: &str = "SELECT * FROM holds WHERE grant_id = $1 AND mechanism = $2 ORDER BY created_at, id";
    pub const HOLD: &str = "SELECT * FROM holds WHERE id = $1";
    /// Every hold; conditions are appended.
    pub const HOLDS: &str = "SELECT * FROM holds WHERE TRUE";
    /// Compare-and-set on `status = 'OPEN'`.
    pub const RESOLVE_HOLD: &str =
        "UPDATE holds SET status = $1, resolved_by = $2, resolved_at = $3, reason = $4, approval_id = $5
         WHERE id = $6 AND status = 'OPEN'";

    /// The running total of a year's bucket (`$1` exporter, `$2` year, `$3` bucket).
    pub const LEDGER_YEAR: &str = "SELECT CAST(COALESCE(SUM(persons), 0) AS BIGINT) FROM export_counts
         WHERE exporter = $1 AND year = $2 AND bucket = $3";
    /// Distinct persons of a bucket over years `$3..=$4`.
    pub const LEDGER_WINDOW: &str = "SELECT COUNT(DISTINCT person) FROM export_persons
         WHERE exporter = $1 AND bucket = $2 AND year BETWEEN $3 AND $4";
    pub const LEDGER_ADD: &str = "INSERT INTO export_counts (exporter, year, bucket, persons) VALUES ($1, $2, $3, $4)
         ON CONFLICT (exporter, year, bucket) DO UPDATE SET persons = export_counts.persons + excluded.persons";

    pub const LEDGER_TOTALS: &str =
        "SELECT exporter, CAST(year AS BIGINT), bucket, CAST(persons AS BIGINT) FROM export_counts
         ORDER BY exporter, year, bucket";
    pub const LEDGER_POSITION: &str = "SELECT entries FROM export_ledger_positions WHERE exporter = $1";
    pub const LEDGER_TAKE_POSITION: &str = "INSERT INTO export_ledger_positions (exporter, entries) VALUES ($1, $2)
         ON CONFLICT (exporter) DO UPDATE SET entries = excluded.entries";

    pub const LEDGER_SCOPE: &str = "SELECT scope FROM ledger_scopes WHERE participant = $1";
    pub const SET_LEDGER_SCOPE: &str = "INSERT INTO ledger_scopes (participant, scope) VALUES ($1, $2)
         ON CONFLICT (participant) DO UPDATE SET scope = excluded.scope";
    pub const RESET_LEDGER_SCOPE: &str = "DELETE FROM ledger_scopes WHERE participant = $1";
    pub const RELEASED: &str = "SELECT quantity, cell, value FROM release_ledger
         WHERE scope = $1 AND dataset_id = $2 AND version = $3 ORDER BY table_id, quantity, cell";
    pub const RELEASED_COUNT: &str = "SELECT COUNT(*) FROM release_ledger
         WHERE scope = $1 AND dataset_id = $2 AND version = $3";
    /// A cell released again (same scope, version, quantity and cell) keeps its first row.
    pub const RELEASE: &str = "INSERT INTO release_ledger (scope, dataset_id, version, quantity, cell, value, table_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
    pub const INSERT_TABLE_REPORT: &str =
        "INSERT INTO table_reports (table_id, dataset_id, recipient, report, at) VALUES ($1, $2, $3, $4, $5)";
    pub const DATASET_TABLE_RULES: &str = "SELECT domestic, export FROM dataset_table_rules WHERE dataset_id = $1";
    pub const SET_DATASET_TABLE_RULES: &str = "INSERT INTO dataset_table_rules (dataset_id, domestic, export)
         VALUES ($1, $2, $3) ON CONFLICT (dataset_id) DO UPDATE SET domestic = excluded.domestic, export = excluded.export";
    pub const TABLE_REPORT: &str = "SELECT dataset_id, recipient, report FROM table_reports WHERE table_id = $1";

    /// The health probe's write: `$1` the time.
    pub const PROBE_WRITE: &str =
        "INSERT INTO liveness (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at";
}

/// A value bound to a query whose text is built at run time.
enum Bind {
    Int(i64),
    Text(String),
    Bool(bool),
}

/// `query` with `binds` bound in order.
fn bound<'q, DB, O>(
    mut query: sqlx::query::QueryAs<'q, DB, O, DB::Arguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::QueryAs<'q, DB, O, DB::Arguments<'q>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    for value in binds {
        query = match value {
            Bind::Int(v) => query.bind(v),
            Bind::Text(v) => query.bind(v),
            Bind::Bool(v) => query.bind(v),
        };
    }
    query
}

/// A failure to store a record: the operation it records cannot proceed (fail closed).
fn unavailable<DB: Dialect>(e: sqlx::Error) -> StoreError {
    match classify::<DB>(e) {
        StoreError::Other(e) => StoreError::Unavailable(e),
        other => other,
    }
}

/// Renames `AlreadyExists` after the row it is about.
fn exists_as<DB: Dialect>(what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match classify::<DB>(e) {
        StoreError::AlreadyExists(_) => StoreError::AlreadyExists(what),
        other => other,
    }
}

/// Converts every row.
fn all<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

/// Converts a row if there is one.
fn one<R, T: TryFrom<R, Error = StoreError>>(row: Option<R>) -> Result<Option<T>, StoreError> {
    row.map(T::try_from).transpose()
}

/// The JSON of a value the gateway built (a failure is a bug, reported as corruption).
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The shared implementation, under everything the shared SQL asks of a driver (executors for
/// pools and connections, the column types it binds and decodes, the rows it reads): the bounds
/// are written once, here, for the helpers (`helpers`) and each impl block after them.
macro_rules! sql_impl {
    (helpers { $($helper:tt)* } $([$($head:tt)*] { $($method:tt)* })*) => {
        sql_impl!(@bounds [impl<DB> SqlStore<DB>] { $($helper)* });
        $(sql_impl!(@bounds [$($head)*] { $($method)* });)*
    };
    (@bounds [$($head:tt)*] { $($body:tt)* }) => {
        $($head)*
        where
            DB: Dialect,
            for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
            for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
            for<'q> &'q str: Encode<'q, DB> + Type<DB>,
            for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
            for<'q> Option<&'q str>: Encode<'q, DB>,
            Option<String>: for<'q> Encode<'q, DB>,
            Option<i64>: for<'q> Encode<'q, DB>,
            String: for<'q> Encode<'q, DB> + Type<DB>,
            i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
            i32: for<'q> Encode<'q, DB> + Type<DB>,
            f64: for<'q> Encode<'q, DB> + Type<DB>,
            (String,): for<'r> FromRow<'r, DB::Row>,
            (String, String): for<'r> FromRow<'r, DB::Row>,
            (String, String, f64): for<'r> FromRow<'r, DB::Row>,
            (String, String, String): for<'r> FromRow<'r, DB::Row>,
            (String, i64, String, i64): for<'r> FromRow<'r, DB::Row>,
            (Option<String>,): for<'r> FromRow<'r, DB::Row>,
            (String, String, i64): for<'r> FromRow<'r, DB::Row>,
            bool: for<'q> Encode<'q, DB> + Type<DB>,
            (i64,): for<'r> FromRow<'r, DB::Row>,
            ParticipantRow: for<'r> FromRow<'r, DB::Row>,
            DatasetRow: for<'r> FromRow<'r, DB::Row>,
            VersionRow: for<'r> FromRow<'r, DB::Row>,
            GrantRow: for<'r> FromRow<'r, DB::Row>,
            ChunkRow: for<'r> FromRow<'r, DB::Row>,
            CheckpointRow: for<'r> FromRow<'r, DB::Row>,
            RecordRow: for<'r> FromRow<'r, DB::Row>,
            TransferRow: for<'r> FromRow<'r, DB::Row>,
            LeafFacetsRow: for<'r> FromRow<'r, DB::Row>,
            ApprovalRow: for<'r> FromRow<'r, DB::Row>,
            HoldRow: for<'r> FromRow<'r, DB::Row>,
            QueuedRow: for<'r> FromRow<'r, DB::Row>,
            ReportRow: for<'r> FromRow<'r, DB::Row>,
            RunRow: for<'r> FromRow<'r, DB::Row>,
        {
            $($body)*
        }
    };
}

sql_impl! {
helpers {
    /// Ends a compare-and-set change of approval `id` in `tx`: the changed row stores `rec` with
    /// it and commits; no changed row is `None` when the approval does not exist, otherwise
    /// `Conflict` (it `conflict`: changed already, by this one's competitor).
    async fn approval_changed(
        mut tx: Transaction<'static, DB>,
        id: &str,
        changed: Option<ApprovalRow>,
        conflict: &str,
        rec: &NewRecord,
    ) -> Result<Option<(StoredApproval, u64)>, StoreError> {
        let Some(a) = one::<_, StoredApproval>(changed)? else {
            let existing = sqlx::query_as::<_, ApprovalRow>(text::APPROVAL)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify::<DB>)?;
            return match existing {
                None => Ok(None),
                Some(_) => Err(StoreError::Conflict(format!("approval {id} {conflict}"))),
            };
        };
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(Some((a, seq)))
    }

    /// Stores one record in the transaction on `conn` (not integrated yet).
    /// Dataset `dataset`'s review policy, read on `conn`.
    async fn review_policy_in(
        conn: &mut DB::Connection,
        dataset: &DatasetId,
    ) -> Result<Option<ReviewPolicy>, StoreError> {
        let row = sqlx::query_as::<_, (Option<String>,)>(text::REVIEW_POLICY)
            .bind(dataset.as_str())
            .fetch_optional(conn)
            .await
            .map_err(classify::<DB>)?;
        match row.and_then(|(p,)| p) {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("the review policy of dataset {dataset}: {e}"))),
        }
    }

    async fn insert_record(conn: &mut DB::Connection, rec: &NewRecord) -> Result<u64, StoreError> {
        let leaf = rec.leaf().map_err(|e| StoreError::Corrupt(format!("record: {e}")))?;
        let seqs = DB::insert_records(conn, &[(rec, &leaf)], None).await.map_err(unavailable::<DB>)?;
        seqs.first().copied().ok_or_else(|| StoreError::Corrupt("a record insert returned no sequence number".into()))
    }

    /// Adds one bucket of a transfer's persons to the ledger in the transaction on `conn`;
    /// returns the window's count before and the persons new to the window.
    async fn count_bucket(
        conn: &mut DB::Connection,
        count: &PersonCount<'_>,
        bucket: &str,
        persons: &[[u8; 32]],
    ) -> Result<(u64, u64), StoreError> {
        let in_window = || {
            sqlx::query_as::<_, (i64,)>(text::LEDGER_WINDOW)
                .bind(count.exporter)
                .bind(bucket)
                .bind(count.year - count.years_back)
                .bind(count.year)
        };
        let (before,) = if count.years_back == 0 {
            sqlx::query_as::<_, (i64,)>(text::LEDGER_YEAR)
                .bind(count.exporter)
                .bind(count.year)
                .bind(bucket)
                .fetch_one(&mut *conn)
                .await
                .map_err(classify::<DB>)?
        } else {
            in_window().fetch_one(&mut *conn).await.map_err(classify::<DB>)?
        };
        let inserted = DB::insert_persons(conn, count, bucket, persons).await.map_err(classify::<DB>)?;
        sqlx::query(text::LEDGER_ADD)
            .bind(count.exporter)
            .bind(count.year)
            .bind(bucket)
            .bind(inserted as i64)
            .execute(&mut *conn)
            .await
            .map_err(classify::<DB>)?;
        let new = if count.years_back == 0 {
            inserted
        } else {
            let (after,) = in_window().fetch_one(&mut *conn).await.map_err(classify::<DB>)?;
            (after - before) as u64
        };
        Ok((before as u64, new))
    }
}
[#[async_trait] impl<DB> CatalogStore for SqlStore<DB>] {
    async fn insert_participant(&self, p: &Participant, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        sqlx::query(text::INSERT_PARTICIPANT)
            .bind(p.id.as_str())
            .bind(p.display_name.as_str())
            .bind(p.kind.as_str())
            .bind(p.recipient_type.as_str())
            .bind(p.region.as_str())
            .bind(p.in_tianjin_ftz)
            .bind(to_json(&roles)?)
            .bind(p.clearance.as_str())
            .bind(p.status.as_str())
            .bind(micros(rec.at))
            .execute(&mut *tx)
            .await
            .map_err(exists_as::<DB>(format!("participant {}", p.id)))?;
        Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)
    }

    async fn participant(&self, id: &ParticipantId) -> Result<Option<Participant>, StoreError> {
        one(sqlx::query_as::<_, ParticipantRow>(text::PARTICIPANT)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn participants(&self) -> Result<Vec<Participant>, StoreError> {
        all(sqlx::query_as::<_, ParticipantRow>(text::PARTICIPANTS).fetch_all(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn set_participant_status(
        &self,
        id: &ParticipantId,
        status: ParticipantStatus,
        rec: &NewRecord,
    ) -> Result<Option<Participant>, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let row = sqlx::query_as::<_, ParticipantRow>(text::SET_PARTICIPANT_STATUS)
            .bind(status.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        let Some(p) = one(row)? else { return Ok(None) };
        Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(Some(p))
    }

    async fn insert_dataset(&self, d: &Dataset, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::INSERT_DATASET)
            .bind(d.id.as_str())
            .bind(d.owner.as_str())
            .bind(d.title.as_str())
            .bind(d.description.as_str())
            .bind(d.government_data)
            .bind(to_json(&d.fields)?)
            .bind(d.person_key_field.as_ref().map(|f| f.as_str()))
            .bind(d.contributor_key_field.as_ref().map(|f| f.as_str()))
            .bind(micros(d.registered_at))
            .bind(d.holding_key_field.as_ref().map(|f| f.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(exists_as::<DB>(format!("dataset {}", d.id)))?;
        Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)
    }

    async fn dataset(&self, id: &DatasetId) -> Result<Option<Dataset>, StoreError> {
        one(sqlx::query_as::<_, DatasetRow>(text::DATASET)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn datasets(&self, after: Option<&DatasetId>, limit: u32) -> Result<Vec<Dataset>, StoreError> {
        all(sqlx::query_as::<_, DatasetRow>(text::DATASETS)
            .bind(after.map_or("", |a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn versions(&self, dataset: &DatasetId) -> Result<Vec<VersionInfo>, StoreError> {
        all(sqlx::query_as::<_, VersionRow>(text::VERSIONS)
            .bind(dataset.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn version(&self, dataset: &DatasetId, version: Option<u64>) -> Result<Option<VersionInfo>, StoreError> {
        let q = match version {
            Some(v) => sqlx::query_as::<_, VersionRow>(text::VERSION).bind(dataset.as_str()).bind(v as i64),
            None => sqlx::query_as::<_, VersionRow>(text::LATEST_VERSION).bind(dataset.as_str()),
        };
        one(q.fetch_optional(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn review_policy(&self, dataset: &DatasetId) -> Result<Option<ReviewPolicy>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(classify::<DB>)?;
        Self::review_policy_in(&mut conn, dataset).await
    }

    async fn set_review_policy(
        &self,
        dataset: &DatasetId,
        policy: Option<&ReviewPolicy>,
        rec: &NewRecord,
    ) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        // Serialised with commits: a version is published under the policy before or after.
        DB::lock(&mut *tx, Lock::Versions(dataset.as_str())).await.map_err(classify::<DB>)?;
        let json = policy.map(|p| serde_json::to_string(p).expect("a review policy serialises"));
        sqlx::query(text::SET_REVIEW_POLICY)
            .bind(json)
            .bind(dataset.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn review_version(
        &self,
        v: &VersionInfo,
        after: &VersionReview,
        rec: &NewRecord,
    ) -> Result<u64, StoreError> {
        let before = v.review.as_ref().ok_or_else(|| StoreError::Conflict(format!("version {} has no review", v.version_id())))?;
        let before = serde_json::to_string(before).expect("a review serialises");
        let after_json = serde_json::to_string(after).expect("a review serialises");
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let done = sqlx::query(text::REVIEW_VERSION)
            .bind(after.status().as_str())
            .bind(after_json)
            .bind(v.dataset.as_str())
            .bind(v.version as i64)
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        if DB::rows_affected(&done) != 1 {
            return Err(StoreError::Conflict(format!("the review of version {} changed meanwhile", v.version_id())));
        }
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn set_cadence(
        &self,
        dataset: &DatasetId,
        cadence: Option<&str>,
        at: DateTime<Utc>,
        rec: &NewRecord,
    ) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::SET_CADENCE)
            .bind(cadence)
            .bind(cadence.map(|_| micros(at)))
            .bind(dataset.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn cadences(&self) -> Result<Vec<(DatasetId, String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String, i64)>(text::CADENCES)
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        rows.into_iter()
            .map(|(id, cadence, at)| {
                let id = DatasetId::parse(&id).map_err(|e| StoreError::Corrupt(format!("dataset id {id}: {e}")))?;
                Ok((id, cadence, super::codec::from_micros(at)))
            })
            .collect()
    }

    async fn versions_in_review(&self) -> Result<Vec<VersionInfo>, StoreError> {
        all(sqlx::query_as::<_, VersionRow>(text::VERSIONS_IN_REVIEW).fetch_all(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn version_by_key(&self, dataset: &DatasetId, key: &str) -> Result<Option<VersionInfo>, StoreError> {
        one(sqlx::query_as::<_, VersionRow>(text::VERSION_BY_KEY)
            .bind(dataset.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn begin_upload(&self, dataset: &DatasetId, upload_id: &str) -> Result<(), StoreError> {
        sqlx::query(text::BEGIN_UPLOAD)
            .bind(upload_id)
            .bind(dataset.as_str())
            .bind(micros(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(())
    }

    async fn put_chunk(&self, upload_id: &str, chunk: &StoredChunk) -> Result<(), StoreError> {
        sqlx::query(text::PUT_CHUNK)
            .bind(upload_id)
            .bind(chunk.seq as i64)
            .bind(i64::from(chunk.rows))
            .bind(&chunk.sha256[..])
            .bind(&chunk.data[..])
            .execute(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(())
    }

    async fn commit_upload(&self, upload_id: &str, v: &NewVersion, rec: &NewRecord) -> Result<Committed, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        // One committer per dataset at a time: the next version number and the idempotency
        // check below both read what the previous committer committed.
        DB::lock(&mut *tx, Lock::Versions(v.dataset.as_str())).await.map_err(classify::<DB>)?;
        let existing = sqlx::query_as::<_, VersionRow>(text::VERSION_BY_KEY)
            .bind(v.dataset.as_str())
            .bind(v.idempotency_key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        if let Some(info) = one(existing)? {
            for discard in [text::DISCARD_CHUNKS, text::DISCARD_UPLOAD] {
                sqlx::query(discard).bind(upload_id).execute(&mut *tx).await.map_err(classify::<DB>)?;
            }
            tx.commit().await.map_err(classify::<DB>)?;
            return Ok(Committed::Existing(info));
        }
        // Under the dataset's review policy as it stands now (setting one takes the same lock).
        let policy = Self::review_policy_in(&mut *tx, &v.dataset).await?;
        let review = policy.map(|policy| VersionReview { policy, steps: Vec::new(), level_since: v.published_at });
        let status = review.as_ref().map_or(VersionStatus::Released, VersionReview::status);
        let review_json = review.as_ref().map(|r| serde_json::to_string(r).expect("a review serialises"));
        let row = sqlx::query_as::<_, VersionRow>(text::INSERT_VERSION)
            .bind(v.dataset.as_str())
            .bind(upload_id)
            .bind(v.rows as i64)
            .bind(v.chunks as i64)
            .bind(&v.sha256[..])
            .bind(v.publisher.as_str())
            .bind(micros(v.published_at))
            .bind(v.idempotency_key.as_str())
            .bind(status.as_str())
            .bind(review_json)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        let info = VersionInfo::try_from(row)?;
        let mut rec = rec.clone();
        rec.body.insert("version".into(), info.version.into());
        rec.body.insert("status".into(), info.status.as_str().into());
        rec.subject = Some(crate::domain::record::bodies::Fact::Version.subject(&info.version_id()));
        Self::insert_record(&mut *tx, &rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(Committed::Created(info))
    }

    async fn abort_upload(&self, upload_id: &str) -> Result<(), StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        for abort in [text::ABORT_CHUNKS, text::ABORT_UPLOAD] {
            sqlx::query(abort).bind(upload_id).execute(&mut *tx).await.map_err(classify::<DB>)?;
        }
        tx.commit().await.map_err(classify::<DB>)
    }

    async fn purge_abandoned_uploads(&self, started_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::PURGE_CHUNKS).bind(micros(started_before)).execute(&mut *tx).await.map_err(classify::<DB>)?;
        let n = DB::rows_affected(&sqlx::query(text::PURGE_UPLOADS)
            .bind(micros(started_before))
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?);
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(n)
    }

    fn chunks(
        &self,
        dataset: &DatasetId,
        version: u64,
        from_seq: u64,
    ) -> BoxStream<'_, Result<StoredChunk, StoreError>> {
        let dataset = dataset.as_str().to_owned();
        let bulk = self.bulk.clone();
        super::codec::chunk_by_chunk(from_seq, move |seq| {
            let (bulk, dataset) = (bulk.clone(), dataset.clone());
            async move {
                let row = sqlx::query_as::<_, ChunkRow>(text::CHUNK)
                    .bind(dataset.as_str())
                    .bind(version as i64)
                    .bind(seq as i64)
                    .fetch_optional(&bulk)
                    .await
                    .map_err(classify::<DB>)?;
                one(row)
            }
        })
    }
}
[#[async_trait] impl<DB> GrantStore for SqlStore<DB>] {
    async fn insert_grant(&self, g: &Grant, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::INSERT_GRANT)
            .bind(g.id.as_str())
            .bind(g.dataset.as_str())
            .bind(g.consumer.as_str())
            .bind(g.status.as_str())
            .bind(to_json(g)?)
            .bind(micros(g.requested_at))
            .execute(&mut *tx)
            .await
            .map_err(exists_as::<DB>(format!("grant {}", g.id)))?;
        Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        one(sqlx::query_as::<_, GrantRow>(text::GRANT).bind(id).fetch_optional(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn update_grant(&self, g: &Grant, expected: GrantStatus, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let n = DB::rows_affected(&sqlx::query(text::UPDATE_GRANT)
            .bind(g.status.as_str())
            .bind(to_json(g)?)
            .bind(g.id.as_str())
            .bind(expected.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?);
        if n != 1 {
            return Err(StoreError::Conflict(format!("grant {}", g.id)));
        }
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn grants_visible_to(
        &self,
        participant: &ParticipantId,
        dataset: Option<&DatasetId>,
    ) -> Result<Vec<Grant>, StoreError> {
        all(sqlx::query_as::<_, GrantRow>(text::GRANTS_VISIBLE_TO)
            .bind(participant.as_str())
            .bind(dataset.map(|d| d.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn grants_of(&self, consumer: &ParticipantId, dataset: &DatasetId) -> Result<Vec<Grant>, StoreError> {
        all(sqlx::query_as::<_, GrantRow>(text::GRANTS_OF)
            .bind(consumer.as_str())
            .bind(dataset.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }
}
[#[async_trait] impl<DB> OversightStore for SqlStore<DB>] {
    async fn insert_approval(&self, a: &StoredApproval, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let ap = &a.approval;
        sqlx::query(text::INSERT_APPROVAL)
            .bind(ap.id.as_str())
            .bind(ap.kind.as_str())
            .bind(ap.exporter.as_str())
            .bind(ap.reference.as_str())
            .bind(ap.issued.format("%Y-%m-%d").to_string())
            .bind(ap.expires.map(|d| d.format("%Y-%m-%d").to_string()))
            .bind(scope_to_json(&ap.scope))
            .bind(a.recorded_by.as_str())
            .bind(micros(a.recorded_at))
            .execute(&mut *tx)
            .await
            .map_err(exists_as::<DB>(format!("approval {}", ap.id)))?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        sqlx::query(text::APPROVAL_RECORD_SEQ)
            .bind(seq as i64)
            .bind(ap.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn revoke_approval(
        &self,
        id: &str,
        by: &ParticipantId,
        reason: &str,
        at: DateTime<Utc>,
        rec: &NewRecord,
    ) -> Result<Option<(StoredApproval, u64)>, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let revoked = sqlx::query_as::<_, ApprovalRow>(text::REVOKE_APPROVAL)
            .bind(by.as_str())
            .bind(micros(at))
            .bind(reason)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        Self::approval_changed(tx, id, revoked, "is already revoked", rec).await
    }

    async fn confirm_approval(
        &self,
        id: &str,
        by: &ParticipantId,
        at: DateTime<Utc>,
        rec: &NewRecord,
    ) -> Result<Option<(StoredApproval, u64)>, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let confirmed = sqlx::query_as::<_, ApprovalRow>(text::CONFIRM_APPROVAL)
            .bind(by.as_str())
            .bind(micros(at))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        Self::approval_changed(tx, id, confirmed, "is already confirmed or revoked", rec).await
    }

    async fn approval(&self, id: &str) -> Result<Option<StoredApproval>, StoreError> {
        one(sqlx::query_as::<_, ApprovalRow>(text::APPROVAL).bind(id).fetch_optional(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn approvals(&self, exporter: Option<&str>) -> Result<Vec<StoredApproval>, StoreError> {
        all(sqlx::query_as::<_, ApprovalRow>(text::APPROVALS)
            .bind(exporter)
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn insert_hold(&self, h: &Hold, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::INSERT_HOLD)
            .bind(h.id.as_str())
            .bind(h.status.as_str())
            .bind(h.grant_id.as_str())
            .bind(h.dataset.as_str())
            .bind(h.consumer.as_str())
            .bind(h.exporter.as_str())
            .bind(h.mechanism.as_str())
            .bind(h.body.to_string())
            .bind(micros(h.created_at))
            .execute(&mut *tx)
            .await
            .map_err(exists_as::<DB>(format!("hold {}", h.id)))?;
        Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)
    }

    async fn holds_for(&self, grant: &str, mechanism: &str) -> Result<Vec<Hold>, StoreError> {
        all(sqlx::query_as::<_, HoldRow>(text::HOLDS_FOR)
            .bind(grant)
            .bind(mechanism)
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn hold(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        one(sqlx::query_as::<_, HoldRow>(text::HOLD).bind(id).fetch_optional(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn holds(&self, filter: &HoldFilter) -> Result<Vec<Hold>, StoreError> {
        let mut sql = String::from(text::HOLDS);
        let mut binds = Vec::new();
        let mut arg = |value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        for (column, value) in [
            ("status", filter.status.map(|s| s.as_str().to_owned())),
            ("dataset", filter.dataset.as_ref().map(|d| d.to_string())),
            ("consumer", filter.consumer.as_ref().map(|p| p.to_string())),
            ("exporter", filter.exporter.as_ref().map(|p| p.to_string())),
        ] {
            if let Some(v) = value {
                sql += &format!(" AND {column} = {}", arg(Bind::Text(v)));
            }
        }
        if let Some(t) = filter.created_before {
            sql += &format!(" AND created_at < {}", arg(Bind::Int(micros(t))));
        }
        sql += " ORDER BY created_at, id";
        all(bound(sqlx::query_as::<_, HoldRow>(&sql), binds).fetch_all(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn resolve_hold(&self, h: &Hold, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let n = DB::rows_affected(&sqlx::query(text::RESOLVE_HOLD)
            .bind(h.status.as_str())
            .bind(h.resolved_by.as_ref().map(|p| p.as_str()))
            .bind(h.resolved_at.map(micros))
            .bind(h.reason.as_str())
            .bind(h.approval_id.as_deref())
            .bind(h.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?);
        if n != 1 {
            return Err(StoreError::Conflict(format!("hold {} is no longer open", h.id)));
        }
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }
}
[#[async_trait] impl<DB> LogStore for SqlStore<DB>] {
    async fn integrate(&self, new: &[PreparedRecord], integrator: &Integrator<'_>) -> Result<Vec<u64>, StoreError> {
        let mut tx = DB::begin_write(&self.log).await.map_err(unavailable::<DB>)?;
        // One integrator at a time, whichever process: every statement below then sees the
        // tree the previous integration committed.
        DB::lock(&mut *tx, Lock::Log).await.map_err(unavailable::<DB>)?;
        let (size,) =
            sqlx::query_as::<_, (i64,)>(text::TREE_SIZE).fetch_one(&mut *tx).await.map_err(unavailable::<DB>)?;
        let size = size as u64;
        // Records stored with their state changes and not yet integrated come first (store
        // order).
        let mut queued: Vec<QueuedRecord> = sqlx::query_as::<_, QueuedRow>(text::QUEUED)
            .bind(INTEGRATION_BATCH as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable::<DB>)?
            .into_iter()
            .map(QueuedRecord::from)
            .collect();
        let earlier = queued.len();
        // The new records follow them: stored with their leaf indexes already, so that they need
        // no second write. Beyond a full queue they wait for the next integration.
        let first_new = (earlier < INTEGRATION_BATCH).then_some(size + earlier as u64);
        let prepared: Vec<(&NewRecord, &str)> = new.iter().map(|p| (p.record(), p.leaf())).collect();
        let seqs = DB::insert_records(&mut *tx, &prepared, first_new).await.map_err(unavailable::<DB>)?;
        if first_new.is_some() {
            queued.extend(seqs.iter().zip(new).map(|(seq, p)| QueuedRecord { seq: *seq, json: p.leaf().to_owned() }));
        }
        let edge = DB::tree_nodes_in(&mut *tx, &decomposition(size)).await.map_err(unavailable::<DB>)?;
        let edge = all::<_, ((u8, u64), [u8; 32])>(edge)?.into_iter().collect();
        let Some(integration) = integrator(&TreeHead { size, edge }, &queued).map_err(StoreError::Corrupt)? else {
            if !queued.is_empty() {
                // Records stored with leaf indexes must be integrated in this transaction.
                return Err(StoreError::Corrupt("the integrator left queued records out".into()));
            }
            tx.commit().await.map_err(unavailable::<DB>)?;
            return Ok(seqs);
        };
        check_placement(&integration.leaves, &queued, earlier, first_new)?;
        let before = &integration.leaves[..earlier];
        let updated = DB::set_leaf_indexes(&mut *tx, before).await.map_err(unavailable::<DB>)?;
        if updated != before.len() as u64 {
            return Err(StoreError::Corrupt(format!("integration names {} records, {updated} exist", before.len())));
        }
        DB::insert_tree_nodes(&mut *tx, &integration.nodes).await.map_err(unavailable::<DB>)?;
        let c = &integration.checkpoint;
        sqlx::query(text::INSERT_CHECKPOINT)
            .bind(c.size as i64)
            .bind(&c.root[..])
            .bind(c.note.as_str())
            .bind(micros(c.at))
            .execute(&mut *tx)
            .await
            .map_err(unavailable::<DB>)?;
        tx.commit().await.map_err(unavailable::<DB>)?;
        Ok(seqs)
    }

    async fn checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>, StoreError> {
        let q = match size {
            Some(n) => sqlx::query_as::<_, CheckpointRow>(text::CHECKPOINT).bind(n as i64),
            None => sqlx::query_as::<_, CheckpointRow>(text::LATEST_CHECKPOINT),
        };
        one(q.fetch_optional(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn checkpoints(&self, after: u64, limit: u32) -> Result<Vec<StoredCheckpoint>, StoreError> {
        all(sqlx::query_as::<_, CheckpointRow>(text::CHECKPOINTS)
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn tree_nodes(&self, coordinates: &[(u8, u64)]) -> Result<HashMap<(u8, u64), [u8; 32]>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(classify::<DB>)?;
        let rows = DB::tree_nodes_in(&mut *conn, coordinates).await.map_err(classify::<DB>)?;
        Ok(all::<_, ((u8, u64), [u8; 32])>(rows)?.into_iter().collect())
    }

    async fn leaves(&self, from: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        all(sqlx::query_as::<_, RecordRow>(text::LEAVES)
            .bind(from as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn records(&self, after: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        all(sqlx::query_as::<_, RecordRow>(text::RECORDS)
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn records_about(&self, subject: &str, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        all(sqlx::query_as::<_, RecordRow>(text::RECORDS_ABOUT)
            .bind(subject)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }

    async fn transfers(&self, filter: &TransferFilter, limit: u32) -> Result<Vec<StoredTransfer>, StoreError> {
        let mut sql = String::from(text::TRANSFERS);
        let mut binds = Vec::new();
        // The placeholder of the next value bound.
        let mut arg = |value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(t) = filter.from {
            sql += &format!(" AND at >= {}", arg(Bind::Int(micros(t))));
        }
        if let Some(t) = filter.to {
            sql += &format!(" AND at < {}", arg(Bind::Int(micros(t))));
        }
        let action = filter.action.map(|a| a.as_str().to_owned());
        let kind = filter.kind.map(|k| k.as_str().to_owned());
        for (column, value) in [
            ("dataset", &filter.dataset),
            ("recipient", &filter.recipient),
            ("exporter", &filter.exporter),
            ("region", &filter.region),
            ("mechanism", &filter.mechanism),
            ("action", &action),
            ("transfer", &filter.transfer),
            ("kind", &kind),
        ] {
            if let Some(v) = value {
                sql += &format!(" AND {column} = {}", arg(Bind::Text(v.clone())));
            }
        }
        if let Some(export) = filter.export {
            sql += &format!(" AND export = {}", arg(Bind::Bool(export)));
        }
        if let Some(p) = &filter.party {
            let p = arg(Bind::Text(p.clone()));
            sql += &format!(" AND (recipient = {p} OR exporter = {p})");
        }
        if filter.unfinished {
            let pull = arg(Bind::Text(RecordKind::TransferCompleted.as_str().to_owned()));
            let table = arg(Bind::Text(RecordKind::TableCompleted.as_str().to_owned()));
            sql += &format!(
                " AND NOT EXISTS (SELECT 1 FROM records c WHERE c.transfer = records.transfer \
                 AND c.kind IN ({pull}, {table}))"
            );
        }
        if let Some((at, seq)) = filter.before {
            let (at, seq) = (arg(Bind::Int(micros(at))), arg(Bind::Int(seq as i64)));
            sql += &format!(" AND (at, seq) < ({at}, {seq})");
        }
        sql += &format!(" ORDER BY at DESC, seq DESC LIMIT {}", arg(Bind::Int(i64::from(limit))));
        all(bound(sqlx::query_as::<_, TransferRow>(&sql), binds).fetch_all(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn leaf_facets(&self, from: u64, to: u64) -> Result<Vec<(u64, Option<TransferFacets>)>, StoreError> {
        all(sqlx::query_as::<_, LeafFacetsRow>(text::LEAF_FACETS)
            .bind(from.min(i64::MAX as u64) as i64)
            .bind(to.min(i64::MAX as u64) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }
}
[#[async_trait] impl<DB> LedgerStore for SqlStore<DB>] {
    async fn count_persons(&self, count: &PersonCount<'_>, keep: &Keep<'_>) -> Result<LedgerCounts, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        // One counter per exporter at a time, across processes: the "before" counts read below
        // include every earlier kept transfer.
        DB::lock(&mut *tx, Lock::Ledger(count.exporter)).await.map_err(classify::<DB>)?;
        let position = sqlx::query_as::<_, (i64,)>(text::LEDGER_POSITION)
            .bind(count.exporter)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify::<DB>)?
            .map_or(0, |(n,)| n as u64);
        let mut counts = LedgerCounts { position, ..LedgerCounts::default() };
        if let Some(persons) = count.nonsensitive {
            (counts.nonsensitive_before, counts.nonsensitive_new) =
                Self::count_bucket(&mut *tx, count, "N", persons).await?;
        }
        if let Some(persons) = count.sensitive {
            (counts.sensitive_before, counts.sensitive_new) = Self::count_bucket(&mut *tx, count, "S", persons).await?;
        }
        if keep(&counts) {
            sqlx::query(text::LEDGER_TAKE_POSITION)
                .bind(count.exporter)
                .bind((position + 1) as i64)
                .execute(&mut *tx)
                .await
                .map_err(classify::<DB>)?;
            tx.commit().await.map_err(classify::<DB>)?;
        } else {
            tx.rollback().await.map_err(classify::<DB>)?;
        }
        Ok(counts)
    }

    async fn ledger_totals(&self) -> Result<Vec<LedgerTotal>, StoreError> {
        let rows = sqlx::query_as::<_, (String, i64, String, i64)>(text::LEDGER_TOTALS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(rows
            .into_iter()
            .map(|(exporter, year, bucket, persons)| LedgerTotal {
                exporter,
                year: year as i32,
                bucket,
                persons: persons as u64,
            })
            .collect())
    }
}
[#[async_trait] impl<DB> TableStore for SqlStore<DB>] {
    async fn ledger_scope(&self, participant: &ParticipantId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query_as::<_, (String,)>(text::LEDGER_SCOPE)
            .bind(participant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(row.map(|(s,)| s))
    }

    async fn set_ledger_scope(
        &self,
        participant: &ParticipantId,
        scope: &str,
        rec: &NewRecord,
    ) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let q = if scope == participant.as_str() {
            sqlx::query(text::RESET_LEDGER_SCOPE).bind(participant.as_str())
        } else {
            sqlx::query(text::SET_LEDGER_SCOPE).bind(participant.as_str()).bind(scope)
        };
        q.execute(&mut *tx).await.map_err(classify::<DB>)?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn released(&self, scope: &str, dataset: &DatasetId, version: u64) -> Result<Vec<ReleasedCell>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String, f64)>(text::RELEASED)
            .bind(scope)
            .bind(dataset.as_str())
            .bind(version as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(rows.into_iter().map(|(quantity, cell, value)| ReleasedCell { quantity, cell, value }).collect())
    }

    async fn record_table(&self, r: &TableRelease<'_>, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        // One release per scope at a time, across processes: the count read below includes every
        // table released before, so a table protected against an older ledger is refused.
        DB::lock(&mut *tx, Lock::Release(r.scope)).await.map_err(classify::<DB>)?;
        let (n,) = sqlx::query_as::<_, (i64,)>(text::RELEASED_COUNT)
            .bind(r.scope)
            .bind(r.dataset.as_str())
            .bind(r.version as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        if n as u64 != r.checked {
            return Err(StoreError::Conflict(format!(
                "the release ledger of {} for dataset {} version {}",
                r.scope, r.dataset, r.version
            )));
        }
        for c in r.cells {
            sqlx::query(text::RELEASE)
                .bind(r.scope)
                .bind(r.dataset.as_str())
                .bind(r.version as i64)
                .bind(c.quantity.as_str())
                .bind(c.cell.as_str())
                .bind(c.value)
                .bind(r.table)
                .execute(&mut *tx)
                .await
                .map_err(unavailable::<DB>)?;
        }
        if let Some(report) = r.report {
            sqlx::query(text::INSERT_TABLE_REPORT)
                .bind(r.table)
                .bind(r.dataset.as_str())
                .bind(r.recipient)
                .bind(report)
                .bind(micros(r.at))
                .execute(&mut *tx)
                .await
                .map_err(exists_as::<DB>(format!("table {}", r.table)))?;
        }
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn dataset_table_rules(&self, dataset: &DatasetId) -> Result<Option<(String, String)>, StoreError> {
        sqlx::query_as::<_, (String, String)>(text::DATASET_TABLE_RULES)
            .bind(dataset.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify::<DB>)
    }

    async fn set_dataset_table_rules(
        &self,
        dataset: &DatasetId,
        domestic: &str,
        export: &str,
        rec: &NewRecord,
    ) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::SET_DATASET_TABLE_RULES)
            .bind(dataset.as_str())
            .bind(domestic)
            .bind(export)
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn table_report(&self, table: &str) -> Result<Option<TableReport>, StoreError> {
        let row = sqlx::query_as::<_, (String, String, String)>(text::TABLE_REPORT)
            .bind(table)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(row.map(|(dataset, recipient, report)| TableReport { dataset, recipient, report }))
    }
}
[#[async_trait] impl<DB> super::ReportStore for SqlStore<DB>] {
    async fn insert_report(&self, r: &StoredReport, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        sqlx::query(text::INSERT_REPORT)
            .bind(r.id.as_str())
            .bind(r.dataset.as_str())
            .bind(r.definer.as_str())
            .bind(r.schedule.as_str())
            .bind(r.request.as_str())
            .bind(r.recipients.as_str())
            .bind(micros(r.defined_at))
            .bind(r.latest_at_definition.map(|v| v as i64))
            .execute(&mut *tx)
            .await
            .map_err(exists_as::<DB>(format!("report {}", r.id)))?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn reports(&self) -> Result<Vec<StoredReport>, StoreError> {
        all(sqlx::query_as::<_, ReportRow>(text::REPORTS).fetch_all(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn claim_period(
        &self,
        report: &str,
        expected_last: Option<&str>,
        period: &str,
        runs: &[StoredRun],
    ) -> Result<bool, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let claimed = sqlx::query(text::CLAIM_PERIOD)
            .bind(period)
            .bind(report)
            .bind(expected_last.unwrap_or(""))
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        if DB::rows_affected(&claimed) != 1 {
            tx.rollback().await.map_err(classify::<DB>)?;
            return Ok(false);
        }
        for run in runs {
            sqlx::query(text::INSERT_RUN)
                .bind(run.report.as_str())
                .bind(run.period.as_str())
                .bind(run.recipient.as_str())
                .bind(micros(run.claimed_at))
                .bind(i64::from(run.missed))
                .execute(&mut *tx)
                .await
                .map_err(classify::<DB>)?;
        }
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(true)
    }

    async fn stale_runs(&self, before: DateTime<Utc>) -> Result<Vec<StoredRun>, StoreError> {
        let sql = format!("{} WHERE status = 'PENDING' AND claimed_at < $1 ORDER BY claimed_at", text::RUN_COLUMNS_FROM);
        all(sqlx::query_as::<_, RunRow>(&sql).bind(micros(before)).fetch_all(&self.pool).await.map_err(classify::<DB>)?)
    }

    async fn reclaim_run(&self, run: &StoredRun, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(text::RECLAIM_RUN)
            .bind(micros(at))
            .bind(run.report.as_str())
            .bind(run.period.as_str())
            .bind(run.recipient.as_str())
            .bind(micros(run.claimed_at))
            .execute(&self.pool)
            .await
            .map_err(classify::<DB>)?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn finish_run(&self, run: &StoredRun, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = DB::begin_write(&self.pool).await.map_err(classify::<DB>)?;
        let seq = Self::insert_record(&mut *tx, rec).await?;
        let done = sqlx::query(text::FINISH_RUN)
            .bind(run.status.as_str())
            .bind(run.reason.as_str())
            .bind(run.table_id.as_deref())
            .bind(run.version.map(|v| v as i64))
            .bind(run.cells.as_deref())
            .bind(run.sha256.as_deref())
            .bind(seq as i64)
            .bind(run.report.as_str())
            .bind(run.period.as_str())
            .bind(run.recipient.as_str())
            .bind(micros(run.claimed_at))
            .execute(&mut *tx)
            .await
            .map_err(classify::<DB>)?;
        if DB::rows_affected(&done) != 1 {
            tx.rollback().await.map_err(classify::<DB>)?;
            return Err(StoreError::Conflict(format!(
                "run {} {} of report {} was claimed again or ended meanwhile",
                run.period, run.recipient, run.report
            )));
        }
        tx.commit().await.map_err(classify::<DB>)?;
        Ok(seq)
    }

    async fn runs(&self, report: Option<&str>, recipient: Option<&ParticipantId>) -> Result<Vec<StoredRun>, StoreError> {
        let sql = format!(
            "{} WHERE ($1 = '' OR report_id = $1) AND ($2 = '' OR recipient = $2)
             ORDER BY period DESC, report_id, recipient LIMIT {}",
            text::RUN_COLUMNS_FROM,
            super::RUNS_LISTED
        );
        all(sqlx::query_as::<_, RunRow>(&sql)
            .bind(report.unwrap_or(""))
            .bind(recipient.map_or("", |p| p.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(classify::<DB>)?)
    }
}
[#[async_trait] impl<DB> super::WitnessStore for SqlStore<DB>] {
    // The witness feeder's state (migrations/*/0007_witness_feed.sql) and the cosignatures on
    // the checkpoints' notes: this block only.
    async fn witness_feed(&self, witness: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let read = |sql: &'static str| sqlx::query_as::<_, (i64,)>(sql).bind(witness).fetch_optional(&self.pool);
        let size = read("SELECT size FROM witness_feed WHERE witness = $1").await.map_err(classify::<DB>)?;
        let cosigned = read("SELECT cosigned FROM witness_feed WHERE witness = $1").await.map_err(classify::<DB>)?;
        Ok(size.zip(cosigned).map(|((s,), (c,))| (s as u64, c as u64)))
    }

    async fn set_witness_feed(&self, witness: &str, size: u64, cosigned: Option<u64>) -> Result<(), StoreError> {
        let cosigned = cosigned.map(|c| c as i64);
        sqlx::query(
            "INSERT INTO witness_feed (witness, size, cosigned) VALUES ($1, $2, COALESCE($3, 0)) \
             ON CONFLICT (witness) DO UPDATE SET size = excluded.size, \
             cosigned = CASE WHEN excluded.cosigned > witness_feed.cosigned AND $3 IS NOT NULL \
                             THEN excluded.cosigned ELSE witness_feed.cosigned END",
        )
        .bind(witness)
        .bind(size as i64)
        .bind(cosigned)
        .execute(&self.pool)
        .await
        .map_err(classify::<DB>)?;
        Ok(())
    }

    async fn add_cosignature(&self, size: u64, line: &str) -> Result<bool, StoreError> {
        // Compare-and-set on the note: feeders of several witnesses (and gateway processes) may
        // add their lines to the same checkpoint at once.
        loop {
            let note = sqlx::query_as::<_, (String,)>("SELECT note FROM checkpoints WHERE size = $1")
                .bind(size as i64)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify::<DB>)?;
            let Some((note,)) = note else { return Ok(false) };
            let cosigned = crate::translog::cosignature::with_signature(&note, line)
                .map_err(|e| StoreError::Corrupt(format!("checkpoint {size}: {e}")))?;
            if cosigned == note {
                return Ok(true);
            }
            let n = DB::rows_affected(
                &sqlx::query("UPDATE checkpoints SET note = $1 WHERE size = $2 AND note = $3")
                    .bind(cosigned.as_str())
                    .bind(size as i64)
                    .bind(note.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(classify::<DB>)?,
            );
            if n == 1 {
                return Ok(true);
            }
        }
    }
}
[#[async_trait] impl<DB> Store for SqlStore<DB>] {
    async fn settle(&self) -> Result<(), StoreError> {
        DB::settle(&self.pool).await.map_err(classify::<DB>)
    }

    async fn probe_write(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(text::PROBE_WRITE).bind(micros(at)).execute(&self.pool).await.map_err(unavailable::<DB>)?;
        Ok(())
    }

    fn shared(&self) -> bool {
        DB::SHARED
    }
}
}
