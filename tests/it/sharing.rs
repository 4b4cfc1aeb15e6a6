//! Sharing: requests, owner decisions that only narrow, revocation.

use bth_gateway::domain::classification::Level;
use bth_gateway::pb::{self, decide_grant_request::Decision};
use tonic::Code;

use crate::harness::*;

async fn setup(t: &TestGateway) -> (Client, Client) {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    (owner, t.consumer("tj-commerce", Level::G2).await)
}

fn request(fields: &[&str]) -> pb::RequestGrantRequest {
    pb::RequestGrantRequest {
        r#use: pb::GrantUse::Rows as i32,
        dataset_id: "survey".into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purpose: "industry statistics".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_grant_request_is_checked() {
    let t = TestGateway::start().await;
    let (_, mut consumer) = setup(&t).await;
    let err = consumer.sharing.request_grant(request(&[])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = consumer.sharing.request_grant(request(&["nope"])).await.unwrap_err();
    assert!(err.message().contains("fields[0]"), "{}", err.message());
    let err = consumer
        .sharing
        .request_grant(pb::RequestGrantRequest { purpose: " ".into(), ..request(&["district"]) })
        .await
        .unwrap_err();
    assert!(err.message().contains("purpose"), "{}", err.message());
    // NUL and other control characters in free text are refused (PostgreSQL cannot store NUL).
    for bad in ["for\0statistics", "for \u{1b}[2Jstatistics"] {
        let err = consumer
            .sharing
            .request_grant(pb::RequestGrantRequest { legal_basis: bad.into(), ..request(&["district"]) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("legal_basis") && err.message().contains("control"), "{}", err.message());
    }
    let none = consumer.sharing.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner();
    assert!(none.grants.is_empty(), "nothing stored");
    let multi_line =
        pb::RequestGrantRequest { purpose: "industry\tstatistics\r\n2025".into(), ..request(&["district"]) };
    consumer.sharing.request_grant(multi_line).await.unwrap();
    let g = consumer.sharing.request_grant(request(&["district", "phone"])).await.unwrap().into_inner();
    assert_eq!(g.status, pb::GrantStatus::Pending as i32);
}

#[tokio::test]
async fn the_owner_may_only_narrow_a_grant() {
    let t = TestGateway::start().await;
    let (mut owner, mut consumer) = setup(&t).await;
    let g = consumer.sharing.request_grant(request(&["district", "phone", "contact"])).await.unwrap().into_inner();
    let decide =
        |a: pb::Approve| pb::DecideGrantRequest { grant_id: g.id.clone(), decision: Some(Decision::Approve(a)) };

    let wider = pb::Approve { fields: vec!["tax_id".into()], ..Default::default() };
    let err = owner.sharing.decide_grant(decide(wider)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let looser = pb::Approve {
        masks: [("phone".to_owned(), mask(pb::MaskKind::None))].into_iter().collect(),
        ..Default::default()
    };
    let err = owner.sharing.decide_grant(decide(looser)).await.unwrap_err();
    assert!(err.message().contains("approve.masks[phone]"), "{}", err.message());
    let err = consumer.sharing.decide_grant(decide(pb::Approve::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "the consumer cannot approve its own request");

    let narrowed = pb::Approve {
        fields: vec!["district".into(), "contact".into()],
        masks: [("contact".to_owned(), mask(pb::MaskKind::Redact))].into_iter().collect(),
        ..Default::default()
    };
    let g2 = owner.sharing.decide_grant(decide(narrowed)).await.unwrap().into_inner();
    assert_eq!(g2.status, pb::GrantStatus::Approved as i32);
    assert_eq!(g2.fields.len(), 2);
    let err = owner.sharing.decide_grant(decide(pb::Approve::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "decided twice");
}

#[tokio::test]
async fn a_refused_grant_cannot_be_pulled_and_says_why() {
    let t = TestGateway::start().await;
    let (mut owner, mut consumer) = setup(&t).await;
    publish(&mut owner, "survey", "v1", vec![survey_rows(1, 0)]).await.unwrap();
    let g = consumer.sharing.request_grant(request(&["district"])).await.unwrap().into_inner();
    let err = owner
        .sharing
        .decide_grant(pb::DecideGrantRequest {
            grant_id: g.id.clone(),
            decision: Some(Decision::Refuse(pb::Refuse::default())),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("refuse.reason"));
    let refused = owner
        .sharing
        .decide_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            decision: Some(Decision::Refuse(pb::Refuse { reason: "no legal basis".into() })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.refusal_reason, "no legal basis");
    let err = pull(&mut consumer, pull_req("survey")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("REFUSED"), "{}", err.message());
}

#[tokio::test]
async fn grants_are_listed_to_their_parties_only() {
    let t = TestGateway::start().await;
    let (mut owner, mut consumer) = setup(&t).await;
    consumer.sharing.request_grant(request(&["district"])).await.unwrap();
    let mut third = t.consumer("tj-tax", Level::G2).await;
    let list = |c: &mut Client| {
        let mut c = c.sharing.clone();
        async move { c.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner().grants.len() }
    };
    assert_eq!(list(&mut owner).await, 1);
    assert_eq!(list(&mut consumer).await, 1);
    assert_eq!(list(&mut third).await, 0);
}

#[tokio::test]
async fn grant_decisions_answer_with_a_receipt_of_their_log_record() {
    let t = TestGateway::start().await;
    let (mut owner, mut consumer) = setup(&t).await;
    let g = consumer.sharing.request_grant(request(&["district"])).await.unwrap().into_inner();
    let approve =
        pb::DecideGrantRequest { grant_id: g.id.clone(), decision: Some(Decision::Approve(Default::default())) };
    let approved = owner.sharing.decide_grant(approve).await.unwrap().into_inner();
    t.verify_receipt(&approved.receipt, &[&g.id, "grant.approved"]).await;
    let revoked = consumer
        .sharing
        .revoke_grant(pb::RevokeGrantRequest { grant_id: g.id.clone(), reason: "no longer needed".into() })
        .await
        .unwrap()
        .into_inner();
    t.verify_receipt(&revoked.receipt, &[&g.id, "grant.revoked", "no longer needed"]).await;
    let listed = consumer.sharing.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner();
    assert!(listed.grants.iter().all(|g| g.receipt.is_empty()), "listings carry no receipts");
}
