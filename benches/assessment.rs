//! Export assessment: the pure engine's decisions per second on one core, and assessing and
//! recording a transfer of 1 000 000 distinct persons (count into the ledger, log the decision)
//! through the real use case on SQLite. Run: `cargo bench --bench assessment` (PERSONS=… to
//! change the transfer size).

use std::sync::Arc;
use std::time::Instant;

use bth_gateway::domain::classification::{Classification, Level, Pi, Share};
use bth_gateway::domain::dataset::{Dataset, FieldDef, FieldName, FieldType};
use bth_gateway::domain::ids::{DatasetId, ParticipantId};
use bth_gateway::domain::mask::Mask;
use bth_gateway::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use bth_gateway::log::sequencer::{LogSettings, TransferLog};
use bth_gateway::pb;
use bth_gateway::policy::{self, Approval, ApprovalType, PolicyConfig, Scope, WindowTotals};
use bth_gateway::service::exchange::{self, PullRequest};
use bth_gateway::service::{
    catalog, oversight, participants, publishing, sharing, Caller, Gateway, Limits, SystemClock,
};
use bth_gateway::store::sqlite::SqliteStore;
use bth_gateway::translog::note::Signer;
use bth_gateway::wire::DecodedBatch;
use chrono::{FixedOffset, TimeZone};

fn engine_rate() -> f64 {
    let class = |level, pi| Classification::new(level, pi, false, Share::Conditional, None);
    let transfer = policy::Transfer {
        ruleset: policy::Ruleset::Cn2024,
        at: FixedOffset::east_opt(8 * 3600).unwrap().with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap(),
        exporter: policy::Exporter { id: "tj-stats".into(), kind: ParticipantKind::Other, in_tianjin_ftz: false },
        recipient: policy::Recipient {
            id: "hk-univ".into(),
            kind: RecipientType::Research,
            region: Region::parse("HK").unwrap(),
        },
        access_from_outside_mainland: false,
        government_data: true,
        purpose: "joint research".into(),
        legal_basis: None,
        statistical_purpose: false,
        exemption: policy::ExemptionClaim::default(),
        fields: vec![
            policy::Field { name: "name".into(), classification: class(Level::G3, Pi::Pi) },
            policy::Field { name: "income".into(), classification: class(Level::G4, Pi::Spi) },
            policy::Field { name: "district".into(), classification: class(Level::G1, Pi::None) },
        ],
        persons: policy::Persons { nonsensitive: 2_000, sensitive: 2_000, ..Default::default() },
    };
    let approvals: Vec<Approval> = (0..4)
        .map(|i| Approval {
            id: format!("SA-{i}"),
            kind: if i % 2 == 0 { ApprovalType::CacSa } else { ApprovalType::SccFiling },
            exporter: "tj-stats".into(),
            reference: "CAC".into(),
            issued: chrono::NaiveDate::from_ymd_opt(2025, 1, 10).unwrap(),
            expires: None,
            revoked: i == 3,
            scope: Scope { destinations: vec![Region::parse("HK").unwrap()], ..Default::default() },
        })
        .collect();
    let config = PolicyConfig::default();
    let n = 1_000_000u32;
    let t = Instant::now();
    let mut passes = 0u32;
    for i in 0..n {
        let totals = WindowTotals { nonsensitive: u64::from(i % 200_000), sensitive: u64::from(i % 12_000) };
        let d = policy::assess(std::hint::black_box(&transfer), totals, &approvals, &config);
        passes += u32::from(d.action == policy::Action::Pass);
    }
    std::hint::black_box(passes);
    f64::from(n) / t.elapsed().as_secs_f64()
}

fn participant(id: &str, kind: ParticipantKind, rt: RecipientType, region: &str, roles: &[Role]) -> Participant {
    Participant {
        id: ParticipantId::parse(id).unwrap(),
        display_name: id.into(),
        kind,
        recipient_type: rt,
        region: Region::parse(region).unwrap(),
        in_tianjin_ftz: false,
        roles: roles.iter().copied().collect(),
        clearance: Level::G4,
        status: ParticipantStatus::Active,
    }
}

async fn one_million_persons(persons: u32) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&format!("sqlite:{}", dir.path().join("gw.db").display())).await.unwrap());
    let signer = Signer::from_seed("bench.example/log", &[1u8; 32]).unwrap();
    let log = TransferLog::start(store.clone(), signer, LogSettings::new("bench.example/log")).await.unwrap();
    let gw = Gateway::new(store, &[9u8; 32], Arc::new(SystemClock), Limits::default(), PolicyConfig::default(), log);
    let owner = participant("sme", ParticipantKind::Other, RecipientType::Enterprise, "CN-TJ", &[Role::Publisher]);
    let hk = participant("hk-univ", ParticipantKind::Other, RecipientType::Research, "HK", &[Role::Consumer]);
    let officer =
        participant("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Officer]);
    for p in [&owner, &hk, &officer] {
        participants::register_as(&gw, "bench", p.clone()).await.unwrap();
    }
    let caller = |p: &Participant| Caller { participant: p.clone(), cert_sha256: String::new() };
    let field = |name: &str, level, pi| FieldDef {
        name: FieldName::parse(name).unwrap(),
        ty: FieldType::String,
        class: Classification::new(level, pi, false, Share::Conditional, None),
        default_mask: Mask::None,
        description: String::new(),
        nullable: false,
    };
    let dataset = Dataset {
        id: DatasetId::parse("persons").unwrap(),
        owner: owner.id.clone(),
        title: "persons".into(),
        description: String::new(),
        government_data: false,
        fields: vec![field("person_id", Level::G3, Pi::Pi), field("district", Level::G1, Pi::None)],
        person_key_field: Some(FieldName::parse("person_id").unwrap()),
        contributor_key_field: None,
        holding_key_field: None,
        registered_at: chrono::Utc::now(),
    };
    catalog::register(&gw, &caller(&owner), dataset.clone()).await.unwrap();
    let mut up = publishing::start(&gw, &caller(&owner), &dataset.id, "v1").await.unwrap();
    let mut at = 0;
    while at < persons {
        let n = 50_000.min(persons - at);
        let col =
            |f: &dyn Fn(u32) -> String| pb::Column { strings: (at..at + n).map(f).collect(), ..Default::default() };
        up.add(DecodedBatch {
            row_count: n,
            columns: vec![col(&|i| format!("P{i:09}")), col(&|i| format!("d{}", i % 16))],
        })
        .await
        .unwrap();
        at += n;
    }
    up.finish().await.unwrap();
    let g = sharing::request(
        &gw,
        &caller(&hk),
        sharing::GrantRequest {
            dataset: dataset.id.clone(),
            fields: dataset.fields.iter().map(|f| f.name.clone()).collect(),
            purpose: "bench".into(),
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
    sharing::decide(&gw, &caller(&owner), &g.id, sharing::Decision::Approve(Default::default())).await.unwrap();

    // A million persons needs a security assessment (A4): record one so that the transfer passes
    // and its persons enter the ledger.
    oversight::record_approval(
        &gw,
        &caller(&officer),
        oversight::NewApproval {
            id: Some("SA-BENCH".into()),
            kind: ApprovalType::CacSa,
            exporter: owner.id.clone(),
            reference: "CAC-BENCH".into(),
            issued: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            expires: None,
            scope: Scope::default(),
        },
    )
    .await
    .unwrap();
    let req = PullRequest { dataset: Some(dataset.id.clone()), ..Default::default() };
    let t = Instant::now();
    let result = exchange::authorize(&gw, &caller(&hk), &req).await;
    let elapsed = t.elapsed();
    let counted = match &result {
        Ok(plan) => plan.decision.counts.nonsensitive_after,
        Err(e) => panic!("authorize: {e}"),
    };
    println!(
        "assess + count + log a transfer of {persons} distinct persons: {:.2} s (ledger now {counted} persons; goal ≤ 3 s)",
        elapsed.as_secs_f64()
    );
    let t = Instant::now();
    let again = exchange::authorize(&gw, &caller(&hk), &req).await.unwrap();
    println!(
        "the same transfer again (all persons already counted):   {:.2} s (ledger {} persons)",
        t.elapsed().as_secs_f64(),
        again.decision.counts.nonsensitive_after
    );
}

fn main() {
    let persons: u32 = std::env::var("PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rate = engine_rate();
    println!("pure engine, one core: {rate:.0} decisions/s (goal ≥ 100 000/s)");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(one_million_persons(persons));
}
