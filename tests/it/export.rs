//! Export assessment end to end: holds, approvals, person counts, the officers' queue.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::pb::{self, resolve_hold_request::Resolution};
use bth_gateway::service::Limits;
use bth_gateway::wire::RowBatch;
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::*;

/// A dataset of persons: `person_id` (PI, the person key) and `district`.
fn persons_dataset(id: &str) -> pb::RegisterDatasetRequest {
    use pb::{FieldType as T, Level as L, Pi};
    pb::RegisterDatasetRequest {
        id: id.into(),
        title: "Registered employees".into(),
        government_data: false,
        fields: vec![
            field("person_id", T::String, L::G3, Pi::Pi, None),
            field("district", T::String, L::G1, Pi::None, None),
        ],
        person_key_field: "person_id".into(),
        ..Default::default()
    }
}

/// Publishes persons `from..to` (distinct ids) in batches of 20 000.
async fn publish_persons(owner: &mut Client, dataset: &str, from: u32, to: u32) {
    let mut batches = Vec::new();
    let mut at = from;
    while at < to {
        let n = 20_000.min(to - at);
        batches.push(RowBatch::from_columns(
            n,
            vec![
                pb::Column { strings: (at..at + n).map(|i| format!("P{i:08}")).collect(), ..Default::default() },
                pb::Column { strings: (at..at + n).map(|i| format!("d{}", i % 7)).collect(), ..Default::default() },
            ],
        ));
        at += n;
    }
    publish(owner, dataset, "v1", batches).await.unwrap();
}

async fn officer(t: &TestGateway) -> Client {
    t.register("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-TJ", &[Role::Officer], Level::G1)
        .await
}

async fn hk_partner(t: &TestGateway) -> Client {
    t.register("hk-univ", ParticipantKind::Other, RecipientType::Research, "HK", &[Role::Consumer], Level::G3).await
}

/// The owner `tj-stats` with `survey` published (`rows` rows), a Hong Kong partner granted
/// `enterprise` and `contact` (personal information: an export), and an officer.
async fn hk_survey(t: &TestGateway, rows: u32) -> (Client, Client, Client) {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(rows, 0)]).await.unwrap();
    let mut hk = hk_partner(t).await;
    let off = officer(t).await;
    granted(&mut owner, &mut hk, "survey", &["enterprise", "contact"], pb::Approve::default()).await;
    (owner, hk, off)
}

fn hold_id(err: &tonic::Status) -> String {
    let info = err.get_details_error_info().expect("error details");
    assert_eq!(info.reason, "TRANSFER_HELD");
    info.metadata["hold_id"].clone()
}

fn today() -> String {
    chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).format("%Y-%m-%d").to_string()
}

fn approval(kind: &str, exporter: &str, expires: &str) -> pb::RecordApprovalRequest {
    pb::RecordApprovalRequest {
        id: String::new(),
        r#type: kind.into(),
        exporter: exporter.into(),
        reference: "CAC-2026-17".into(),
        issued: "2026-01-10".into(),
        expires: expires.into(),
        scope: Some(pb::ApprovalScope { destinations: vec!["HK".into()], ..Default::default() }),
    }
}

#[tokio::test]
async fn a_state_organs_personal_information_to_hong_kong_is_held_until_a_security_assessment() {
    let t = TestGateway::start().await;
    let (_owner, mut hk, mut off) = hk_survey(&t, 6).await;

    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("X5") && err.message().contains("REQUIRES_SECURITY_ASSESSMENT"),
        "{}",
        err.message()
    );
    let hold = hold_id(&err);
    // A retry joins the same review item.
    assert_eq!(hold_id(&pull(&mut hk, pull_req("survey")).await.unwrap_err()), hold);

    let holds = off
        .oversight
        .list_holds(pb::ListHoldsRequest { status: "OPEN".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .holds;
    assert_eq!(holds.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&holds[0].details_json).unwrap();
    assert_eq!(details["requirement"]["satisfied_by"], serde_json::json!(["CAC_SA"]));
    assert_eq!(details["requirement"]["region"], "HK");

    let sa = off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    // The officer gets a receipt of the approval's log record, verifiable offline.
    t.verify_receipt(&sa.receipt, &[&sa.id, "approval.recorded"]).await;
    // ... and the record beside it: verifiable offline in one step, with the verifier key alone.
    t.verify_standalone(&sa.record, &sa.receipt, &[&sa.id, "approval.recorded"]);
    let released = off
        .oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: hold,
            resolution: Some(Resolution::ReleaseWithApproval(sa.id.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.status, "RELEASED");
    t.verify_receipt(&released.receipt, &[&released.id, "hold.resolved", "RELEASED"]).await;
    t.verify_standalone(&released.record, &released.receipt, &[&released.id, "hold.resolved", "RELEASED"]);
    let p = pull(&mut hk, pull_req("survey")).await.unwrap();
    let transfer = p.header.transfer_id.clone();
    t.verify_standalone(
        &p.header.decision_record,
        &p.header.decision_receipt,
        &[&transfer, "transfer.decision", &sa.id],
    );
    t.verify_standalone(
        &p.trailer.completion_record,
        &p.trailer.completion_receipt,
        &[&transfer, "transfer.completed"],
    );
    // A record that is not the one proved fails.
    let forged = p.header.decision_record.replace("\"PASS\"", "\"HOLD\"");
    let proved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.verify_standalone(&forged, &p.header.decision_receipt, &[])
    }));
    assert!(proved.is_err(), "a forged record does not verify");
    assert_eq!(p.trailer.rows, 6);
    let d = p.header.decision.unwrap();
    assert!(d.export);
    assert_eq!((d.action.as_str(), d.mechanism.as_str()), ("PASS", "REQUIRES_SECURITY_ASSESSMENT"));

    let revoked = off
        .oversight
        .revoke_approval(pb::RevokeApprovalRequest { id: sa.id.clone(), reason: "withdrawn by CAC".into() })
        .await
        .unwrap()
        .into_inner();
    t.verify_receipt(&revoked.receipt, &[&sa.id, "approval.revoked", "withdrawn by CAC"]).await;
    let listed = off.oversight.list_approvals(pb::ListApprovalsRequest::default()).await.unwrap().into_inner();
    assert!(listed.approvals.iter().all(|a| a.receipt.is_empty()), "listings carry no receipts");
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn an_approval_is_valid_on_its_last_day_and_expired_the_next() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut hk = hk_partner(&t).await;
    let mut off = officer(&t).await;
    granted(&mut owner, &mut hk, "survey", &["contact"], pb::Approve::default()).await;
    off.oversight.record_approval(approval("CAC_SA", "tj-stats", &today())).await.unwrap();
    pull(&mut hk, pull_req("survey")).await.unwrap();
    t.clock.advance(chrono::Duration::days(1));
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let holds = off.oversight.list_holds(pb::ListHoldsRequest::default()).await.unwrap().into_inner().holds;
    let details: serde_json::Value = serde_json::from_str(&holds[0].details_json).unwrap();
    assert_eq!(details["closest_approval"]["check"], "expired");
}

#[tokio::test]
async fn statistical_microdata_never_leaves_and_core_data_is_denied() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    let mut req = survey("survey");
    req.fields[2].level = pb::Level::G4 as i32;
    req.fields[2].stat_micro = true;
    req.fields[1].level = pb::Level::C as i32;
    owner.catalog.register_dataset(req).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut hk = t
        .register(
            "hk-stats",
            ParticipantKind::StateOrgan,
            RecipientType::StatisticsAgency,
            "HK",
            &[Role::Consumer],
            Level::C,
        )
        .await;
    let mut off = officer(&t).await;
    off.oversight.record_approval(approval("CAC_SA", "tj-stats", "")).await.unwrap();
    granted(&mut owner, &mut hk, "survey", &["contact", "district"], pb::Approve::default()).await;
    let err =
        pull(&mut hk, pb::PullRequest { fields: vec!["contact".into()], ..pull_req("survey") }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("X3"), "{}", err.message());
    let err =
        pull(&mut hk, pb::PullRequest { fields: vec!["district".into()], ..pull_req("survey") }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("X2"), "{}", err.message());
}

/// A non-state exporter with large person datasets, an officer and a Hong Kong partner.
async fn counting_setup(t: &TestGateway) -> (Client, Client) {
    let mut sme = t
        .register("sme", ParticipantKind::Other, RecipientType::Enterprise, "CN-TJ", &[Role::Publisher], Level::G4)
        .await;
    let mut hk = hk_partner(t).await;
    for (id, from, to) in [("first", 0, 60_000), ("second", 60_000, 90_000), ("third", 90_000, 120_000)] {
        sme.catalog.register_dataset(persons_dataset(id)).await.unwrap();
        publish_persons(&mut sme, id, from, to).await;
        granted(&mut sme, &mut hk, id, &["person_id", "district"], pb::Approve::default()).await;
    }
    (sme, hk)
}

fn counts(p: &Pulled) -> u64 {
    p.trailer.rows
}

#[tokio::test]
async fn a_non_state_exporters_pulls_crossing_100_000_persons_are_held_and_repeats_count_once() {
    let t = TestGateway::start_with(Limits::default()).await;
    let (_, mut hk) = counting_setup(&t).await;
    // 60 000 persons: V1, allowed.
    assert_eq!(counts(&pull(&mut hk, pull_req("first")).await.unwrap()), 60_000);
    // The same persons again: still 60 000 distinct.
    let again = pull(&mut hk, pull_req("first")).await.unwrap();
    assert_eq!(again.header.decision.as_ref().unwrap().rules, vec!["V1"]);
    // +30 000 = 90 000: allowed.
    pull(&mut hk, pull_req("second")).await.unwrap();
    // +30 000 = 120 000 ≥ 100 000: C2, standard contract filing required.
    let err = pull(&mut hk, pull_req("third")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("C2") && err.message().contains("ALLOW_WITH_SCC_FILING"), "{}", err.message());

    let decisions = t.strings("SELECT json FROM records WHERE kind = 'transfer.decision' ORDER BY seq").await;
    let after: Vec<u64> = decisions
        .iter()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(j).unwrap()["decision"]["counts"]["nonsensitive_after"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(after, vec![60_000, 60_000, 90_000, 120_000]);
    let ledger = t.count("SELECT COUNT(*) FROM export_persons").await;
    assert_eq!(ledger, 90_000, "the held transfer's persons did not enter the ledger");
    // Never the raw person keys: 32-byte keyed hashes only.
    let raw = if on_postgres() {
        "SELECT COUNT(*) FROM export_persons WHERE length(person) != 32 OR position('\\x50303030'::bytea IN person) > 0"
    } else {
        "SELECT COUNT(*) FROM export_persons WHERE length(person) != 32 OR instr(person, CAST('P000' AS BLOB)) > 0"
    };
    assert_eq!(t.count(raw).await, 0);
}

#[tokio::test]
async fn two_concurrent_pulls_cannot_both_slip_under_a_threshold() {
    let t = TestGateway::start_with(Limits::default()).await;
    let (_, mut hk) = counting_setup(&t).await;
    pull(&mut hk, pull_req("first")).await.unwrap();
    let (mut a, mut b) = (hk.clone(), hk.clone());
    let (ra, rb) = tokio::join!(pull(&mut a, pull_req("second")), pull(&mut b, pull_req("third")));
    let passed = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(passed, 1, "60 000 + 30 000 + 30 000 crosses 100 000: exactly one may pass");
}

#[tokio::test]
async fn officers_cannot_release_holds_on_their_own_transfers() {
    let t = TestGateway::start().await;
    let mut owner = t
        .register(
            "tj-stats",
            ParticipantKind::StateOrgan,
            RecipientType::GovDept,
            "CN-TJ",
            &[Role::Publisher, Role::Officer],
            Level::G4,
        )
        .await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut hk = hk_partner(&t).await;
    granted(&mut owner, &mut hk, "survey", &["contact"], pb::Approve::default()).await;
    let hold = hold_id(&pull(&mut hk, pull_req("survey")).await.unwrap_err());
    let mut off = officer(&t).await;
    let sa = off.oversight.record_approval(approval("CAC_SA", "tj-stats", "")).await.unwrap().into_inner();
    let err = owner
        .oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: hold.clone(),
            resolution: Some(Resolution::ReleaseWithApproval(sa.id.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("separation of duties"));
    // An approval of the wrong type does not release it.
    let scc = off.oversight.record_approval(approval("SCC_FILING", "tj-stats", "")).await.unwrap().into_inner();
    let err = off
        .oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: hold.clone(),
            resolution: Some(Resolution::ReleaseWithApproval(scc.id)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let refused = off
        .oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: hold,
            resolution: Some(Resolution::RefuseReason("no legal basis".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.status, "REFUSED");
    // Consumers cannot see the queue or record approvals.
    let err = hk.oversight.list_holds(pb::ListHoldsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn preview_shows_an_exports_decision_without_counting() {
    let t = TestGateway::start_with(Limits::default()).await;
    let (_, mut hk) = counting_setup(&t).await;
    let p = hk.exchange.preview_pull(pull_req("first")).await.unwrap().into_inner();
    let d = p.decision.unwrap();
    assert!(d.export);
    assert_eq!(d.rules, vec!["V1"]);
    assert_eq!(t.count("SELECT COUNT(*) FROM export_persons").await, 0);
}

#[tokio::test]
async fn an_attested_exemption_switches_off_the_volume_rules() {
    let t = TestGateway::start_with(Limits::default()).await;
    let mut sme = t
        .register("sme", ParticipantKind::Other, RecipientType::Enterprise, "CN-TJ", &[Role::Publisher], Level::G4)
        .await;
    let mut hk = hk_partner(&t).await;
    sme.catalog.register_dataset(persons_dataset("big")).await.unwrap();
    publish_persons(&mut sme, "big", 0, 100_000).await;
    let g = hk
        .sharing
        .request_grant(pb::RequestGrantRequest {
            r#use: pb::GrantUse::Rows as i32,
            dataset_id: "big".into(),
            fields: vec!["person_id".into()],
            purpose: "cross-border HR".into(),
            exemption: "CROSS_BORDER_HR".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    sme.sharing
        .decide_grant(pb::DecideGrantRequest {
            grant_id: g.id.clone(),
            decision: Some(pb::decide_grant_request::Decision::Approve(pb::Approve::default())),
        })
        .await
        .unwrap();
    let err = pull(&mut hk, pull_req("big")).await.unwrap_err();
    assert!(err.message().contains("C2"), "unattested claims do not count: {}", err.message());
    let mut off = officer(&t).await;
    let attested =
        off.oversight.attest_exemption(pb::AttestExemptionRequest { grant_id: g.id }).await.unwrap().into_inner();
    assert_eq!(attested.exemption_attested_by, "officer");
    t.verify_receipt(&attested.receipt, &[&attested.id, "exemption.attested"]).await;
    let p = pull(&mut hk, pull_req("big")).await.unwrap();
    assert_eq!(p.header.decision.unwrap().rules, vec!["E3"]);
}

/// Issue 12's first finding: a Hong Kong participant holding both the consumer and the officer
/// roles approved its own export.
#[tokio::test]
async fn an_officer_who_receives_the_transfer_can_neither_approve_nor_revoke_for_it() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(4, 0)]).await.unwrap();
    let mut hk = t
        .register(
            "hk-univ",
            ParticipantKind::Other,
            RecipientType::Research,
            "HK",
            &[Role::Consumer, Role::Officer],
            Level::G3,
        )
        .await;
    granted(&mut owner, &mut hk, "survey", &["enterprise", "contact"], pb::Approve::default()).await;
    let hold = hold_id(&pull(&mut hk, pull_req("survey")).await.unwrap_err());

    // Naming itself as the scope's recipient is refused when recorded ...
    let mut own = approval("CAC_SA", "tj-stats", "2029-01-09");
    own.scope.as_mut().unwrap().recipients = vec!["hk-univ".into()];
    let err = hk.oversight.record_approval(own).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("scope.recipients[0]") && err.message().contains("separation of duties"),
        "{}",
        err.message()
    );

    // ... and an approval it records with an "any recipient" scope never applies to its pulls.
    let any = hk.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "still held: {err:?}");
    assert_eq!(hold_id(&err), hold);
    let err = hk
        .oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: hold.clone(),
            resolution: Some(Resolution::ReleaseWithApproval(any.id.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An independent officer's approval naming it does apply; the recipient cannot revoke it.
    let mut off = officer(&t).await;
    let mut named = approval("CAC_SA", "tj-stats", "2029-01-09");
    named.scope.as_mut().unwrap().recipients = vec!["hk-univ".into()];
    let sa = off.oversight.record_approval(named).await.unwrap().into_inner();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 4);
    let err = hk
        .oversight
        .revoke_approval(pb::RevokeApprovalRequest { id: sa.id.clone(), reason: "mine to drop".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("separation of duties"), "{}", err.message());
}

/// Issue 12: an approval alone left the hold `OPEN` for ever, and a refused hold came back as a
/// fresh `OPEN` one on the next retry.
#[tokio::test]
async fn a_hold_is_released_by_the_pull_that_passes_and_a_refusal_keeps_refusing() {
    let t = TestGateway::start().await;
    let (_owner, mut hk, mut off) = hk_survey(&t, 3).await;
    let holds = |status: &str| pb::ListHoldsRequest { status: status.into(), ..Default::default() };

    // Held; an approval recorded without resolving the hold: the next pull passes and closes it.
    let first = hold_id(&pull(&mut hk, pull_req("survey")).await.unwrap_err());
    t.clock.advance(chrono::Duration::seconds(30));
    let open = off.oversight.list_holds(holds("OPEN")).await.unwrap().into_inner().holds;
    assert_eq!(open.iter().map(|h| h.waited_seconds).collect::<Vec<_>>(), [30], "an open hold has waited until now");
    let sa = off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 3);
    let released = off.oversight.list_holds(holds("RELEASED")).await.unwrap().into_inner().holds;
    assert_eq!(
        released.iter().map(|h| (&h.id[..], &h.approval_id[..])).collect::<Vec<_>>(),
        [(&first[..], &sa.id[..])]
    );
    assert!(off.oversight.list_holds(holds("OPEN")).await.unwrap().into_inner().holds.is_empty());
    let logged = format!(
        "SELECT COUNT(*) FROM records WHERE kind = 'hold.resolved' AND json LIKE '%{first}%' AND json LIKE '%RELEASED%' AND json LIKE '%{}%'",
        sa.id
    );
    assert_eq!(t.count(&logged).await, 1, "the release is logged");

    // Revoked: held again, as a new review item; an officer refuses it.
    off.oversight
        .revoke_approval(pb::RevokeApprovalRequest { id: sa.id.clone(), reason: "withdrawn".into() })
        .await
        .unwrap();
    let second = hold_id(&pull(&mut hk, pull_req("survey")).await.unwrap_err());
    assert_ne!(second, first);
    off.oversight
        .resolve_hold(pb::ResolveHoldRequest {
            hold_id: second.clone(),
            resolution: Some(Resolution::RefuseReason("no legal basis for this partner".into())),
        })
        .await
        .unwrap();
    // The refusal keeps refusing the same transfer instead of queueing it again.
    for _ in 0..2 {
        let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains(&second) && err.message().contains("no legal basis"), "{}", err.message());
    }
    assert!(off.oversight.list_holds(holds("OPEN")).await.unwrap().into_inner().holds.is_empty(), "no new item");

    // The queue filters: by dataset, consumer, exporter, region and age; each hold says how long
    // it has waited.
    t.clock.advance(chrono::Duration::seconds(90));
    let list = |r: pb::ListHoldsRequest| {
        let mut off = off.clone();
        async move { off.oversight.list_holds(r).await.unwrap().into_inner().holds }
    };
    let all = list(pb::ListHoldsRequest::default()).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().map(|h| h.waited_seconds).collect::<Vec<_>>(), [30, 0], "until each was resolved");
    let r = |f: fn(&mut pb::ListHoldsRequest)| {
        let mut r = pb::ListHoldsRequest::default();
        f(&mut r);
        r
    };
    assert_eq!(list(r(|r| r.dataset_id = "survey".into())).await.len(), 2);
    assert_eq!(list(r(|r| r.dataset_id = "other".into())).await.len(), 0);
    assert_eq!(list(r(|r| r.consumer = "hk-univ".into())).await.len(), 2);
    assert_eq!(list(r(|r| r.exporter = "hk-univ".into())).await.len(), 0);
    assert_eq!(list(r(|r| r.region = "HK".into())).await.len(), 2);
    assert_eq!(list(r(|r| r.region = "CN-TJ".into())).await.len(), 0);
    assert_eq!(list(r(|r| r.min_age_seconds = 60)).await.len(), 2);
    assert_eq!(list(r(|r| r.min_age_seconds = 3600)).await.len(), 0);

    // An approval recorded after the refusal covers it: the transfer passes again.
    t.clock.advance(chrono::Duration::seconds(1));
    off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 3);
}

/// Maker-checker (`[policy] confirmed_approvals`): a security assessment recorded by one officer
/// applies only once a second officer confirmed it, each step its own log record.
#[tokio::test]
async fn with_maker_checker_an_approval_applies_only_once_a_second_officer_confirms_it() {
    use bth_gateway::policy::{ApprovalType, PolicyConfig};
    let policy = PolicyConfig { confirmed_approvals: vec![ApprovalType::CacSa], ..PolicyConfig::default() };
    let t = TestGateway::start_with_policy(policy).await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut hk = hk_partner(&t).await;
    let mut maker = officer(&t).await;
    let mut checker = t
        .register(
            "officer-2",
            ParticipantKind::StateOrgan,
            RecipientType::GovDept,
            "CN-TJ",
            &[Role::Officer],
            Level::G1,
        )
        .await;
    granted(&mut owner, &mut hk, "survey", &["enterprise", "contact"], pb::Approve::default()).await;

    let sa = maker.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    assert_eq!(sa.confirmed_by, "");
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "unconfirmed, it does not apply: {err:?}");
    // Nor does it release the hold by hand.
    let release = pb::ResolveHoldRequest {
        hold_id: hold_id(&err),
        resolution: Some(Resolution::ReleaseWithApproval(sa.id.clone())),
    };
    let err = checker.oversight.resolve_hold(release).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("confirmation"), "{}", err.message());

    // The maker cannot check its own work; a type the policy does not name needs no check.
    let err = maker.oversight.confirm_approval(pb::ConfirmApprovalRequest { id: sa.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let scc = maker.oversight.record_approval(approval("SCC_FILING", "tj-stats", "")).await.unwrap().into_inner();
    let err = checker.oversight.confirm_approval(pb::ConfirmApprovalRequest { id: scc.id }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let confirmed = checker
        .oversight
        .confirm_approval(pb::ConfirmApprovalRequest { id: sa.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.confirmed_by, "officer-2");
    t.verify_standalone(
        &confirmed.record,
        &confirmed.receipt,
        &[&sa.id, "approval.confirmed", "\"recorded_by\":\"officer\""],
    );
    let again = checker.oversight.confirm_approval(pb::ConfirmApprovalRequest { id: sa.id.clone() }).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "confirmed once: {again:?}");
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 2);
}

/// Issue 12: an approval row inserted directly into the database (no log record) was used by the
/// next pull's decision. Decisions now rest on logged facts: a row that is not what its
/// `approval.recorded` record says — absent, or altered after it was logged — is not used.
#[tokio::test]
async fn an_approval_row_inserted_or_altered_behind_the_gateways_back_is_not_used() {
    let t = TestGateway::start().await;
    let (_owner, mut hk, mut off) = hk_survey(&t, 2).await;
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition);
    let hk_scope = r#"{"recipients":[],"destinations":["HK"],"purposes":[],"max_persons_nonsensitive":null,"max_persons_sensitive":null}"#;

    // Inserted: no record at all.
    let insert = format!(
        "INSERT INTO approvals (id, kind, exporter, reference, issued, expires, revoked, scope, recorded_by, recorded_at)
         VALUES ('a-forged', 'CAC_SA', 'tj-stats', 'CAC-0', '2026-01-10', NULL, FALSE, '{hk_scope}', 'officer', 0)"
    );
    t.execute(&insert, &insert).await;
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "an unlogged approval is not used: {err:?}");

    // Altered after it was logged: recorded for Singapore, widened to Hong Kong in the database.
    let mut sg = approval("CAC_SA", "tj-stats", "2029-01-09");
    sg.scope.as_mut().unwrap().destinations = vec!["SG".into()];
    let sg = off.oversight.record_approval(sg).await.unwrap().into_inner();
    let widen = format!("UPDATE approvals SET scope = '{hk_scope}' WHERE id = '{}'", sg.id);
    t.execute(&widen, &widen).await;
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a row altered after logging is not used: {err:?}");

    // The same approval recorded through the gateway is used.
    off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 2);
}

/// Issue 12: a grant widened in the database was used. A transfer uses a grant only when the
/// record of its latest change says what the row says.
#[tokio::test]
async fn a_grant_widened_behind_the_gateways_back_is_not_used() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut tj = t.consumer("tj-health", Level::G4).await;
    granted(&mut owner, &mut tj, "survey", &["enterprise"], pb::Approve::default()).await;
    assert_eq!(pull(&mut tj, pull_req("survey")).await.unwrap().trailer.rows, 2);

    let stored = t.strings("SELECT body FROM grants").await.pop().unwrap();
    let narrow = r#"[{"name":"enterprise","mask":null}]"#;
    assert!(stored.contains(narrow), "{stored}");
    let widened = r#"[{"name":"enterprise","mask":null},{"name":"contact","mask":null}]"#;
    let widen = format!("UPDATE grants SET body = REPLACE(body, '{narrow}', '{widened}')");
    t.execute(&widen, &widen).await;
    let mut wide = pull_req("survey");
    wide.fields = vec!["enterprise".into(), "contact".into()];
    let err = pull(&mut tj, wide).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("differs from its log record"), "{}", err.message());
    // Not even the fields it was granted go out under the altered row.
    assert_eq!(pull(&mut tj, pull_req("survey")).await.unwrap_err().code(), Code::PermissionDenied);
}

/// Issue 12: a participant or a dataset altered in the database was read by the rules as the
/// database said. Every fact the rules read must be what its log records say: a recipient moved
/// from Hong Kong to Tianjin in the database (the export would become domestic sharing), or a
/// dataset's classification changed there, refuses the transfer instead of passing it.
#[tokio::test]
async fn a_participant_or_dataset_altered_behind_the_gateways_back_refuses_the_transfer() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(2, 0)]).await.unwrap();
    let mut hk = hk_partner(&t).await;
    granted(&mut owner, &mut hk, "survey", &["enterprise", "contact"], pb::Approve::default()).await;
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition, "held");

    let moved = "UPDATE participants SET region = 'CN-TJ', recipient_type = 'GOV_DEPT' WHERE id = 'hk-univ'";
    t.execute(moved, moved).await;
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("participant hk-univ differs from its log records"), "{}", err.message());
    let back = "UPDATE participants SET region = 'HK', recipient_type = 'RESEARCH' WHERE id = 'hk-univ'";
    t.execute(back, back).await;
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition, "held again");

    t.execute(
        "UPDATE datasets SET government_data = 1 - government_data",
        "UPDATE datasets SET government_data = NOT government_data",
    )
    .await;
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("dataset survey differs from its log records"), "{}", err.message());
}

/// Issue 12: an approval's revocation or confirmation lives in its row, so a database edit could
/// un-revoke an approval or confirm it without a second officer. Both are checked against the
/// `approval.revoked` and `approval.confirmed` records.
#[tokio::test]
async fn an_approval_unrevoked_or_confirmed_behind_the_gateways_back_is_not_used() {
    use bth_gateway::policy::{ApprovalType, PolicyConfig};
    let policy =
        PolicyConfig { confirmed_approvals: vec![ApprovalType::CompetentAuthority], ..PolicyConfig::default() };
    let t = TestGateway::start_with_policy(policy).await;
    let (_owner, mut hk, mut off) = hk_survey(&t, 2).await;

    let sa = off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 2);
    off.oversight
        .revoke_approval(pb::RevokeApprovalRequest { id: sa.id.clone(), reason: "withdrawn by the CAC".into() })
        .await
        .unwrap();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition);
    let unrevoke = format!(
        "UPDATE approvals SET revoked = 0, revoked_by = NULL, revoked_at = NULL, revoke_reason = NULL WHERE id = '{}'",
        sa.id
    );
    let unrevoke_pg = unrevoke.replace("revoked = 0", "revoked = FALSE");
    t.execute(&unrevoke, &unrevoke_pg).await;
    let err = pull(&mut hk, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "an approval revoked in the log stays revoked: {err:?}");

    // Maker-checker: a confirmation written into the row is not a confirmation.
    let mut ca = approval("COMPETENT_AUTHORITY", "tj-stats", "2029-01-09");
    ca.scope = None;
    let ca = off.oversight.record_approval(ca).await.unwrap().into_inner();
    let confirm = format!("UPDATE approvals SET confirmed_by = 'officer-2', confirmed_at = 0 WHERE id = '{}'", ca.id);
    t.execute(&confirm, &confirm).await;
    let listed = off.oversight.list_approvals(pb::ListApprovalsRequest::default()).await.unwrap().into_inner();
    assert!(listed.approvals.iter().any(|a| a.id == ca.id && a.confirmed_by == "officer-2"), "the row says confirmed");
    let decisions = t.strings("SELECT json FROM records WHERE kind = 'transfer.decision' ORDER BY seq").await;
    let cited = |json: &str, id: &str| json.contains(&format!(r#""fact":"approval","id":"{id}""#));
    assert!(!decisions.iter().any(|d| cited(d, &ca.id)), "an approval confirmed only in its row is never cited");
    // A real pull now: the forged confirmation keeps the approval away from the rules.
    let _ = pull(&mut hk, pull_req("survey")).await;
    let last = t.strings("SELECT json FROM records WHERE kind = 'transfer.decision' ORDER BY seq DESC").await;
    assert!(!cited(&last[0], &ca.id), "{}", last[0]);
    assert!(!cited(&last[0], &sa.id), "nor the one un-revoked in its row: {}", last[0]);
}

/// Issue 12: a decision must carry what replay needs — each fact it rests on with the leaf index
/// of the latest record about it, its place in the exporter's person ledger (taken under the
/// ledger's lock, with the decision's time), and the rows it delivers.
#[tokio::test]
async fn decisions_cite_their_facts_by_leaf_and_their_place_in_the_ledger() {
    let t = TestGateway::start().await;
    let (_owner, mut hk, mut off) = hk_survey(&t, 6).await;
    let sa = off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 6);
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 6);
    off.oversight
        .revoke_approval(pb::RevokeApprovalRequest { id: sa.id.clone(), reason: "withdrawn".into() })
        .await
        .unwrap();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition);

    let rows = t
        .strings(
            "SELECT CAST(leaf_index AS TEXT) || ' ' || json FROM records WHERE kind = 'transfer.decision' ORDER BY seq",
        )
        .await;
    let decisions: Vec<(i64, serde_json::Value)> = rows
        .iter()
        .map(|r| {
            let (leaf, json) = r.split_once(' ').unwrap();
            (leaf.parse().unwrap(), serde_json::from_str(json).unwrap())
        })
        .collect();
    let ledgers: Vec<String> = decisions.iter().map(|(_, d)| d["ledger"].to_string()).collect();
    let year = &decisions[0].1["at_local"].as_str().unwrap()[..4];
    assert_eq!(
        ledgers,
        [
            format!(r#"{{"counted":true,"position":0,"year":{year}}}"#),
            format!(r#"{{"counted":true,"position":1,"year":{year}}}"#),
            format!(r#"{{"counted":false,"position":2,"year":{year}}}"#),
        ]
    );
    assert_eq!(decisions[1].1["decision"]["counts"]["nonsensitive_before"], 6, "the first pull's persons");
    for (leaf, d) in &decisions {
        assert_eq!(d["rows"], 6);
        let facts = d["facts"].as_array().unwrap();
        let kinds: Vec<&str> = facts.iter().map(|f| f["fact"].as_str().unwrap()).collect();
        let approvals = if kinds.len() == 7 { vec!["approval"] } else { vec![] };
        assert_eq!(kinds[..6], ["policy", "participant", "participant", "dataset", "version", "grant"], "{d}");
        assert_eq!(kinds[6..], approvals[..], "{d}");
        for f in facts {
            let subject = format!("{}:{}", f["fact"].as_str().unwrap(), f["id"].as_str().unwrap());
            let latest = t
                .count(&format!(
                    "SELECT MAX(leaf_index) FROM records WHERE subject = '{subject}' AND leaf_index < {leaf}"
                ))
                .await;
            assert_eq!(f["leaf"], latest, "{subject} is cited with its latest record before the decision");
        }
    }
    // Revoked, the approval is still given to the rules (as the closest candidate, `revoked`),
    // and cited with its revocation.
    let revoked = decisions[2].1["facts"].as_array().unwrap().iter().find(|f| f["fact"] == "approval").unwrap();
    let kind = t.strings(&format!("SELECT kind FROM records WHERE leaf_index = {}", revoked["leaf"])).await;
    assert_eq!(kind, ["approval.revoked"]);
}

/// Issue 12 item 4: `audit replay` rebuilds the state from the log alone and re-runs the rules on
/// every decision. A clean history replays; a decision whose rules do not follow from its inputs
/// (slipped into the log, which `audit verify` accepts) is named by its leaf; an approval row
/// inserted into the database is named as a row the log does not support.
#[tokio::test]
async fn audit_replay_reproduces_every_decision_and_names_what_was_changed_behind_the_gateway() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(6, 0)]).await.unwrap();
    let mut hk = hk_partner(&t).await;
    let mut off = officer(&t).await;
    let mut tj = t.consumer("tj-health", Level::G4).await;
    granted(&mut owner, &mut hk, "survey", &["enterprise", "contact"], pb::Approve::default()).await;
    granted(&mut owner, &mut tj, "survey", &["enterprise", "contact"], pb::Approve::default()).await;
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition);
    let sa = off.oversight.record_approval(approval("CAC_SA", "tj-stats", "2029-01-09")).await.unwrap().into_inner();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 6);
    assert_eq!(pull(&mut tj, pull_req("survey")).await.unwrap().trailer.rows, 6);
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap().trailer.rows, 6);
    off.oversight
        .revoke_approval(pb::RevokeApprovalRequest { id: sa.id.clone(), reason: "withdrawn".into() })
        .await
        .unwrap();
    assert_eq!(pull(&mut hk, pull_req("survey")).await.unwrap_err().code(), Code::FailedPrecondition);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bth-gateway.toml"), format!("database_url = \"{}\"\n", t.db_url)).unwrap();
    let replay = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bth-gateway"))
            .args(["audit", "replay", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = replay();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("replay: ok"), "{out}");

    // A held decision copied into the log as passed: the log itself stays consistent.
    let forge = "INSERT INTO records (at, kind, actor, json)
         SELECT at, kind, actor, REPLACE(json, '\"action\":\"HOLD\"', '\"action\":\"PASS\"') FROM records
         WHERE seq = (SELECT MAX(seq) FROM records WHERE kind = 'transfer.decision')";
    t.execute(forge, forge).await;
    // The next record integrates the forged one before it.
    assert_eq!(pull(&mut tj, pull_req("survey")).await.unwrap().trailer.rows, 6);
    let forged =
        t.count("SELECT MAX(leaf_index) FROM records WHERE kind = 'transfer.decision' AND transfer IS NULL").await;
    let (code, out) = replay();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("replay: leaf {forged} (transfer.decision")) && out.contains("the rules do not give"),
        "{out}"
    );

    // A count edited: the exporter's ledger no longer adds up to the log's counted decisions.
    let edit = "UPDATE export_counts SET persons = persons - 1 WHERE exporter = 'tj-stats'";
    t.execute(edit, edit).await;
    let (code, out) = replay();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("replay: database ledger tj-stats "), "{out}");
    let undo = "UPDATE export_counts SET persons = persons + 1 WHERE exporter = 'tj-stats'";
    t.execute(undo, undo).await;

    // An approval row no officer recorded.
    let insert = "INSERT INTO approvals (id, kind, exporter, reference, issued, expires, revoked, scope, recorded_by, recorded_at)
         VALUES ('a-forged', 'CAC_SA', 'tj-stats', 'CAC-0', '2026-01-10', NULL, FALSE,
                 '{\"recipients\":[],\"destinations\":[],\"purposes\":[],\"max_persons_nonsensitive\":null,\"max_persons_sensitive\":null}',
                 'officer', 0)";
    t.execute(insert, insert).await;
    let (code, out) = replay();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("a-forged"), "{out}");
}
