//! Identity: mutual TLS at the handshake, participants looked up on every call.

use bth_gateway::domain::classification::Level;
use bth_gateway::pb;
use bth_gateway::pki::{self, LeafKind};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let t = TestGateway::start().await;
    t.consumer("tj-commerce", Level::G2).await;
    let other_ca = pki::new_ca().unwrap();
    let forged = pki::issue(&other_ca, "tj-commerce", LeafKind::Client).unwrap();
    match t.client_with(Some(&forged), &t.ca.cert).await {
        Err(_) => {}
        Ok(mut c) => {
            let err = c.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap_err();
            // TLS 1.3: the client finishes first; the server's alert arrives on the first call.
            assert!(format!("{err:?}").contains("fatal alert"), "the handshake must fail: {err:?}");
        }
    }
}

#[tokio::test]
async fn no_client_certificate_fails_the_handshake() {
    let t = TestGateway::start().await;
    match t.client_with(None, &t.ca.cert).await {
        Err(_) => {}
        Ok(mut c) => {
            let err = c.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap_err();
            // TLS 1.3: the client finishes first; the server's alert arrives on the first call.
            assert!(format!("{err:?}").contains("fatal alert"), "the handshake must fail: {err:?}");
        }
    }
}

#[tokio::test]
async fn an_unknown_participant_is_unauthenticated() {
    let t = TestGateway::start().await;
    let mut stranger = t.client("stranger").await;
    let err = stranger.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_suspended_participant_is_refused_on_its_next_call() {
    let t = TestGateway::start().await;
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    consumer.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap();
    let mut admin = t.client("admin").await;
    let p = admin
        .admin
        .suspend_participant(pb::SuspendParticipantRequest { id: "tj-commerce".into(), reason: "audit".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.status, pb::ParticipantStatus::Suspended as i32);
    let err = consumer.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("suspended"));
}

#[tokio::test]
async fn admins_register_and_list_participants_and_others_cannot() {
    let t = TestGateway::start().await;
    let mut admin = t.client("admin").await;
    let new = pb::Participant {
        id: "hb-stats".into(),
        display_name: "Hebei Statistics Bureau".into(),
        kind: pb::ParticipantKind::StateOrgan as i32,
        recipient_type: pb::RecipientType::StatisticsAgency as i32,
        region: "CN-HE".into(),
        roles: vec!["consumer".into()],
        clearance: pb::Level::G3 as i32,
        ..Default::default()
    };
    let p = admin
        .admin
        .register_participant(pb::RegisterParticipantRequest { participant: Some(new.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.status, pb::ParticipantStatus::Active as i32);
    let err = admin
        .admin
        .register_participant(pb::RegisterParticipantRequest { participant: Some(new.clone()) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let bad = pb::Participant { id: "x".into(), region: "Hebei".into(), ..new.clone() };
    let err =
        admin.admin.register_participant(pb::RegisterParticipantRequest { participant: Some(bad) }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("participant.region"), "{}", err.message());
    let list = admin.admin.list_participants(pb::ListParticipantsRequest {}).await.unwrap().into_inner();
    assert_eq!(list.participants.len(), 2);

    let mut hb = t.client("hb-stats").await;
    let err = hb.admin.list_participants(pb::ListParticipantsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn shutdown_drains_and_returns_ok() {
    let t = TestGateway::start().await;
    let mut c = t.consumer("tj-commerce", Level::G2).await;
    c.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap();
    drop(c);
    t.stop().await.unwrap();
}
