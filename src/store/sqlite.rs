//! The embedded SQLite backend (the default).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::codec::{check_placement, corrupt, from_micros, micros, scope_from_json, scope_to_json};
use super::{
    Committed, Integrator, Keep, LedgerCounts, NewVersion, PersonCount, QueuedRecord, Store, StoreError,
    StoredApproval, StoredCheckpoint, StoredChunk, TreeHead,
};
use crate::domain::classification::UnknownName;
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{Participant, ParticipantStatus};
use crate::domain::record::{NewRecord, PreparedRecord, RecordKind, StoredRecord};
use crate::policy::Approval;
use crate::translog::edge::decomposition;
use chrono::NaiveDate;

/// Embedded migrations for this dialect.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A store in one SQLite file, in WAL mode with `synchronous=FULL`: a commit that returned
/// survives power loss (the transfer log must not lose its last entries).
///
/// Three pools on the one file, so that no kind of work can starve another: `pool` for the
/// control plane (catalog, grants, oversight, audit reads), `bulk` for reading chunks (a pull
/// holds one of its connections only while it reads one chunk, never while the client is slow),
/// and `log` for the sequencer's integrations.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    bulk: SqlitePool,
    log: SqlitePool,
}

/// A pool of `max` connections with `options` whose connections are closed, not reused, when
/// they come back inside a transaction (a `COMMIT` that failed on a full disk leaves SQLite
/// rolled back but sqlx counting an open transaction: the next `BEGIN` on it would fail for
/// ever).
async fn sqlite_pool(options: SqliteConnectOptions, max: u32) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(max)
        // A local file cannot drop a connection: no test query before each use.
        .test_before_acquire(false)
        .after_release(|conn, _| {
            Box::pin(async move {
                // Runs the rollback a dropped transaction queued, then looks.
                sqlx::Connection::ping(&mut *conn).await?;
                Ok(<<sqlx::Sqlite as sqlx::Database>::TransactionManager as sqlx::TransactionManager>::get_transaction_depth(conn) == 0)
            })
        })
        .connect_with(options)
        .await
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the database a `sqlite:` URL names.
    pub async fn open(url: &str) -> Result<SqliteStore, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 64 MiB of page cache per connection: the export ledger's bulk inserts stay in memory.
            .pragma("cache_size", "-65536");
        let pool = sqlite_pool(options.clone(), 8).await?;
        MIGRATOR.run(&pool).await?;
        // Chunk reads and integrations need little page cache of their own (64 MiB each would
        // multiply over their connections).
        let small = options.clone().pragma("cache_size", "-2048");
        let bulk = sqlite_pool(small.clone(), 4).await?;
        let log = sqlite_pool(small, 2).await?;
        Ok(SqliteStore { pool, bulk, log })
    }

    /// Opens an existing database a `sqlite:` URL names for reading only: nothing is created,
    /// migrated or written (an auditor's copy stays as it was handed over).
    ///
    /// # Errors
    /// A missing or unreadable file.
    pub async fn open_read_only(url: &str) -> Result<SqliteStore, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?.read_only(true).busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        Ok(SqliteStore { bulk: pool.clone(), log: pool.clone(), pool })
    }

    /// Starts a write transaction that takes the write lock at once, so that two writers never
    /// deadlock upgrading read locks.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)
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
            // SQLITE_BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13, CANTOPEN 14,
            // and the append-only trigger's ABORT on records.
            let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            match primary {
                Some(5 | 6 | 8 | 10 | 13 | 14) => StoreError::Unavailable(e),
                Some(11) => StoreError::Corrupt("database file".into()),
                _ => StoreError::Other(e),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e)
        }
        _ => StoreError::Other(e),
    }
}

/// Columns of a record row, in insert order.
const RECORD_COLUMNS: &str =
    "at, kind, actor, json, leaf_index, transfer, dataset, recipient, exporter, region, export, mechanism, action";

/// Inserts records with their leaves, in order, with one statement; returns their sequence
/// numbers in order. With `first_index`, the records are integrated at once: leaf indexes from
/// `first_index` on (the caller integrates them in this transaction). A record that cannot be
/// stored makes the operation unavailable (fail closed).
async fn insert_records(
    conn: &mut SqliteConnection,
    recs: &[(&NewRecord, &str)],
    first_index: Option<u64>,
) -> Result<Vec<u64>, StoreError> {
    if recs.is_empty() {
        return Ok(Vec::new());
    }
    let row = format!("({})", ["?"; 13].join(", "));
    let sql =
        format!("INSERT INTO records ({RECORD_COLUMNS}) VALUES {} RETURNING seq", vec![row; recs.len()].join(", "));
    let mut q = sqlx::query(&sql);
    for (i, (rec, leaf)) in recs.iter().enumerate() {
        let f = rec.facets.as_ref();
        q = q
            .bind(micros(rec.at))
            .bind(rec.kind.as_str())
            .bind(rec.actor.clone())
            .bind(leaf.to_string())
            .bind(first_index.map(|first| (first + i as u64) as i64))
            .bind(f.map(|f| f.transfer.clone()))
            .bind(f.map(|f| f.dataset.clone()))
            .bind(f.map(|f| f.recipient.clone()))
            .bind(f.map(|f| f.exporter.clone()))
            .bind(f.map(|f| f.region.clone()))
            .bind(f.map(|f| f.export))
            .bind(f.map(|f| super::codec::mechanism_column(f.mechanism)))
            .bind(f.map(|f| f.action.as_str()));
    }
    let rows = q.fetch_all(conn).await.map_err(unavailable)?;
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.get::<i64, _>(0) as u64).collect();
    // One statement inserts rows in VALUES order with increasing sequence numbers.
    seqs.sort_unstable();
    Ok(seqs)
}

async fn insert_record(conn: &mut SqliteConnection, rec: &NewRecord) -> Result<u64, StoreError> {
    let leaf = rec.leaf().map_err(|e| StoreError::Corrupt(format!("record: {e}")))?;
    Ok(insert_records(conn, &[(rec, &leaf)], None).await?[0])
}

/// A failure to store a record: the operation it records cannot proceed.
fn unavailable(e: sqlx::Error) -> StoreError {
    match classify(e) {
        StoreError::Other(e) => StoreError::Unavailable(e),
        other => other,
    }
}

/// The stored tree nodes among `coordinates`, read on `conn`.
async fn nodes_in(
    conn: &mut SqliteConnection,
    coordinates: &[(u8, u64)],
) -> Result<HashMap<(u8, u64), [u8; 32]>, StoreError> {
    let mut out = HashMap::with_capacity(coordinates.len());
    for chunk in coordinates.chunks(4096) {
        let sql = format!(
            "SELECT n.level, n.idx, n.hash FROM tree_nodes n JOIN (VALUES {}) AS v ON n.level = v.column1 AND n.idx = v.column2",
            vec!["(?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (level, idx) in chunk {
            q = q.bind(i64::from(*level)).bind(*idx as i64);
        }
        for row in q.fetch_all(&mut *conn).await.map_err(classify)? {
            let hash: Vec<u8> = row.get(2);
            let hash: [u8; 32] =
                hash.try_into().map_err(|_| StoreError::Corrupt("tree node is not 32 bytes".into()))?;
            out.insert((row.get::<i64, _>(0) as u8, row.get::<i64, _>(1) as u64), hash);
        }
    }
    Ok(out)
}

fn record_from_row(row: &SqliteRow) -> Result<StoredRecord, StoreError> {
    let bad = corrupt("record");
    let kind: String = row.try_get("kind").map_err(|e| bad(e.to_string()))?;
    Ok(StoredRecord {
        seq: row.try_get::<i64, _>("seq").map_err(|e| bad(e.to_string()))? as u64,
        leaf_index: row.try_get::<Option<i64>, _>("leaf_index").map_err(|e| bad(e.to_string()))?.map(|i| i as u64),
        kind: kind.parse::<RecordKind>().map_err(|e| bad(e.to_string()))?,
        json: row.try_get("json").map_err(|e| bad(e.to_string()))?,
    })
}

fn checkpoint_from_row(row: &SqliteRow) -> Result<StoredCheckpoint, StoreError> {
    let bad = corrupt("checkpoint");
    let root: Vec<u8> = row.try_get("root").map_err(|e| bad(e.to_string()))?;
    Ok(StoredCheckpoint {
        size: row.try_get::<i64, _>("size").map_err(|e| bad(e.to_string()))? as u64,
        root: root.try_into().map_err(|_| bad("root is not 32 bytes".into()))?,
        note: row.try_get("note").map_err(|e| bad(e.to_string()))?,
        at: from_micros(row.try_get("at").map_err(|e| bad(e.to_string()))?),
    })
}

fn participant_from_row(row: &SqliteRow) -> Result<Participant, StoreError> {
    let bad = corrupt("participant");
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| bad(e.to_string()));
    let roles: Vec<String> = serde_json::from_str(&text("roles")?).map_err(|e| bad(e.to_string()))?;
    Ok(Participant {
        id: ParticipantId::parse(&text("id")?).map_err(|e| bad(e.to_string()))?,
        display_name: text("display_name")?,
        kind: text("kind")?.parse().map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
        recipient_type: text("recipient_type")?
            .parse()
            .map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
        region: text("region")?.parse().map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
        in_tianjin_ftz: row.try_get::<bool, _>("in_tianjin_ftz").map_err(|e| bad(e.to_string()))?,
        roles: roles
            .iter()
            .map(|r| r.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
        clearance: text("clearance")?
            .parse()
            .map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
        status: text("status")?.parse().map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
    })
}

fn dataset_from_row(row: &SqliteRow) -> Result<Dataset, StoreError> {
    let bad = corrupt("dataset");
    let get = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    let text = |c: &str| get(c)?.ok_or_else(|| bad(format!("{c} is null")));
    let key = |c: &str| -> Result<_, StoreError> {
        get(c)?.map(|s| crate::domain::dataset::FieldName::parse(&s)).transpose().map_err(|e| bad(e.to_string()))
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

fn version_from_row(row: &SqliteRow) -> Result<VersionInfo, StoreError> {
    let bad = corrupt("version");
    let sha: Vec<u8> = row.try_get("sha256").map_err(|e| bad(e.to_string()))?;
    Ok(VersionInfo {
        dataset: DatasetId::parse(row.try_get("dataset_id").map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?,
        version: row.try_get::<i64, _>("version").map_err(|e| bad(e.to_string()))? as u64,
        rows: row.try_get::<i64, _>("rows").map_err(|e| bad(e.to_string()))? as u64,
        chunks: row.try_get::<i64, _>("chunks").map_err(|e| bad(e.to_string()))? as u64,
        sha256: sha.try_into().map_err(|_| bad("sha256 is not 32 bytes".into()))?,
        publisher: ParticipantId::parse(row.try_get("publisher").map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?,
        published_at: from_micros(row.try_get("published_at").map_err(|e| bad(e.to_string()))?),
        idempotency_key: row.try_get("idempotency_key").map_err(|e| bad(e.to_string()))?,
    })
}

fn grant_from_row(row: &SqliteRow) -> Result<Grant, StoreError> {
    let body: String = row.try_get("body").map_err(|e| StoreError::Corrupt(format!("grant: {e}")))?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("grant: {e}")))
}

fn chunk_from_row(row: &SqliteRow) -> Result<StoredChunk, StoreError> {
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

const VERSION_COLUMNS: &str = "dataset_id, version, rows, chunks, sha256, publisher, published_at, idempotency_key";

#[async_trait]
impl Store for SqliteStore {
    async fn insert_participant(&self, p: &Participant, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        sqlx::query(
            "INSERT INTO participants (id, display_name, kind, recipient_type, region, in_tianjin_ftz, roles, clearance, status, registered_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .map_err(|e| match classify(e) {
            StoreError::AlreadyExists(_) => StoreError::AlreadyExists(format!("participant {}", p.id)),
            other => other,
        })?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)
    }

    async fn participant(&self, id: &ParticipantId) -> Result<Option<Participant>, StoreError> {
        let row = sqlx::query("SELECT * FROM participants WHERE id = ?")
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
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("UPDATE participants SET status = ? WHERE id = ? RETURNING *")
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
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO datasets (id, owner, title, description, government_data, fields, person_key_field, contributor_key_field, registered_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .map_err(|e| match classify(e) {
            StoreError::AlreadyExists(_) => StoreError::AlreadyExists(format!("dataset {}", d.id)),
            other => other,
        })?;
        insert_record(&mut tx, rec).await?;
        tx.commit().await.map_err(classify)
    }

    async fn dataset(&self, id: &DatasetId) -> Result<Option<Dataset>, StoreError> {
        let row = sqlx::query("SELECT * FROM datasets WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(dataset_from_row).transpose()
    }

    async fn datasets(&self, after: Option<&DatasetId>, limit: u32) -> Result<Vec<Dataset>, StoreError> {
        let rows = sqlx::query("SELECT * FROM datasets WHERE id > ? ORDER BY id LIMIT ?")
            .bind(after.map_or("", |a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(dataset_from_row).collect()
    }

    async fn versions(&self, dataset: &DatasetId) -> Result<Vec<VersionInfo>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = ? ORDER BY version DESC"))
                .bind(dataset.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(version_from_row).collect()
    }

    async fn version(&self, dataset: &DatasetId, version: Option<u64>) -> Result<Option<VersionInfo>, StoreError> {
        let by_number = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = ? AND version = ?");
        let latest =
            format!("SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = ? ORDER BY version DESC LIMIT 1");
        let q = match version {
            Some(v) => sqlx::query(&by_number).bind(dataset.as_str()).bind(v as i64),
            None => sqlx::query(&latest).bind(dataset.as_str()),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(classify)?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn version_by_key(&self, dataset: &DatasetId, key: &str) -> Result<Option<VersionInfo>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = ? AND idempotency_key = ?"
        ))
        .bind(dataset.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn begin_upload(&self, dataset: &DatasetId, upload_id: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO uploads (id, dataset_id, started_at) VALUES (?, ?, ?)")
            .bind(upload_id)
            .bind(dataset.as_str())
            .bind(micros(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn put_chunk(&self, upload_id: &str, chunk: &StoredChunk) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO chunks (upload_id, seq, rows, sha256, data) VALUES (?, ?, ?, ?, ?)")
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
        let mut tx = self.write_tx().await?;
        let existing = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE dataset_id = ? AND idempotency_key = ?"
        ))
        .bind(v.dataset.as_str())
        .bind(&v.idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        if let Some(row) = existing {
            let info = version_from_row(&row)?;
            sqlx::query("DELETE FROM chunks WHERE upload_id = ?")
                .bind(upload_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query("DELETE FROM uploads WHERE id = ?")
                .bind(upload_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            return Ok(Committed::Existing(info));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO versions (dataset_id, version, upload_id, rows, chunks, sha256, publisher, published_at, idempotency_key)
             VALUES (?, (SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE dataset_id = ?), ?, ?, ?, ?, ?, ?, ?)
             RETURNING {VERSION_COLUMNS}"
        ))
        .bind(v.dataset.as_str())
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
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM chunks WHERE upload_id = ? AND NOT EXISTS (SELECT 1 FROM versions WHERE upload_id = ?)",
        )
        .bind(upload_id)
        .bind(upload_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query("DELETE FROM uploads WHERE id = ? AND NOT EXISTS (SELECT 1 FROM versions WHERE upload_id = ?)")
            .bind(upload_id)
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
        let abandoned = "SELECT id FROM uploads WHERE started_at < ? AND id NOT IN (SELECT upload_id FROM versions)";
        let mut tx = self.write_tx().await?;
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
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO grants (id, dataset_id, consumer, status, body, requested_at) VALUES (?, ?, ?, ?, ?, ?)",
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
        let row = sqlx::query("SELECT body FROM grants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn update_grant(&self, g: &Grant, expected: GrantStatus, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("UPDATE grants SET status = ?, body = ? WHERE id = ? AND status = ?")
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
             WHERE (g.consumer = ?1 OR d.owner = ?1) AND (?2 IS NULL OR g.dataset_id = ?2)
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
            sqlx::query("SELECT body FROM grants WHERE consumer = ? AND dataset_id = ? ORDER BY requested_at, id")
                .bind(consumer.as_str())
                .bind(dataset.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn integrate(&self, new: &[PreparedRecord], integrator: &Integrator<'_>) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.log.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(size), 0) FROM checkpoints")
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let size = size as u64;
        // Records state changes stored and not yet integrated come first (store order).
        let mut queued: Vec<QueuedRecord> =
            sqlx::query("SELECT seq, json FROM records WHERE leaf_index IS NULL ORDER BY seq LIMIT ?")
                .bind(super::INTEGRATION_BATCH as i64)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?
                .iter()
                .map(|r| QueuedRecord { seq: r.get::<i64, _>(0) as u64, json: r.get(1) })
                .collect();
        let earlier = queued.len();
        // The new records follow them: stored with their leaf indexes already, so that they need
        // no second write. Beyond a full queue they wait for the next integration.
        let first_new = (earlier < super::INTEGRATION_BATCH).then_some(size + earlier as u64);
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
        for chunk in before.chunks(4096) {
            let sql = format!(
                "UPDATE records SET leaf_index = v.column2 FROM (VALUES {}) AS v WHERE records.seq = v.column1",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (seq, index) in chunk {
                q = q.bind(*seq as i64).bind(*index as i64);
            }
            q.execute(&mut *tx).await.map_err(unavailable)?;
        }
        for chunk in integration.nodes.chunks(4096) {
            let sql = format!(
                "INSERT INTO tree_nodes (level, idx, hash) VALUES {}",
                vec!["(?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (level, idx, hash) in chunk {
                q = q.bind(i64::from(*level)).bind(*idx as i64).bind(hash.to_vec());
            }
            q.execute(&mut *tx).await.map_err(unavailable)?;
        }
        let c = &integration.checkpoint;
        sqlx::query("INSERT INTO checkpoints (size, root, note, at) VALUES (?, ?, ?, ?)")
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
            Some(n) => sqlx::query("SELECT size, root, note, at FROM checkpoints WHERE size = ?").bind(n as i64),
            None => sqlx::query("SELECT size, root, note, at FROM checkpoints ORDER BY size DESC LIMIT 1"),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(classify)?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn checkpoints(&self, after: u64, limit: u32) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query("SELECT size, root, note, at FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?")
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
            "SELECT seq, leaf_index, kind, json FROM records WHERE leaf_index >= ? ORDER BY leaf_index LIMIT ?",
        )
        .bind(from as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn insert_approval(&self, a: &StoredApproval, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let ap = &a.approval;
        sqlx::query(
            "INSERT INTO approvals (id, kind, exporter, reference, issued, expires, revoked, scope, recorded_by, recorded_at)
             VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
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
        .map_err(|e| match classify(e) {
            StoreError::AlreadyExists(_) => StoreError::AlreadyExists(format!("approval {}", ap.id)),
            other => other,
        })?;
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
        let mut tx = self.write_tx().await?;
        let Some(row) = sqlx::query("SELECT * FROM approvals WHERE id = ?")
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
            "UPDATE approvals SET revoked = 1, revoked_by = ?, revoked_at = ?, revoke_reason = ? WHERE id = ? RETURNING *",
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
        let row = sqlx::query("SELECT * FROM approvals WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(approval_from_row).transpose()
    }

    async fn approvals(&self, exporter: Option<&str>) -> Result<Vec<StoredApproval>, StoreError> {
        let rows = sqlx::query("SELECT * FROM approvals WHERE (?1 IS NULL OR exporter = ?1) ORDER BY recorded_at, id")
            .bind(exporter)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn insert_hold(&self, h: &Hold, rec: &NewRecord) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO holds (id, status, grant_id, dataset, consumer, exporter, mechanism, body, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        let row = sqlx::query("SELECT * FROM holds WHERE grant_id = ? AND mechanism = ? AND status = 'OPEN' LIMIT 1")
            .bind(grant)
            .bind(mechanism)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(hold_from_row).transpose()
    }

    async fn hold(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query("SELECT * FROM holds WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(hold_from_row).transpose()
    }

    async fn holds(&self, status: Option<HoldStatus>) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query("SELECT * FROM holds WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at, id")
            .bind(status.map(|s| s.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(hold_from_row).collect()
    }

    async fn resolve_hold(&self, h: &Hold, rec: &NewRecord) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE holds SET status = ?, resolved_by = ?, resolved_at = ?, reason = ?, approval_id = ? WHERE id = ? AND status = 'OPEN'",
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
        let mut tx = self.write_tx().await?;
        let mut counts = LedgerCounts::default();
        if let Some(persons) = count.nonsensitive {
            (counts.nonsensitive_before, counts.nonsensitive_new) =
                Self::count_bucket(&mut tx, count, "N", persons).await?;
        }
        if let Some(persons) = count.sensitive {
            (counts.sensitive_before, counts.sensitive_new) = Self::count_bucket(&mut tx, count, "S", persons).await?;
        }
        if keep(&counts) {
            tx.commit().await.map_err(classify)?;
        } else {
            tx.rollback().await.map_err(classify)?;
        }
        Ok(counts)
    }

    async fn records(&self, after: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query("SELECT seq, leaf_index, kind, json FROM records WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn transfers(
        &self,
        filter: &super::TransferFilter,
        limit: u32,
    ) -> Result<Vec<super::StoredTransfer>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
            q.push(" AND export = ").push_bind(i64::from(export));
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
            q.push(" AND (at < ").push_bind(micros(at));
            q.push(" OR (at = ").push_bind(micros(at)).push(" AND seq < ").push_bind(seq as i64).push("))");
        }
        q.push(" ORDER BY at DESC, seq DESC LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter()
            .map(|row| {
                let bad = corrupt("transfer record");
                let record = record_from_row(row)?;
                Ok(super::StoredTransfer {
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

    async fn leaf_facets(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Option<crate::domain::record::TransferFacets>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT leaf_index, transfer, dataset, recipient, exporter, region, export, mechanism, action
             FROM records WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
        )
        .bind(from as i64)
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

/// The facets of a record row (`transfer` … `action` columns); `None` when it is about no transfer.
fn transfer_facets_from_row(row: &SqliteRow) -> Result<Option<crate::domain::record::TransferFacets>, StoreError> {
    let bad = corrupt("record facets");
    let text = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    let Some(transfer) = text("transfer")? else { return Ok(None) };
    Ok(Some(crate::domain::record::TransferFacets {
        transfer,
        dataset: text("dataset")?.unwrap_or_default(),
        recipient: text("recipient")?.unwrap_or_default(),
        exporter: text("exporter")?.unwrap_or_default(),
        region: text("region")?.unwrap_or_default(),
        export: row.try_get::<Option<i64>, _>("export").map_err(|e| bad(e.to_string()))?.unwrap_or(0) != 0,
        mechanism: super::codec::mechanism_from_column(text("mechanism")?).map_err(&bad)?,
        action: text("action")?.unwrap_or_default().parse().map_err(|e: UnknownName| bad(e.to_string()))?,
    }))
}

fn approval_from_row(row: &SqliteRow) -> Result<StoredApproval, StoreError> {
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

fn hold_from_row(row: &SqliteRow) -> Result<Hold, StoreError> {
    let bad = corrupt("hold");
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| bad(e.to_string()));
    let opt = |c: &str| row.try_get::<Option<String>, _>(c).map_err(|e| bad(e.to_string()));
    Ok(Hold {
        id: text("id")?,
        status: text("status")?.parse().map_err(|e: UnknownName| bad(e.to_string()))?,
        grant_id: text("grant_id")?,
        dataset: DatasetId::parse(&text("dataset")?).map_err(|e| bad(e.to_string()))?,
        consumer: ParticipantId::parse(&text("consumer")?).map_err(|e| bad(e.to_string()))?,
        exporter: ParticipantId::parse(&text("exporter")?).map_err(|e| bad(e.to_string()))?,
        mechanism: text("mechanism")?,
        body: serde_json::from_str(&text("body")?).map_err(|e| bad(e.to_string()))?,
        created_at: from_micros(row.try_get("created_at").map_err(|e| bad(e.to_string()))?),
        resolved_by: opt("resolved_by")?
            .map(|p| ParticipantId::parse(&p))
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at").map_err(|e| bad(e.to_string()))?.map(from_micros),
        reason: opt("reason")?.unwrap_or_default(),
        approval_id: opt("approval_id")?,
    })
}

impl SqliteStore {
    /// Adds one bucket of a transfer's persons to the ledger inside `tx`; returns the window's
    /// count before and the persons new to the window.
    async fn count_bucket(
        tx: &mut SqliteConnection,
        count: &PersonCount<'_>,
        bucket: &str,
        persons: &[[u8; 32]],
    ) -> Result<(u64, u64), StoreError> {
        let distinct_in_window = "SELECT COUNT(DISTINCT person) FROM export_persons
             WHERE exporter = ? AND bucket = ? AND year BETWEEN ? AND ?";
        let before: i64 = if count.years_back == 0 {
            sqlx::query_scalar(
                "SELECT COALESCE(SUM(persons), 0) FROM export_counts WHERE exporter = ? AND year = ? AND bucket = ?",
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
        // 3 fixed parameters + one per person, below SQLite's 32 766; equal-sized chunks share
        // one prepared statement.
        for chunk in persons.chunks(8_192) {
            let sql = format!(
                "INSERT OR IGNORE INTO export_persons (exporter, year, bucket, person) SELECT ?, ?, ?, column1 FROM (VALUES {})",
                vec!["(?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql).bind(count.exporter).bind(count.year).bind(bucket);
            for p in chunk {
                q = q.bind(&p[..]);
            }
            inserted += q.execute(&mut *tx).await.map_err(classify)?.rows_affected();
        }
        sqlx::query(
            "INSERT INTO export_counts (exporter, year, bucket, persons) VALUES (?, ?, ?, ?)
             ON CONFLICT (exporter, year, bucket) DO UPDATE SET persons = persons + excluded.persons",
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
}
