//! Statistical tables: `Exchange.Tabulate`'s use case (read the version's verified chunks, build
//! the table with every margin, primary and secondary suppression, the decision record and the
//! release ledger) on ROWS rows (default 10 000 000) by 3 dimensions — 16 districts grouped into
//! Tianjin / Beijing / Hebei, 20 industries, 12 months — COUNT of distinct enterprises and SUM of
//! turnover, against DuckDB's `GROUP BY CUBE` over the same rows in the same run (DuckDB from
//! PyPI in a benchmark-only virtualenv: `BENCH_VENV`, default `target/bench-venv`, created with
//! `pip install duckdb` when missing; without it the gateway's figures print alone).
//!
//! Run: `cargo bench --bench tables` (ROWS=… to change).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bth_gateway::domain::classification::{Classification, Level, Pi, Share};
use bth_gateway::domain::dataset::{Dataset, FieldDef, FieldName, FieldType};
use bth_gateway::domain::grant::GrantUse;
use bth_gateway::domain::ids::{DatasetId, ParticipantId};
use bth_gateway::domain::mask::Mask;
use bth_gateway::domain::participant::Role;
use bth_gateway::pb;
use bth_gateway::policy::PolicyConfig;
use bth_gateway::service::tables::{self, DimensionSpec, Mode, StatisticSpec, TableDelivery, TableRequest};
use bth_gateway::service::{participants, publishing, sharing, Caller, Gateway, Limits, SystemClock};
use bth_gateway::store::sqlite::SqliteStore;
use bth_gateway::wire::DecodedBatch;

mod common;

use common::participant;

/// Rows per published batch.
const BATCH: u32 = 8192;

/// Distinct enterprises (the contributors).
const ENTERPRISES: u32 = 200_000;

/// The district of row `i` (`120101` … `120116`), its industry, its month and its enterprise:
/// one formula shared with the DuckDB side.
fn district(i: u32) -> String {
    format!("1201{:02}", i % 16 + 1)
}

/// Industries `I01` … `I19` are common; `I20` is rare (one row in 100 000), so that its cells are
/// small and disclosure control has primary cells to protect.
fn industry(i: u32) -> String {
    if i % 100_000 == 7 {
        "I20".to_owned()
    } else {
        format!("I{:02}", (i / 16) % 19 + 1)
    }
}

fn month(i: u32) -> i64 {
    i64::from((i / 320) % 12 + 1)
}

fn enterprise(i: u32) -> String {
    format!("E{:06}", i % ENTERPRISES)
}

fn turnover(i: u32) -> i64 {
    i64::from(i.wrapping_mul(7919) % 1000)
}

fn batch(n: u32, offset: u32) -> DecodedBatch {
    let r: Vec<u32> = (offset..offset + n).collect();
    let s = |f: fn(u32) -> String| pb::Column { strings: r.iter().map(|&i| f(i)).collect(), ..Default::default() };
    let i = |f: fn(u32) -> i64| pb::Column { ints: r.iter().map(|&x| f(x)).collect(), ..Default::default() };
    DecodedBatch { row_count: n, columns: vec![s(district), s(industry), i(month), s(enterprise), i(turnover)] }
}

fn dataset() -> Dataset {
    let f = |name: &str, ty: FieldType, stat_micro: bool| FieldDef {
        name: FieldName::parse(name).unwrap(),
        ty,
        // Statistical microdata is G4 at least; the dimensions are ordinary G2 codes.
        class: Classification::new(
            if stat_micro { Level::G4 } else { Level::G2 },
            Pi::None,
            stat_micro,
            Share::Conditional,
            None,
        ),
        default_mask: Mask::None,
        description: String::new(),
        nullable: false,
    };
    Dataset {
        id: DatasetId::parse("establishments").unwrap(),
        owner: ParticipantId::parse("owner").unwrap(),
        title: "establishments".into(),
        description: String::new(),
        government_data: false,
        fields: vec![
            f("district", FieldType::String, false),
            f("industry", FieldType::String, false),
            f("month", FieldType::Int64, false),
            f("enterprise", FieldType::String, true),
            f("turnover", FieldType::Int64, true),
        ],
        person_key_field: None,
        contributor_key_field: Some(FieldName::parse("enterprise").unwrap()),
        holding_key_field: None,
        registered_at: chrono::Utc::now(),
    }
}

fn request(statistic: StatisticSpec) -> TableRequest {
    let dim = |name: &str| DimensionSpec {
        field: FieldName::parse(name).unwrap(),
        period: None,
        groups: Vec::new(),
        prefixes: Vec::new(),
        filter: Vec::new(),
    };
    let districts: Vec<String> = (0..16).map(district).collect();
    let region = DimensionSpec {
        groups: vec![
            ("Tianjin".into(), districts[..8].to_vec()),
            ("Beijing".into(), districts[8..12].to_vec()),
            ("Hebei".into(), districts[12..].to_vec()),
        ],
        ..dim("district")
    };
    TableRequest {
        dataset: dataset().id,
        version: None,
        dimensions: vec![region, dim("industry"), dim("month")],
        statistic,
        grant: None,
        access_from_outside_mainland: false,
    }
}

/// Tabulates and drains the cells; returns the time and the cells (published, suppressed), or
/// the time to the refusal and why (a table that cannot be protected is refused, not timed as
/// one that was sent).
async fn tabulate(
    gw: &Gateway,
    caller: &Caller,
    statistic: StatisticSpec,
) -> Result<(Duration, usize, usize), (Duration, String)> {
    let t0 = Instant::now();
    let plan = tables::tabulate(gw, caller, &request(statistic), Mode::Release)
        .await
        .map_err(|e| (t0.elapsed(), e.to_string()))?;
    let mut rx = tables::deliver(gw, caller, plan);
    let (mut published, mut suppressed) = (0, 0);
    while let Some(d) = rx.recv().await {
        match d.unwrap() {
            TableDelivery::Cells(cells) => {
                for c in cells {
                    if c.value.is_some() {
                        published += 1;
                    } else {
                        suppressed += 1;
                    }
                }
            }
            TableDelivery::Trailer { .. } => break,
        }
    }
    Ok((t0.elapsed(), published, suppressed))
}

/// The DuckDB side: the same rows generated in DuckDB (not timed), then the CUBE timed; `None`
/// (after saying why) when DuckDB cannot be had.
fn duckdb(rows: u32) -> Option<Duration> {
    let venv = std::env::var("BENCH_VENV")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-venv").into());
    let python = format!("{venv}/bin/python");
    let has = |py: &str| Command::new(py).args(["-c", "import duckdb"]).output().is_ok_and(|o| o.status.success());
    if !has(&python) {
        let made = Command::new("python3").args(["-m", "venv", &venv]).status().is_ok_and(|s| s.success())
            && Command::new(format!("{venv}/bin/pip"))
                .args(["install", "--quiet", "duckdb"])
                .status()
                .is_ok_and(|s| s.success());
        if !made || !has(&python) {
            println!(
                "DuckDB missing (no python3 venv with `pip install duckdb` at {venv}): the gateway's figures alone"
            );
            return None;
        }
    }
    let script = format!(
        r#"
import duckdb, time
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("""CREATE TABLE t AS SELECT
  '1201' || lpad(CAST(i % 16 + 1 AS VARCHAR), 2, '0') AS district,
  CASE WHEN i % 16 < 8 THEN 'Tianjin' WHEN i % 16 < 12 THEN 'Beijing' ELSE 'Hebei' END AS region,
  CASE WHEN i % 100000 = 7 THEN 'I20' ELSE 'I' || lpad(CAST((i // 16) % 19 + 1 AS VARCHAR), 2, '0') END AS industry,
  (i // 320) % 12 + 1 AS month,
  'E' || lpad(CAST(i % {ENTERPRISES} AS VARCHAR), 6, '0') AS enterprise,
  (i * 7919) % 4294967296 % 1000 AS turnover
  FROM range({rows}) r(i)""")
t0 = time.perf_counter()
n = con.execute("""SELECT region, district, industry, month, count(DISTINCT enterprise), sum(turnover)
  FROM t GROUP BY CUBE (region, district, industry, month)""").fetchall()
print(time.perf_counter() - t0, len(n))
"#
    );
    let out = Command::new(&python).args(["-c", &script]).output().ok()?;
    if !out.status.success() {
        println!("DuckDB failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = text.lines().last().and_then(|line| {
        let mut parts = line.split_whitespace();
        Some((parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<usize>().ok()?))
    });
    let Some((secs, groups)) = parsed else {
        println!("DuckDB's answer did not parse: {text:?}");
        return None;
    };
    println!("DuckDB GROUP BY CUBE (region, district, industry, month), COUNT DISTINCT and SUM: {secs:.2} s, {groups} groups");
    Some(Duration::from_secs_f64(secs))
}

fn main() {
    let rows: u32 = std::env::var("ROWS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(10_000_000);
    if std::env::var_os("RUST_LOG").is_some() {
        bth_gateway::telemetry::init("warn");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let gateway = rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(&format!("sqlite:{}", dir.path().join("gw.db").display())).await.unwrap());
        let signer = bth_gateway::translog::note::Signer::from_seed("bench.example/log", &[1u8; 32]).unwrap();
        let settings = bth_gateway::log::sequencer::LogSettings::new("bench.example/log");
        let log = bth_gateway::log::sequencer::TransferLog::start(store.clone(), signer, settings).await.unwrap();
        let limits = Limits { chunk_rows: BATCH, prepare_extracts: false, ..Limits::default() };
        let gw = Gateway::new(store, &[9u8; 32], Arc::new(SystemClock), limits, PolicyConfig::default(), log);
        for (id, roles) in [("owner", &[Role::Publisher][..]), ("stats", &[Role::Consumer])] {
            participants::register_as(&gw, "bench", participant(id, roles)).await.unwrap();
        }
        let owner = Caller { participant: participant("owner", &[Role::Publisher]), cert_sha256: String::new() };
        let stats = Caller { participant: participant("stats", &[Role::Consumer]), cert_sha256: String::new() };
        bth_gateway::service::catalog::register(&gw, &owner, dataset()).await.unwrap();
        let t0 = Instant::now();
        let mut up = publishing::start(&gw, &owner, &dataset().id, "bench").await.unwrap();
        let mut at = 0;
        while at < rows {
            let n = BATCH.min(rows - at);
            up.add(batch(n, at)).await.unwrap();
            at += n;
        }
        let (version, _) = up.finish().await.unwrap();
        println!(
            "published {} rows in {} chunks in {:.2?} (not timed below)",
            version.rows,
            version.chunks,
            t0.elapsed()
        );
        let name = |n: &str| FieldName::parse(n).unwrap();
        let g = sharing::request(
            &gw,
            &stats,
            sharing::GrantRequest {
                dataset: dataset().id,
                fields: Vec::new(),
                purpose: "benchmark".into(),
                legal_basis: String::new(),
                statistical_purpose: true,
                requested_expiry: None,
                exemption: Default::default(),
                usage: GrantUse::Tables,
                dimensions: ["district", "industry", "month"].map(name).to_vec(),
                measures: vec![name("turnover")],
            },
        )
        .await
        .unwrap();
        sharing::decide(&gw, &owner, &g.id, sharing::Decision::Approve(Default::default())).await.unwrap();

        let mut total = Duration::ZERO;
        for (label, statistic) in [("COUNT", StatisticSpec::Count), ("SUM", StatisticSpec::Sum(name("turnover")))] {
            match tabulate(&gw, &stats, statistic).await {
                Ok((took, published, suppressed)) => {
                    println!(
                        "gateway Tabulate {label}: {took:.2?} ({published} cells published, {suppressed} suppressed)"
                    );
                    total += took;
                }
                Err((took, why)) => {
                    println!("gateway Tabulate {label}: REFUSED after {took:.2?}: {why}");
                    return None;
                }
            }
        }
        Some(total)
    });
    let Some(gateway) = gateway else {
        println!("no ratio: a table was refused (see above)");
        return;
    };
    println!("gateway, COUNT and SUM together: {gateway:.2?} on {rows} rows");
    if let Some(duck) = duckdb(rows) {
        // DuckDB answers both statistics in one query; the gateway needs one call per statistic.
        println!(
            "ratio DuckDB time / gateway time: {:.2} (goal >= 0.5, stretch 1.0)",
            duck.as_secs_f64() / gateway.as_secs_f64()
        );
    }
}
