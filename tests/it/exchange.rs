//! Pulls: masks, grants, rules, resumption, integrity.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::participant::{ParticipantKind, RecipientType, Role};
use bth_gateway::pb;
use ring::digest;
use tonic::Code;

use crate::harness::*;

async fn published(t: &TestGateway) -> Client {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(6, 0), survey_rows(4, 6)]).await.unwrap();
    owner
}

#[tokio::test]
async fn publish_grant_pull_delivers_every_mask() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let all = [
        "enterprise",
        "district",
        "contact",
        "phone",
        "founded",
        "employees",
        "revenue",
        "score",
        "exporter",
        "audited_at",
        "tax_id",
    ];
    granted(&mut owner, &mut consumer, "survey", &all, pb::Approve::default()).await;
    let p = pull(&mut consumer, pull_req("survey")).await.unwrap();

    let names: Vec<_> = p.header.fields.iter().map(|f| f.name.as_str()).collect();
    assert!(!names.contains(&"tax_id"), "DROP omits the column: {names:?}");
    assert_eq!(p.rows(), 10);
    assert_eq!(p.trailer.rows, 10);
    assert_eq!(p.header.version, 1);

    // NONE: in clear.
    assert_eq!(p.column("enterprise").strings[3], "企业3");
    assert_eq!(p.column("score").doubles[2], 0.5);
    assert_eq!(p.column("exporter").bools[..2], [true, false]);
    // PARTIAL keep_first 1 (and contact is G3, above clearance G2: still its mask, never clear).
    assert_eq!(p.column("contact").strings[7], "张**");
    // HASH: 64 hex digits, stable, not the value.
    let phone = p.column("phone").strings;
    assert!(phone.iter().all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())));
    assert!(!phone[0].contains("1381234"));
    // GENERALIZE_DATE YEAR.
    assert_eq!(p.column("founded").strings[1], "2011");
    // BUCKET 100: employees of row 5 = 185.
    assert_eq!(p.column("employees").strings[5], "[100,200)");
    // REDACT: every row null, no values.
    let audited = p.column("audited_at");
    assert_eq!(audited.nulls.len(), 10);
    assert!(audited.strings.is_empty());
    // Delivered types follow the masks.
    let ty = |n: &str| p.header.fields.iter().find(|f| f.name == n).unwrap().r#type;
    assert_eq!(ty("employees"), pb::FieldType::String as i32);
    assert_eq!(ty("score"), pb::FieldType::Float64 as i32);

    // The trailer's digest covers exactly the delivered batches: SHA-256 over their SHA-256s.
    let mut d = digest::Context::new(&digest::SHA256);
    let mut bytes = 0;
    for b in &p.raw {
        d.update(digest::digest(&digest::SHA256, b.encoded()).as_ref());
        bytes += b.encoded().len() as u64;
    }
    assert_eq!(p.trailer.sha256, hex::encode(d.finish()));
    assert_eq!(p.trailer.bytes, bytes);
}

#[tokio::test]
async fn hash_is_stable_for_a_recipient_and_differs_across_recipients() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut a = t.consumer("consumer-a", Level::G3).await;
    let mut b = t.consumer("consumer-b", Level::G3).await;
    granted(&mut owner, &mut a, "survey", &["phone"], pb::Approve::default()).await;
    granted(&mut owner, &mut b, "survey", &["phone"], pb::Approve::default()).await;
    let a1 = pull(&mut a, pull_req("survey")).await.unwrap().column("phone");
    let a2 = pull(&mut a, pull_req("survey")).await.unwrap().column("phone");
    let b1 = pull(&mut b, pull_req("survey")).await.unwrap().column("phone");
    assert_eq!(a1, a2);
    assert!(a1.strings.iter().zip(&b1.strings).all(|(x, y)| x != y));
}

#[tokio::test]
async fn a_field_above_clearance_without_a_mask_is_redacted() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut low = t.consumer("low-clearance", Level::G1).await;
    granted(&mut owner, &mut low, "survey", &["enterprise", "district"], pb::Approve::default()).await;
    let p = pull(&mut low, pull_req("survey")).await.unwrap();
    let enterprise = p.column("enterprise");
    assert_eq!(enterprise.nulls.len(), 10, "G2 above G1 clearance, no mask: REDACT");
    assert!(enterprise.strings.is_empty());
    assert_eq!(p.column("district").strings.len(), 10, "G1 within clearance");
    let mask = p.header.fields.iter().find(|f| f.name == "enterprise").unwrap().mask.unwrap();
    assert_eq!(mask.kind, pb::MaskKind::Redact as i32);
}

#[tokio::test]
async fn pull_without_a_grant_is_permission_denied() {
    let t = TestGateway::start().await;
    published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("no grant"), "{}", err.message());
}

#[tokio::test]
async fn pull_after_expiry_is_permission_denied() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let expiry = t.clock.now_plus(chrono::Duration::days(30));
    granted(
        &mut owner,
        &mut consumer,
        "survey",
        &["district"],
        pb::Approve { expires_at: Some(expiry), ..Default::default() },
    )
    .await;
    pull(&mut consumer, pull_req("survey")).await.unwrap();
    t.clock.advance(chrono::Duration::days(31));
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("expired"), "{}", err.message());
}

#[tokio::test]
async fn pull_after_revoke_is_permission_denied() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let g = granted(&mut owner, &mut consumer, "survey", &["district"], pb::Approve::default()).await;
    pull(&mut consumer, pull_req("survey")).await.unwrap();
    owner
        .sharing
        .revoke_grant(pb::RevokeGrantRequest { grant_id: g.id, reason: "no longer needed".into() })
        .await
        .unwrap();
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("REVOKED"), "{}", err.message());
}

#[tokio::test]
async fn a_row_filter_is_enforced_in_the_gateway() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let approve = pb::Approve {
        row_filter: Some(pb::RowFilter { field: "district".into(), values: vec!["和平区".into()] }),
        ..Default::default()
    };
    granted(&mut owner, &mut consumer, "survey", &["enterprise", "district", "employees"], approve).await;
    let p = pull(&mut consumer, pull_req("survey")).await.unwrap();
    assert_eq!(p.column("district").strings, vec!["和平区"; 3]);
    assert_eq!(p.column("enterprise").strings, vec!["企业1", "企业4", "企业7"]);
    assert_eq!(p.column("employees").strings, vec!["[0,100)", "[100,200)", "[200,300)"]);
    assert_eq!(p.trailer.rows, 3);
    assert_eq!(p.header.total_batches, 3, "one batch per stored chunk, even when filtered");
    // Issue 12: the decision records the rows the filter selects, not the version's.
    let decision = t.strings("SELECT json FROM records WHERE kind = 'transfer.decision'").await.pop().unwrap();
    let decision: serde_json::Value = serde_json::from_str(&decision).unwrap();
    assert_eq!(decision["rows"], 3, "{decision}");
}

#[tokio::test]
async fn not_shared_fields_are_blocked_by_d3() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    let mut req = survey("survey");
    req.fields[1].share = pb::Share::NotShared as i32;
    owner.catalog.register_dataset(req).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["district"], pb::Approve::default()).await;
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("D3"), "{}", err.message());
    let records = t.count("SELECT COUNT(*) FROM records WHERE kind = 'transfer.decision'").await;
    assert_eq!(records, 1, "the refused pull's decision is recorded");
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'transfer.completed'").await, 0);
}

#[tokio::test]
async fn statistical_microdata_goes_only_to_a_statistics_agency_for_statistics() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    let mut req = survey("survey");
    req.fields[2].level = pb::Level::G4 as i32;
    req.fields[2].stat_micro = true;
    owner.catalog.register_dataset(req).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();

    let mut dept = t.consumer("tj-commerce", Level::G4).await;
    granted(&mut owner, &mut dept, "survey", &["contact"], pb::Approve::default()).await;
    let err = pull(&mut dept, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("D2"), "{}", err.message());

    let mut nbs = t
        .register(
            "nbs",
            ParticipantKind::StateOrgan,
            RecipientType::StatisticsAgency,
            "CN-BJ",
            &[Role::Consumer],
            Level::G4,
        )
        .await;
    let g = nbs
        .sharing
        .request_grant(pb::RequestGrantRequest {
            r#use: pb::GrantUse::Rows as i32,
            dataset_id: "survey".into(),
            fields: vec!["contact".into()],
            purpose: "national census cross-check".into(),
            legal_basis: "统计法 Art. 7".into(),
            statistical_purpose: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    owner
        .sharing
        .decide_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            decision: Some(pb::decide_grant_request::Decision::Approve(pb::Approve::default())),
        })
        .await
        .unwrap();
    let p = pull(&mut nbs, pull_req("survey")).await.unwrap();
    assert_eq!(p.trailer.rows, 3);
}

#[tokio::test]
async fn important_data_is_held_for_officer_approval_by_d5() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    let mut req = survey("survey");
    req.fields[0].level = pb::Level::I as i32;
    owner.catalog.register_dataset(req).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(3, 0)]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::I).await;
    granted(&mut owner, &mut consumer, "survey", &["enterprise"], pb::Approve::default()).await;
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("D5") && err.message().contains("REQUIRES_OFFICER_APPROVAL"), "{}", err.message());
    use tonic_types::StatusExt;
    let info = err.get_details_error_info().expect("rich error details");
    assert_eq!(info.reason, "TRANSFER_HELD");
    assert_eq!(info.metadata["rules"], "D5");
}

#[tokio::test]
async fn preview_shows_the_decision_and_sends_and_records_nothing() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["district", "phone"], pb::Approve::default()).await;
    let before = t.count("SELECT COUNT(*) FROM records").await;
    let p = consumer.exchange.preview_pull(pull_req("survey")).await.unwrap().into_inner();
    assert_eq!(p.rows, 10);
    assert_eq!(p.fields.len(), 2);
    let d = p.decision.unwrap();
    assert!(!d.export);
    assert_eq!(d.action, "PASS");
    assert_eq!(d.rules, vec!["D7"]);
    assert_eq!(t.count("SELECT COUNT(*) FROM records").await, before);
}

#[tokio::test]
async fn pulls_pin_versions_choose_fields_and_resume_from_a_batch() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    publish(&mut owner, "survey", "v2", vec![survey_rows(2, 100)]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["enterprise", "district"], pb::Approve::default()).await;

    let latest = pull(&mut consumer, pull_req("survey")).await.unwrap();
    assert_eq!((latest.header.version, latest.trailer.rows), (2, 2));
    let v1 = pull(&mut consumer, pb::PullRequest { version: 1, ..pull_req("survey") }).await.unwrap();
    assert_eq!((v1.header.version, v1.trailer.rows), (1, 10));

    let one =
        pull(&mut consumer, pb::PullRequest { version: 1, fields: vec!["district".into()], ..pull_req("survey") })
            .await
            .unwrap();
    assert_eq!(one.header.fields.len(), 1);
    assert_eq!(one.batches[0].columns.len(), 1);

    // Chunks hold 4 rows in tests: 10 rows = batches 0..3; resuming at 2 sends rows 8 and 9.
    let resumed =
        pull(&mut consumer, pb::PullRequest { version: 1, from_batch: 2, ..pull_req("survey") }).await.unwrap();
    assert_eq!(resumed.header.total_batches, 3);
    assert_eq!(resumed.column("enterprise").strings, vec!["企业8", "企业9"]);

    let err = pull(&mut consumer, pb::PullRequest { version: 9, ..pull_req("survey") }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err =
        pull(&mut consumer, pb::PullRequest { fields: vec!["phone".into()], ..pull_req("survey") }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "phone is not granted");
}

#[tokio::test]
async fn every_pull_records_its_decision_before_and_its_completion_after() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["district", "contact"], pb::Approve::default()).await;
    let p = pull(&mut consumer, pull_req("survey")).await.unwrap();
    let query = |column: &str| format!("SELECT {column} FROM records WHERE kind LIKE 'transfer.%' ORDER BY seq");
    let rows: Vec<(String, String)> =
        t.strings(&query("kind")).await.into_iter().zip(t.strings(&query("json")).await).collect();
    assert_eq!(rows.len(), 2);
    let decision: serde_json::Value = serde_json::from_str(&rows[0].1).unwrap();
    assert_eq!(rows[0].0, "transfer.decision");
    assert_eq!(decision["transfer"], p.header.transfer_id.as_str());
    assert_eq!(decision["decision"]["action"], "PASS");
    assert_eq!(decision["recipient"]["region"], "CN-TJ");
    assert_eq!(decision["fields"][1]["mask"]["kind"], "PARTIAL");
    assert!(decision["caller"]["cert_sha256"].as_str().unwrap().len() == 64);
    let completion: serde_json::Value = serde_json::from_str(&rows[1].1).unwrap();
    assert_eq!(completion["rows"], 10);
    assert_eq!(completion["sha256"], p.trailer.sha256.as_str());
    // Never a record's values.
    for (_, json) in &rows {
        assert!(!json.contains("张") && !json.contains("和平区"), "{json}");
    }
}

#[tokio::test]
async fn stored_content_that_fails_its_digest_is_data_loss() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    // Flip the last bit of the second chunk.
    t.execute(
        "UPDATE chunks SET data = CAST(substr(data, 1, length(data) - 1)
             || CASE WHEN substr(data, -1) = X'00' THEN X'01' ELSE X'00' END AS BLOB) WHERE seq = 1;",
        "UPDATE chunks SET data = set_byte(data, length(data) - 1, get_byte(data, length(data) - 1) # 1) WHERE seq = 1;",
    )
    .await;
    // Approved after the damage: preparing the extract meets it too, and caches nothing.
    granted(&mut owner, &mut consumer, "survey", &["district"], pb::Approve::default()).await;
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert_eq!(t.gw.chunk_cache.bytes(), 0, "nothing of a damaged version is kept");
}

/// Waits until the gateway's cache holds `n` versions or extracts.
async fn cached_entries(t: &TestGateway, n: usize) {
    for _ in 0..500 {
        if t.gw.chunk_cache.entries() == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the cache holds {} entries, not {n}", t.gw.chunk_cache.entries());
}

#[tokio::test]
async fn a_prepared_extract_delivers_exactly_what_masking_on_the_fly_does() {
    use bth_gateway::service::Limits;
    let fields = ["enterprise", "contact", "phone", "founded", "employees", "revenue", "audited_at"];
    let filter = pb::Approve {
        row_filter: Some(pb::RowFilter {
            field: "district".into(), values: vec!["和平区".into(), "南开区".into()]
        }),
        ..Default::default()
    };
    let mut pulls = Vec::new();
    for prepare in [true, false] {
        // The same secret in both gateways: the same HASH key for the same recipient.
        let t = TestGateway::start_with(Limits { chunk_rows: 4, prepare_extracts: prepare, ..Limits::default() }).await;
        let mut owner = published(&t).await;
        let mut plain = t.consumer("tj-commerce", Level::G2).await;
        let mut filtered = t.consumer("tj-binhai", Level::G2).await;
        granted(&mut owner, &mut plain, "survey", &fields, pb::Approve::default()).await;
        granted(&mut owner, &mut filtered, "survey", &fields, filter.clone()).await;
        if prepare {
            // Both extracts (and the stored version read for them) are prepared in the background
            // before anything is pulled.
            cached_entries(&t, 3).await;
        } else {
            assert_eq!(t.gw.chunk_cache.bytes(), 0, "nothing prepared");
            let subset =
                pull(&mut plain, pb::PullRequest { fields: vec!["phone".into()], ..pull_req("survey") }).await.unwrap();
            assert_eq!(subset.header.fields.len(), 1);
            assert_eq!(t.gw.chunk_cache.entries(), 1, "the stored version is kept, a field subset's extract is not");
        }
        let mut got = Vec::new();
        for c in [&mut plain, &mut filtered] {
            let first = pull(c, pull_req("survey")).await.unwrap();
            let again = pull(c, pull_req("survey")).await.unwrap();
            let resumed = pull(c, pb::PullRequest { from_batch: 1, ..pull_req("survey") }).await.unwrap();
            assert_eq!(first.raw, again.raw, "a second pull (from the cache) sends the same bytes");
            assert_eq!(first.raw[1..], resumed.raw[..], "a resumed pull sends the same later batches");
            assert_eq!(first.trailer.sha256, again.trailer.sha256);
            got.push(first);
        }
        assert!(got[1].rows() < got[0].rows(), "the row filter applies to the prepared extract");
        pulls.push(got);
    }
    for (prepared, on_the_fly) in pulls[0].iter().zip(&pulls[1]) {
        assert_eq!(prepared.raw, on_the_fly.raw);
        assert_eq!(prepared.trailer.sha256, on_the_fly.trailer.sha256);
        assert_eq!(prepared.header.fields, on_the_fly.header.fields);
    }
}

#[tokio::test]
async fn a_revoked_grant_leaves_no_extract_behind() {
    let t = TestGateway::start().await;
    let mut owner = published(&t).await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let g = granted(&mut owner, &mut consumer, "survey", &["district", "phone"], pb::Approve::default()).await;
    cached_entries(&t, 2).await; // the extract and the stored version read for it
    owner.sharing.revoke_grant(pb::RevokeGrantRequest { grant_id: g.id, reason: "ended".into() }).await.unwrap();
    assert_eq!(t.gw.chunk_cache.entries(), 1, "only the stored version is left");
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
