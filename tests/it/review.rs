//! Review before release end to end (issue 13): three levels, a return, separation of duties,
//! deadlines, and what consumers see meanwhile.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::pb;
use tonic::Code;

use crate::harness::*;

async fn reviewer(t: &TestGateway, id: &str, region: &str) -> Client {
    t.register(id, ParticipantKind::StateOrgan, RecipientType::GovDept, region, &[Role::Reviewer], Level::G4).await
}

fn level(jurisdiction: &str, reviewers: &[&str]) -> pb::ReviewLevel {
    pb::ReviewLevel {
        jurisdiction: jurisdiction.into(),
        reviewers: reviewers.iter().map(|r| r.to_string()).collect(),
        deadline_hours: 24,
    }
}

fn three_levels() -> Vec<pb::ReviewLevel> {
    vec![level("CN-TJ-HP", &["heping-stats"]), level("CN-TJ", &["tianjin-stats"]), level("CN", &["nbs"])]
}

fn step(dataset: &str, version: u64, reasons: &str) -> pb::ReviewVersionRequest {
    pb::ReviewVersionRequest { dataset_id: dataset.into(), version, reasons: reasons.into() }
}

/// The owner (with a policy of `levels`), a consumer granted two fields, and the three reviewers.
struct World {
    t: TestGateway,
    owner: Client,
    consumer: Client,
    heping: Client,
    tianjin: Client,
    nbs: Client,
}

async fn world(levels: Vec<pb::ReviewLevel>) -> World {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    let heping = reviewer(&t, "heping-stats", "CN-TJ-HP").await;
    let tianjin = reviewer(&t, "tianjin-stats", "CN-TJ").await;
    let nbs = reviewer(&t, "nbs", "CN").await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["enterprise", "district"], pb::Approve::default()).await;
    if !levels.is_empty() {
        let set = owner
            .review
            .set_review_policy(pb::SetReviewPolicyRequest { dataset_id: "survey".into(), levels })
            .await
            .unwrap()
            .into_inner();
        assert!(set.record.contains("review_policy.set"), "{}", set.record);
    }
    World { t, owner, consumer, heping, tianjin, nbs }
}

#[tokio::test]
async fn a_version_reaches_consumers_only_once_the_third_level_approves_it() {
    let mut w = world(Vec::new()).await;
    publish(&mut w.owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();
    assert_eq!(pull(&mut w.consumer, pull_req("survey")).await.unwrap().trailer.rows, 3, "no policy: released");
    w.owner
        .review
        .set_review_policy(pb::SetReviewPolicyRequest { dataset_id: "survey".into(), levels: three_levels() })
        .await
        .unwrap();
    publish(&mut w.owner, "survey", "v2", vec![survey_rows(5, 0)]).await.unwrap();

    // Meanwhile consumers see version 1 only; the owner sees version 2 in review.
    let p = pull(&mut w.consumer, pull_req("survey")).await.unwrap();
    assert_eq!((p.header.version, p.trailer.rows), (1, 3));
    let mut pinned = pull_req("survey");
    pinned.version = 2;
    let err = pull(&mut w.consumer, pinned.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let get = pb::GetDatasetRequest { id: "survey".into() };
    assert_eq!(w.consumer.catalog.get_dataset(get.clone()).await.unwrap().into_inner().latest_version, 1);
    let mine = w.owner.catalog.get_dataset(get.clone()).await.unwrap().into_inner();
    let statuses: Vec<(u64, String)> = mine.versions.iter().map(|v| (v.version, v.status.clone())).collect();
    assert_eq!(statuses, [(2, "IN_REVIEW".to_owned()), (1, "RELEASED".to_owned())]);

    // Each level in turn; a later level cannot jump ahead.
    let queue = |c: &mut Client| {
        let mut c = c.review.clone();
        async move { c.list_reviews(pb::ListReviewsRequest::default()).await.unwrap().into_inner().versions }
    };
    assert_eq!(queue(&mut w.heping).await.len(), 1);
    assert!(queue(&mut w.tianjin).await.is_empty(), "not its level yet");
    let err = w.tianjin.review.approve_version(step("survey", 2, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not a reviewer of level 0 (CN-TJ-HP)"), "{}", err.message());
    let first = w.heping.review.approve_version(step("survey", 2, "")).await.unwrap().into_inner();
    assert_eq!((first.status.as_str(), first.level, first.jurisdiction.as_str()), ("IN_REVIEW", 1, "CN-TJ"));
    assert!(first.record.contains("version.reviewed") && !first.receipt.is_empty(), "{}", first.record);
    w.tianjin.review.approve_version(step("survey", 2, "municipal totals agree")).await.unwrap();
    assert_eq!(pull(&mut w.consumer, pull_req("survey")).await.unwrap().header.version, 1, "two of three levels");
    let last = w.nbs.review.approve_version(step("survey", 2, "")).await.unwrap().into_inner();
    assert_eq!((last.status.as_str(), last.steps.len()), ("RELEASED", 3));
    assert!(last.record.contains(r#""status":"RELEASED""#), "{}", last.record);
    let again = w.nbs.review.approve_version(step("survey", 2, "")).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    // Released: consumers see it, and the pull's decision cites its release.
    let p = pull(&mut w.consumer, pull_req("survey")).await.unwrap();
    assert_eq!((p.header.version, p.trailer.rows), (2, 5));
    assert_eq!(pull(&mut w.consumer, pinned).await.unwrap().trailer.rows, 5);
    assert_eq!(w.consumer.catalog.get_dataset(get).await.unwrap().into_inner().latest_version, 2);
    let decision: serde_json::Value = serde_json::from_str(&p.header.decision_record).unwrap();
    let cited = decision["facts"].as_array().unwrap().iter().find(|f| f["fact"] == "version").unwrap().clone();
    assert_eq!(cited["id"], "survey@2");
    let kind = w.t.strings(&format!("SELECT kind FROM records WHERE leaf_index = {}", cited["leaf"])).await;
    assert_eq!(kind, ["version.reviewed"], "the release is the last review step");
    assert!(queue(&mut w.heping).await.is_empty());

    // The whole history replays from the log: each step follows from the logged policy.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bth-gateway.toml"), format!("database_url = \"{}\"\n", w.t.db_url)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bth-gateway"))
        .args(["audit", "replay", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // A version released in the database only: replay names the row the log does not support
    // through the decision that would use it; the gateway refuses it outright (see below).
}

#[tokio::test]
async fn a_version_returned_at_the_second_level_is_never_seen_by_a_consumer() {
    let mut w = world(three_levels()).await;
    publish(&mut w.owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();
    w.heping.review.approve_version(step("survey", 1, "")).await.unwrap();
    let err = w.tianjin.review.return_version(step("survey", 1, "  ")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("reasons"), "{}", err.message());
    let returned = w.tianjin.review.return_version(step("survey", 1, "区县合计与市级不符")).await.unwrap().into_inner();
    assert_eq!(returned.status, "RETURNED");
    let late = w.nbs.review.approve_version(step("survey", 1, "")).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "a returned version stays returned: {late:?}");

    let err = pull(&mut w.consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut pinned = pull_req("survey");
    pinned.version = 1;
    assert_eq!(pull(&mut w.consumer, pinned.clone()).await.unwrap_err().code(), Code::NotFound);
    let preview = w.consumer.exchange.preview_pull(pinned.clone()).await.unwrap_err();
    assert_eq!(preview.code(), Code::NotFound);
    // Nor as a table: latest or pinned, there is no released version to tabulate.
    crate::tables::tables_grant(&mut w.owner, &mut w.consumer, "survey", &["district"], &[]).await;
    for version in [0, 1] {
        let req =
            pb::TabulateRequest { version, ..crate::tables::count_of("survey", vec![crate::tables::dim("district")]) };
        let err = w.consumer.exchange.preview_tabulate(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(err.message().contains("version"), "{}", err.message());
        let err = match w.consumer.exchange.tabulate(req).await {
            Err(e) => e,
            Ok(stream) => stream.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    let get = pb::GetDatasetRequest { id: "survey".into() };
    assert_eq!(w.consumer.catalog.get_dataset(get).await.unwrap().into_inner().latest_version, 0);
    let mut officer = w
        .t
        .register("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Officer], Level::G1)
        .await;
    let queue = officer.review.list_reviews(pb::ListReviewsRequest::default()).await.unwrap().into_inner();
    assert!(queue.versions.is_empty(), "returned, it awaits nobody");

    // Released only in the database: the row is not what its records say, so it is not used.
    w.t.execute("UPDATE versions SET status = 'RELEASED'", "UPDATE versions SET status = 'RELEASED'").await;
    let err = pull(&mut w.consumer, pinned).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("version survey@1 differs from its log records"), "{}", err.message());
}

#[tokio::test]
async fn review_policies_name_reviewers_of_their_jurisdiction_and_only_the_owner_sets_them() {
    let mut w = world(Vec::new()).await;
    let review = w.owner.review.clone();
    let set = |levels: Vec<pb::ReviewLevel>| {
        let mut c = review.clone();
        async move { c.set_review_policy(pb::SetReviewPolicyRequest { dataset_id: "survey".into(), levels }).await }
    };
    let refused = |r: Result<tonic::Response<pb::SetReviewPolicyResponse>, tonic::Status>, needle: &str| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{needle}: {}", err.message());
    };
    refused(
        set(vec![level("CN-TJ", &["heping-stats"])]).await,
        "levels[0].reviewers[0]: heping-stats is registered in CN-TJ-HP",
    );
    refused(set(vec![level("CN-TJ-HP", &["tj-commerce"])]).await, "tj-commerce does not hold the reviewer role");
    refused(set(vec![level("CN-TJ-HP", &["tj-stats"])]).await, "does not hold the reviewer role");
    refused(set(vec![level("CN-TJ-HP", &["nobody"])]).await, "no participant nobody");
    refused(
        set(vec![level("CN-TJ-HP", &["heping-stats"]), level("CN-TJ-HP", &["heping-stats"])]).await,
        "heping-stats is named twice",
    );
    refused(set(vec![level("HK", &["heping-stats"])]).await, "not a mainland jurisdiction");
    refused(set(vec![level("CN-TJ-hp", &["heping-stats"])]).await, "levels[0].jurisdiction");
    let mut zero = level("CN-TJ-HP", &["heping-stats"]);
    zero.deadline_hours = 0;
    refused(set(vec![zero]).await, "deadline_hours");
    // Nothing was recorded by the refusals.
    assert_eq!(w.t.count("SELECT COUNT(*) FROM records WHERE kind = 'review_policy.set'").await, 0);

    let err = w
        .consumer
        .review
        .set_review_policy(pb::SetReviewPolicyRequest { dataset_id: "survey".into(), levels: three_levels() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // A reviewer approves nothing of a version released without review.
    publish(&mut w.owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let err = w.heping.review.approve_version(step("survey", 1, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // The policy set, then removed: the next version is released when published.
    set(three_levels()).await.unwrap();
    publish(&mut w.owner, "survey", "v2", vec![survey_rows(4, 0)]).await.unwrap();
    set(Vec::new()).await.unwrap();
    publish(&mut w.owner, "survey", "v3", vec![survey_rows(6, 0)]).await.unwrap();
    let p = pull(&mut w.consumer, pull_req("survey")).await.unwrap();
    assert_eq!((p.header.version, p.trailer.rows), (3, 6), "version 2 stays in review under its policy");
    let _ = &mut w.tianjin;
}

#[tokio::test]
async fn reviews_past_their_levels_deadline_are_listed_as_overdue() {
    let mut w = world(three_levels()).await;
    publish(&mut w.owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();
    let overdue = |c: &mut Client| {
        let mut c = c.review.clone();
        async move {
            c.list_reviews(pb::ListReviewsRequest { dataset_id: "survey".into(), overdue_only: true })
                .await
                .unwrap()
                .into_inner()
                .versions
        }
    };
    assert!(overdue(&mut w.owner).await.is_empty());
    w.t.clock.advance(chrono::Duration::hours(25));
    let late = overdue(&mut w.owner).await;
    assert_eq!(late.len(), 1);
    assert!(late[0].overdue && late[0].level == 0 && late[0].reviewers == ["heping-stats"], "{late:?}");
    // The level's approval starts the next level's deadline.
    w.heping.review.approve_version(step("survey", 1, "")).await.unwrap();
    assert!(overdue(&mut w.owner).await.is_empty());
    w.t.clock.advance(chrono::Duration::hours(25));
    assert_eq!(overdue(&mut w.tianjin).await.len(), 1, "the municipal level is now late");
    let err = w.consumer.review.list_reviews(pb::ListReviewsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "a consumer sees no review queue: {err:?}");
}

#[tokio::test]
async fn the_owner_and_the_named_reviewers_preview_a_version_in_review_and_each_preview_is_logged() {
    let mut w = world(three_levels()).await;
    publish(&mut w.owner, "survey", "v1", vec![survey_rows(10, 0)]).await.unwrap();
    let req = |max_rows| pb::PreviewVersionRequest { dataset_id: "survey".into(), version: 1, max_rows };
    let err = w.tianjin.review.preview_version(req(5)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "not its level yet: {err:?}");
    let p = w.heping.review.preview_version(req(5)).await.unwrap().into_inner();
    assert_eq!(p.status, "IN_REVIEW");
    let sent: u64 = p.batches.iter().map(|b| u64::from(b.split().unwrap().0)).sum();
    assert!(p.rows >= 5 && p.rows < 10 && p.rows == sent, "{} {sent}", p.rows);
    assert!(
        !p.fields.is_empty() && p.record.contains("version.previewed") && p.record.contains(r#""seen_as":"reviewer""#)
    );
    assert!(!p.receipt.is_empty());
    let own = w.owner.review.preview_version(req(0)).await.unwrap().into_inner();
    assert_eq!(own.rows, 10, "0 means 100; the version has 10");
    assert!(own.record.contains(r#""seen_as":"owner""#), "{}", own.record);
    assert_eq!(w.t.count("SELECT COUNT(*) FROM records WHERE kind = 'version.previewed'").await, 2);

    // Nobody else, and no more than the limit.
    let err = w.consumer.review.preview_version(req(5)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let mut stranger = reviewer(&w.t, "hexi-stats", "CN-TJ-HX").await;
    assert_eq!(stranger.review.preview_version(req(5)).await.unwrap_err().code(), Code::PermissionDenied);
    let err = w.nbs.review.preview_version(req(1001)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("max_rows"), "{}", err.message());
    assert_eq!(
        w.t.count("SELECT COUNT(*) FROM records WHERE kind = 'version.previewed'").await,
        2,
        "refusals log nothing"
    );
    // A preview does not move the version's review: the decision facts still cite its publication.
    let latest = w.t.strings("SELECT kind FROM records WHERE subject = 'version:survey@1' ORDER BY seq DESC").await;
    assert_eq!(latest[0], "version.published");
}

#[tokio::test]
async fn monitoring_shows_late_releases_review_backlogs_and_late_regions() {
    let mut w = world(three_levels()).await;
    let cadence = |c: &str| pb::SetCadenceRequest { dataset_id: "survey".into(), cadence: c.into() };
    for (bad, needle) in
        [("on-release", "monthly:DAY or quarterly:DAY"), ("monthly:32", "day 32"), ("weekly", "unknown")]
    {
        let err = w.owner.monitoring.set_cadence(cadence(bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().starts_with("cadence: ") && err.message().contains(needle), "{}", err.message());
    }
    let err = w.consumer.monitoring.set_cadence(cadence("monthly:5")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let set = w.owner.monitoring.set_cadence(cadence("monthly:5")).await.unwrap().into_inner();
    assert!(set.record.contains("cadence.set") && set.record.contains("monthly:5"), "{}", set.record);

    let mut officer = w
        .t
        .register("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Officer], Level::G1)
        .await;
    let status = |c: &mut Client, late_only| {
        let mut c = c.monitoring.clone();
        async move {
            c.dataset_status(pb::DatasetStatusRequest { dataset_id: String::new(), late_only })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let s = status(&mut officer, false).await;
    assert_eq!(s.datasets.len(), 1);
    let h = &s.datasets[0];
    assert_eq!((h.cadence.as_str(), h.late, h.last_release_version), ("monthly:5", false, 0));
    assert!(h.next_due.is_some() && s.late_regions.is_empty());

    // Forty days without a release: late, and its owner's region is listed.
    w.t.clock.advance(chrono::Duration::days(40));
    let s = status(&mut officer, true).await;
    assert_eq!(s.datasets.len(), 1, "{s:?}");
    assert!(s.datasets[0].late);
    assert_eq!(s.late_regions.len(), 1);
    assert_eq!((s.late_regions[0].region.clone(), s.late_regions[0].datasets), (s.datasets[0].owner_region.clone(), 1));

    // A version in review shows in the first level's backlog, overdue after its deadline.
    publish(&mut w.owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();
    w.t.clock.advance(chrono::Duration::hours(25));
    let h = status(&mut w.owner, false).await.datasets.remove(0);
    assert_eq!(h.backlog.len(), 1);
    let b = &h.backlog[0];
    assert_eq!((b.level, b.jurisdiction.as_str(), b.versions, b.overdue), (0, "CN-TJ-HP", 1, 1));
    assert!(h.late, "in review is not released");

    // Released by all three levels: no longer late, nothing in review.
    for r in [&mut w.heping, &mut w.tianjin, &mut w.nbs] {
        r.review.approve_version(step("survey", 1, "")).await.unwrap();
    }
    let h = status(&mut officer, false).await.datasets.remove(0);
    assert_eq!((h.last_release_version, h.late, h.backlog.len()), (1, false, 0), "{h:?}");
    assert!(status(&mut officer, true).await.datasets.is_empty());
    let err = w.consumer.monitoring.dataset_status(pb::DatasetStatusRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}
