//! SIGKILL loop: a real `bth-gateway serve` process killed at random moments while publishes,
//! pulls and approvals are under way, restarted, and checked for the four invariants:
//!
//! 1. no partial version (every version has all its chunks and rows);
//! 2. no acknowledged write lost (every publish and approval a client saw succeed is there);
//! 3. every delivered row is under a logged decision (a pull that received its header has an
//!    integrated decision record);
//! 4. every checkpoint is consistent with all earlier ones (`audit verify --trusted` with the
//!    checkpoint saved after the previous run).
//!
//! `BTH_KILL_RUNS` sets the number of runs (default 50, as CI runs it).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bth_gateway::pb::catalog_client::CatalogClient;
use bth_gateway::pb::PullRequest;
use bth_gateway::pb::{self, exchange_client::ExchangeClient, oversight_client::OversightClient};
use sqlx::{Connection, SqliteConnection};
use tonic::transport::Channel;

use crate::harness::{granted, serve_channel, survey, survey_rows, Client};

fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bth-gateway"));
    c.env("BTH_LOG", "warn").env("NO_COLOR", "1").env_remove("BTH_DATABASE_URL").current_dir(dir);
    c
}

fn cli(dir: &Path, args: &[&str]) {
    let out = bin(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `serve` process; killed with SIGKILL when dropped.
struct Serving(Child);

impl Serving {
    fn start(dir: &Path, port: u16) -> Serving {
        let child = bin(dir)
            .args(["serve", "--dir", ".", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Serving(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the clients saw succeed before a kill.
#[derive(Debug, Default)]
struct Acknowledged {
    publishes: Vec<String>,
    approvals: Vec<String>,
    pulls_started: Vec<String>,
}

/// A small deterministic generator (the run number is the seed): reproducible failures.
fn mix(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_at_random_moments_keeps_its_four_invariants() {
    if crate::harness::on_postgres() {
        eprintln!("skipped on PostgreSQL: the kill loop runs once, on the embedded default");
        return;
    }
    let runs: u64 = std::env::var("BTH_KILL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("gw");
    let dir = dir.as_path();
    cli(root.path(), &["init", "gw"]);
    for (id, kind, ty, roles, clearance) in [
        ("tj-stats", "STATE_ORGAN", "STATISTICS_AGENCY", "publisher", "G4"),
        ("tj-commerce", "STATE_ORGAN", "GOV_DEPT", "consumer", "G2"),
        ("sec-officer", "STATE_ORGAN", "GOV_DEPT", "officer", "G2"),
    ] {
        cli(dir, &["certs", "issue", id, "--dir", "."]);
        cli(
            dir,
            &[
                "participants",
                "add",
                id,
                "--dir",
                ".",
                "--name",
                id,
                "--kind",
                kind,
                "--recipient-type",
                ty,
                "--region",
                "CN-TJ",
                "--roles",
                roles,
                "--clearance",
                clearance,
            ],
        );
    }
    // The dataset, a first version and a grant, on a gateway not killed.
    let port = free_port();
    let mut serving = Serving::start(dir, port);
    let owner = serve_channel(dir, port, "tj-stats").await;
    CatalogClient::new(owner.clone()).register_dataset(survey("survey")).await.unwrap();
    publish(&owner, "v0", 40).await.unwrap();
    let mut consumer = Client::from_channel(serve_channel(dir, port, "tj-commerce").await);
    granted(
        &mut Client::from_channel(owner),
        &mut consumer,
        "survey",
        &["enterprise", "district"],
        pb::Approve::default(),
    )
    .await;
    serving.kill();

    let saved = root.path().join("checkpoint.note");
    let mut acked = Acknowledged::default();
    for run in 0..runs {
        let port = free_port();
        let mut serving = Serving::start(dir, port);
        let (owner, consumer, officer) = tokio::join!(
            serve_channel(dir, port, "tj-stats"),
            serve_channel(dir, port, "tj-commerce"),
            serve_channel(dir, port, "sec-officer")
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Acknowledged::default()));
        let work = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let key = format!("run-{run}");
                let rows = 500 + (mix(run) % 20_000) as u32;
                let publishing = async {
                    if publish(&owner, &key, rows).await.is_ok() {
                        seen.lock().unwrap().publishes.push(key.clone());
                    }
                };
                let pulling = async {
                    let mut c = ExchangeClient::new(consumer.clone());
                    for _ in 0..3 {
                        if let Ok(resp) =
                            c.pull(PullRequest { dataset_id: "survey".into(), ..Default::default() }).await
                        {
                            let mut s = resp.into_inner();
                            while let Ok(Some(m)) = s.message().await {
                                if let Some(pb::pull_response::Msg::Header(h)) = m.msg {
                                    seen.lock().unwrap().pulls_started.push(h.transfer_id);
                                }
                            }
                        }
                    }
                };
                let approving = async {
                    let id = format!("a-{run}");
                    let req = pb::RecordApprovalRequest {
                        id: id.clone(),
                        r#type: "CAC_SA".into(),
                        exporter: "tj-stats".into(),
                        reference: format!("CAC-{run}"),
                        issued: "2026-01-01".into(),
                        ..Default::default()
                    };
                    if OversightClient::new(officer).record_approval(req).await.is_ok() {
                        seen.lock().unwrap().approvals.push(id);
                    }
                };
                tokio::join!(publishing, pulling, approving);
            })
        };
        tokio::time::sleep(Duration::from_millis(1 + mix(run + 1000) % 80)).await;
        serving.kill();
        let _ = work.await;
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        acked.publishes.extend(seen.publishes);
        acked.approvals.extend(seen.approvals);
        acked.pulls_started.extend(seen.pulls_started);

        // Invariant 4: the log, as the killed process left it, is consistent with every
        // checkpoint saved before.
        let mut verify = vec!["audit", "verify", "--dir", "."];
        let saved_arg = saved.to_str().unwrap();
        if saved.exists() {
            verify.extend(["--trusted", saved_arg]);
        }
        verify.extend(["--save", saved_arg]);
        cli(dir, &verify);
    }

    // One more start: the gateway reconciles and integrates what the last kill left.
    let port = free_port();
    let serving = Serving::start(dir, port);
    serve_channel(dir, port, "tj-stats").await;
    let url = format!("sqlite:{}", dir.join("data/gateway.db").display());
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    // 1. No partial version.
    let partial: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM versions v WHERE v.chunks != (SELECT COUNT(*) FROM chunks c WHERE c.upload_id = v.upload_id)
            OR v.rows != (SELECT COALESCE(SUM(c.rows), 0) FROM chunks c WHERE c.upload_id = v.upload_id)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(partial, 0, "a version is missing chunks or rows");
    // 2. No acknowledged write lost.
    for key in &acked.publishes {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM versions WHERE idempotency_key = ?")
            .bind(key)
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(n, 1, "acknowledged publish {key} lost");
    }
    for id in &acked.approvals {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE id = ?")
            .bind(id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(n, 1, "acknowledged approval {id} lost");
    }
    // 3. Every pull that delivered anything is under an integrated decision.
    for transfer in &acked.pulls_started {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM records WHERE kind = 'transfer.decision' AND transfer = ? AND leaf_index IS NOT NULL",
        )
        .bind(transfer)
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(n, 1, "pull {transfer} delivered without an integrated decision");
    }
    eprintln!(
        "{runs} kills: {} publishes, {} approvals, {} pulls acknowledged",
        acked.publishes.len(),
        acked.approvals.len(),
        acked.pulls_started.len()
    );
    assert!(!acked.pulls_started.is_empty() && !acked.publishes.is_empty(), "the kills never let work through");
    drop(serving);
}

async fn publish(owner: &Channel, key: &str, rows: u32) -> Result<(), tonic::Status> {
    let batches = (0..rows.div_ceil(1000)).map(|b| survey_rows((rows - b * 1000).min(1000), b * 1000)).collect();
    crate::harness::publish(&mut Client::from_channel(owner.clone()), "survey", key, batches).await.map(drop)
}
