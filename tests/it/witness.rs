//! `bth-gateway witness` against the C2SP tlog-witness spec over real HTTPS: every status code,
//! the state persisted across a restart, a fork refused and kept as evidence, and the race of
//! two requests from the same old size.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bth_gateway::translog::cosignature::{with_signature, CosignatureVerifier};
use bth_gateway::translog::merkle::{consistency_proof, MemoryTree};
use bth_gateway::translog::note::{Checkpoint, Signer};
use bth_gateway::translog::witness::format_add_checkpoint;
use bth_gateway::witness::client::{Answer, WitnessClient};
use bth_gateway::witness::WitnessConfig;
use http::Method;
use tokio::sync::oneshot;

const ORIGIN: &str = "test.example/witnessed-log";

/// A witness serving on port 0 from its own directory.
pub struct TestWitness {
    pub dir: PathBuf,
    pub url: String,
    pub key: CosignatureVerifier,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestWitness {
    /// A new witness in `dir` (created with `witness init`) following `logs`.
    pub async fn create(dir: &Path, name: &str, logs: &[String]) -> TestWitness {
        let key = bth_gateway::cli::witness::init(dir, name, logs).unwrap();
        TestWitness::start(dir, key.parse().unwrap()).await
    }

    /// Starts the witness of `dir` (again).
    pub async fn start(dir: &Path, key: CosignatureVerifier) -> TestWitness {
        TestWitness::start_on(dir, key, 0).await
    }

    /// Starts the witness of `dir` on `port` (0: any).
    pub async fn start_on(dir: &Path, key: CosignatureVerifier, port: u16) -> TestWitness {
        let config = WitnessConfig::load(dir).unwrap();
        let (witness, tls) = bth_gateway::cli::witness::open(&config).await.unwrap();
        assert_eq!(witness.verifier_key(), key.verifier_key());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bth_gateway::witness::serve(listener, Arc::new(witness), tls, async move {
            let _ = stopped.await;
        }));
        TestWitness { dir: dir.to_owned(), url, key, stop: Some(stop), task: Some(task) }
    }

    pub fn ca(&self) -> String {
        std::fs::read_to_string(self.dir.join("certs/ca.pem")).unwrap()
    }

    pub fn client(&self) -> WitnessClient {
        WitnessClient::new(&self.url, &self.ca(), Duration::from_secs(10)).unwrap()
    }

    /// Stops the server and waits for it (its database closes with it).
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

fn log_signer() -> Signer {
    Signer::from_seed(ORIGIN, &[42u8; 32]).unwrap()
}

fn tree(n: u64, salt: &str) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(format!("{salt}-{i}").as_bytes());
    }
    t
}

fn note(signer: &Signer, t: &MemoryTree) -> String {
    signer.sign_checkpoint(&Checkpoint { origin: signer.name().to_owned(), size: t.size(), root: t.root() })
}

fn body(old: u64, t: &MemoryTree) -> String {
    let proof = if old == 0 || old >= t.size() { Vec::new() } else { consistency_proof(old, t.size(), t).unwrap() };
    format_add_checkpoint(old, &proof, &note(&log_signer(), t))
}

async fn post(c: &WitnessClient, body: &str) -> Answer {
    c.add_checkpoint(body).await.unwrap()
}

fn assert_status(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{a:?}");
}

#[tokio::test]
async fn the_witness_answers_every_status_code_of_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let w = TestWitness::create(dir.path(), "witness.example/w1", &[log_signer().verifier_key()]).await;
    let c = w.client();

    // 200: a first checkpoint from old 0; the answer is a cosignature line over it, timestamped.
    let t3 = tree(3, "a");
    let a = post(&c, &body(0, &t3)).await;
    assert_status(&a, 200);
    assert!(a.body.starts_with("\u{2014} witness.example/w1 ") && a.body.ends_with('\n'), "{a:?}");
    let cosigned = with_signature(&note(&log_signer(), &t3), &a.body).unwrap();
    let (cp, time) = w.key.verify(&cosigned).unwrap();
    assert_eq!((cp.size, cp.root), (3, t3.root()));
    let now = chrono::Utc::now().timestamp() as u64;
    assert!(time <= now && time + 60 > now, "{time} vs {now}");

    // 409 with text/x.tlog.size: old does not match (the client assumed nothing was cosigned).
    let t5 = tree(5, "a");
    let a = post(&c, &body(0, &t5)).await;
    assert_status(&a, 409);
    assert_eq!(a.content_type.as_deref(), Some("text/x.tlog.size"));
    assert_eq!(a.body, "3\n");
    // 200 from the size it named, with a consistency proof.
    assert_status(&post(&c, &body(3, &t5)).await, 200);
    // The same checkpoint again: 200 (no proof).
    assert_status(&post(&c, &body(5, &t5)).await, 200);

    // 404: a log the witness does not follow.
    let stranger = Signer::from_seed("stranger.example/log", &[1u8; 32]).unwrap();
    let t7 = tree(7, "a");
    let a = post(&c, &format_add_checkpoint(5, &consistency_proof(5, 7, &t7).unwrap(), &note(&stranger, &t7))).await;
    assert_status(&a, 404);
    // 403: the right origin signed by another key.
    let impostor = Signer::from_seed(ORIGIN, &[43u8; 32]).unwrap();
    let a = post(&c, &format_add_checkpoint(5, &consistency_proof(5, 7, &t7).unwrap(), &note(&impostor, &t7))).await;
    assert_status(&a, 403);
    // 403: the right key, a body altered after signing.
    let altered = body(5, &t7).replacen("\n7\n", "\n8\n", 1);
    assert_status(&post(&c, &altered).await, 403);

    // 400: malformed bodies, and old above the checkpoint's size.
    for bad in ["", "old 5\n", "old 05\n\nx\n", "nonsense\n\n", &body(5, &t7).replacen("old 5", "old five", 1)] {
        assert_status(&post(&c, bad).await, 400);
    }
    assert_status(&post(&c, &format_add_checkpoint(9, &[], &note(&log_signer(), &t7))).await, 400);

    // 422: a consistency proof that does not verify.
    let mut proof = consistency_proof(5, 7, &t7).unwrap();
    proof[0][0] ^= 1;
    assert_status(&post(&c, &format_add_checkpoint(5, &proof, &note(&log_signer(), &t7))).await, 422);

    // 405 for another method (with Allow), 404 for another path, 413 for a huge body.
    let a = c.request(Method::GET, "/add-checkpoint", "").await.unwrap();
    assert_status(&a, 405);
    let a = c.request(Method::POST, "/checkpoint", &body(5, &t7)).await.unwrap();
    assert_status(&a, 404);
    assert_status(&post(&c, &"x".repeat(100 * 1024)).await, 413);

    // None of the refusals moved the state: the proof from 5 still works.
    assert_status(&post(&c, &body(5, &t7)).await, 200);
    w.stop().await;
}

#[tokio::test]
async fn the_state_survives_a_restart_and_a_fork_is_refused_and_kept_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let w = TestWitness::create(dir.path(), "witness.example/w2", &[log_signer().verifier_key()]).await;
    let key = w.key.clone();
    assert_status(&post(&w.client(), &body(0, &tree(6, "a"))).await, 200);
    w.stop().await;

    let w = TestWitness::start(dir.path(), key).await;
    let c = w.client();
    // After the restart the witness still holds size 6.
    let a = post(&c, &body(0, &tree(8, "a"))).await;
    assert_eq!((a.status, a.body.as_str()), (409, "6\n"));
    // A fork: another history signed by the log's own key. From the witnessed size its proof
    // cannot verify (422); a fork of the same size is a conflict (409); a truncation is 409 too.
    let fork = tree(8, "b");
    assert_status(&post(&c, &body(6, &fork)).await, 422);
    let a = post(&c, &body(6, &tree(6, "b"))).await;
    assert_eq!((a.status, a.body.as_str()), (409, "6\n"));
    let a = post(&c, &body(4, &tree(4, "a"))).await;
    assert_eq!((a.status, a.body.as_str()), (409, "6\n"));
    // The honest log goes on.
    assert_status(&post(&c, &body(6, &tree(8, "a"))).await, 200);
    w.stop().await;

    // The two signed contradictions are kept as evidence in the witness's database.
    let db =
        sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.path().join("data/witness.db").display())).await.unwrap();
    let statuses: Vec<i64> =
        sqlx::query_scalar("SELECT status FROM evidence ORDER BY id").fetch_all(&db).await.unwrap();
    assert_eq!(statuses, vec![422, 409]);
}

#[tokio::test]
async fn of_two_requests_racing_from_the_same_old_size_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let w = TestWitness::create(dir.path(), "witness.example/w3", &[log_signer().verifier_key()]).await;
    let (a, b) = (w.client(), w.client());
    let mut size = 1;
    assert_status(&post(&a, &body(0, &tree(1, "a"))).await, 200);
    for _ in 0..40 {
        // Both start from the witness's size; each brings a different, valid extension.
        let (ta, tb) = (tree(size + 1, "a"), tree(size + 2, "a"));
        let (ba, bb) = (body(size, &ta), body(size, &tb));
        let (ra, rb) = tokio::join!(post(&a, &ba), post(&b, &bb));
        let won: Vec<u64> =
            [(&ra, ta.size()), (&rb, tb.size())].iter().filter(|(r, _)| r.status == 200).map(|(_, s)| *s).collect();
        assert_eq!(won.len(), 1, "exactly one wins: {ra:?} {rb:?}");
        let lost = if ra.status == 200 { &rb } else { &ra };
        assert_eq!(
            (lost.status, lost.body.clone()),
            (409, format!("{}\n", won[0])),
            "the loser learns the winner's size"
        );
        size = won[0];
    }
    w.stop().await;
}

#[tokio::test]
async fn init_keeps_the_key_private_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    bth_gateway::cli::witness::init(dir.path(), "witness.example/w4", &[]).unwrap();
    let mode = std::fs::metadata(dir.path().join("secrets/witness.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(dir.path().join("certs/server.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let err = bth_gateway::cli::witness::init(dir.path(), "witness.example/w4", &[]).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    let other = tempfile::tempdir().unwrap();
    let err = bth_gateway::cli::witness::init(other.path(), "bad name", &[]).unwrap_err();
    assert!(err.to_string().contains("--name"), "{err}");
    let err = bth_gateway::cli::witness::init(other.path(), "w", &["not-a-key".into()]).unwrap_err();
    assert!(err.to_string().contains("--log"), "{err}");
    // A key readable by others is refused when the witness starts.
    std::fs::set_permissions(dir.path().join("secrets/witness.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = WitnessConfig::load(dir.path()).unwrap().cosigner().unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

// ---- The gateway's side: the feeder, the policy, `audit verify --witness`.

use crate::harness::{granted, publish, pull, pull_req, survey, survey_rows, Client, TestGateway, LOG_ORIGIN};
use bth_gateway::cli::audit::{AuditCommand, SourceArgs, VerifyArgs};
use bth_gateway::domain::classification::Level;
use bth_gateway::log::witnesses::{WitnessEndpoint, WitnessMode, WitnessSettings};
use bth_gateway::pb;

fn gateway_log_key() -> String {
    // The harness's log key.
    Signer::from_seed(LOG_ORIGIN, &[1u8; 32]).unwrap().verifier_key()
}

fn settings_for(w: &TestWitness, mode: WitnessMode, max_unwitnessed_secs: u64) -> WitnessSettings {
    WitnessSettings {
        witnesses: vec![WitnessEndpoint {
            url: w.url.clone(),
            key: w.key.verifier_key(),
            ca: w.dir.join("certs/ca.pem"),
        }],
        quorum: 1,
        max_unwitnessed_secs,
        mode,
        retry_secs: 1,
        timeout_secs: 5,
    }
}

/// Waits until the gateway's latest checkpoint carries `key`'s cosignature: its size.
async fn cosigned_latest(t: &TestGateway, key: &CosignatureVerifier, above: u64) -> u64 {
    for _ in 0..200 {
        if let Some(c) = t.gw.store.checkpoint(None).await.unwrap() {
            if c.size > above {
                if let Ok((cp, _)) = key.verify(&c.note) {
                    assert_eq!(cp.size, c.size);
                    return c.size;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the latest checkpoint above {above} was never cosigned");
}

async fn audit_verify(db: &str, witnesses: Vec<String>, trusted: Option<PathBuf>) -> i32 {
    let args = VerifyArgs {
        source: SourceArgs {
            db: Some(PathBuf::from(db.strip_prefix("sqlite:").unwrap())),
            dir: None,
            server: None,
            ca: None,
            cert: None,
            key: None,
        },
        verifier_key: Some(gateway_log_key()),
        trusted,
        save: None,
        witnesses,
        quorum: None,
    };
    bth_gateway::cli::audit::run(AuditCommand::Verify(args)).await.unwrap()
}

async fn published_and_granted(t: &TestGateway) -> Client {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(10, 0)]).await.unwrap();
    let mut c = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut c, "survey", &["enterprise", "district"], pb::Approve::default()).await;
    c
}

#[tokio::test]
async fn the_gateway_feeds_its_witness_across_witness_restarts_and_audit_verify_checks_the_cosignatures() {
    let wdir = tempfile::tempdir().unwrap();
    let w = TestWitness::create(wdir.path(), "witness.example/feed", &[gateway_log_key()]).await;
    let key = w.key.clone();
    let port: u16 = w.url.rsplit(':').next().unwrap().parse().unwrap();
    let t = TestGateway::start_witnessed(settings_for(&w, WitnessMode::FailClosed, 3600)).await;
    let first = cosigned_latest(&t, &key, 0).await;

    // The witness goes away; the log grows meanwhile.
    w.stop().await;
    let mut alice = published_and_granted(&t).await;
    pull(&mut alice, pull_req("survey")).await.unwrap();
    let grown = t.gw.store.checkpoint(None).await.unwrap().unwrap().size;
    assert!(grown > first);
    assert!(key.verify(&t.gw.store.checkpoint(None).await.unwrap().unwrap().note).is_err(), "not yet cosigned");

    // Back on the same port with the same state: the feeder catches up with a consistency proof.
    let w = TestWitness::start_on(wdir.path(), key.clone(), port).await;
    let second = cosigned_latest(&t, &key, first).await;
    assert!(second >= grown);
    // The feeder stores the cosignature, then notes the size it witnessed: wait for the latter.
    let witnesses = t.gw.witnesses.as_ref().unwrap();
    for _ in 0..100 {
        if witnesses.witnessed_size() == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(witnesses.witnessed_size(), second);

    let Some(db) = t.sqlite_url("audit verify --witness").map(str::to_owned) else { return };
    // The cosignatures verify; another witness's key finds none (fail closed); a forged line fails.
    assert_eq!(audit_verify(&db, vec![key.verifier_key()], None).await, 0);
    let stranger = bth_gateway::translog::cosignature::Cosigner::from_seed("witness.example/other", &[9u8; 32])
        .unwrap()
        .verifier_key();
    assert_eq!(audit_verify(&db, vec![stranger], None).await, 1);
    // A saved cosigned checkpoint catches a truncated log.
    let saved = wdir.path().join("saved.note");
    std::fs::write(&saved, t.gw.store.checkpoint(None).await.unwrap().unwrap().note).unwrap();
    assert_eq!(audit_verify(&db, vec![key.verifier_key()], Some(saved.clone())).await, 0);
    w.stop().await;
    t.execute(
        &format!("DELETE FROM checkpoints WHERE size >= {second}"),
        &format!("DELETE FROM checkpoints WHERE size >= {second}"),
    )
    .await;
    assert_eq!(audit_verify(&db, vec![key.verifier_key()], Some(saved)).await, 1);
}

#[tokio::test]
async fn pulls_stop_when_the_log_goes_unwitnessed_and_only_warn_in_warn_mode() {
    let wdir = tempfile::tempdir().unwrap();
    let w = TestWitness::create(wdir.path(), "witness.example/gone", &[gateway_log_key()]).await;
    let closed = settings_for(&w, WitnessMode::FailClosed, 1);
    let warn = settings_for(&w, WitnessMode::Warn, 1);
    w.stop().await; // nobody cosigns

    let t = TestGateway::start_witnessed(closed).await;
    let mut alice = published_and_granted(&t).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let status = pull(&mut alice, pull_req("survey")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("not witnessed"), "{status:?}");

    let t = TestGateway::start_witnessed(warn).await;
    let mut alice = published_and_granted(&t).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    pull(&mut alice, pull_req("survey")).await.unwrap();
}

#[tokio::test]
async fn a_bad_witness_setting_is_named() {
    let t = TestGateway::start().await;
    let mut s = WitnessSettings {
        witnesses: vec![WitnessEndpoint {
            url: "http://127.0.0.1:1".into(),
            key: "nope".into(),
            ca: "/nonexistent".into(),
        }],
        ..WitnessSettings::default()
    };
    let err = bth_gateway::log::witnesses::Witnesses::start(&s, t.gw.store.clone(), &t.gw.log).await.unwrap_err();
    assert!(err.to_string().contains("witness.witnesses[0].key"), "{err}");
    s.witnesses[0].key = bth_gateway::translog::cosignature::Cosigner::from_seed("w", &[1; 32]).unwrap().verifier_key();
    let err = bth_gateway::log::witnesses::Witnesses::start(&s, t.gw.store.clone(), &t.gw.log).await.unwrap_err();
    assert!(err.to_string().contains("witness.witnesses[0].ca"), "{err}");
    s.quorum = 2;
    let err = bth_gateway::log::witnesses::Witnesses::start(&s, t.gw.store.clone(), &t.gw.log).await.unwrap_err();
    assert!(err.to_string().contains("witness.quorum"), "{err}");
}
