//! The transfer log: durable appends/s through `TransferLog::append` on SQLite (WAL,
//! `synchronous=FULL`, as the store opens it) with 1 and 64 concurrent writers, and p50/p99 from
//! append to receipt, printed beside the raw fsync rate of the same disk measured in the same
//! run; then the time of inclusion and consistency proofs on a 10-million-leaf log through the
//! Audit service's functions.
//!
//! Run: `cargo bench --bench log_append`. Environment: `APPENDS` (appends per configuration,
//! default 20 000), `PROOF_LEAVES` (default 10 000 000; 0 skips the proof part), `PROOFS` (proofs
//! timed per kind, default 2 000), `BENCH_DIR` (where the databases go; default a temporary
//! directory).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::ids::ParticipantId;
use bth_gateway::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use bth_gateway::domain::record::{NewRecord, RecordKind};
use bth_gateway::log::sequencer::{LogSettings, TransferLog};
use bth_gateway::policy::PolicyConfig;
use bth_gateway::service::{audit, Caller, Gateway, Limits, SystemClock};
use bth_gateway::store::sqlite::SqliteStore;
use bth_gateway::store::{Integration, Store, StoredCheckpoint};
use bth_gateway::translog::compact::CompactRange;
use bth_gateway::translog::merkle::{self, Hash};
use bth_gateway::translog::note::{Checkpoint, Signer};

const ORIGIN: &str = "bench.example/log";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// Writes of 64 bytes at offset 0, each followed by `fdatasync`, for `span`: the disk's durable
/// write rate, the ceiling of any commit-per-write design.
fn fsync_rate(dir: &Path, span: Duration) -> f64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("fsync.probe"))
        .unwrap();
    f.write_all_at(&[0u8; 4096], 0).unwrap();
    f.sync_all().unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < span {
        f.write_all_at(&n.to_le_bytes().repeat(8), 0).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A transfer decision of realistic size (about 600 bytes of canonical JSON).
fn record(writer: usize, i: usize) -> NewRecord {
    NewRecord::untyped(
        RecordKind::TransferDecision,
        format!("consumer-{writer:02}"),
        chrono::Utc::now(),
        serde_json::json!({
            "transfer": format!("tr-{writer:02}-{i:08}"),
            "dataset": "enterprise-survey",
            "version": 3,
            "recipient": format!("consumer-{writer:02}"),
            "exporter": "tj-stats",
            "region": "CN-BJ",
            "export": false,
            "action": "PASS",
            "mechanism": "NONE",
            "rules": ["D1", "D2"],
            "fields": [
                {"name": "enterprise", "mask": "NONE"},
                {"name": "contact", "mask": "PARTIAL"},
                {"name": "phone", "mask": "HASH"},
                {"name": "founded", "mask": "GENERALIZE_DATE"}
            ],
            "grant": format!("g-{writer:02}"),
            "cert_sha256": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
        }),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `total` appends by `writers` concurrent tasks, each waiting for its receipt before the next.
async fn appends(log: &TransferLog, writers: usize, total: usize) -> (f64, Vec<Duration>) {
    let per = total.div_ceil(writers);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per);
                for i in 0..per {
                    let rec = record(w, i);
                    let t = Instant::now();
                    log.append(rec).await.expect("append");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(per * writers);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (rate, latencies)
}

async fn open(dir: &Path, name: &str) -> Arc<dyn Store> {
    let url = format!("sqlite:{}", dir.join(name).display());
    Arc::new(SqliteStore::open(&url).await.unwrap())
}

fn signer() -> Signer {
    Signer::from_seed(ORIGIN, &[5u8; 32]).unwrap()
}

async fn append_bench(dir: &Path) {
    let total = env("APPENDS", 20_000) as usize;
    let fsync = fsync_rate(dir, Duration::from_secs(2));
    println!(
        "raw fsync (64-byte write + fdatasync, same disk):  {fsync:>9.0} /s  ({})",
        ms(Duration::from_secs_f64(1.0 / fsync))
    );
    for writers in [1usize, 64] {
        let store = open(dir, &format!("append-{writers}.db")).await;
        let log = TransferLog::start(store.clone(), signer(), LogSettings::new(ORIGIN)).await.unwrap();
        // Warm-up: page cache, prepared statements.
        appends(&log, writers, writers * 4).await;
        let n = if writers == 1 { (total / 10).max(200) } else { total };
        let (rate, lat) = appends(&log, writers, n).await;
        let checkpoints = store.checkpoint(None).await.unwrap().unwrap();
        println!(
            "durable appends, {writers:>2} writer(s): {rate:>9.0} /s   p50 {}   p99 {}   ({n} appends, {} leaves, {:.1} per checkpoint)",
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.99)),
            checkpoints.size,
            checkpoints.size as f64 / store.checkpoints(0, u32::MAX).await.unwrap().len() as f64,
        );
        if writers == 1 {
            println!(
                "  added latency of logging on a pull (the decision is integrated under a signed checkpoint before the first row): p50 {}  p99 {}",
                ms(percentile(&lat, 0.50)),
                ms(percentile(&lat, 0.99))
            );
        }
    }
    println!("  (one fsync of the WAL per batch; a batch closes at 64 entries or 2 ms, at once for a lone append)");
}

/// Builds a log of `leaves` synthetic leaves: every perfect subtree stored, one signed
/// checkpoint per million leaves, through the store's own integration path (no records: proofs
/// read only tree nodes and checkpoints).
async fn build(store: &Arc<dyn Store>, leaves: u64) {
    let signer = signer();
    let mut edge = CompactRange::empty(0);
    let started = Instant::now();
    while edge.end() < leaves {
        let first = edge.end();
        let n = (1u64 << 20).min(leaves - first);
        let mut nodes: Vec<(u8, u64, Hash)> = Vec::with_capacity(2 * n as usize);
        for i in first..first + n {
            edge.append(merkle::leaf_hash(&i.to_be_bytes()), |id, hash| nodes.push((id.level, id.index, *hash)));
        }
        nodes.sort_unstable_by_key(|&(level, index, _)| (level, index));
        let (size, root) = (edge.end(), edge.root());
        let note = signer.sign_checkpoint(&Checkpoint { origin: ORIGIN.into(), size, root });
        let integration = Integration {
            leaves: Vec::new(),
            nodes,
            checkpoint: StoredCheckpoint { size, root, note, at: chrono::Utc::now() },
        };
        store
            .integrate(&[], &|tree: &bth_gateway::store::TreeHead, _| {
                assert_eq!(tree.size, first);
                Ok(Some(integration.clone()))
            })
            .await
            .unwrap();
        print!("\r  building: {size} leaves ({:.0} s)", started.elapsed().as_secs_f64());
        std::io::stdout().flush().ok();
    }
    println!();
}

async fn proof_bench(dir: &Path) {
    let leaves = env("PROOF_LEAVES", 10_000_000);
    if leaves == 0 {
        return;
    }
    let proofs = env("PROOFS", 2_000) as usize;
    let store = open(dir, "proofs.db").await;
    if store.checkpoint(None).await.unwrap().map(|c| c.size) != Some(leaves) {
        build(&store, leaves).await;
    }
    let log = TransferLog::start(store.clone(), signer(), LogSettings::new(ORIGIN)).await.unwrap();
    let gw =
        Gateway::new(store.clone(), &[7u8; 32], Arc::new(SystemClock), Limits::default(), PolicyConfig::default(), log);
    let caller = Caller {
        participant: Participant {
            id: ParticipantId::parse("auditor").unwrap(),
            display_name: "auditor".into(),
            kind: ParticipantKind::StateOrgan,
            recipient_type: RecipientType::GovDept,
            region: Region::parse("CN-TJ").unwrap(),
            in_tianjin_ftz: false,
            roles: BTreeSet::from([Role::Auditor]),
            clearance: Level::G1,
            status: ParticipantStatus::Active,
        },
        cert_sha256: String::new(),
    };
    let latest = store.checkpoint(None).await.unwrap().unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % below
    };

    let mut lat = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let index = random(leaves);
        let t = Instant::now();
        let p = audit::inclusion_proof(&gw, &caller, index, None).await.unwrap();
        lat.push(t.elapsed());
        merkle::verify_inclusion(&merkle::leaf_hash(&index.to_be_bytes()), index, p.size, &p.proof, &latest.root)
            .expect("a valid proof");
    }
    lat.sort_unstable();
    println!(
        "inclusion proof, {leaves}-leaf log (GetInclusionProof's service function): p50 {}  p99 {}  ({proofs} random leaves)",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99))
    );

    let mut lat = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let old = 1 + random(leaves - 1);
        let t = Instant::now();
        let p = audit::consistency_proof(&gw, &caller, old, None).await.unwrap();
        lat.push(t.elapsed());
        assert!(!p.proof.is_empty() || old == leaves);
    }
    lat.sort_unstable();
    println!(
        "consistency proof, {leaves}-leaf log (GetConsistencyProof's service function): p50 {}  p99 {}  ({proofs} random old sizes)",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99))
    );
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    append_bench(&dir).await;
    proof_bench(&dir).await;
}
