//! The PostgreSQL backend: several gateway processes share one database and one log. What
//! PostgreSQL does differently from the shared SQL of [`super::sql`].
//!
//! Cross-process serialisation uses transaction-scoped advisory locks, released when the
//! transaction ends: one lock for the log's group commit ([`LOG_LOCK`]), one per exporter for the
//! person ledger, one per dataset for version numbers. Compare-and-set updates (grants, holds,
//! approvals) rely on row locks under `READ COMMITTED`: a second writer waits, then re-checks its
//! condition against the committed row.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Pool, Postgres, Transaction};

use super::codec::micros;
use super::rows::NodeRow;
use super::sql::{Dialect, Failure, Lock, SqlStore};
use super::PersonCount;
use crate::domain::record::NewRecord;

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
/// The advisory lock class of release-ledger scopes ("tabl").
const RELEASE_LOCK_CLASS: i32 = 0x7461_626c;

/// Persons bound to one ledger statement at most (one array parameter).
const LEDGER_BATCH: usize = 100_000;

/// A store in a PostgreSQL database, shared by any number of gateway processes.
///
/// The configured connections are split into three pools, so that no kind of work can starve
/// another: `pool` for the control plane, `bulk` (a quarter) for reading chunks — a pull holds
/// a connection only while it reads one chunk — and `log` (one or two) for the sequencer.
pub type PostgresStore = SqlStore<Postgres>;

/// A pool of `max` connections. (A transaction whose `COMMIT` failed is rolled back when it is
/// dropped, and sqlx counts it closed at once on PostgreSQL: the connection is reusable.)
fn pg_pool(max: u32) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(max.max(1)).acquire_timeout(Duration::from_secs(10))
}

/// Connections per gateway process, unless configured (`database_pool`).
pub const DEFAULT_POOL: u32 = 16;

impl SqlStore<Postgres> {
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
            return Ok(SqlStore { bulk: pool.clone(), log: pool.clone(), pool });
        }
        let log = if max_connections < 8 { 1 } else { 2 };
        let bulk = (max_connections / 4).max(1);
        let control = max_connections - log - bulk;
        let pool = pg_pool(control).connect_with(options.clone()).await?;
        MIGRATOR.run(&pool).await?;
        let bulk = pg_pool(bulk).connect_lazy_with(options.clone());
        let log = pg_pool(log).connect_lazy_with(options);
        Ok(SqlStore { pool, bulk, log })
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
        Ok(SqlStore { bulk: pool.clone(), log: pool.clone(), pool })
    }

    /// The control plane's pool (tests close it before dropping their database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Dialect for Postgres {
    const SHARED: bool = true;

    fn database_error(e: &dyn sqlx::error::DatabaseError) -> Failure {
        match e.code().unwrap_or_default().as_ref() {
            // Class 08 connection exception, 53 insufficient resources (disk full, out of memory,
            // too many connections), 57 operator intervention (shutdown, cancel), 58 system error
            // (I/O); serialization failure, deadlock, lock not available, read-only transaction
            // (a standby).
            c if ["08", "53", "57", "58"].iter().any(|class| c.starts_with(class)) => Failure::Unavailable,
            "40001" | "40P01" | "55P03" | "25006" => Failure::Unavailable,
            "XX001" | "XX002" => Failure::Corrupt,
            _ => Failure::Other,
        }
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Nothing to do: the server keeps its own files whole.
    async fn settle(_: &Pool<Postgres>) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn begin_write(pool: &Pool<Postgres>) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin().await
    }

    async fn lock(conn: &mut PgConnection, lock: Lock<'_>) -> Result<(), sqlx::Error> {
        let q = match lock {
            Lock::Log => sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOG_LOCK),
            Lock::Ledger(exporter) => {
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))").bind(LEDGER_LOCK_CLASS).bind(exporter)
            }
            Lock::Release(scope) => {
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))").bind(RELEASE_LOCK_CLASS).bind(scope)
            }
            Lock::Versions(dataset) => {
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))").bind(VERSION_LOCK_CLASS).bind(dataset)
            }
        };
        q.execute(conn).await.map(drop)
    }

    async fn insert_records(
        conn: &mut PgConnection,
        recs: &[(&NewRecord, &str)],
        first_index: Option<u64>,
    ) -> Result<Vec<u64>, sqlx::Error> {
        if recs.is_empty() {
            return Ok(Vec::new());
        }
        let n = recs.len();
        let (mut at, mut kind, mut actor, mut json) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut transfer, mut dataset, mut recipient, mut exporter) = (vec![], vec![], vec![], vec![]);
        let (mut region, mut export, mut mechanism, mut action) = (vec![], vec![], vec![], vec![]);
        let mut subject = Vec::with_capacity(n);
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
            subject.push(rec.subject.as_deref());
        }
        // Rows are inserted in ordinality order, so sequence numbers increase with the input.
        let mut seqs: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO records (at, kind, actor, json, transfer, dataset, recipient, exporter, region, export, mechanism,
                                  action, subject, leaf_index)
             SELECT at, kind, actor, json, transfer, dataset, recipient, exporter, region, export, mechanism, action,
                    subject, $13::bigint + ord - 1
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::text[], $10::boolean[], $11::text[], $12::text[], $14::text[])
                  WITH ORDINALITY AS r (at, kind, actor, json, transfer, dataset, recipient, exporter, region, export,
                                        mechanism, action, subject, ord)
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
        .bind(subject)
        .fetch_all(conn)
        .await?;
        seqs.sort_unstable();
        Ok(seqs.into_iter().map(|s| s as u64).collect())
    }

    async fn tree_nodes_in(conn: &mut PgConnection, coordinates: &[(u8, u64)]) -> Result<Vec<NodeRow>, sqlx::Error> {
        if coordinates.is_empty() {
            return Ok(Vec::new());
        }
        let (level, idx): (Vec<i16>, Vec<i64>) = coordinates.iter().map(|&(l, i)| (i16::from(l), i as i64)).unzip();
        sqlx::query_as(
            "SELECT n.level, n.idx, n.hash FROM tree_nodes n
             JOIN UNNEST($1::smallint[], $2::bigint[]) AS v (level, idx) ON n.level = v.level AND n.idx = v.idx",
        )
        .bind(level)
        .bind(idx)
        .fetch_all(conn)
        .await
    }

    async fn set_leaf_indexes(conn: &mut PgConnection, leaves: &[(u64, u64)]) -> Result<u64, sqlx::Error> {
        let (seq, index): (Vec<i64>, Vec<i64>) = leaves.iter().map(|&(s, i)| (s as i64, i as i64)).unzip();
        Ok(sqlx::query(
            "UPDATE records SET leaf_index = v.idx FROM UNNEST($1::bigint[], $2::bigint[]) AS v (seq, idx)
             WHERE records.seq = v.seq",
        )
        .bind(seq)
        .bind(index)
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn insert_tree_nodes(conn: &mut PgConnection, nodes: &[(u8, u64, [u8; 32])]) -> Result<(), sqlx::Error> {
        let mut level = Vec::with_capacity(nodes.len());
        let mut idx = Vec::with_capacity(nodes.len());
        let mut hash = Vec::with_capacity(nodes.len());
        for (l, i, h) in nodes {
            level.push(i16::from(*l));
            idx.push(*i as i64);
            hash.push(&h[..]);
        }
        sqlx::query(
            "INSERT INTO tree_nodes (level, idx, hash) SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[])",
        )
        .bind(level)
        .bind(idx)
        .bind(hash)
        .execute(conn)
        .await
        .map(drop)
    }

    async fn insert_persons(
        conn: &mut PgConnection,
        count: &PersonCount<'_>,
        bucket: &str,
        persons: &[[u8; 32]],
    ) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
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
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        Ok(inserted)
    }
}
