//! The embedded SQLite backend (the default): what SQLite does differently from the shared SQL
//! of [`super::sql`].

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::codec::micros;
use super::rows::NodeRow;
use super::sql::{Dialect, Failure, Lock, SqlStore};
use super::{PersonCount, StoreError};
use crate::domain::record::NewRecord;

/// Embedded migrations for this dialect.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A store in one SQLite file, in WAL mode with `synchronous=FULL`: a commit that returned
/// survives power loss (the transfer log must not lose its last entries). A writer takes the
/// database's write lock when it begins (`BEGIN IMMEDIATE`), which serialises every writer: the
/// log, the ledger and version numbers need no lock of their own.
pub type SqliteStore = SqlStore<Sqlite>;

/// Statements bind at most this many values (SQLite's limit is 32 766).
const MAX_BINDS: usize = 32_000;

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
                Ok(<<Sqlite as sqlx::Database>::TransactionManager as sqlx::TransactionManager>::get_transaction_depth(
                    conn,
                ) == 0)
            })
        })
        .connect_with(options)
        .await
}

impl SqlStore<Sqlite> {
    /// Opens (creating when missing) and migrates the database a `sqlite:` URL names.
    ///
    /// # Errors
    /// A malformed URL, a file that cannot be created or opened, or a failed migration.
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
        Ok(SqlStore { pool, bulk, log })
    }

    /// Writes a consistent copy of the whole database (write-ahead log included) to the new
    /// file `dest` with `VACUUM INTO`, while writers go on.
    ///
    /// # Errors
    /// `dest` exists or cannot be written; the database cannot be read.
    pub async fn backup_into(&self, dest: &std::path::Path) -> Result<(), StoreError> {
        let dest = dest.to_str().ok_or_else(|| StoreError::Corrupt("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1").bind(dest).execute(&self.pool).await.map(drop).map_err(|e| {
            tracing::warn!(error = %e, "backup failed");
            StoreError::Unavailable(e)
        })
    }

    /// Opens an existing database a `sqlite:` URL names for reading only: nothing is created,
    /// migrated or written (an auditor's copy stays as it was handed over).
    ///
    /// # Errors
    /// A missing or unreadable file.
    pub async fn open_read_only(url: &str) -> Result<SqliteStore, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?.read_only(true).busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        Ok(SqlStore { bulk: pool.clone(), log: pool.clone(), pool })
    }
}

/// `n` rows of `width` placeholders each, `(?, ?), (?, ?)`, for a multi-row `VALUES`.
fn values(n: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; n].join(", ")
}

#[async_trait]
impl Dialect for Sqlite {
    const SHARED: bool = false;

    fn database_error(e: &dyn sqlx::error::DatabaseError) -> Failure {
        // SQLITE_BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13, CANTOPEN 14; the
        // append-only trigger's ABORT on records is Other.
        match e.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff) {
            Some(5 | 6 | 8 | 10 | 13 | 14) => Failure::Unavailable,
            Some(11) => Failure::Corrupt,
            _ => Failure::Other,
        }
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Takes the write lock at once, so that two writers never deadlock upgrading read locks.
    async fn begin_write(pool: &Pool<Sqlite>) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn settle(pool: &Pool<Sqlite>) -> Result<(), sqlx::Error> {
        // TRUNCATE waits for readers (busy_timeout) and leaves a zero-length WAL.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.map(drop)
    }

    /// Nothing to take: the transaction holds the database's one write lock already.
    async fn lock(_: &mut SqliteConnection, _: Lock<'_>) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn insert_records(
        conn: &mut SqliteConnection,
        recs: &[(&NewRecord, &str)],
        first_index: Option<u64>,
    ) -> Result<Vec<u64>, sqlx::Error> {
        const COLUMNS: usize = 14;
        let mut seqs = Vec::with_capacity(recs.len());
        for (n, chunk) in recs.chunks(MAX_BINDS / COLUMNS).enumerate() {
            let sql = format!(
                "INSERT INTO records (at, kind, actor, json, leaf_index, transfer, dataset, recipient, exporter, region,
                                      export, mechanism, action, subject) VALUES {} RETURNING seq",
                values(chunk.len(), COLUMNS)
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for (i, (rec, leaf)) in chunk.iter().enumerate() {
                let index = first_index.map(|first| (first + (n * (MAX_BINDS / COLUMNS) + i) as u64) as i64);
                let f = rec.facets.as_ref();
                q = q
                    .bind(micros(rec.at))
                    .bind(rec.kind.as_str())
                    .bind(rec.actor.as_str())
                    .bind(*leaf)
                    .bind(index)
                    .bind(f.map(|f| f.transfer.as_str()))
                    .bind(f.map(|f| f.dataset.as_str()))
                    .bind(f.map(|f| f.recipient.as_str()))
                    .bind(f.map(|f| f.exporter.as_str()))
                    .bind(f.map(|f| f.region.as_str()))
                    .bind(f.map(|f| f.export))
                    .bind(f.map(|f| super::codec::mechanism_column(f.mechanism)))
                    .bind(f.map(|f| f.action.as_str()))
                    .bind(rec.subject.as_deref());
            }
            let mut chunk_seqs = q.fetch_all(&mut *conn).await?;
            // One statement inserts rows in VALUES order with increasing sequence numbers.
            chunk_seqs.sort_unstable();
            seqs.extend(chunk_seqs.into_iter().map(|s| s as u64));
        }
        Ok(seqs)
    }

    async fn tree_nodes_in(
        conn: &mut SqliteConnection,
        coordinates: &[(u8, u64)],
    ) -> Result<Vec<NodeRow>, sqlx::Error> {
        let mut out = Vec::with_capacity(coordinates.len());
        for chunk in coordinates.chunks(MAX_BINDS / 2) {
            let sql = format!(
                "SELECT n.level, n.idx, n.hash FROM tree_nodes n JOIN (VALUES {}) AS v ON n.level = v.column1 AND n.idx = v.column2",
                values(chunk.len(), 2)
            );
            let mut q = sqlx::query_as::<_, NodeRow>(&sql);
            for (level, idx) in chunk {
                q = q.bind(i64::from(*level)).bind(*idx as i64);
            }
            out.extend(q.fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }

    async fn set_leaf_indexes(conn: &mut SqliteConnection, leaves: &[(u64, u64)]) -> Result<u64, sqlx::Error> {
        let mut updated = 0;
        for chunk in leaves.chunks(MAX_BINDS / 2) {
            let sql = format!(
                "UPDATE records SET leaf_index = v.column2 FROM (VALUES {}) AS v WHERE records.seq = v.column1",
                values(chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for (seq, index) in chunk {
                q = q.bind(*seq as i64).bind(*index as i64);
            }
            updated += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(updated)
    }

    async fn insert_tree_nodes(conn: &mut SqliteConnection, nodes: &[(u8, u64, [u8; 32])]) -> Result<(), sqlx::Error> {
        for chunk in nodes.chunks(MAX_BINDS / 3) {
            let sql = format!("INSERT INTO tree_nodes (level, idx, hash) VALUES {}", values(chunk.len(), 3));
            let mut q = sqlx::query(&sql);
            for (level, idx, hash) in chunk {
                q = q.bind(i64::from(*level)).bind(*idx as i64).bind(&hash[..]);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn insert_persons(
        conn: &mut SqliteConnection,
        count: &PersonCount<'_>,
        bucket: &str,
        persons: &[[u8; 32]],
    ) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
        // Equal-sized chunks share one prepared statement.
        for chunk in persons.chunks(8_192) {
            let sql = format!(
                "INSERT OR IGNORE INTO export_persons (exporter, year, bucket, person) SELECT ?, ?, ?, column1 FROM (VALUES {})",
                values(chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql).bind(count.exporter).bind(count.year).bind(bucket);
            for p in chunk {
                q = q.bind(&p[..]);
            }
            inserted += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(inserted)
    }
}
