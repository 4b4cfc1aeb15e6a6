//! Standing reports end to end (issue 13): a monthly report produced on its day for three
//! districts, each with its own slice and release ledger, once even with two runners; a missed
//! period caught up once; refusals recorded.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::pb;
use bth_gateway::service::reports::{run_due, Ran};
use tonic::Code;

use crate::harness::*;
use crate::tables::{ages_rows, count_of, dim, firms, tables_grant};

/// The id of the district consumer for `district`.
fn c_id(district: &str) -> &'static str {
    match district {
        "A" => "district-a",
        "B" => "district-b",
        _ => "district-c",
    }
}

async fn officer(t: &TestGateway) -> Client {
    t.register("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Officer], Level::G1)
        .await
}

fn recipient(id: &str, district: Option<&str>) -> pb::ReportRecipient {
    pb::ReportRecipient {
        participant: id.into(),
        slice: district.map(|d| pb::ReportSlice { dimension: "district".into(), values: vec![d.into()] }),
    }
}

fn monthly(recipients: Vec<pb::ReportRecipient>) -> pb::DefineReportRequest {
    pb::DefineReportRequest {
        table: Some(count_of("firms", vec![dim("district"), dim("age")])),
        schedule: "monthly:1".into(),
        recipients,
    }
}

/// The owner with `firms` published (districts A, B, C), and three district consumers with
/// TABLES grants.
async fn districts(t: &TestGateway) -> (Client, Vec<Client>) {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(firms("firms", false)).await.unwrap();
    publish(&mut owner, "firms", "v1", vec![ages_rows()]).await.unwrap();
    let mut out = Vec::new();
    for id in ["district-a", "district-b", "district-c"] {
        let mut c = t.consumer(id, Level::G2).await;
        tables_grant(&mut owner, &mut c, "firms", &["district", "age"], &[]).await;
        out.push(c);
    }
    (owner, out)
}

#[tokio::test]
async fn a_monthly_report_reaches_three_districts_each_with_its_own_slice_once() {
    let t = TestGateway::start().await;
    let (_owner, mut ds) = districts(&t).await;
    let mut off = officer(&t).await;
    let defined = off
        .reports
        .define_report(monthly(vec![
            recipient("district-a", Some("A")),
            recipient("district-b", Some("B")),
            recipient("district-c", Some("C")),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert!(defined.record.contains("report.defined") && defined.record.contains("monthly:1"), "{}", defined.record);
    assert_eq!(run_due(&t.gw).await.unwrap(), Ran::default(), "nothing due before the first day of next month");

    // Its day comes: two runners at once (replicas share the store), one claims it.
    t.clock.advance(chrono::Duration::days(32));
    let replica = t.gw.clone();
    let (a, b) = tokio::join!(run_due(&t.gw), run_due(&replica));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.claimed + b.claimed, a.produced + b.produced), (1, 3), "{a:?} {b:?}");
    assert_eq!(run_due(&t.gw).await.unwrap(), Ran::default(), "once");
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'report.run'").await, 3);

    // Each district fetches its own slice, protected against its own ledger.
    let mut scopes = Vec::new();
    for (c, district) in ds.iter_mut().zip(["A", "B", "C"]) {
        let runs = c.reports.list_reports(pb::ListReportsRequest::default()).await.unwrap().into_inner().runs;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!((runs[0].status.as_str(), runs[0].missed), ("PRODUCED", 0));
        let got = c
            .reports
            .get_report(pb::GetReportRequest {
                report_id: defined.report_id.clone(),
                period: runs[0].period.clone(),
                recipient: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!got.cells.is_empty());
        for cell in &got.cells {
            assert!(cell.codes[0] == district || cell.codes[0] == "Total", "{district}: {:?}", cell.codes);
        }
        // The read itself is logged, and the answer carries that record's receipt.
        assert!(got.record.contains("report.fetched") && got.record.contains(&got.table_id), "{}", got.record);
        t.verify_standalone(&got.record, &got.receipt, &["report.fetched", c_id(district)]);
        let decision = t
            .strings(&format!(
                "SELECT json FROM records WHERE kind = 'table.decision' AND json LIKE '%{}%'",
                got.table_id
            ))
            .await;
        assert_eq!(decision.len(), 1);
        let scope: serde_json::Value = serde_json::from_str(&decision[0]).unwrap();
        scopes.push(scope["ledger"]["scope"].as_str().unwrap().to_owned());
        // Its table's completion says it was kept for the report.
        let done = t
            .strings(&format!(
                "SELECT json FROM records WHERE kind = 'table.completed' AND json LIKE '%{}%'",
                got.table_id
            ))
            .await;
        assert!(done.len() == 1 && done[0].contains("KEPT: standing report"), "{done:?}");
    }
    assert_eq!(scopes, ["district-a", "district-b", "district-c"]);

    // Nobody else's run: another district's is not found for it, an outsider sees nothing.
    let period = t.strings("SELECT period FROM report_runs").await.pop().unwrap();
    let err = ds[0]
        .reports
        .get_report(pb::GetReportRequest {
            report_id: defined.report_id.clone(),
            period: period.clone(),
            recipient: "district-b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut outsider = t.consumer("tj-commerce", Level::G2).await;
    assert!(outsider
        .reports
        .list_reports(pb::ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs
        .is_empty());
    let all = off.reports.list_reports(pb::ListReportsRequest::default()).await.unwrap().into_inner().runs;
    assert_eq!(all.len(), 3, "the officer sees every run");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM records WHERE kind = 'report.fetched'").await,
        3,
        "refused reads log nothing"
    );
}

#[tokio::test]
async fn a_missed_period_is_caught_up_once_and_a_run_that_cannot_be_produced_says_why() {
    let t = TestGateway::start().await;
    let (_owner, _ds) = districts(&t).await;
    let _nogrant = t.consumer("district-x", Level::G2).await;
    let mut off = officer(&t).await;
    let defined = off
        .reports
        .define_report(monthly(vec![recipient("district-a", Some("A")), recipient("district-x", None)]))
        .await
        .unwrap()
        .into_inner();
    // The gateway was down for about three months: one run, the skipped periods counted.
    t.clock.advance(chrono::Duration::days(100));
    let ran = run_due(&t.gw).await.unwrap();
    assert_eq!((ran.claimed, ran.produced, ran.not_produced), (1, 1, 1), "{ran:?}");
    assert_eq!(run_due(&t.gw).await.unwrap(), Ran::default());
    let runs = off
        .reports
        .list_reports(pb::ListReportsRequest { report_id: defined.report_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.missed >= 2), "{runs:?}");
    let x = runs.iter().find(|r| r.recipient == "district-x").unwrap();
    assert_eq!(x.status, "NOT_PRODUCED");
    assert!(x.reason.contains("TABLES grant"), "{}", x.reason);
    let recorded = t.strings("SELECT json FROM records WHERE kind = 'report.run' AND json LIKE '%NOT_PRODUCED%'").await;
    assert!(recorded.len() == 1 && recorded[0].contains("TABLES grant"), "{recorded:?}");
    // The next month: exactly one more run each.
    t.clock.advance(chrono::Duration::days(31));
    assert_eq!(run_due(&t.gw).await.unwrap().claimed, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM report_runs").await, 4);
}

#[tokio::test]
async fn reports_are_defined_by_officers_or_owners_and_bad_definitions_change_nothing() {
    let t = TestGateway::start().await;
    let (mut owner, mut ds) = districts(&t).await;
    let err = ds[0].reports.define_report(monthly(vec![recipient("district-a", None)])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let refused = |r: Result<tonic::Response<pb::DefineReportResponse>, tonic::Status>, needle: &str| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{needle}: {}", err.message());
    };
    let mut bad = monthly(vec![recipient("district-a", None)]);
    bad.schedule = "weekly".into();
    refused(owner.reports.define_report(bad).await, "schedule");
    let mut slice = recipient("district-a", None);
    slice.slice = Some(pb::ReportSlice { dimension: "revenue".into(), values: vec!["1".into()] });
    refused(owner.reports.define_report(monthly(vec![slice])).await, "recipients[0].slice.dimension");
    refused(owner.reports.define_report(monthly(vec![recipient("tj-stats", None)])).await, "not an active consumer");
    refused(
        owner.reports.define_report(monthly(vec![recipient("district-a", None), recipient("district-a", None)])).await,
        "named twice",
    );
    refused(owner.reports.define_report(monthly(vec![])).await, "recipients");
    let mut pinned = monthly(vec![recipient("district-a", None)]);
    pinned.table.as_mut().unwrap().version = 1;
    refused(owner.reports.define_report(pinned).await, "table.version");
    assert_eq!(t.count("SELECT COUNT(*) FROM reports").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'report.defined'").await, 0);
    // The owner may define one.
    owner.reports.define_report(monthly(vec![recipient("district-a", None)])).await.unwrap();
    assert_eq!(t.count("SELECT COUNT(*) FROM reports").await, 1);
}

#[tokio::test]
async fn an_on_release_report_runs_for_each_new_release_and_a_stopped_claimers_runs_are_taken_over() {
    let t = TestGateway::start().await;
    let (mut owner, _ds) = districts(&t).await;
    let mut req = monthly(vec![recipient("district-a", Some("A")), recipient("district-b", Some("B"))]);
    req.schedule = "on-release".into();
    let defined = owner.reports.define_report(req).await.unwrap().into_inner();
    assert_eq!(run_due(&t.gw).await.unwrap(), Ran::default(), "version 1 was released before the report");

    // A replica claims version 2 and stops before producing anything.
    publish(&mut owner, "firms", "v2", vec![ages_rows()]).await.unwrap();
    let now = t.gw.clock.now();
    let run = |who: &str| bth_gateway::store::StoredRun {
        report: defined.report_id.clone(),
        period: "v2".into(),
        recipient: bth_gateway::domain::ids::ParticipantId::parse(who).unwrap(),
        status: "PENDING".into(),
        claimed_at: now,
        missed: 0,
        reason: String::new(),
        table_id: None,
        version: None,
        cells: None,
        sha256: None,
        record_seq: None,
    };
    assert!(t
        .gw
        .store
        .claim_period(&defined.report_id, None, "v2", &[run("district-a"), run("district-b")])
        .await
        .unwrap());
    assert!(!t.gw.store.claim_period(&defined.report_id, None, "v2", &[]).await.unwrap(), "claimed once");
    assert_eq!(run_due(&t.gw).await.unwrap(), Ran::default(), "its claim is fresh");
    // After the lease another runner produces them, for exactly version 2.
    t.clock.advance(chrono::Duration::minutes(11));
    let ran = run_due(&t.gw).await.unwrap();
    assert_eq!((ran.claimed, ran.produced), (0, 2), "{ran:?}");
    let versions = t.strings("SELECT CAST(version AS TEXT) FROM report_runs WHERE status = 'PRODUCED'").await;
    assert_eq!(versions, ["2", "2"]);
    // Version 3: one more run each.
    publish(&mut owner, "firms", "v3", vec![ages_rows()]).await.unwrap();
    assert_eq!(run_due(&t.gw).await.unwrap().produced, 2);
    assert_eq!(run_due(&t.gw).await.unwrap(), Ran::default());
}
