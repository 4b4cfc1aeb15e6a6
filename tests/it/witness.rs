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
        let config = WitnessConfig::load(dir).unwrap();
        let (witness, tls) = bth_gateway::cli::witness::open(&config).await.unwrap();
        assert_eq!(witness.verifier_key(), key.verifier_key());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
