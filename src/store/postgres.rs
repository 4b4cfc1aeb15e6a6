//! The PostgreSQL backend: several gateway processes share one database and one log.
//!
//! Cross-process serialisation uses transaction-scoped advisory locks, released when the
//! transaction ends: one lock for the log's group commit ([`LOG_LOCK`]), one per exporter for the
//! person ledger, one per dataset for version numbers. Compare-and-set updates (grants, holds,
//! approvals) rely on row locks under `READ COMMITTED`: a second writer waits, then re-checks its
//! condition against the committed row.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Postgres, Row};

use super::codec::{check_placement, corrupt, from_micros, micros, scope_from_json, scope_to_json};
use super::{
    Committed, Integrator, Keep, LedgerCounts, NewVersion, PersonCount, QueuedRecord, Store, StoreError,
    StoredApproval, StoredCheckpoint, StoredChunk, StoredTransfer, TransferFilter, TreeHead,
};
use crate::domain::classification::UnknownName;
use crate::domain::dataset::{Dataset, FieldName, VersionInfo};
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{Participant, ParticipantStatus};
use crate::domain::record::{NewRecord, PreparedRecord, RecordKind, StoredRecord, TransferFacets};
use crate::policy::Approval;
use crate::translog::edge::decomposition;

/// Embedded migrations for this dialect.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The advisory lock (single 64-bit key space) that serialises integrations of the log: one
/// tree, no forks, whichever gateway process integrates. ASCII "bth-log".
const LOG_LOCK: i64 = 0x0062_7468_2d6c_6f67;

/// Class of the per-exporter ledger locks (two 32-bit keys: class, `hashtext(exporter)`; that
/// key space does not overlap the 64-bit one). ASCII "ledg".
const LEDGER_LOCK_CLASS: i32 = 0x6c65_6467;

/// Class of the per-dataset locks that hand out version numbers. ASCII "vers".
const VERSION_LOCK_CLASS: i32 = 0x7665_7273;

/// Queued records handed to one integration at most (as in the SQLite backend).
const INTEGRATION_BATCH: i64 = super::INTEGRATION_BATCH as i64;

/// Persons bound to one ledger statement at most (one array parameter).
const LEDGER_BATCH: usize = 100_000;

/// A store in a PostgreSQL database, shared by any number of gateway processes.
///
/// The configured connections are split into three pools, so that no kind of work can starve
/// another: `pool` for the control plane, `bulk` (a quarter) for reading chunks — a pull holds
/// a connection only while it reads one chunk — and `log` (one or two) for the sequencer.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    bulk: PgPool,
    log: PgPool,
}

/// A pool of `max` connections. (A transaction whose `COMMIT` failed is rolled back when it is
/// dropped, and sqlx counts it closed at once on PostgreSQL: the connection is reusable.)
fn pg_pool(max: u32) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(max.max(1)).acquire_timeout(Duration::from_secs(10))
}

/// Connections per gateway process, unless configured (`database_pool`).
pub const DEFAULT_POOL: u32 = 16;

impl PostgresStore {
    /// Connects to and migrates the database a `postgres:` or `postgresql:` URL names.
    ///
    /// # Errors
    /// A malformed URL, an unreachable database, or a failed migration.
    pub async fn open(url: &str) -> Result<PostgresStore, sqlx::Error> {
        PostgresStore::connect(PgConnectOptions::from_str(url)?, DEFAULT_POOL).await
    }

    /// Connects with `options` and migrates the database. Concurrent migrations from several
    /// processes are serialised by the migrator's own advisory lock.
    ///
    /// # Errors
    /// An unreachable database or a failed migration.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<PostgresStore, sqlx::Error> {
        if max_connections < 4 {
            // Too few to split: one pool for everything.
            let pool = pg_pool(max_connections).connect_with(options).await?;
            MIGRATOR.run(&pool).await?;
            return Ok(PostgresStore { bulk: pool.clone(), log: pool.clone(), pool });
        }
        let log = if max_connections < 8 { 1 } else { 2 };
        let bulk = (max_connections / 4).max(1);
        let control = max_connections - log - bulk;
        let pool = pg_pool(control).connect_with(options.clone()).await?;
        MIGRATOR.run(&pool).await?;
        let bulk = pg_pool(bulk).connect_lazy_with(options.clone());
        let log = pg_pool(log).connect_lazy_with(options);
        Ok(PostgresStore { pool, bulk, log })
    }

    /// Connects for reading only: every transaction is read-only and nothing is migrated.
    ///
    /// # Errors
    /// A malformed URL or an unreachable database.
    pub async fn open_read_only(url: &str) -> Result<PostgresStore, sqlx::Error> {
        PostgresStore::connect_read_only(PgConnectOptions::from_str(url)?).await
    }

    /// As [`PostgresStore::open_read_only`], with connection `options`.
    ///
    /// # Errors
    /// An unreachable database.
    pub async fn connect_read_only(options: PgConnectOptions) -> Result<PostgresStore, sqlx::Error> {
        let options = options.options([("default_transaction_read_only", "on")]);
        let pool = pg_pool(2).connect_with(options).await?;
        Ok(PostgresStore { bulk: pool.clone(), log: pool.clone(), pool })
    }

    /// The control plane's pool (tests close it before dropping their database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every pool.
    pub async fn close(&self) {
        for pool in [&self.pool, &self.bulk, &self.log] {
            pool.close().await;
        }
    }

    async fn tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(classify)
    }
}

/// Maps a sqlx error onto the store's contract.
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            // The database's words (table and column names) stay in the server's log.
            tracing::debug!(error = %db.message(), "unique violation");
            StoreError::AlreadyExists("a row with the same key".into())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                // Class 08 connection exception, 53 insufficient resources (disk full, out of
                // memory, too many connections), 57 operator intervention (shutdown, cancel),
                // 58 system error (I/O); serialization failure, deadlock, lock not available,
                // read-only transaction (a standby).
                c if ["08", "53", "57", "58"].iter().any(|class| c.starts_with(class)) => StoreError::Unavailable(e),
                "40001" | "40P01" | "55P03" | "25006" => StoreError::Unavailable(e),
                "XX001" | "XX002" => StoreError::Corrupt("database".into()),
                _ => StoreError::Other(e),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
        _ => StoreError::Other(e),
    }
}

/// A failure to store a record: the operation it records cannot proceed.
fn unavailable(e: sqlx::Error) -> StoreError {
    match classify(e) {
        StoreError::Other(e) => StoreError::Unavailable(e),
        other => other,
    }
}

/// Renames `AlreadyExists` after the row it is about.
fn exists_as(what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match classify(e) {
        StoreError::AlreadyExists(_) => StoreError::AlreadyExists(what),
        other => other,
    }
}

/// Inserts records with one statement; returns their sequence numbers in order. A record that
/// cannot be stored makes the operation unavailable (fail closed).
/// Inserts records with their leaves, in order, in one statement; returns their sequence
/// numbers. With `first_index`, the records are integrated at once: leaf indexes from
/// `first_index` on (the caller integrates them in this transaction).
async fn insert_records(
    conn: &mut PgConnection,
    recs: &[(&NewRecord, &str)],
    first_index: Option<u64>,
) -> Result<Vec<u64>, StoreError> {
    if recs.is_empty() {
        return Ok(Vec::new());
    }
    let n = recs.len();
    let mut at = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut actor = Vec::with_capacity(n);
    let mut json = Vec::with_capacity(n);
    let (mut transfer, mut dataset, mut recipient, mut exporter) = (vec![], vec![], vec![], vec![]);
    let (mut region, mut export, mut mechanism, mut action) = (vec![], vec![], vec![], vec![]);
    for (rec, leaf) in recs {
        json.push(*leaf);
        at.push(micros(rec.at));
        kind.push(rec.kind.as_str());
        actor.push(rec.actor.as_str());
        let f = rec.facets.as_ref();
        transfer.push(f.map(|f| f.transfer.as_str()));
        dataset.push(f.map(|f| f.dataset.as_str()));
        recipient.push(f.map(|f| f.recipient.as_str()));
        exporter.push(f.map(|f| f.exporter.as_str()));
        region.push(f.map(|f| f.region.as_str()));
        export.push(f.map(|f| f.export));
        mechanism.push(f.map(|f| super::codec::mechanism_column(f.mechanism)));
        action.push(f.map(|f| f.action.as_str()));
    }
    // Rows are inserted in ordinality order, so sequence numbers increase with the input.
    let rows = sqlx::query(
        "INSERT INTO records (at, kind, actor, json, transfer, dataset, recipient, exporter, region, export, mechanism,
                              action, leaf_index)
         SELECT at, kind, actor, json, transfer, dataset, recipient, exporter, region, export, mechanism, action,
                $13::bigint + ord - 1
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::boolean[], $11::text[], $12::text[])
              WITH ORDINALITY AS r (at, kind, actor, json, transfer, dataset, recipient, exporter, region, export,
                                    mechanism, action, ord)
         ORDER BY ord
         RETURNING seq",
    )
    .bind(at)
    .bind(kind)
    .bind(actor)
    .bind(json)
    .bind(transfer)
    .bind(dataset)
    .bind(recipient)
    .bind(exporter)
    .bind(region)
    .bind(export)
    .bind(mechanism)
    .bind(action)
    .bind(first_index.map(|i| i as i64))
    .fetch_all(conn)
    .await
    .map_err(unavailable)?;
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.get::<i64, _>(0) as u64).collect();
    seqs.sort_unstable();
    Ok(seqs)
}

async fn insert_record(conn: &mut PgConnection, rec: &NewRecord) -> Result<u64, StoreError> {
    let leaf = rec.leaf().map_err(|e| StoreError::Corrupt(format!("record: {e}")))?;
    Ok(insert_records(conn, &[(rec, &leaf)], None).await?[0])
}

/// The stored tree nodes among `coordinates`, read on `conn`.
async fn nodes_in(
    conn: &mut PgConnection,
    coordinates: &[(u8, u64)],
) -> Result<HashMap<(u8, u64), [u8; 32]>, StoreError> {
    let mut out = HashMap::with_capacity(coordinates.len());
    if coordinates.is_empty() {
        return Ok(out);
    }
    let (level, idx): (Vec<i16>, Vec<i64>) = coordinates.iter().map(|&(l, i)| (i16::from(l), i as i64)).unzip();
    let rows = sqlx::query(
        "SELECT n.level, n.idx, n.hash FROM tree_nodes n
         JOIN UNNEST($1::smallint[], $2::bigint[]) AS v (level, idx) ON n.level = v.level AND n.idx = v.idx",
    )
    .bind(level)
    .bind(idx)
    .fetch_all(&mut *conn)
    .await
    .map_err(classify)?;
    for row in rows {
        let bad = corrupt("tree node");
        let hash: Vec<u8> = row.try_get(2).map_err(|e| bad(e.to_string()))?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| bad("not 32 bytes".into()))?;
        let level: i16 = row.try_get(0).map_err(|e| bad(e.to_string()))?;
        let idx: i64 = row.try_get(1).map_err(|e| bad(e.to_string()))?;
        out.insert((level as u8, idx as u64), hash);
    }
    Ok(out)
}

fn record_from_row(row: &PgRow) -> Result<StoredRecord, StoreError> {
    let bad = corrupt("record");
    let kind: String = row.try_get("kind").map_err(|e| bad(e.to_string()))?;
    Ok(StoredRecord {
        seq: row.try_get::<i64, _>("seq").map_err(|e| bad(e.to_string()))? as u64,
        leaf_index: row.try_get::<Option<i64>, _>("leaf_index").map_err(|e| bad(e.to_string()))?.map(|i| i as u64),
        kind: kind.parse::<RecordKind>().map_err(|e| bad(e.to_string()))?,
        json: row.try_get("json").map_err(|e| bad(e.to_string()))?,
    })
}

fn checkpoint_from_row(row: &PgRow) -> Result<StoredCheckpoint, StoreError> {
    let bad = corrupt("checkpoint");
    let root: Vec<u8> = row.try_get("root").map_err(|e| bad(e.to_string()))?;
    Ok(StoredCheckpoint {
        size: row.try_get::<i64, _>("size").map_err(|e| bad(e.to_string()))? as u64,
        root: root.try_into().map_err(|_| bad("root is not 32 bytes".into()))?,
        note: row.try_get("note").map_err(|e| bad(e.to_string()))?,
        at: from_micros(row.try_get("at").map_err(|e| bad(e.to_string()))?),
    })
}

fn participant_from_row(row: &PgRow) -> Result<Participant, StoreError> {
    let bad = corrupt("participant");
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| bad(e.to_string()));
    let name = |e: UnknownName| bad(e.to_string());
    let roles: Vec<String> = serde_json::from_str(&text("roles")?).map_err(|e| bad(e.to_string()))?;
    Ok(Participant {
        id: ParticipantId::parse(&text("id")?).map_err(|e| bad(e.to_string()))?,
        display_name: text("display_name")?,
        kind: text("kind")?.parse().map_err(name)?,
        recipient_type: text("recipient_type")?.parse().map_err(name)?,
        region: text("region")?.parse().map_err(name)?,
        in_tianjin_ftz: row.try_get::<bool, _>("in_tianjin_ftz").map_err(|e| bad(e.to_string()))?,
        roles: roles.iter().map(|r| r.parse()).collect::<Result<_, _>>().map_err(name)?,
        clearance: text("clearance")?.parse().map_err(name)?,
        status: text("status")?.parse().map_err(name)?,
    })
}

fn dataset_from_row(row: &PgRow) -> Result<Dataset, StoreError> {
    let bad = corrupt("dataset");
    let get = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    let text = |c: &str| get(c)?.ok_or_else(|| bad(format!("{c} is null")));
    let key = |c: &str| -> Result<_, StoreError> {
        get(c)?.map(|s| FieldName::parse(&s)).transpose().map_err(|e| bad(e.to_string()))
    };
    Ok(Dataset {
        id: DatasetId::parse(&text("id")?).map_err(|e| bad(e.to_string()))?,
        owner: ParticipantId::parse(&text("owner")?).map_err(|e| bad(e.to_string()))?,
        title: text("title")?,
        description: text("description")?,
        government_data: row.try_get::<bool, _>("government_data").map_err(|e| bad(e.to_string()))?,
        fields: serde_json::from_str(&text("fields")?).map_err(|e| bad(e.to_string()))?,
        person_key_field: key("person_key_field")?,
        contributor_key_field: key("contributor_key_field")?,
        registered_at: from_micros(row.try_get("registered_at").map_err(|e| bad(e.to_string()))?),
    })
}

const VERSION_COLUMNS: &str = "dataset_id, version, rows, chunks, sha256, publisher, published_at, idempotency_key";

fn version_from_row(row: &PgRow) -> Result<VersionInfo, StoreError> {
    let bad = corrupt("version");
    let int = |c: &str| row.try_get::<i64, _>(c).map_err(|e| bad(e.to_string()));
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| bad(e.to_string()));
    let sha: Vec<u8> = row.try_get("sha256").map_err(|e| bad(e.to_string()))?;
    Ok(VersionInfo {
        dataset: DatasetId::parse(&text("dataset_id")?).map_err(|e| bad(e.to_string()))?,
        version: int("version")? as u64,
        rows: int("rows")? as u64,
        chunks: int("chunks")? as u64,
        sha256: sha.try_into().map_err(|_| bad("sha256 is not 32 bytes".into()))?,
        publisher: ParticipantId::parse(&text("publisher")?).map_err(|e| bad(e.to_string()))?,
        published_at: from_micros(int("published_at")?),
        idempotency_key: text("idempotency_key")?,
    })
}

fn grant_from_row(row: &PgRow) -> Result<Grant, StoreError> {
    let body: String = row.try_get("body").map_err(|e| StoreError::Corrupt(format!("grant: {e}")))?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("grant: {e}")))
}

fn chunk_from_row(row: &PgRow) -> Result<StoredChunk, StoreError> {
    let bad = corrupt("chunk");
    let sha: Vec<u8> = row.try_get("sha256").map_err(|e| bad(e.to_string()))?;
    let data: Vec<u8> = row.try_get("data").map_err(|e| bad(e.to_string()))?;
    Ok(StoredChunk {
        seq: row.try_get::<i64, _>("seq").map_err(|e| bad(e.to_string()))? as u64,
        rows: row.try_get::<i64, _>("rows").map_err(|e| bad(e.to_string()))? as u32,
        sha256: sha.try_into().map_err(|_| bad("sha256 is not 32 bytes".into()))?,
        data: Bytes::from(data),
    })
}

/// The facets of a record row (`transfer` … `action` columns); `None` when it is about no transfer.
fn transfer_facets_from_row(row: &PgRow) -> Result<Option<TransferFacets>, StoreError> {
    let bad = corrupt("record facets");
    let text = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    let Some(transfer) = text("transfer")? else { return Ok(None) };
    Ok(Some(TransferFacets {
        transfer,
        dataset: text("dataset")?.unwrap_or_default(),
        recipient: text("recipient")?.unwrap_or_default(),
        exporter: text("exporter")?.unwrap_or_default(),
        region: text("region")?.unwrap_or_default(),
        export: row.try_get::<Option<bool>, _>("export").map_err(|e| bad(e.to_string()))?.unwrap_or(false),
        mechanism: super::codec::mechanism_from_column(text("mechanism")?).map_err(&bad)?,
        action: text("action")?.unwrap_or_default().parse().map_err(|e: UnknownName| bad(e.to_string()))?,
    }))
}

fn approval_from_row(row: &PgRow) -> Result<StoredApproval, StoreError> {
    let bad = corrupt("approval");
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| bad(e.to_string()));
    let opt = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| bad(e.to_string()));
    Ok(StoredApproval {
        approval: Approval {
            id: text("id")?,
            kind: text("kind")?.parse().map_err(|e: UnknownName| bad(e.to_string()))?,
            exporter: text("exporter")?,
            reference: text("reference")?,
            issued: day(&text("issued")?)?,
            expires: opt("expires")?.map(|d| day(&d)).transpose()?,
            revoked: row.try_get::<bool, _>("revoked").map_err(|e| bad(e.to_string()))?,
            scope: scope_from_json(&text("scope")?).map_err(&bad)?,
        },
        recorded_by: text("recorded_by")?,
        recorded_at: from_micros(row.try_get("recorded_at").map_err(|e| bad(e.to_string()))?),
        revoked_by: opt("revoked_by")?,
        revoke_reason: opt("revoke_reason")?,
    })
}

fn hold_from_row(row: &PgRow) -> Result<Hold, StoreError> {
    let bad = corrupt("hold");
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| bad(e.to_string()));
    let opt = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    let id = |s: String| ParticipantId::parse(&s).map_err(|e| bad(e.to_string()));
    Ok(Hold {
        id: text("id")?,
        status: text("status")?.parse().map_err(|e: UnknownName| bad(e.to_string()))?,
        grant_id: text("grant_id")?,
        dataset: DatasetId::parse(&text("dataset")?).map_err(|e| bad(e.to_string()))?,
        consumer: id(text("consumer")?)?,
        exporter: id(text("exporter")?)?,
        mechanism: text("mechanism")?,
        body: serde_json::from_str(&text("body")?).map_err(|e| bad(e.to_string()))?,
        created_at: from_micros(row.try_get("created_at").map_err(|e| bad(e.to_string()))?),
        resolved_by: opt("resolved_by")?.map(id).transpose()?,
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at").map_err(|e| bad(e.to_string()))?.map(from_micros),
        reason: opt("reason")?.unwrap_or_default(),
        approval_id: opt("approval_id")?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn shared(&self) -> bool {
        true
    }

    async fn insert_participant(&self, p: &Participant, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        sqlx::query(
            "INSERT INTO participants (id, display_name, kind, recipient_type, region, in_tianjin_ftz, roles, clearance, status, registered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(p.id.as_str())
        .bind(&p.display_name)
        .bind(p.kind.as_str())
        .bind(p.recipient_type.as_str())
        .bind(p.region.as_str())
        .bind(p.in_tianjin_ftz)
        .bind(serde_json::to_string(&roles).unwrap_or_default())
        .bind(p.clearance.as_str())
        .bind(p.status.as_str())
        .bind(micros(rec.at))
        .execute(&mut *tx)
        .await
        .map_err(exists_as(format!("participant {}", p.id)))?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)
    }

    async fn participant(&self, id: &ParticipantId) -> Result<Option<Participant>, StoreError> {
        let row = sqlx::query("SELECT * FROM participants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(participant_from_row).transpose()
    }

    async fn participants(&self) -> Result<Vec<Participant>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM participants ORDER BY id").fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter().map(participant_from_row).collect()
    }

    async fn set_participant_status(
        &self,
        id: &ParticipantId,
        status: ParticipantStatus,
        rec: &NewRecord,
    ) -> Result<Option<Participant>, StoreError> {
        let mut tx = self.tx().await?;
        let row = sqlx::query("UPDATE participants SET status = $1 WHERE id = $2 RETURNING *")
            .bind(status.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(row) = row else { return Ok(None) };
        let p = participant_from_row(&row)?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(p))
    }

    async fn insert_dataset(&self, d: &Dataset, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO datasets (id, owner, title, description, government_data, fields, person_key_field, contributor_key_field, registered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(d.id.as_str())
        .bind(d.owner.as_str())
        .bind(&d.title)
        .bind(&d.description)
        .bind(d.government_data)
        .bind(serde_json::to_string(&d.fields).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(d.person_key_field.as_ref().map(|f| f.as_str()))
        .bind(d.contributor_key_field.as_ref().map(|f| f.as_str()))
        .bind(micros(d.registered_at))
        .execute(&mut *tx)
        .await
        .map_err(exists_as(format!("dataset {}", d.id)))?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)
    }

    async fn dataset(&self, id: &DatasetId) -> Result<Option<Dataset>, StoreError> {
        let row = sqlx::query("SELECT * FROM datasets WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(dataset_from_row).transpose()
    }

    async fn datasets(&self, after: Option<&DatasetId>, limit: u32) -> Result<Vec<Dataset>, StoreError> {
        let rows = sqlx::query("SELECT * FROM datasets WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.map_or("", |a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(dataset_from_row).collect()
    }

    async fn versions(&self, dataset: &DatasetId) -> Result<Vec<VersionInfo>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = $1 ORDER BY version DESC"))
                .bind(dataset.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(version_from_row).collect()
    }

    async fn version(&self, dataset: &DatasetId, version: Option<u64>) -> Result<Option<VersionInfo>, StoreError> {
        let by_number = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = $1 AND version = $2");
        let latest =
            format!("SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = $1 ORDER BY version DESC LIMIT 1");
        let q = match version {
            Some(v) => sqlx::query(&by_number).bind(dataset.as_str()).bind(v as i64),
            None => sqlx::query(&latest).bind(dataset.as_str()),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(classify)?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn version_by_key(&self, dataset: &DatasetId, key: &str) -> Result<Option<VersionInfo>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = $1 AND idempotency_key = $2"
        ))
        .bind(dataset.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn begin_upload(&self, dataset: &DatasetId, upload_id: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO uploads (id, dataset_id, started_at) VALUES ($1, $2, $3)")
            .bind(upload_id)
            .bind(dataset.as_str())
            .bind(micros(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn put_chunk(&self, upload_id: &str, chunk: &StoredChunk) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO chunks (upload_id, seq, rows, sha256, data) VALUES ($1, $2, $3, $4, $5)")
            .bind(upload_id)
            .bind(chunk.seq as i64)
            .bind(i64::from(chunk.rows))
            .bind(&chunk.sha256[..])
            .bind(&chunk.data[..])
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn commit_upload(&self, upload_id: &str, v: &NewVersion, rec: &NewRecord) -> Result<Committed, StoreError> {
        let mut tx = self.tx().await?;
        // One committer per dataset at a time, across processes: the next version number and the
        // idempotency check below both read what the previous committer committed.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(VERSION_LOCK_CLASS)
            .bind(v.dataset.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let existing = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = $1 AND idempotency_key = $2"
        ))
        .bind(v.dataset.as_str())
        .bind(&v.idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        if let Some(row) = existing {
            let info = version_from_row(&row)?;
            sqlx::query("DELETE FROM chunks WHERE upload_id = $1")
                .bind(upload_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(upload_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            return Ok(Committed::Existing(info));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO versions (dataset_id, version, upload_id, rows, chunks, sha256, publisher, published_at, idempotency_key)
             VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE dataset_id = $1), $2, $3, $4, $5, $6, $7, $8)
             RETURNING {VERSION_COLUMNS}"
        ))
        .bind(v.dataset.as_str())
        .bind(upload_id)
        .bind(v.rows as i64)
        .bind(v.chunks as i64)
        .bind(&v.sha256[..])
        .bind(v.publisher.as_str())
        .bind(micros(v.published_at))
        .bind(&v.idempotency_key)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let info = version_from_row(&row)?;
        let mut rec = rec.clone();
        rec.body.insert("version".into(), info.version.into());
        insert_record(&mut tx, &rec).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Committed::Created(info))
    }

    async fn abort_upload(&self, upload_id: &str) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "DELETE FROM chunks WHERE upload_id = $1 AND NOT EXISTS (SELECT 1 FROM versions WHERE upload_id = $1)",
        )
        .bind(upload_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query("DELETE FROM uploads WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM versions WHERE upload_id = $1)")
            .bind(upload_id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn probe_write(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(super::codec::sql::PROBE_WRITE).bind(micros(at)).execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    async fn purge_abandoned_uploads(&self, started_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let abandoned = "SELECT id FROM uploads WHERE started_at < $1 AND id NOT IN (SELECT upload_id FROM versions)";
        let mut tx = self.tx().await?;
        sqlx::query(&format!("DELETE FROM chunks WHERE upload_id IN ({abandoned})"))
            .bind(micros(started_before))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let n = sqlx::query(&format!("DELETE FROM uploads WHERE id IN ({abandoned})"))
            .bind(micros(started_before))
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        tx.commit().await.map_err(classify)?;
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
            let query =
                sqlx::query(super::codec::sql::CHUNK).bind(dataset.clone()).bind(version as i64).bind(seq as i64);
            let bulk = bulk.clone();
            async move {
                let row = query.fetch_optional(&bulk).await.map_err(classify)?;
                row.map(|row| chunk_from_row(&row)).transpose()
            }
        })
    }

    async fn insert_grant(&self, g: &Grant, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO grants (id, dataset_id, consumer, status, body, requested_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&g.id)
        .bind(g.dataset.as_str())
        .bind(g.consumer.as_str())
        .bind(g.status.as_str())
        .bind(serde_json::to_string(g).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(micros(g.requested_at))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query("SELECT body FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn update_grant(&self, g: &Grant, expected: GrantStatus, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = self.tx().await?;
        // A concurrent update of the same row waits for ours, then re-checks `status`.
        let n = sqlx::query("UPDATE grants SET status = $1, body = $2 WHERE id = $3 AND status = $4")
            .bind(g.status.as_str())
            .bind(serde_json::to_string(g).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .bind(&g.id)
            .bind(expected.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict(format!("grant {}", g.id)));
        }
        let seq = insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)?;
        Ok(seq)
    }

    async fn grants_visible_to(
        &self,
        participant: &ParticipantId,
        dataset: Option<&DatasetId>,
    ) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.body FROM grants g JOIN datasets d ON d.id = g.dataset_id
             WHERE (g.consumer = $1 OR d.owner = $1) AND ($2::text IS NULL OR g.dataset_id = $2)
             ORDER BY g.requested_at, g.id",
        )
        .bind(participant.as_str())
        .bind(dataset.map(|d| d.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn grants_of(&self, consumer: &ParticipantId, dataset: &DatasetId) -> Result<Vec<Grant>, StoreError> {
        let rows =
            sqlx::query("SELECT body FROM grants WHERE consumer = $1 AND dataset_id = $2 ORDER BY requested_at, id")
                .bind(consumer.as_str())
                .bind(dataset.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn integrate(&self, new: &[PreparedRecord], integrator: &Integrator<'_>) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.log.begin().await.map_err(unavailable)?;
        // One integrator at a time across every process: each statement below (READ COMMITTED)
        // then sees the tree the previous integration committed.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOG_LOCK).execute(&mut *tx).await.map_err(unavailable)?;
        let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(size), 0) FROM checkpoints")
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let size = size as u64;
        // Records state changes stored and not yet integrated come first (store order).
        let mut queued: Vec<QueuedRecord> =
            sqlx::query("SELECT seq, json FROM records WHERE leaf_index IS NULL ORDER BY seq LIMIT $1")
                .bind(INTEGRATION_BATCH)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?
                .iter()
                .map(|r| QueuedRecord { seq: r.get::<i64, _>(0) as u64, json: r.get(1) })
                .collect();
        let earlier = queued.len();
        // The new records follow them: stored with their leaf indexes already, so that they need
        // no second write. Beyond a full queue they wait for the next integration.
        let first_new = (earlier < INTEGRATION_BATCH as usize).then_some(size + earlier as u64);
        let prepared: Vec<(&NewRecord, &str)> = new.iter().map(|p| (p.record(), p.leaf())).collect();
        let seqs = insert_records(&mut tx, &prepared, first_new).await?;
        if first_new.is_some() {
            queued.extend(seqs.iter().zip(new).map(|(seq, p)| QueuedRecord { seq: *seq, json: p.leaf().to_owned() }));
        }
        let edge = nodes_in(&mut tx, &decomposition(size)).await?;
        let Some(integration) = integrator(&TreeHead { size, edge }, &queued).map_err(StoreError::Corrupt)? else {
            if !queued.is_empty() {
                // Records stored with leaf indexes must be integrated in this transaction.
                return Err(StoreError::Corrupt("the integrator left queued records out".into()));
            }
            tx.commit().await.map_err(unavailable)?;
            return Ok(seqs);
        };
        check_placement(&integration.leaves, &queued, earlier, first_new)?;
        let before = &integration.leaves[..earlier];
        let (seq, index): (Vec<i64>, Vec<i64>) = before.iter().map(|&(s, i)| (s as i64, i as i64)).unzip();
        let updated = sqlx::query(
            "UPDATE records SET leaf_index = v.idx FROM UNNEST($1::bigint[], $2::bigint[]) AS v (seq, idx)
             WHERE records.seq = v.seq",
        )
        .bind(seq)
        .bind(index)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if updated != before.len() as u64 {
            return Err(StoreError::Corrupt(format!("integration names {} records, {updated} exist", before.len())));
        }
        let mut level = Vec::with_capacity(integration.nodes.len());
        let mut idx = Vec::with_capacity(integration.nodes.len());
        let mut hash = Vec::with_capacity(integration.nodes.len());
        for (l, i, h) in &integration.nodes {
            level.push(i16::from(*l));
            idx.push(*i as i64);
            hash.push(h.to_vec());
        }
        sqlx::query(
            "INSERT INTO tree_nodes (level, idx, hash) SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[])",
        )
        .bind(level)
        .bind(idx)
        .bind(hash)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let c = &integration.checkpoint;
        sqlx::query("INSERT INTO checkpoints (size, root, note, at) VALUES ($1, $2, $3, $4)")
            .bind(c.size as i64)
            .bind(&c.root[..])
            .bind(&c.note)
            .bind(micros(c.at))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(seqs)
    }

    async fn checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>, StoreError> {
        let q = match size {
            Some(n) => sqlx::query("SELECT size, root, note, at FROM checkpoints WHERE size = $1").bind(n as i64),
            None => sqlx::query("SELECT size, root, note, at FROM checkpoints ORDER BY size DESC LIMIT 1"),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(classify)?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn checkpoints(&self, after: u64, limit: u32) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query("SELECT size, root, note, at FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2")
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn tree_nodes(&self, coordinates: &[(u8, u64)]) -> Result<HashMap<(u8, u64), [u8; 32]>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        nodes_in(&mut conn, coordinates).await
    }

    async fn leaves(&self, from: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, leaf_index, kind, json FROM records WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2",
        )
        .bind(from as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn insert_approval(&self, a: &StoredApproval, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = self.tx().await?;
        let ap = &a.approval;
        sqlx::query(
            "INSERT INTO approvals (id, kind, exporter, reference, issued, expires, revoked, scope, recorded_by, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $8, $9)",
        )
        .bind(&ap.id)
        .bind(ap.kind.as_str())
        .bind(&ap.exporter)
        .bind(&ap.reference)
        .bind(ap.issued.format("%Y-%m-%d").to_string())
        .bind(ap.expires.map(|d| d.format("%Y-%m-%d").to_string()))
        .bind(scope_to_json(&ap.scope))
        .bind(&a.recorded_by)
        .bind(micros(a.recorded_at))
        .execute(&mut *tx)
        .await
        .map_err(exists_as(format!("approval {}", ap.id)))?;
        let seq = insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)?;
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
        let mut tx = self.tx().await?;
        // FOR UPDATE: two concurrent revocations never both see "not revoked".
        let Some(row) = sqlx::query("SELECT * FROM approvals WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        if approval_from_row(&row)?.approval.revoked {
            return Err(StoreError::Conflict(format!("approval {id} is already revoked")));
        }
        let row = sqlx::query(
            "UPDATE approvals SET revoked = TRUE, revoked_by = $1, revoked_at = $2, revoke_reason = $3 WHERE id = $4 RETURNING *",
        )
        .bind(by.as_str())
        .bind(micros(at))
        .bind(reason)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let a = approval_from_row(&row)?;
        let seq = insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Some((a, seq)))
    }

    async fn approval(&self, id: &str) -> Result<Option<StoredApproval>, StoreError> {
        let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(approval_from_row).transpose()
    }

    async fn approvals(&self, exporter: Option<&str>) -> Result<Vec<StoredApproval>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM approvals WHERE ($1::text IS NULL OR exporter = $1) ORDER BY recorded_at, id")
                .bind(exporter)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn insert_hold(&self, h: &Hold, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO holds (id, status, grant_id, dataset, consumer, exporter, mechanism, body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&h.id)
        .bind(h.status.as_str())
        .bind(&h.grant_id)
        .bind(h.dataset.as_str())
        .bind(h.consumer.as_str())
        .bind(h.exporter.as_str())
        .bind(&h.mechanism)
        .bind(h.body.to_string())
        .bind(micros(h.created_at))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)
    }

    async fn open_hold(&self, grant: &str, mechanism: &str) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query("SELECT * FROM holds WHERE grant_id = $1 AND mechanism = $2 AND status = 'OPEN' LIMIT 1")
            .bind(grant)
            .bind(mechanism)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(hold_from_row).transpose()
    }

    async fn hold(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query("SELECT * FROM holds WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(hold_from_row).transpose()
    }

    async fn holds(&self, status: Option<HoldStatus>) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query("SELECT * FROM holds WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at, id")
            .bind(status.map(|s| s.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(hold_from_row).collect()
    }

    async fn resolve_hold(&self, h: &Hold, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = self.tx().await?;
        let n = sqlx::query(
            "UPDATE holds SET status = $1, resolved_by = $2, resolved_at = $3, reason = $4, approval_id = $5
             WHERE id = $6 AND status = 'OPEN'",
        )
        .bind(h.status.as_str())
        .bind(h.resolved_by.as_ref().map(|p| p.as_str()))
        .bind(h.resolved_at.map(micros))
        .bind(&h.reason)
        .bind(&h.approval_id)
        .bind(&h.id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict(format!("hold {} is no longer open", h.id)));
        }
        let seq = insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)?;
        Ok(seq)
    }

    async fn count_persons(&self, count: &PersonCount<'_>, keep: &Keep<'_>) -> Result<LedgerCounts, StoreError> {
        let mut tx = self.tx().await?;
        // One counter per exporter at a time, across processes: the "before" counts read below
        // include every earlier kept transfer.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LEDGER_LOCK_CLASS)
            .bind(count.exporter)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let mut counts = LedgerCounts::default();
        if let Some(persons) = count.nonsensitive {
            (counts.nonsensitive_before, counts.nonsensitive_new) = count_bucket(&mut tx, count, "N", persons).await?;
        }
        if let Some(persons) = count.sensitive {
            (counts.sensitive_before, counts.sensitive_new) = count_bucket(&mut tx, count, "S", persons).await?;
        }
        if keep(&counts) {
            tx.commit().await.map_err(classify)?;
        } else {
            tx.rollback().await.map_err(classify)?;
        }
        Ok(counts)
    }

    async fn records(&self, after: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query("SELECT seq, leaf_index, kind, json FROM records WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn transfers(&self, filter: &TransferFilter, limit: u32) -> Result<Vec<StoredTransfer>, StoreError> {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT seq, leaf_index, kind, at, json, transfer, dataset, recipient, exporter, region, export, \
             mechanism, action FROM records WHERE transfer IS NOT NULL AND leaf_index IS NOT NULL",
        );
        if let Some(t) = filter.from {
            q.push(" AND at >= ").push_bind(micros(t));
        }
        if let Some(t) = filter.to {
            q.push(" AND at < ").push_bind(micros(t));
        }
        for (column, value) in [
            ("dataset", &filter.dataset),
            ("recipient", &filter.recipient),
            ("exporter", &filter.exporter),
            ("region", &filter.region),
            ("mechanism", &filter.mechanism),
            ("action", &filter.action.map(|a| a.as_str().to_owned())),
            ("transfer", &filter.transfer),
        ] {
            if let Some(v) = value {
                q.push(format_args!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if let Some(export) = filter.export {
            q.push(" AND export = ").push_bind(export);
        }
        if let Some(kind) = filter.kind {
            q.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(p) = &filter.party {
            q.push(" AND (recipient = ").push_bind(p.clone()).push(" OR exporter = ").push_bind(p.clone()).push(")");
        }
        if filter.unfinished {
            q.push(" AND NOT EXISTS (SELECT 1 FROM records c WHERE c.transfer = records.transfer AND c.kind = ")
                .push_bind(RecordKind::TransferCompleted.as_str())
                .push(")");
        }
        if let Some((at, seq)) = filter.before {
            q.push(" AND (at, seq) < (").push_bind(micros(at)).push(", ").push_bind(seq as i64).push(")");
        }
        q.push(" ORDER BY at DESC, seq DESC LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter()
            .map(|row| {
                let bad = corrupt("transfer record");
                let record = record_from_row(row)?;
                Ok(StoredTransfer {
                    seq: record.seq,
                    leaf_index: record.leaf_index.ok_or_else(|| bad("no leaf index".into()))?,
                    kind: record.kind,
                    at: from_micros(row.try_get("at").map_err(|e| bad(e.to_string()))?),
                    json: record.json,
                    facets: transfer_facets_from_row(row)?.ok_or_else(|| bad("no facets".into()))?,
                })
            })
            .collect()
    }

    async fn leaf_facets(&self, from: u64, to: u64) -> Result<Vec<(u64, Option<TransferFacets>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT leaf_index, transfer, dataset, recipient, exporter, region, export, mechanism, action
             FROM records WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
        )
        .bind(from.min(i64::MAX as u64) as i64)
        .bind(to.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let index: i64 = row.try_get("leaf_index").map_err(|e| corrupt("record")(e.to_string()))?;
                Ok((index as u64, transfer_facets_from_row(row)?))
            })
            .collect()
    }
}

/// Adds one bucket of a transfer's persons to the ledger inside `tx`; returns the window's count
/// before and the persons new to the window.
async fn count_bucket(
    tx: &mut PgConnection,
    count: &PersonCount<'_>,
    bucket: &str,
    persons: &[[u8; 32]],
) -> Result<(u64, u64), StoreError> {
    let distinct_in_window = "SELECT COUNT(DISTINCT person) FROM export_persons
         WHERE exporter = $1 AND bucket = $2 AND year BETWEEN $3 AND $4";
    let before: i64 = if count.years_back == 0 {
        sqlx::query_scalar(
            "SELECT COALESCE(SUM(persons), 0)::BIGINT FROM export_counts WHERE exporter = $1 AND year = $2 AND bucket = $3",
        )
        .bind(count.exporter)
        .bind(count.year)
        .bind(bucket)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?
    } else {
        sqlx::query_scalar(distinct_in_window)
            .bind(count.exporter)
            .bind(bucket)
            .bind(count.year - count.years_back)
            .bind(count.year)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?
    };
    let mut inserted = 0u64;
    for chunk in persons.chunks(LEDGER_BATCH) {
        let chunk: Vec<&[u8]> = chunk.iter().map(|p| &p[..]).collect();
        inserted += sqlx::query(
            "INSERT INTO export_persons (exporter, year, bucket, person)
             SELECT $1, $2, $3, p FROM UNNEST($4::bytea[]) AS p ON CONFLICT DO NOTHING",
        )
        .bind(count.exporter)
        .bind(count.year)
        .bind(bucket)
        .bind(chunk)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
    }
    sqlx::query(
        "INSERT INTO export_counts (exporter, year, bucket, persons) VALUES ($1, $2, $3, $4)
         ON CONFLICT (exporter, year, bucket) DO UPDATE SET persons = export_counts.persons + excluded.persons",
    )
    .bind(count.exporter)
    .bind(count.year)
    .bind(bucket)
    .bind(inserted as i64)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let new = if count.years_back == 0 {
        inserted
    } else {
        let after: i64 = sqlx::query_scalar(distinct_in_window)
            .bind(count.exporter)
            .bind(bucket)
            .bind(count.year - count.years_back)
            .bind(count.year)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        (after - before) as u64
    };
    Ok((before as u64, new))
}
