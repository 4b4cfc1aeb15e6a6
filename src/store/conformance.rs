//! The conformance suite of the [`Store`] contract, run against every backend.
//!
//! Each test is an `async fn(Arc<dyn Store>)` listed once in [`conformance!`], which runs it on a
//! fresh SQLite file (always) and on a fresh PostgreSQL database created on the server that
//! `BTH_TEST_DATABASE_URL` names (e.g. the one `.ci/postgres.sh start` prints). Without that
//! variable the PostgreSQL runs print that they are skipped and pass — unless `CI` is set, where
//! they fail: CI must exercise both backends.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{
    Committed, HoldFilter, Integration, LedgerCounts, NewVersion, PersonCount, QueuedRecord, Store, StoreError,
    StoredApproval, StoredCheckpoint, StoredChunk, TransferFilter, TreeHead,
};
use crate::domain::classification::Level;
use crate::domain::dataset::{Dataset, FieldName};
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use crate::domain::record::bodies::ParticipantSuspended;
use crate::domain::record::{NewRecord, PreparedRecord, RecordBody, RecordKind, TransferFacets};
use crate::policy::{Approval, ApprovalType, Scope};

/// Names the PostgreSQL server (any database on it; tests create their own) for these tests.
const URL_VAR: &str = "BTH_TEST_DATABASE_URL";

/// Runs `test` on a store in a fresh SQLite file.
async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let store = SqliteStore::open(&url).await.expect("open sqlite");
    test(Arc::new(store)).await;
}

/// The server for the PostgreSQL runs; `None` (after saying so) when they are skipped.
fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
            assert!(!ci, "{URL_VAR} is not set but CI is: the PostgreSQL tests must run (start .ci/postgres.sh)");
            eprintln!("skipped {test} on PostgreSQL: {URL_VAR} is not set");
            None
        }
    }
}

/// Creates a fresh database on the server `url` names: the connection to drop it with, the
/// options that reach it, its name.
async fn fresh_database(url: &str) -> (PgConnection, PgConnectOptions, String) {
    let admin = PgConnectOptions::from_str(url).expect("BTH_TEST_DATABASE_URL is a PostgreSQL URL");
    let mut conn = PgConnection::connect_with(&admin).await.expect("connect to BTH_TEST_DATABASE_URL");
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix).expect("random");
    let db = format!("bth_test_{}", hex::encode(suffix));
    conn.execute(format!("CREATE DATABASE {db}").as_str()).await.expect("create test database");
    (conn, admin.database(&db), db)
}

/// Runs `test` on a store in a fresh database on the `BTH_TEST_DATABASE_URL` server, dropped
/// afterwards (also when the test fails).
async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = postgres_url(name) else { return };
    let (mut conn, options, db) = fresh_database(&url).await;
    let store = PostgresStore::connect(options, 4).await.expect("open postgres");
    let pool = store.pool().clone();
    let outcome = tokio::spawn(test(Arc::new(store))).await;
    pool.close().await;
    conn.execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str()).await.expect("drop test database");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Declares each conformance test once per backend: `sqlite::<name>` and `postgres::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::on_postgres(stringify!($name), super::$name).await;
                }
            )*
        }
    };
}

conformance! {
    participants_round_trip_in_id_order_and_ids_are_unique,
    datasets_page_by_id,
    an_upload_is_invisible_until_committed_as_the_next_version,
    aborting_and_purging_remove_only_uncommitted_uploads,
    concurrent_commits_get_distinct_versions_and_one_version_per_key,
    grants_change_only_from_the_expected_status,
    integrate_assigns_leaf_indexes_in_store_order_and_stores_the_tree,
    a_failed_integration_stores_nothing,
    concurrent_integrations_grow_one_tree,
    approvals_are_revoked_once,
    approvals_are_confirmed_once_and_never_once_revoked,
    holds_are_resolved_once,
    counted_persons_are_kept_or_rolled_back,
    the_ledger_window_counts_distinct_persons_across_years,
    concurrent_counting_loses_no_updates,
    transfers_list_integrated_transfer_records_newest_first,
    records_page_in_store_order,
    records_about_a_fact_are_its_latest_in_store_order,
    a_table_release_stores_its_cells_and_record_together_against_the_ledger_it_was_checked_with,
    concurrent_releases_to_one_scope_never_both_pass_the_same_ledger,
    ledger_scopes_widen_and_reset,
}

/// A store opened for reading (`audit verify`) reads what a writer stored and writes nothing.
async fn reading_only(writer: Arc<dyn Store>, reader: Arc<dyn Store>) {
    writer.insert_participant(&participant("a1"), &rec(RecordKind::ParticipantRegistered, 1)).await.unwrap();
    assert_eq!(reader.participant(&pid("a1")).await.unwrap(), Some(participant("a1")));
    let err = reader.insert_participant(&participant("b1"), &rec(RecordKind::ParticipantRegistered, 2)).await;
    assert!(err.is_err(), "a read-only store wrote");
    assert_eq!(writer.participant(&pid("b1")).await.unwrap(), None);
}

#[tokio::test]
async fn a_sqlite_store_opened_for_reading_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let writer = Arc::new(SqliteStore::open(&url).await.expect("open sqlite"));
    let reader = Arc::new(SqliteStore::open_read_only(&url).await.expect("open for reading"));
    reading_only(writer, reader).await;
    let missing = format!("sqlite:{}", dir.path().join("missing.db").display());
    assert!(SqliteStore::open_read_only(&missing).await.is_err(), "nothing is created");
    assert!(!dir.path().join("missing.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_store_opened_for_reading_writes_nothing() {
    let Some(url) = postgres_url("a_postgres_store_opened_for_reading_writes_nothing") else { return };
    let (mut conn, options, db) = fresh_database(&url).await;
    let writer = PostgresStore::connect(options.clone(), 2).await.expect("open postgres");
    let reader = PostgresStore::connect_read_only(options).await.expect("open for reading");
    let pools = (writer.pool().clone(), reader.pool().clone());
    let outcome = tokio::spawn(reading_only(Arc::new(writer), Arc::new(reader))).await;
    pools.0.close().await;
    pools.1.close().await;
    conn.execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str()).await.expect("drop test database");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// --- fixtures ---------------------------------------------------------------------------------

fn t(seconds: i64) -> DateTime<Utc> {
    // Microsecond precision, as stored.
    DateTime::from_timestamp_micros(1_735_689_600_000_000 + seconds * 1_000_000 + 123).unwrap()
}

fn pid(s: &str) -> ParticipantId {
    ParticipantId::parse(s).unwrap()
}

fn did(s: &str) -> DatasetId {
    DatasetId::parse(s).unwrap()
}

fn prepared(records: &[NewRecord]) -> Vec<PreparedRecord> {
    records.iter().cloned().map(|r| PreparedRecord::new(r).expect("canonical")).collect()
}

fn rec(kind: RecordKind, n: u64) -> NewRecord {
    let mut r = NewRecord::untyped(kind, "local:test", chrono::Utc::now(), json!({ "n": n }));
    r.at = t(n as i64);
    r
}

fn participant(id: &str) -> Participant {
    Participant {
        id: pid(id),
        display_name: format!("Participant {id}"),
        kind: ParticipantKind::StateOrgan,
        recipient_type: RecipientType::GovDept,
        region: Region::parse("CN-TJ").unwrap(),
        in_tianjin_ftz: true,
        roles: BTreeSet::from([Role::Publisher, Role::Consumer]),
        clearance: Level::G3,
        status: ParticipantStatus::Active,
    }
}

fn dataset(id: &str, owner: &str) -> Dataset {
    Dataset {
        id: did(id),
        owner: pid(owner),
        title: format!("Dataset {id}"),
        description: "统计数据".into(),
        government_data: true,
        fields: Vec::new(),
        person_key_field: Some(FieldName::parse("person_id").unwrap()),
        contributor_key_field: None,
        holding_key_field: None,
        registered_at: t(1),
    }
}

/// A store with participants `owner` and `consumer` and dataset `ds` of `owner`.
async fn catalog(store: &dyn Store) {
    store.insert_participant(&participant("owner"), &rec(RecordKind::ParticipantRegistered, 1)).await.unwrap();
    store.insert_participant(&participant("consumer"), &rec(RecordKind::ParticipantRegistered, 2)).await.unwrap();
    store.insert_dataset(&dataset("ds", "owner"), &rec(RecordKind::DatasetRegistered, 3)).await.unwrap();
}

fn grant(id: &str, status: GrantStatus, at: i64) -> Grant {
    Grant {
        id: id.into(),
        dataset: did("ds"),
        consumer: pid("consumer"),
        fields: Vec::new(),
        purpose: "statistics".into(),
        legal_basis: "law".into(),
        statistical_purpose: true,
        status,
        requested_expiry: None,
        expires_at: Some(t(1000)),
        row_filter: None,
        reason: String::new(),
        requested_at: t(at),
        decided_at: None,
        exemption: Default::default(),
        exemption_attested_by: None,
        usage: Default::default(),
        dimensions: Vec::new(),
        measures: Vec::new(),
    }
}

fn version(key: &str) -> NewVersion {
    NewVersion {
        dataset: did("ds"),
        rows: 10,
        chunks: 2,
        sha256: [7; 32],
        publisher: pid("owner"),
        idempotency_key: key.into(),
        published_at: t(5),
    }
}

fn chunk(seq: u64) -> StoredChunk {
    StoredChunk { seq, rows: 5, sha256: [seq as u8; 32], data: bytes::Bytes::from(vec![seq as u8; 100]) }
}

/// Stages a two-chunk upload.
async fn stage(store: &dyn Store, upload: &str) {
    store.begin_upload(&did("ds"), upload).await.unwrap();
    store.put_chunk(upload, &chunk(0)).await.unwrap();
    store.put_chunk(upload, &chunk(1)).await.unwrap();
}

fn approval(id: &str, exporter: &str, at: i64) -> StoredApproval {
    StoredApproval {
        approval: Approval {
            id: id.into(),
            kind: ApprovalType::CacSa,
            exporter: exporter.into(),
            reference: "CAC-2025-1".into(),
            issued: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            expires: Some(NaiveDate::from_ymd_opt(2027, 12, 31).unwrap()),
            revoked: false,
            scope: Scope {
                recipients: vec!["consumer".into()],
                destinations: vec![Region::parse("HK").unwrap()],
                purposes: vec!["statistics".into()],
                max_persons_nonsensitive: Some(10_000),
                max_persons_sensitive: None,
            },
        },
        recorded_by: "officer".into(),
        recorded_at: t(at),
        revoked_by: None,
        revoke_reason: None,
        confirmed_by: None,
        confirmed_at: None,
        record_seq: None,
    }
}

fn hold(id: &str, at: i64) -> Hold {
    Hold {
        id: id.into(),
        status: HoldStatus::Open,
        grant_id: "g1".into(),
        dataset: did("ds"),
        consumer: pid("consumer"),
        exporter: pid("owner"),
        mechanism: "CAC_SA".into(),
        body: json!({ "transfer": "t1", "persons": 12 }),
        created_at: t(at),
        resolved_by: None,
        resolved_at: None,
        reason: String::new(),
        approval_id: None,
    }
}

/// An integrator that appends every queued record as one leaf each, with a level-0 node per leaf
/// and a checkpoint whose root is a function of the new size; records what it was given.
fn integrate_all(
    seen: &std::sync::Mutex<Vec<(u64, Vec<QueuedRecord>)>>,
) -> impl Fn(&TreeHead, &[QueuedRecord]) -> Result<Option<Integration>, String> + Send + Sync + '_ {
    move |head, queued| {
        let size = head.size;
        seen.lock().unwrap().push((size, queued.to_vec()));
        if queued.is_empty() {
            return Ok(None);
        }
        let leaves: Vec<(u64, u64)> = queued.iter().enumerate().map(|(i, q)| (q.seq, size + i as u64)).collect();
        let new_size = size + queued.len() as u64;
        Ok(Some(Integration {
            nodes: leaves.iter().map(|&(_, i)| (0u8, i, [i as u8; 32])).collect(),
            leaves,
            checkpoint: StoredCheckpoint {
                size: new_size,
                root: [new_size as u8; 32],
                note: format!("note {new_size}"),
                at: t(new_size as i64),
            },
        }))
    }
}

fn facets(transfer: &str, recipient: &str, export: bool, action: &str) -> TransferFacets {
    TransferFacets {
        transfer: transfer.into(),
        dataset: "ds".into(),
        recipient: recipient.into(),
        exporter: "owner".into(),
        region: if export { "HK".into() } else { "CN-BJ".into() },
        export,
        mechanism: Some(if export {
            crate::policy::Mechanism::RequiresSecurityAssessment
        } else {
            crate::policy::Mechanism::Allow
        }),
        action: action.parse().expect("a transfer action"),
    }
}

// --- participants and datasets ----------------------------------------------------------------

async fn participants_round_trip_in_id_order_and_ids_are_unique(store: Arc<dyn Store>) {
    for (n, id) in ["ab", "a_b", "a1", "a.b", "a-b"].into_iter().enumerate() {
        store.insert_participant(&participant(id), &rec(RecordKind::ParticipantRegistered, n as u64)).await.unwrap();
    }
    let err = store.insert_participant(&participant("ab"), &rec(RecordKind::ParticipantRegistered, 9)).await;
    assert!(matches!(err, Err(StoreError::AlreadyExists(_))), "{err:?}");

    assert_eq!(store.participant(&pid("a1")).await.unwrap(), Some(participant("a1")));
    assert_eq!(store.participant(&pid("nobody")).await.unwrap(), None);
    let ids: Vec<String> = store.participants().await.unwrap().iter().map(|p| p.id.as_str().to_owned()).collect();
    assert_eq!(ids, ["a-b", "a.b", "a1", "a_b", "ab"], "bytewise id order");

    let suspended = store
        .set_participant_status(&pid("a1"), ParticipantStatus::Suspended, &rec(RecordKind::ParticipantSuspended, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suspended.status, ParticipantStatus::Suspended);
    assert_eq!(store.participant(&pid("a1")).await.unwrap().unwrap().status, ParticipantStatus::Suspended);
    let none = store
        .set_participant_status(
            &pid("nobody"),
            ParticipantStatus::Suspended,
            &rec(RecordKind::ParticipantSuspended, 11),
        )
        .await
        .unwrap();
    assert_eq!(none, None);

    // One record per stored change; none for the duplicate or the unknown participant.
    let kinds: Vec<RecordKind> = store.records(0, 100).await.unwrap().iter().map(|r| r.kind).collect();
    assert_eq!(kinds.len(), 6);
    assert_eq!(kinds[5], RecordKind::ParticipantSuspended);
}

async fn datasets_page_by_id(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    store.insert_dataset(&dataset("ds-b", "owner"), &rec(RecordKind::DatasetRegistered, 4)).await.unwrap();
    store.insert_dataset(&dataset("ds-a", "owner"), &rec(RecordKind::DatasetRegistered, 5)).await.unwrap();
    let err = store.insert_dataset(&dataset("ds", "owner"), &rec(RecordKind::DatasetRegistered, 6)).await;
    assert!(matches!(err, Err(StoreError::AlreadyExists(_))), "{err:?}");

    assert_eq!(store.dataset(&did("ds-a")).await.unwrap(), Some(dataset("ds-a", "owner")));
    assert_eq!(store.dataset(&did("missing")).await.unwrap(), None);
    let page = |after: Option<&'static str>| {
        let store = store.clone();
        async move {
            let after = after.map(did);
            store
                .datasets(after.as_ref(), 2)
                .await
                .unwrap()
                .iter()
                .map(|d| d.id.as_str().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None).await, ["ds", "ds-a"]);
    assert_eq!(page(Some("ds-a")).await, ["ds-b"]);
    assert!(page(Some("ds-b")).await.is_empty());
}

// --- uploads and versions ---------------------------------------------------------------------

async fn an_upload_is_invisible_until_committed_as_the_next_version(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    stage(store.as_ref(), "u1").await;
    assert!(store.versions(&did("ds")).await.unwrap().is_empty());
    assert_eq!(store.version(&did("ds"), None).await.unwrap(), None);

    let before = store.records(0, 100).await.unwrap().len();
    let Committed::Created(v1) =
        store.commit_upload("u1", &version("k1"), &rec(RecordKind::VersionPublished, 6)).await.unwrap()
    else {
        panic!("a new key creates a version")
    };
    assert_eq!((v1.version, v1.rows, v1.chunks, v1.sha256), (1, 10, 2, [7; 32]));
    assert_eq!((v1.publisher.as_str(), v1.published_at, v1.idempotency_key.as_str()), ("owner", t(5), "k1"));
    let records = store.records(0, 100).await.unwrap();
    assert_eq!(records.len(), before + 1);
    let published: serde_json::Value = serde_json::from_str(&records[before].json).unwrap();
    assert_eq!(published["version"], 1, "the record names the assigned version");

    let chunks: Vec<StoredChunk> = store.chunks(&did("ds"), 1, 0).map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks, [chunk(0), chunk(1)]);
    let tail: Vec<StoredChunk> = store.chunks(&did("ds"), 1, 1).map(|c| c.unwrap()).collect().await;
    assert_eq!(tail, [chunk(1)]);

    stage(store.as_ref(), "u2").await;
    let Committed::Created(v2) =
        store.commit_upload("u2", &version("k2"), &rec(RecordKind::VersionPublished, 7)).await.unwrap()
    else {
        panic!("a new key creates a version")
    };
    assert_eq!(v2.version, 2);
    assert_eq!(store.version(&did("ds"), None).await.unwrap(), Some(v2.clone()));
    assert_eq!(store.version(&did("ds"), Some(1)).await.unwrap(), Some(v1.clone()));
    assert_eq!(store.version(&did("ds"), Some(3)).await.unwrap(), None);
    assert_eq!(store.versions(&did("ds")).await.unwrap(), [v2.clone(), v1.clone()]);
    assert_eq!(store.version_by_key(&did("ds"), "k1").await.unwrap(), Some(v1.clone()));
    assert_eq!(store.version_by_key(&did("ds"), "k9").await.unwrap(), None);

    // A retry with a used key discards its upload and writes no record.
    stage(store.as_ref(), "u3").await;
    let records = store.records(0, 100).await.unwrap().len();
    let again = store.commit_upload("u3", &version("k1"), &rec(RecordKind::VersionPublished, 8)).await.unwrap();
    assert_eq!(again, Committed::Existing(v1));
    assert_eq!(store.records(0, 100).await.unwrap().len(), records);
    assert_eq!(
        store.purge_abandoned_uploads(chrono::Utc::now() + chrono::Duration::minutes(1)).await.unwrap(),
        0,
        "the discarded upload is gone"
    );
}

async fn aborting_and_purging_remove_only_uncommitted_uploads(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    stage(store.as_ref(), "done").await;
    store.commit_upload("done", &version("k1"), &rec(RecordKind::VersionPublished, 6)).await.unwrap();
    stage(store.as_ref(), "cut").await;
    stage(store.as_ref(), "crashed-1").await;
    stage(store.as_ref(), "crashed-2").await;

    store.abort_upload("cut").await.unwrap();
    store.abort_upload("cut").await.unwrap();
    store.abort_upload("done").await.unwrap();
    assert_eq!(store.purge_abandoned_uploads(chrono::Utc::now() + chrono::Duration::minutes(1)).await.unwrap(), 2);
    assert_eq!(store.purge_abandoned_uploads(chrono::Utc::now() + chrono::Duration::minutes(1)).await.unwrap(), 0);
    let chunks: Vec<StoredChunk> = store.chunks(&did("ds"), 1, 0).map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.len(), 2, "a committed version keeps its chunks");
    // The purged id can be used again.
    stage(store.as_ref(), "cut").await;
}

async fn concurrent_commits_get_distinct_versions_and_one_version_per_key(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let upload = format!("u{i}");
            stage(store.as_ref(), &upload).await;
            store.commit_upload(&upload, &version(&format!("k{i}")), &rec(RecordKind::VersionPublished, i)).await
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Committed::Created(v) => numbers.push(v.version),
            other => panic!("distinct keys create versions: {other:?}"),
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());

    // The same key from several publishers at once: one version, the others see it.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let upload = format!("same{i}");
            stage(store.as_ref(), &upload).await;
            store.commit_upload(&upload, &version("same"), &rec(RecordKind::VersionPublished, 20 + i)).await
        }));
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Committed::Created(v) => created.push(v),
            Committed::Existing(v) => existing.push(v),
        }
    }
    assert_eq!(created.len(), 1, "exactly one commit creates the version");
    assert_eq!(created[0].version, 9);
    assert!(existing.iter().all(|v| *v == created[0]));
    assert_eq!(store.versions(&did("ds")).await.unwrap().len(), 9);
    assert_eq!(store.purge_abandoned_uploads(chrono::Utc::now() + chrono::Duration::minutes(1)).await.unwrap(), 0);
}

// --- grants -------------------------------------------------------------------------------------

async fn grants_change_only_from_the_expected_status(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    store.insert_participant(&participant("other"), &rec(RecordKind::ParticipantRegistered, 4)).await.unwrap();
    store.insert_grant(&grant("g1", GrantStatus::Pending, 10), &rec(RecordKind::GrantRequested, 5)).await.unwrap();
    store.insert_grant(&grant("g0", GrantStatus::Pending, 11), &rec(RecordKind::GrantRequested, 6)).await.unwrap();
    let dup = store.insert_grant(&grant("g1", GrantStatus::Pending, 12), &rec(RecordKind::GrantRequested, 7)).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists(_))), "{dup:?}");
    assert_eq!(store.grant("g1").await.unwrap(), Some(grant("g1", GrantStatus::Pending, 10)));
    assert_eq!(store.grant("nope").await.unwrap(), None);

    let mut approved = grant("g1", GrantStatus::Approved, 10);
    approved.decided_at = Some(t(20));
    store.update_grant(&approved, GrantStatus::Pending, &rec(RecordKind::GrantApproved, 8)).await.unwrap();
    assert_eq!(store.grant("g1").await.unwrap(), Some(approved.clone()));
    let stale = store.update_grant(&approved, GrantStatus::Pending, &rec(RecordKind::GrantApproved, 9)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");

    let ids = |gs: Vec<Grant>| gs.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(ids(store.grants_visible_to(&pid("consumer"), None).await.unwrap()), ["g1", "g0"]);
    assert_eq!(ids(store.grants_visible_to(&pid("owner"), Some(&did("ds"))).await.unwrap()), ["g1", "g0"]);
    assert!(store.grants_visible_to(&pid("other"), None).await.unwrap().is_empty());
    assert!(store.grants_visible_to(&pid("owner"), Some(&did("ds-x"))).await.unwrap().is_empty());
    assert_eq!(ids(store.grants_of(&pid("consumer"), &did("ds")).await.unwrap()), ["g1", "g0"]);
    assert!(store.grants_of(&pid("other"), &did("ds")).await.unwrap().is_empty());

    // Concurrent revocations of one approved grant: exactly one wins.
    let records = store.records(0, 1000).await.unwrap().len();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let revoked = grant("g1", GrantStatus::Revoked, 10);
            store.update_grant(&revoked, GrantStatus::Approved, &rec(RecordKind::GrantRevoked, 30 + i)).await
        }));
    }
    let mut wins = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(seq) => wins.push(seq),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a lost compare-and-set is a conflict: {e:?}"),
        }
    }
    assert_eq!(wins.len(), 1);
    let all = store.records(0, 1000).await.unwrap();
    assert_eq!(all.len(), records + 1, "only the winner's record is stored");
    assert_eq!(all.last().map(|r| (r.seq, r.kind)), Some((wins[0], RecordKind::GrantRevoked)), "its record's seq");
}

// --- the log ------------------------------------------------------------------------------------

async fn integrate_assigns_leaf_indexes_in_store_order_and_stores_the_tree(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await; // three queued records
    let seen = std::sync::Mutex::new(Vec::new());
    let new = [rec(RecordKind::TransferDecision, 10), rec(RecordKind::TransferCompleted, 11)];
    let seqs = store.integrate(&prepared(&new), &integrate_all(&seen)).await.unwrap();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1]);
    {
        let seen = seen.lock().unwrap();
        let (size, queued) = &seen[0];
        assert_eq!(*size, 0);
        assert_eq!(queued.len(), 5, "earlier records, then the new ones");
        assert!(queued.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!([queued[3].seq, queued[4].seq], [seqs[0], seqs[1]]);
        assert_eq!(queued[3].json, new[0].leaf().unwrap(), "the leaf is the canonical JSON");
    }

    let leaves = store.leaves(0, 100).await.unwrap();
    assert_eq!(leaves.iter().map(|r| r.leaf_index).collect::<Vec<_>>(), (0..5).map(Some).collect::<Vec<_>>());
    assert_eq!(leaves[4].seq, seqs[1]);
    assert_eq!(leaves[4].kind, RecordKind::TransferCompleted);
    assert_eq!(store.leaves(3, 1).await.unwrap()[0].seq, seqs[0]);
    assert!(store.records(0, 100).await.unwrap().iter().all(|r| r.leaf_index.is_some()));

    let cp = store.checkpoint(None).await.unwrap().unwrap();
    assert_eq!((cp.size, cp.root, cp.note.as_str(), cp.at), (5, [5; 32], "note 5", t(5)));
    assert_eq!(store.checkpoint(Some(5)).await.unwrap(), Some(cp.clone()));
    assert_eq!(store.checkpoint(Some(4)).await.unwrap(), None);
    let nodes = store.tree_nodes(&[(0, 0), (0, 4), (0, 5), (1, 0)]).await.unwrap();
    assert_eq!(nodes.len(), 2, "missing nodes are absent");
    assert_eq!(nodes[&(0, 4)], [4; 32]);
    assert!(store.tree_nodes(&[]).await.unwrap().is_empty());

    // Nothing queued: the integrator says so, nothing is stored.
    assert!(store.integrate(&[], &integrate_all(&seen)).await.unwrap().is_empty());
    assert_eq!(seen.lock().unwrap()[1], (5, Vec::new()));
    assert_eq!(store.checkpoints(0, 10).await.unwrap(), std::slice::from_ref(&cp));

    // The next batch extends the tree.
    store.insert_participant(&participant("late"), &rec(RecordKind::ParticipantRegistered, 12)).await.unwrap();
    let seqs2 =
        store.integrate(&prepared(&[rec(RecordKind::TransferDecision, 13)]), &integrate_all(&seen)).await.unwrap();
    assert_eq!(seen.lock().unwrap()[2].0, 5);
    let tail = store.leaves(5, 100).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].seq, seqs2[0]);
    let all = store.checkpoints(0, 10).await.unwrap();
    assert_eq!(all.iter().map(|c| c.size).collect::<Vec<_>>(), [5, 7]);
    assert_eq!(store.checkpoints(5, 10).await.unwrap().len(), 1);
    assert_eq!(store.checkpoints(0, 1).await.unwrap(), [cp]);
}

async fn a_failed_integration_stores_nothing(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    let fail = |_: &TreeHead, _: &[QueuedRecord]| -> Result<Option<Integration>, String> { Err("refused".into()) };
    let err = store.integrate(&prepared(&[rec(RecordKind::TransferDecision, 9)]), &fail).await;
    assert!(err.is_err());
    assert_eq!(store.records(0, 100).await.unwrap().len(), 3, "the new record was rolled back");
    assert_eq!(store.checkpoint(None).await.unwrap(), None);
    assert!(store.leaves(0, 10).await.unwrap().is_empty());
}

async fn concurrent_integrations_grow_one_tree(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let seen = std::sync::Mutex::new(Vec::new());
            for j in 0..4 {
                let batch = [rec(RecordKind::TransferDecision, i * 100 + j), rec(RecordKind::TransferCompleted, j)];
                store.integrate(&prepared(&batch), &integrate_all(&seen)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let leaves = store.leaves(0, 1000).await.unwrap();
    assert_eq!(leaves.len(), 64);
    assert_eq!(leaves.iter().map(|r| r.leaf_index.unwrap()).collect::<Vec<_>>(), (0..64).collect::<Vec<_>>());
    let seqs: HashSet<u64> = leaves.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 64);
    let sizes: Vec<u64> = store.checkpoints(0, 1000).await.unwrap().iter().map(|c| c.size).collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(sizes.last(), Some(&64));
    assert_eq!(store.tree_nodes(&(0..64).map(|i| (0, i)).collect::<Vec<_>>()).await.unwrap().len(), 64);
}

// --- oversight ----------------------------------------------------------------------------------

async fn approvals_are_revoked_once(store: Arc<dyn Store>) {
    store.insert_approval(&approval("a2", "owner", 2), &rec(RecordKind::ApprovalRecorded, 1)).await.unwrap();
    let a1_seq =
        store.insert_approval(&approval("a1", "owner", 3), &rec(RecordKind::ApprovalRecorded, 2)).await.unwrap();
    store.insert_approval(&approval("b1", "other", 1), &rec(RecordKind::ApprovalRecorded, 3)).await.unwrap();
    let dup = store.insert_approval(&approval("a1", "owner", 4), &rec(RecordKind::ApprovalRecorded, 4)).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists(_))), "{dup:?}");

    // The row names the record stored with it.
    let a1 = StoredApproval { record_seq: Some(a1_seq), ..approval("a1", "owner", 3) };
    assert_eq!(store.approval("a1").await.unwrap(), Some(a1));
    assert_eq!(store.approval("zz").await.unwrap(), None);
    let ids = |v: Vec<StoredApproval>| v.into_iter().map(|a| a.approval.id).collect::<Vec<_>>();
    assert_eq!(ids(store.approvals(Some("owner")).await.unwrap()), ["a2", "a1"]);
    assert_eq!(ids(store.approvals(None).await.unwrap()), ["b1", "a2", "a1"]);

    let by = pid("officer");
    let missing = store.revoke_approval("zz", &by, "why", t(9), &rec(RecordKind::ApprovalRevoked, 5)).await;
    assert_eq!(missing.unwrap(), None);
    let records = store.records(0, 100).await.unwrap().len();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let by = by.clone();
        tasks.push(tokio::spawn(async move {
            store.revoke_approval("a1", &by, "expired scope", t(9), &rec(RecordKind::ApprovalRevoked, 10 + i)).await
        }));
    }
    let mut revoked = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(a) => revoked.push(a.unwrap()),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a second revocation is a conflict: {e:?}"),
        }
    }
    assert_eq!(revoked.len(), 1, "exactly one revocation");
    let (a, seq) = &revoked[0];
    assert!(a.approval.revoked);
    assert_eq!((a.revoked_by.as_deref(), a.revoke_reason.as_deref()), (Some("officer"), Some("expired scope")));
    assert_eq!(store.approval("a1").await.unwrap().as_ref(), Some(a));
    let all = store.records(0, 100).await.unwrap();
    assert_eq!(all.len(), records + 1);
    assert_eq!(all.last().map(|r| (r.seq, r.kind)), Some((*seq, RecordKind::ApprovalRevoked)), "its record's seq");
}

async fn approvals_are_confirmed_once_and_never_once_revoked(store: Arc<dyn Store>) {
    store.insert_approval(&approval("a1", "owner", 1), &rec(RecordKind::ApprovalRecorded, 1)).await.unwrap();
    store.insert_approval(&approval("a2", "owner", 2), &rec(RecordKind::ApprovalRecorded, 2)).await.unwrap();
    let missing = store.confirm_approval("zz", &pid("checker"), t(5), &rec(RecordKind::ApprovalConfirmed, 3)).await;
    assert_eq!(missing.unwrap(), None);
    let records = store.records(0, 100).await.unwrap().len();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let by = pid(&format!("checker-{i}"));
            store.confirm_approval("a1", &by, t(9), &rec(RecordKind::ApprovalConfirmed, 10 + i)).await
        }));
    }
    let mut confirmed = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(a) => confirmed.push(a.unwrap()),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a second confirmation is a conflict: {e:?}"),
        }
    }
    assert_eq!(confirmed.len(), 1, "exactly one confirmation");
    let (a, seq) = &confirmed[0];
    assert!(a.confirmed_by.as_deref().is_some_and(|c| c.starts_with("checker-")));
    assert_eq!(a.confirmed_at, Some(t(9)));
    assert_eq!(store.approval("a1").await.unwrap().as_ref(), Some(a));
    let all = store.records(0, 100).await.unwrap();
    assert_eq!(all.len(), records + 1, "one record: the confirmation that won");
    assert_eq!(all.last().map(|r| (r.seq, r.kind)), Some((*seq, RecordKind::ApprovalConfirmed)));

    // A revoked approval is never confirmed afterwards.
    store
        .revoke_approval("a2", &pid("officer"), "withdrawn", t(6), &rec(RecordKind::ApprovalRevoked, 20))
        .await
        .unwrap();
    let late = store.confirm_approval("a2", &pid("checker"), t(7), &rec(RecordKind::ApprovalConfirmed, 21)).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(store.approval("a2").await.unwrap().and_then(|a| a.confirmed_by), None);
}

async fn holds_are_resolved_once(store: Arc<dyn Store>) {
    store.insert_hold(&hold("h1", 1), &rec(RecordKind::HoldQueued, 1)).await.unwrap();
    let dup = store.insert_hold(&hold("h1", 2), &rec(RecordKind::HoldQueued, 2)).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists(_))), "{dup:?}");
    assert_eq!(store.hold("h1").await.unwrap(), Some(hold("h1", 1)));
    assert_eq!(store.hold("h9").await.unwrap(), None);
    assert_eq!(store.holds_for("g1", "CAC_SA").await.unwrap(), vec![hold("h1", 1)]);
    assert_eq!(store.holds_for("g1", "SCC_FILING").await.unwrap(), vec![]);
    assert_eq!(
        store.holds(&HoldFilter { status: Some(HoldStatus::Open), ..Default::default() }).await.unwrap().len(),
        1
    );

    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = hold("h1", 1);
            h.status = if i % 2 == 0 { HoldStatus::Released } else { HoldStatus::Refused };
            h.resolved_by = Some(pid("officer"));
            h.resolved_at = Some(t(50 + i));
            h.reason = format!("decision {i}");
            h.approval_id = (i % 2 == 0).then(|| "a1".to_owned());
            store.resolve_hold(&h, &rec(RecordKind::HoldResolved, 10 + i as u64)).await.map(|seq| (h, seq))
        }));
    }
    let mut resolved = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok((h, seq)) => resolved.push((h, seq)),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("resolving a resolved hold is a conflict: {e:?}"),
        }
    }
    assert_eq!(resolved.len(), 1, "exactly one resolution");
    let last = store.records(0, 1000).await.unwrap().pop().map(|r| (r.seq, r.kind));
    assert_eq!(last, Some((resolved[0].1, RecordKind::HoldResolved)), "its record's seq");
    let resolved: Vec<Hold> = resolved.into_iter().map(|(h, _)| h).collect();
    assert_eq!(store.hold("h1").await.unwrap().as_ref(), Some(&resolved[0]));
    assert_eq!(store.holds_for("g1", "CAC_SA").await.unwrap(), resolved);
    assert!(store
        .holds(&HoldFilter { status: Some(HoldStatus::Open), ..Default::default() })
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.holds(&HoldFilter { status: Some(resolved[0].status), ..Default::default() }).await.unwrap().len(),
        1
    );
    store.insert_hold(&hold("h0", 0), &rec(RecordKind::HoldQueued, 30)).await.unwrap();
    let all: Vec<String> = store.holds(&HoldFilter::default()).await.unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(all, ["h0", "h1"], "oldest first");
}

// --- the export ledger --------------------------------------------------------------------------

fn person(n: u32) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[..4].copy_from_slice(&n.to_be_bytes());
    p
}

async fn count(
    store: &dyn Store,
    exporter: &str,
    year: i32,
    years_back: i32,
    nonsensitive: Option<&[[u8; 32]]>,
    sensitive: Option<&[[u8; 32]]>,
    keep: bool,
) -> LedgerCounts {
    let c = PersonCount { exporter, year, years_back, nonsensitive, sensitive };
    store.count_persons(&c, &move |_: &LedgerCounts| keep).await.unwrap()
}

async fn counted_persons_are_kept_or_rolled_back(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let ab = [person(1), person(2), person(2)];
    let bc = [person(2), person(3)];
    let first = count(s, "owner", 2025, 0, Some(&ab), None, true).await;
    assert_eq!(first, LedgerCounts { nonsensitive_before: 0, nonsensitive_new: 2, ..LedgerCounts::default() });
    let refused = count(s, "owner", 2025, 0, Some(&bc), Some(&bc), false).await;
    assert_eq!(
        refused,
        LedgerCounts {
            position: 1,
            nonsensitive_before: 2,
            nonsensitive_new: 1,
            sensitive_before: 0,
            sensitive_new: 2
        }
    );
    let kept = count(s, "owner", 2025, 0, Some(&bc), None, true).await;
    assert_eq!(
        kept,
        LedgerCounts { position: 1, nonsensitive_before: 2, nonsensitive_new: 1, ..LedgerCounts::default() },
        "a rolled-back count takes no position"
    );
    let after = count(s, "owner", 2025, 0, Some(&[]), Some(&[]), true).await;
    assert_eq!(
        after,
        LedgerCounts { position: 2, nonsensitive_before: 3, ..LedgerCounts::default() },
        "the refused add was rolled back"
    );
    // Other exporters and years are other ledgers.
    let other = count(s, "other", 2025, 0, Some(&ab), None, true).await;
    assert_eq!((other.position, other.nonsensitive_before), (0, 0));
    let next_year = count(s, "owner", 2026, 0, Some(&ab), None, true).await;
    assert_eq!((next_year.position, next_year.nonsensitive_before, next_year.nonsensitive_new), (3, 0, 2));
    let totals: Vec<(String, i32, String, u64)> =
        s.ledger_totals().await.unwrap().into_iter().map(|t| (t.exporter, t.year, t.bucket, t.persons)).collect();
    let total = |e: &str, y, b: &str, n| (e.to_owned(), y, b.to_owned(), n);
    assert_eq!(
        totals,
        [
            total("other", 2025, "N", 2),
            total("owner", 2025, "N", 3),
            total("owner", 2025, "S", 0),
            total("owner", 2026, "N", 2)
        ],
        "the rolled-back sensitive persons are not there"
    );
}

async fn the_ledger_window_counts_distinct_persons_across_years(store: Arc<dyn Store>) {
    let s = store.as_ref();
    count(s, "owner", 2024, 0, None, Some(&[person(1), person(2)]), true).await;
    count(s, "owner", 2025, 0, None, Some(&[person(2), person(3)]), true).await;
    // CN2022-style window: this year and the one before, distinct persons.
    let window = count(s, "owner", 2025, 1, None, Some(&[person(3), person(4), person(1)]), true).await;
    assert_eq!(window, LedgerCounts { position: 2, sensitive_before: 3, sensitive_new: 1, ..LedgerCounts::default() });
    let later = count(s, "owner", 2026, 1, None, Some(&[person(1)]), true).await;
    // 2025's persons are 1, 2, 3, 4: a person counted in an earlier year of the window is still
    // filed under the transfer's year.
    assert_eq!((later.sensitive_before, later.sensitive_new), (4, 0));
}

async fn concurrent_counting_loses_no_updates(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let persons: Vec<[u8; 32]> = (0..10).map(|j| person(i * 10 + j)).collect();
            count(store.as_ref(), "owner", 2025, 0, Some(&persons), None, true).await
        }));
    }
    let mut befores = Vec::new();
    for task in tasks {
        let c = task.await.unwrap();
        assert_eq!(c.nonsensitive_new, 10);
        // The position and the total are read under the same lock: entry k saw k entries.
        assert_eq!(c.nonsensitive_before, c.position * 10);
        befores.push(c.nonsensitive_before);
    }
    befores.sort_unstable();
    assert_eq!(befores, (0..16).map(|i| i * 10).collect::<Vec<u64>>(), "no two transfers read the same total");
    let total = count(store.as_ref(), "owner", 2025, 0, Some(&[]), None, true).await;
    assert_eq!((total.position, total.nonsensitive_before), (16, 160));
}

// --- listing ------------------------------------------------------------------------------------

async fn transfers_list_integrated_transfer_records_newest_first(store: Arc<dyn Store>) {
    let with = |kind, n, f: TransferFacets| {
        let mut r = rec(kind, n);
        r.facets = Some(f);
        r
    };
    let batch = [
        rec(RecordKind::ParticipantRegistered, 1),
        with(RecordKind::TransferDecision, 2, facets("t1", "consumer", false, "PASS")),
        with(RecordKind::TransferCompleted, 3, facets("t1", "consumer", false, "COMPLETED")),
        with(RecordKind::TransferDecision, 4, facets("t2", "abroad", true, "HOLD")),
        with(RecordKind::TransferDecision, 4, facets("t3", "abroad", true, "PASS")),
    ];
    let seen = std::sync::Mutex::new(Vec::new());
    let seqs = store.integrate(&prepared(&batch), &integrate_all(&seen)).await.unwrap();
    // Stored but not integrated: never listed.
    store
        .insert_hold(&hold("h1", 5), &with(RecordKind::TransferDecision, 6, facets("t4", "abroad", true, "HOLD")))
        .await
        .unwrap();

    let list = |f: TransferFilter, limit| {
        let store = store.clone();
        async move { store.transfers(&f, limit).await.unwrap() }
    };
    let all = list(TransferFilter::default(), 100).await;
    assert_eq!(all.iter().map(|t| t.seq).collect::<Vec<_>>(), [seqs[4], seqs[3], seqs[2], seqs[1]]);
    assert_eq!(all[0].facets, facets("t3", "abroad", true, "PASS"));
    assert_eq!((all[0].leaf_index, all[0].at, all[0].kind), (4, t(4), RecordKind::TransferDecision));
    assert_eq!(all[3].json, batch[1].leaf().unwrap());

    let exports = list(TransferFilter { export: Some(true), ..Default::default() }, 100).await;
    assert_eq!(exports.len(), 2);
    let held = list(
        TransferFilter {
            action: Some(crate::domain::record::TransferAction::Hold),
            recipient: Some("abroad".into()),
            ..Default::default()
        },
        100,
    )
    .await;
    assert_eq!(held.iter().map(|t| t.seq).collect::<Vec<_>>(), [seqs[3]]);
    let completions =
        list(TransferFilter { kind: Some(RecordKind::TransferCompleted), ..Default::default() }, 100).await;
    assert_eq!(completions.len(), 1);
    let own = list(TransferFilter { party: Some("consumer".into()), ..Default::default() }, 100).await;
    assert_eq!(own.len(), 2);
    assert_eq!(list(TransferFilter { party: Some("owner".into()), ..Default::default() }, 100).await.len(), 4);
    let window = list(TransferFilter { from: Some(t(3)), to: Some(t(4)), ..Default::default() }, 100).await;
    assert_eq!(window.iter().map(|t| t.seq).collect::<Vec<_>>(), [seqs[2]]);

    // Keyset pages: two, then the rest.
    let first = list(TransferFilter::default(), 2).await;
    let last = &first[1];
    let rest = list(TransferFilter { before: Some((last.at, last.seq)), ..Default::default() }, 10).await;
    assert_eq!(rest.iter().map(|t| t.seq).collect::<Vec<_>>(), [seqs[2], seqs[1]]);
    let dataset = list(
        TransferFilter {
            dataset: Some("ds".into()),
            region: Some("HK".into()),
            mechanism: Some("REQUIRES_SECURITY_ASSESSMENT".into()),
            exporter: Some("owner".into()),
            ..Default::default()
        },
        10,
    )
    .await;
    assert_eq!(dataset.len(), 2);

    let facets_by_leaf = store.leaf_facets(0, 3).await.unwrap();
    assert_eq!(facets_by_leaf.len(), 3);
    assert_eq!(facets_by_leaf[0], (0, None));
    assert_eq!(facets_by_leaf[1], (1, Some(facets("t1", "consumer", false, "PASS"))));
    assert_eq!(store.leaf_facets(4, u64::MAX).await.unwrap().len(), 1);
    assert!(store.leaf_facets(5, 9).await.unwrap().is_empty());
}

async fn records_page_in_store_order(store: Arc<dyn Store>) {
    catalog(store.as_ref()).await;
    let all = store.records(0, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all.iter().all(|r| r.leaf_index.is_none()));
    assert_eq!(all[2].kind, RecordKind::DatasetRegistered);
    let page = store.records(all[0].seq, 1).await.unwrap();
    assert_eq!(page, [all[1].clone()]);
}

async fn records_about_a_fact_are_its_latest_in_store_order(store: Arc<dyn Store>) {
    let suspended = |id: &str, reason: &str| {
        NewRecord::new(
            "admin",
            t(5),
            RecordBody::ParticipantSuspended(ParticipantSuspended { participant: pid(id), reason: reason.into() }),
        )
    };
    let batch = [
        suspended("consumer", "first"),
        rec(RecordKind::AccessRefused, 6),
        suspended("owner", "other"),
        suspended("consumer", "second"),
        suspended("consumer", "third"),
    ];
    let seen = std::sync::Mutex::new(Vec::new());
    store.integrate(&prepared(&batch), &integrate_all(&seen)).await.unwrap();
    let about = store.records_about("participant:consumer", 10).await.unwrap();
    let reasons: Vec<bool> =
        ["first", "second", "third"].iter().zip(&about).map(|(r, rec)| rec.json.contains(r)).collect();
    assert_eq!((about.len(), reasons), (3, vec![true; 3]), "oldest first, only this subject's");
    assert!(about.iter().all(|r| r.kind == RecordKind::ParticipantSuspended && r.leaf_index.is_some()));
    let latest = store.records_about("participant:consumer", 2).await.unwrap();
    assert_eq!(latest, about[1..], "the limit keeps the latest records");
    assert!(store.records_about("dataset:consumer", 10).await.unwrap().is_empty(), "subjects are typed");
}

fn released(cell: &str, value: f64) -> super::ReleasedCell {
    super::ReleasedCell { quantity: "COUNT".into(), cell: cell.into(), value }
}

fn release<'a>(
    table: &'a str,
    checked: u64,
    cells: &'a [super::ReleasedCell],
    ds: &'a DatasetId,
) -> super::TableRelease<'a> {
    super::TableRelease {
        table,
        scope: "consumer",
        recipient: "consumer",
        dataset: ds,
        version: 1,
        checked,
        cells,
        report: Some(r#"{"primary":[]}"#),
        at: t(5),
    }
}

async fn a_table_release_stores_its_cells_and_record_together_against_the_ledger_it_was_checked_with(
    store: Arc<dyn Store>,
) {
    let ds = did("ds");
    let first = [released(r#"{"district":["A"]}"#, 5.0), released("{}", 19.0)];
    let seq = store.record_table(&release("tb-1", 0, &first, &ds), &rec(RecordKind::TableDecision, 1)).await.unwrap();
    assert_eq!(store.records(seq - 1, 10).await.unwrap()[0].kind, RecordKind::TableDecision);
    let got = store.released("consumer", &ds, 1).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.contains(&first[0]) && got.contains(&first[1]));
    let report = store.table_report("tb-1").await.unwrap().unwrap();
    assert_eq!((report.dataset.as_str(), report.recipient.as_str()), ("ds", "consumer"));
    assert_eq!(report.report, r#"{"primary":[]}"#);
    // Other scopes, datasets and versions are other ledgers.
    assert!(store.released("other", &ds, 1).await.unwrap().is_empty());
    assert!(store.released("consumer", &ds, 2).await.unwrap().is_empty());

    // Checked against an older ledger: refused, and neither cells nor record are stored.
    let before = store.records(0, 100).await.unwrap().len();
    let stale = [released(r#"{"district":["B"]}"#, 6.0)];
    let err = store.record_table(&release("tb-2", 0, &stale, &ds), &rec(RecordKind::TableDecision, 2)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.released("consumer", &ds, 1).await.unwrap().len(), 2);
    assert_eq!(store.records(0, 100).await.unwrap().len(), before);
    assert_eq!(store.table_report("tb-2").await.unwrap(), None);

    // Against the current one: added; a cell released again is kept once.
    let again = [released(r#"{"district":["B"]}"#, 6.0), released("{}", 19.0)];
    store.record_table(&release("tb-3", 2, &again, &ds), &rec(RecordKind::TableDecision, 3)).await.unwrap();
    assert_eq!(store.released("consumer", &ds, 1).await.unwrap().len(), 3);
}

async fn concurrent_releases_to_one_scope_never_both_pass_the_same_ledger(store: Arc<dyn Store>) {
    let ds = did("ds");
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            let ds = ds.clone();
            tokio::spawn(async move {
                let cells = [released(&format!(r#"{{"district":["d{i}"]}}"#), 3.0)];
                let table = format!("tb-{i}");
                store.record_table(&release(&table, 0, &cells, &ds), &rec(RecordKind::TableDecision, i)).await
            })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => passed += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(passed, 1, "one table was protected against the empty ledger and released");
    assert_eq!(store.released("consumer", &ds, 1).await.unwrap().len(), 1);
}

async fn ledger_scopes_widen_and_reset(store: Arc<dyn Store>) {
    let consumer = pid("consumer");
    assert_eq!(store.ledger_scope(&consumer).await.unwrap(), None);
    store.set_ledger_scope(&consumer, "group:bth", &rec(RecordKind::LedgerScopeSet, 1)).await.unwrap();
    assert_eq!(store.ledger_scope(&consumer).await.unwrap().as_deref(), Some("group:bth"));
    store.set_ledger_scope(&consumer, "consumer", &rec(RecordKind::LedgerScopeSet, 2)).await.unwrap();
    assert_eq!(store.ledger_scope(&consumer).await.unwrap(), None);
}
