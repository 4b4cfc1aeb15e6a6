//! Control-plane latency under attack (issue 9): p50 and p99 of `Catalog.ListDatasets` and
//! `Audit.GetCheckpoint` (200 calls each, on an established connection of another participant)
//! with no attack, then while one consumer holds 8 and 40 stalled pulls (each read its header,
//! then nothing: every pull's HTTP/2 window fills and its server task blocks), then while an
//! attacker keeps 2 000 raw TCP sockets open that never start a TLS handshake. Each figure is
//! printed with its ratio to the no-attack baseline of the same run (target: p99 ≤ 3×).
//!
//! Besides: the time a new legitimate client needs to connect and call during the socket flood,
//! and whether another consumer's short pull (bulk reads) completes while the stalled pulls hold.
//!
//! Run: `cargo bench --bench hostile` (CALLS=… to change the 200). Client, attacker and gateway
//! share the process (and its cores), as in the other benchmarks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bth_gateway::domain::participant::Role;
use bth_gateway::pb::{self, audit_client::AuditClient, catalog_client::CatalogClient, pull_response::Msg};
use bth_gateway::pki::{self, LeafKind, Pem};
use bth_gateway::policy::PolicyConfig;
use bth_gateway::server::{self, TlsPem};
use bth_gateway::service::{participants, publishing, sharing, Caller, Gateway, Limits, SystemClock};
use bth_gateway::store::sqlite::SqliteStore;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Streaming;

mod common;

use common::{dataset, participant, rows};

/// Rows of the published version (`ROWS`): by default about 5 MB in 196 chunks of 256 rows
/// (`CHUNK_ROWS`), far more than a stalled pull's buffers. `CHUNK_ROWS=8192 ROWS=400000` measures
/// the memory of a stalled pull with the default chunk size.
fn setting(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The HTTP/2 stream window of the stalling client (65 535 bytes, the protocol's default).
const SMALL_WINDOW: u32 = 65_535;

/// Raw sockets of the flood.
const FLOOD: usize = 2_000;

/// A connection of `leaf` to the gateway; with `window`, one that buffers little of each stream.
async fn channel(
    addr: SocketAddr,
    ca: &Pem,
    leaf: &Pem,
    window: Option<u32>,
) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert))
        .identity(Identity::from_pem(&leaf.cert, &leaf.key))
        .domain_name("localhost");
    let mut endpoint = Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls)?;
    if let Some(w) = window {
        endpoint = endpoint.initial_stream_window_size(w).initial_connection_window_size(16 << 20);
    }
    endpoint.connect().await
}

/// The probe: another participant's control-plane calls on its established connection.
struct Probe {
    catalog: CatalogClient<Channel>,
    audit: AuditClient<Channel>,
    exchange: pb::exchange_client::ExchangeClient<Channel>,
}

/// Latencies of `calls` calls of each probe RPC, sorted: (ListDatasets, GetCheckpoint).
async fn measure(p: &mut Probe, calls: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (mut list, mut checkpoint) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for _ in 0..calls {
        let t = Instant::now();
        p.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap();
        list.push(t.elapsed());
        let t = Instant::now();
        let req = pb::GetCheckpointRequest { tree_size: 0, r#match: pb::CheckpointMatch::Exact as i32 };
        p.audit.get_checkpoint(req).await.unwrap();
        checkpoint.push(t.elapsed());
    }
    list.sort();
    checkpoint.sort();
    (list, checkpoint)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Prints one scenario's line for each RPC, with ratios to `base`.
fn report(name: &str, got: &(Vec<Duration>, Vec<Duration>), base: &(Vec<Duration>, Vec<Duration>)) {
    for (rpc, v, b) in [("ListDatasets", &got.0, &base.0), ("GetCheckpoint", &got.1, &base.1)] {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        let (r50, r99) = (ms(p50) / ms(pct(b, 0.5)), ms(p99) / ms(pct(b, 0.99)));
        let verdict = if r99 <= 3.0 { "ok (≤ 3×)" } else { "OVER 3×" };
        println!(
            "{name:<26} {rpc:<14} p50 {:>7.2} ms ({r50:>5.2}×)   p99 {:>7.2} ms ({r99:>5.2}×)   {verdict}",
            ms(p50),
            ms(p99)
        );
    }
}

/// Another consumer pulls the last 3 batches of the version (a bulk read): how long it took, or
/// `None` when it did not finish within 5 s.
async fn tail_pull(p: &mut Probe, chunks: u64) -> Option<Duration> {
    let t = Instant::now();
    let req = pb::PullRequest { dataset_id: "bench".into(), from_batch: chunks - 3, ..Default::default() };
    let pulled = async {
        let mut s = p.exchange.pull(req).await.ok()?.into_inner();
        let mut batches = 0;
        while let Some(m) = s.message().await.ok()? {
            if let Some(Msg::Batch(_)) = m.msg {
                batches += 1;
            }
        }
        (batches == 3).then_some(())
    };
    tokio::time::timeout(Duration::from_secs(5), pulled).await.ok().flatten().map(|()| t.elapsed())
}

fn show_tail(what: &str, d: Option<Duration>) {
    match d {
        Some(d) => println!("{what:<26} another consumer's 3-batch pull: {:.2} ms", ms(d)),
        None => println!("{what:<26} another consumer's 3-batch pull: DID NOT FINISH within 5 s"),
    }
}

/// `n` pulls by `slow` that read their header and then nothing, 10 per connection.
async fn stall(addr: SocketAddr, ca: &Pem, slow: &Pem, n: usize) -> Vec<Streaming<pb::PullResponse>> {
    let mut streams = Vec::new();
    while streams.len() < n {
        let ch = channel(addr, ca, slow, Some(SMALL_WINDOW)).await.unwrap();
        let c = pb::exchange_client::ExchangeClient::new(ch).max_decoding_message_size(64 << 20);
        let k = 10.min(n - streams.len());
        let started = futures::future::join_all((0..k).map(|_| {
            let mut c = c.clone();
            async move {
                let req = pb::PullRequest { dataset_id: "bench".into(), ..Default::default() };
                let mut s = c.pull(req).await.unwrap().into_inner();
                let first = s.message().await.unwrap().and_then(|m| m.msg);
                assert!(matches!(first, Some(Msg::Header(_))), "a header first");
                s
            }
        }))
        .await;
        streams.extend(started);
    }
    // Let every stalled pull fill its window and block.
    tokio::time::sleep(Duration::from_millis(500)).await;
    streams
}

/// Keeps `FLOOD` raw sockets open (none ever sends a byte), reopening those the server closed
/// every 200 ms, until `stop`; says on `opened` how long opening the first `FLOOD` took, and
/// returns how many connects it made.
async fn flood(
    addr: SocketAddr,
    opened: tokio::sync::oneshot::Sender<Duration>,
    stop: tokio_util::sync::CancellationToken,
) -> usize {
    let mut sockets: Vec<Option<TcpStream>> = Vec::with_capacity(FLOOD);
    let mut connects = 0;
    let t = Instant::now();
    for _ in 0..FLOOD {
        sockets.push(TcpStream::connect(addr).await.ok());
        connects += 1;
    }
    let _ = opened.send(t.elapsed());
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for slot in sockets.iter_mut() {
            let closed = match slot {
                None => true,
                Some(s) => {
                    let mut b = [0u8; 16];
                    !matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                }
            };
            if closed {
                *slot = TcpStream::connect(addr).await.ok();
                connects += 1;
            }
        }
    }
    connects
}

/// The process's resident memory, KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let calls: usize = std::env::var("CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::new_ca().unwrap();
        let server_pem = pki::issue(&ca, "bth-gateway server", LeafKind::Server).unwrap();
        let tls = TlsPem { cert: server_pem.cert.clone(), key: server_pem.key.clone(), client_ca: ca.cert.clone() };
        let store =
            Arc::new(SqliteStore::open(&format!("sqlite:{}", dir.path().join("gw.db").display())).await.unwrap());
        // Every pull reads its chunks from the store unless CACHE_MIB is set; no prepared extracts.
        let limits = Limits {
            chunk_rows: setting("CHUNK_ROWS", 256),
            // `CACHE_MIB`: 0 by default, so that every pull reads its chunks from the store.
            cache_bytes: (setting("CACHE_MIB", 0) as usize) << 20,
            prepare_extracts: false,
            max_pulls_per_participant: 64,
            ..Limits::default()
        };
        let signer = bth_gateway::translog::note::Signer::from_seed("bench.example/log", &[1u8; 32]).unwrap();
        let settings = bth_gateway::log::sequencer::LogSettings::new("bench.example/log");
        let log = bth_gateway::log::sequencer::TransferLog::start(store.clone(), signer, settings).await.unwrap();
        let gw = Gateway::new(store, &[9u8; 32], Arc::new(SystemClock), limits, PolicyConfig::default(), log);
        for (id, roles) in
            [("owner", &[Role::Publisher][..]), ("slow", &[Role::Consumer]), ("probe", &[Role::Consumer])]
        {
            participants::register_as(&gw, "bench", participant(id, roles)).await.unwrap();
        }
        let owner = Caller { participant: participant("owner", &[Role::Publisher]), cert_sha256: String::new() };
        bth_gateway::service::catalog::register(&gw, &owner, dataset()).await.unwrap();
        let mut up = publishing::start(&gw, &owner, &dataset().id, "bench").await.unwrap();
        let (mut at, total) = (0, setting("ROWS", 50_000));
        while at < total {
            let n = 8192.min(total - at);
            up.add(rows(n, at)).await.unwrap();
            at += n;
        }
        let (version, _) = up.finish().await.unwrap();
        let fields: Vec<_> = dataset().fields.iter().map(|f| f.name.clone()).collect();
        for who in ["slow", "probe"] {
            let c = Caller { participant: participant(who, &[Role::Consumer]), cert_sha256: String::new() };
            let req = sharing::GrantRequest {
                dataset: dataset().id,
                fields: fields.clone(),
                purpose: "benchmark".into(),
                legal_basis: String::new(),
                statistical_purpose: false,
                requested_expiry: None,
                exemption: Default::default(),
                usage: bth_gateway::domain::grant::GrantUse::Rows,
                dimensions: Vec::new(),
                measures: Vec::new(),
            };
            let g = sharing::request(&gw, &c, req).await.unwrap();
            sharing::decide(&gw, &owner, &g.id, sharing::Decision::Approve(Default::default())).await.unwrap();
        }

        let network = server::Settings::default().network;
        println!(
            "gateway: {} rows in {} chunks; open-file limit {nofile}; handshake timeout {} s, {} pending \
             handshakes, {} pulls per participant; {calls} calls per RPC and scenario",
            version.rows, version.chunks, network.handshake_timeout_secs, network.max_pending_handshakes, 64
        );
        let addr = common::serve(gw.clone(), tls).await;

        let probe_leaf = pki::issue(&ca, "probe", LeafKind::Client).unwrap();
        let slow_leaf = pki::issue(&ca, "slow", LeafKind::Client).unwrap();
        let ch = channel(addr, &ca, &probe_leaf, None).await.unwrap();
        let mut probe = Probe {
            catalog: CatalogClient::new(ch.clone()),
            audit: AuditClient::new(ch.clone()),
            exchange: pb::exchange_client::ExchangeClient::new(ch).max_decoding_message_size(64 << 20),
        };
        // Warm-up.
        measure(&mut probe, 20).await;

        let base = measure(&mut probe, calls).await;
        report("no attack", &base, &base);
        show_tail("no attack", tail_pull(&mut probe, version.chunks).await);

        for n in [8, 40] {
            let before = rss_kib();
            let streams = stall(addr, &ca, &slow_leaf, n).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let name = format!("{n} stalled pulls");
            if let (Some(b), Some(a)) = (before, rss_kib()) {
                println!(
                    "{name:<26} memory: {:.0} KiB per stalled pull (process RSS growth / {n}; gateway and the \
                     stalling client together, whose window is {} KiB per stream)",
                    (a.saturating_sub(b)) as f64 / n as f64,
                    SMALL_WINDOW / 1024
                );
            }
            let got = measure(&mut probe, calls).await;
            report(&name, &got, &base);
            show_tail(&name, tail_pull(&mut probe, version.chunks).await);
            drop(streams);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let stop = tokio_util::sync::CancellationToken::new();
        let (opened, flooded) = tokio::sync::oneshot::channel();
        let attacker = tokio::spawn(flood(addr, opened, stop.clone()));
        let name = format!("{FLOOD} raw sockets");
        let took = flooded.await.unwrap();
        println!("{name:<26} opened in {:.0} ms", ms(took));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = measure(&mut probe, calls).await;
        report(&name, &got, &base);
        // New legitimate connections during the flood: connect (TCP + mTLS + HTTP/2) and call.
        let (mut fresh, mut failed) = (Vec::new(), 0);
        for _ in 0..20 {
            let t = Instant::now();
            let call = async {
                let ch = channel(addr, &ca, &probe_leaf, None).await.ok()?;
                CatalogClient::new(ch).list_datasets(pb::ListDatasetsRequest::default()).await.ok()
            };
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Some(_)) => fresh.push(t.elapsed()),
                _ => failed += 1,
            }
        }
        fresh.sort();
        stop.cancel();
        let connects = attacker.await.unwrap();
        match fresh.is_empty() {
            true => println!("{name:<26} new connection + call: all 20 failed"),
            false => println!(
                "{name:<26} new connection + call: p50 {:.2} ms, max {:.2} ms, {failed} of 20 failed \
                 (attacker connects: {connects})",
                ms(pct(&fresh, 0.5)),
                ms(pct(&fresh, 1.0))
            ),
        }
    });
}
