//! What the gateway does by itself: cut transfers reconciled, refused attempts recorded, stale
//! uploads purged — and recovery from a full disk without a restart.

use std::time::Duration as StdDuration;

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::ids::DatasetId;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::domain::record::{NewRecord, RecordKind, TransferAction, TransferFacets};
use bth_gateway::pb::{self, audit_client::AuditClient};
use bth_gateway::server;
use bth_gateway::service::{maintenance, Limits};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::harness::*;

async fn auditor(t: &TestGateway) -> AuditClient<Channel> {
    t.register("auditor", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Auditor], Level::G1)
        .await;
    AuditClient::new(t.channel("auditor").await)
}

/// Waits up to 8 s (health is probed every 2 s) for the gateway's overall health to be `want`.
async fn health_becomes(t: &TestGateway, want: ServingStatus) {
    let mut health = HealthClient::new(t.channel("admin").await);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(8);
    loop {
        let got = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status;
        if got == want as i32 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "health stayed {got}, expected {want:?}");
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
}

/// `tj-stats` publishes `survey` with `rows` rows; `tj-commerce` is granted two fields.
async fn shared(t: &TestGateway, rows: u32) -> (Client, Client) {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(rows, 0)]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["enterprise", "district"], pb::Approve::default()).await;
    (owner, consumer)
}

/// The decision record a pull leaves before its first row, as a crash would leave it alone.
fn decision_of_a_crashed_pull(t: &TestGateway, transfer: &str) -> NewRecord {
    use bth_gateway::service::Clock;
    let mut rec = NewRecord::untyped(
        RecordKind::TransferDecision,
        "tj-commerce",
        t.clock.now(),
        serde_json::json!({"transfer": transfer, "dataset": "survey", "version": 1, "outcome": "AUTHORISED"}),
    );
    rec.facets = Some(passed(transfer));
    rec
}

/// The facets of a passed domestic transfer of `survey` to `tj-commerce`.
fn passed(transfer: &str) -> TransferFacets {
    TransferFacets {
        transfer: transfer.into(),
        dataset: "survey".into(),
        recipient: "tj-commerce".into(),
        exporter: "tj-stats".into(),
        region: "CN-TJ".into(),
        export: false,
        mechanism: Some(bth_gateway::policy::Mechanism::Allow),
        action: TransferAction::Pass,
    }
}

#[tokio::test]
async fn a_pull_cut_by_a_stop_gets_one_interrupted_completion_and_completed_pulls_none() {
    let t = TestGateway::start().await;
    let (_owner, mut consumer) = shared(&t, 10).await;
    pull(&mut consumer, pull_req("survey")).await.unwrap();
    t.gw.log.append(decision_of_a_crashed_pull(&t, "t-crashed")).await.unwrap();
    // On a store shared by replicas, another replica may still stream it for a day.
    t.clock.advance(chrono::Duration::hours(25));

    // (The gateway's own round at start may be the one that finds it, on a loaded machine.)
    assert!(maintenance::reconcile_interrupted(&t.gw, None).await.unwrap() <= 1);
    assert_eq!(maintenance::reconcile_interrupted(&t.gw, None).await.unwrap(), 0, "reconciled once");
    let interrupted = t
        .count(
            "SELECT COUNT(*) FROM records WHERE kind = 'transfer.completed' AND action = 'INTERRUPTED' \
             AND transfer = 't-crashed' AND leaf_index IS NOT NULL",
        )
        .await;
    assert_eq!(interrupted, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE action = 'INTERRUPTED'").await, 1);
}

#[tokio::test]
async fn a_table_cut_by_a_stop_gets_one_interrupted_completion_and_previews_none() {
    use bth_gateway::service::Clock;
    let t = TestGateway::start().await;
    let (_owner, _consumer) = shared(&t, 10).await;
    for (table, preview) in [("tb-crashed", false), ("tb-preview", true)] {
        let mut rec = NewRecord::untyped(
            RecordKind::TableDecision,
            "tj-commerce",
            t.clock.now(),
            serde_json::json!({"table": table, "preview": preview, "dataset": "survey", "version": 1, "outcome": "AUTHORISED"}),
        );
        rec.facets = Some(passed(table));
        t.gw.log.append(rec).await.unwrap();
    }
    t.clock.advance(chrono::Duration::hours(25));
    assert!(maintenance::reconcile_interrupted(&t.gw, None).await.unwrap() <= 1);
    assert_eq!(maintenance::reconcile_interrupted(&t.gw, None).await.unwrap(), 0, "reconciled once");
    let interrupted =
        t.strings("SELECT json FROM records WHERE kind = 'table.completed' AND action = 'INTERRUPTED'").await;
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert!(interrupted[0].contains("\"table\":\"tb-crashed\""), "{}", interrupted[0]);
    assert!(interrupted[0].contains("\"version\":1"), "{}", interrupted[0]);
}

#[tokio::test]
async fn a_pull_still_streaming_is_not_taken_for_a_cut_one() {
    let t = TestGateway::start().await;
    let (_owner, mut consumer) = shared(&t, 400).await;
    let mut stream = consumer.exchange.pull(pull_req("survey")).await.unwrap().into_inner();
    stream.message().await.unwrap().expect("the header");
    stream.message().await.unwrap().expect("a batch");
    assert_eq!(maintenance::reconcile_interrupted(&t.gw, None).await.unwrap(), 0);
    drop(stream);
}

#[tokio::test]
async fn refused_pull_attempts_are_recorded_once_per_participant_dataset_and_reason() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(10, 0)]).await.unwrap();
    let mut prober = t.consumer("tj-prober", Level::G2).await;
    for _ in 0..50 {
        let e = pull(&mut prober, pull_req("survey")).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    for _ in 0..10 {
        let e = prober.exchange.preview_pull(pull_req("secret-payroll")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    maintenance::flush_refusals(&t.gw).await.unwrap();
    assert_eq!(maintenance::flush_refusals(&t.gw).await.unwrap(), 0, "nothing counted twice");

    let mut audit = auditor(&t).await;
    let listed = audit
        .list_transfers(pb::ListTransfersRequest { action: "DENIED".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .transfers;
    // One record per (participant, dataset, reason) and flush.
    assert_eq!(listed.len(), 2, "{listed:?}");
    let attempts = |dataset: &str| -> u64 {
        listed
            .iter()
            .filter(|r| r.dataset_id == dataset)
            .map(|r| {
                assert_eq!((r.recipient.as_str(), r.r#type.as_str()), ("tj-prober", "access.refused"));
                serde_json::from_str::<serde_json::Value>(&r.json).unwrap()["attempts"].as_u64().unwrap()
            })
            .sum()
    };
    assert_eq!(attempts("survey"), 50);
    assert_eq!(attempts("secret-payroll"), 10, "the probe of an unknown dataset");
}

#[tokio::test]
async fn stale_uploads_are_purged_by_maintenance_and_fresh_ones_kept() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    let dataset = DatasetId::parse("survey").unwrap();
    t.gw.store.begin_upload(&dataset, "u-left-by-a-crash").await.unwrap();
    let keep = maintenance::Settings { every: StdDuration::from_secs(60), stale_upload: StdDuration::from_secs(3600) };
    maintenance::round(&t.gw, &keep, None, true).await;
    assert_eq!(t.count("SELECT COUNT(*) FROM uploads WHERE id = 'u-left-by-a-crash'").await, 1);
    tokio::time::sleep(StdDuration::from_millis(5)).await;
    // A publish still streaming here is never purged, however old.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header("survey", "slow-publisher")).await.unwrap();
    tx.send(batch(survey_rows(9, 0))).await.unwrap();
    let mut publishing = owner.publishing.clone();
    let call = tokio::spawn(async move { publishing.publish(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    while t.count("SELECT COUNT(*) FROM uploads").await < 2 {
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(5)).await;
    let purge = maintenance::Settings { every: StdDuration::from_secs(60), stale_upload: StdDuration::ZERO };
    maintenance::round(&t.gw, &purge, None, true).await;
    assert_eq!(t.count("SELECT COUNT(*) FROM uploads WHERE id = 'u-left-by-a-crash'").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM uploads").await, 1, "the live upload is kept");
    tx.send(batch(survey_rows(3, 9))).await.unwrap();
    drop(tx);
    let published = call.await.unwrap().unwrap().into_inner();
    assert_eq!(published.version.unwrap().rows, 12);
}

/// A small file system of its own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB; `None` (after saying why) where mounting is not allowed —
    /// except under CI, which runs as root and must run this test.
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(std::env::var_os("CI").is_none(), "CI must be able to mount a tmpfs (it runs as root)");
            eprintln!("skipped: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(SmallDisk { dir })
    }

    /// Writes a file until the file system is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_gateway_recovers_without_a_restart() {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: it is about the SQLite file on a full disk");
        return;
    }
    let Some(disk) = SmallDisk::mount(16) else { return };
    let settings = server::Settings { max_message_bytes: MAX_MESSAGE, ..Default::default() };
    let t =
        TestGateway::start_in(Limits { chunk_rows: 64, ..Limits::default() }, settings, Some(disk.dir.path())).await;
    let (mut owner, mut consumer) = shared(&t, 200).await;

    let filler = disk.fill();
    let mut refused = 0;
    for i in 0..20 {
        let big = publish(&mut owner, "survey", &format!("full-{i}"), vec![survey_rows(2000, 0)]).await;
        let small = owner.catalog.register_dataset(survey(&format!("during-{i}"))).await;
        for r in [big.err(), small.err()].into_iter().flatten() {
            assert!(
                matches!(r.code(), Code::Unavailable | Code::ResourceExhausted),
                "a full disk is UNAVAILABLE, not {:?}: {}",
                r.code(),
                r.message()
            );
            refused += 1;
        }
    }
    assert!(refused > 0, "the disk never filled");
    health_becomes(&t, ServingStatus::NotServing).await;

    std::fs::remove_file(filler).unwrap();
    // Space is back: writes, pulls and the log work again, without a restart.
    let deadline = std::time::Instant::now() + StdDuration::from_secs(15);
    loop {
        match owner.catalog.register_dataset(survey("after")).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(StdDuration::from_millis(200)).await;
            }
            Err(e) => panic!("no recovery after the disk was freed: {e}"),
        }
    }
    publish(&mut owner, "survey", "after-the-disk-was-freed", vec![survey_rows(50, 0)]).await.unwrap();
    let pulled = pull(&mut consumer, pull_req("survey")).await.unwrap();
    assert_eq!(pulled.rows(), 50);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while t.count("SELECT COUNT(*) FROM records WHERE leaf_index IS NULL").await > 0 {
        assert!(std::time::Instant::now() < deadline, "committed records were never integrated");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert!(t.gw.log.failing_for().is_none());
    health_becomes(&t, ServingStatus::Serving).await;
    drop(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_log_on_a_full_disk_never_fails_a_call() {
    let Some(disk) = SmallDisk::mount(1) else { return };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("gw");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bth-gateway"))
            .args(args)
            .env_remove("BTH_DATABASE_URL")
            .current_dir(root.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["init", "gw"]);
    let d = dir.to_str().unwrap();
    run(&["certs", "issue", "tj-stats", "--dir", d]);
    run(&[
        "participants",
        "add",
        "tj-stats",
        "--dir",
        d,
        "--name",
        "Tianjin Statistics Bureau",
        "--kind",
        "STATE_ORGAN",
        "--recipient-type",
        "STATISTICS_AGENCY",
        "--region",
        "CN-TJ",
        "--roles",
        "publisher",
        "--clearance",
        "G4",
    ]);
    let filler = disk.fill();
    let log = std::fs::File::options().create(true).append(true).open(disk.dir.path().join("server.log")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_bth-gateway"))
        .args(["serve", "--dir", d, "--listen", &format!("127.0.0.1:{port}"), "--log", "debug"])
        .env_remove("BTH_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stderr(log)
        .spawn()
        .unwrap();
    let channel = serve_channel(&dir, port, "tj-stats").await;
    let mut catalog = bth_gateway::pb::catalog_client::CatalogClient::new(channel.clone());
    for i in 0..20 {
        catalog.register_dataset(survey(&format!("survey-{i}"))).await.expect("a call succeeds whatever the log disk");
        catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap();
    }
    assert!(server.try_wait().unwrap().is_none(), "the gateway died writing its log to a full disk");
    let _ = server.kill();
    let _ = server.wait();
    drop(filler);
}

#[tokio::test]
async fn a_flood_of_distinct_refusals_is_counted_per_participant_and_never_filed_under_another() {
    let t = TestGateway::start().await;
    let mut prober = t.consumer("tj-prober", Level::G2).await;
    for i in 0..(maintenance::MAX_REFUSAL_KEYS_PER_PARTICIPANT + 10) {
        let e = pull(&mut prober, pull_req(&format!("guess-{i}"))).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    // A participant without the consumer role probing is counted too.
    let mut publisher = t.publisher("tj-stats").await;
    let e = pull(&mut publisher, pull_req("guess-0")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    maintenance::flush_refusals(&t.gw).await.unwrap();
    let records = t.strings("SELECT json FROM records WHERE kind = 'access.refused' AND recipient = 'tj-prober'").await;
    let parsed: Vec<serde_json::Value> = records.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    let attempts: u64 = parsed.iter().map(|r| r["attempts"].as_u64().unwrap()).sum();
    assert_eq!(attempts, maintenance::MAX_REFUSAL_KEYS_PER_PARTICIPANT as u64 + 10, "every attempt counted once");
    let overflow: Vec<_> = parsed.iter().filter(|r| r["dataset"] == "").collect();
    assert_eq!(overflow.len(), 1, "{records:?}");
    assert_eq!(overflow[0]["reason"], "other refusals of this participant (too many distinct)");
    assert!(parsed.iter().all(|r| r["participant"] == "tj-prober"));
    assert_eq!(records.len(), maintenance::MAX_REFUSAL_KEYS_PER_PARTICIPANT + 1, "bounded");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM records WHERE kind = 'access.refused' AND recipient = 'tj-stats'").await,
        1
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'access.refused' AND recipient = ''").await, 0);
}
