//! Scale-out on PostgreSQL: durable log appends per second and pull throughput with one and with
//! three replicas (gateway instances, each with its own pool and sequencer, on one database),
//! beside the same measurements on SQLite in the same run.
//!
//! Needs a PostgreSQL server where it may create a database: `BENCH_DATABASE_URL` (or
//! `BTH_TEST_DATABASE_URL`, e.g. `$(.ci/postgres.sh start)`). Run:
//! `cargo bench --bench replicas` (ROWS=… APPENDS=… to change the sizes).

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bth_gateway::domain::participant::Role;
use bth_gateway::domain::record::{NewRecord, RecordKind};
use bth_gateway::log::sequencer::{LogSettings, TransferLog};
use bth_gateway::pki::{self, LeafKind, Pem};
use bth_gateway::policy::PolicyConfig;
use bth_gateway::server::TlsPem;
use bth_gateway::service::{catalog, participants, publishing, sharing, Caller, Gateway, Limits, SystemClock};
use bth_gateway::translog::note::Signer;
use common::{client, dataset, participant, pull_once, rows, BATCH};
use sqlx::{Connection, Executor};

/// A gateway instance on `url` with its own pool and sequencer.
async fn replica(url: &str) -> Gateway {
    let store = bth_gateway::store::open(url).await.unwrap();
    let signer = Signer::from_seed("bench.example/log", &[1u8; 32]).unwrap();
    let log = TransferLog::start(store.clone(), signer, LogSettings::new("bench.example/log")).await.unwrap();
    let limits = Limits { chunk_rows: BATCH, ..Limits::default() };
    Gateway::new(store, &[9u8; 32], Arc::new(SystemClock), limits, PolicyConfig::default(), log)
}

/// Publishes the 10-field dataset and grants it to `plain`.
async fn setup(gw: &Gateway, total: u32) {
    for (id, roles) in [("owner", &[Role::Publisher][..]), ("plain", &[Role::Consumer])] {
        participants::register_as(gw, "bench", participant(id, roles)).await.unwrap();
    }
    let owner = Caller { participant: participant("owner", &[Role::Publisher]), cert_sha256: String::new() };
    catalog::register(gw, &owner, dataset()).await.unwrap();
    let mut up = publishing::start(gw, &owner, &dataset().id, "bench").await.unwrap();
    let mut at = 0;
    while at < total {
        let n = BATCH.min(total - at);
        up.add(rows(n, at)).await.unwrap();
        at += n;
    }
    up.finish().await.unwrap();
    let plain = Caller { participant: participant("plain", &[Role::Consumer]), cert_sha256: String::new() };
    let g = sharing::request(
        gw,
        &plain,
        sharing::GrantRequest {
            dataset: dataset().id,
            fields: dataset().fields.iter().map(|f| f.name.clone()).collect(),
            purpose: "benchmark".into(),
            legal_basis: String::new(),
            statistical_purpose: false,
            requested_expiry: None,
            exemption: Default::default(),
            usage: bth_gateway::domain::grant::GrantUse::Rows,
            dimensions: Vec::new(),
            measures: Vec::new(),
        },
    )
    .await
    .unwrap();
    sharing::decide(gw, &owner, &g.id, sharing::Decision::Approve(Default::default())).await.unwrap();
}

/// 64 concurrent writers spread over the replicas' logs; returns appends/s, p50 and p99.
async fn appends(gws: &[Gateway], total: usize) -> (f64, Duration, Duration) {
    let writers = 64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = gws[w % gws.len()].log.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..total / writers {
                let rec = NewRecord::untyped(
                    RecordKind::TransferCompleted,
                    "bench",
                    chrono::Utc::now(),
                    serde_json::json!({"writer": w, "i": i}),
                );
                let s = Instant::now();
                log.append(rec).await.unwrap();
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    lat.sort();
    (rate, lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

/// Serves each gateway; pulls once through each at the same time; returns rows/s in total.
async fn pulls(gws: &[Gateway], ca: &Pem, tls: &TlsPem, rounds: usize) -> (f64, f64) {
    let mut clients = Vec::new();
    for gw in gws {
        let addr = common::serve(gw.clone(), tls.clone()).await;
        let leaf = pki::issue(ca, "plain", LeafKind::Client).unwrap();
        clients.push(client(addr, ca, &leaf).await);
    }
    let mut rates = Vec::new();
    for _ in 0..=rounds {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in &clients {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move { pull_once(&mut c).await }));
        }
        let mut rows = 0;
        for t in tasks {
            rows += t.await.unwrap();
        }
        rates.push(rows as f64 / t.elapsed().as_secs_f64());
    }
    let cold = rates.remove(0);
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (cold, rates[rates.len() / 2])
}

fn main() {
    let server_url = std::env::var("BENCH_DATABASE_URL").or_else(|_| std::env::var("BTH_TEST_DATABASE_URL"));
    let Ok(server_url) =
        server_url
            .map(|u| u.trim().to_owned())
            .map_err(|_| ())
            .and_then(|u| if u.is_empty() { Err(()) } else { Ok(u) })
    else {
        println!("skipped: set BENCH_DATABASE_URL to a PostgreSQL server (e.g. $(.ci/postgres.sh start))");
        return;
    };
    let total: u32 = std::env::var("ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let appends_n: usize = std::env::var("APPENDS").ok().and_then(|v| v.parse().ok()).unwrap_or(64_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let ca = pki::new_ca().unwrap();
        let server_pem = pki::issue(&ca, "bth-gateway server", LeafKind::Server).unwrap();
        let tls = TlsPem { cert: server_pem.cert, key: server_pem.key, client_ca: ca.cert.clone() };

        let dir = tempfile::tempdir().unwrap();
        let sqlite_url = format!("sqlite:{}", dir.path().join("gw.db").display());
        let admin = sqlx::postgres::PgConnectOptions::from_str(&server_url).unwrap();
        let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
        let mut suffix = [0u8; 6];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix).unwrap();
        let name = format!("bth_bench_{}", hex::encode(suffix));
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let (base, query) = server_url.split_once('?').map_or((server_url.as_str(), None), |(b, q)| (b, Some(q)));
        let pg_url = format!(
            "{}/{name}{}",
            base.rsplit_once('/').unwrap().0,
            query.map(|q| format!("?{q}")).unwrap_or_default()
        );

        println!("{total} rows per pull, {appends_n} log appends by 64 writers; rows/s summed over concurrent pulls");
        println!(
            "{:<22} {:>14} {:>10} {:>10} {:>16} {:>16}",
            "backend", "appends/s", "p50", "p99", "pull cold rows/s", "pull warm rows/s"
        );
        for (label, url, counts) in
            [("SQLite, 1 instance", &sqlite_url, &[1usize][..]), ("PostgreSQL", &pg_url, &[1, 3])]
        {
            let first = replica(url).await;
            setup(&first, total).await;
            for &n in counts {
                let mut gws = vec![first.clone()];
                for _ in 1..n {
                    gws.push(replica(url).await);
                }
                let (rate, p50, p99) = appends(&gws, appends_n).await;
                let (cold, warm) = pulls(&gws, &ca, &tls, 2).await;
                let label = if counts.len() > 1 { format!("{label}, {n} replica(s)") } else { label.to_owned() };
                println!("{label:<22} {rate:>14.0} {p50:>10.2?} {p99:>10.2?} {cold:>16.0} {warm:>16.0}");
            }
        }
        drop(conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await);
    });
}
