//! Publishing: checked values, atomic versions, idempotent retries, limits.

use bth_gateway::domain::classification::Level;
use bth_gateway::pb;
use bth_gateway::wire::RowBatch;
use tonic::Code;

use crate::harness::*;

async fn owner_with_survey(t: &TestGateway) -> Client {
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    owner
}

#[tokio::test]
async fn a_published_version_records_rows_digest_and_publisher() {
    let t = TestGateway::start().await;
    let mut owner = owner_with_survey(&t).await;
    let r = publish(&mut owner, "survey", "2025-q1", vec![survey_rows(5, 0), survey_rows(7, 5)]).await.unwrap();
    let v = r.version.unwrap();
    assert!(r.created);
    assert_eq!((v.version, v.rows, v.publisher.as_str()), (1, 12, "tj-stats"));
    assert_eq!(v.sha256.len(), 64);
    // Re-chunked into chunks of 4 rows whatever the batches were: the same rows give the same
    // digest.
    owner.catalog.register_dataset(survey("survey-b")).await.unwrap();
    let b = publish(&mut owner, "survey-b", "k", vec![survey_rows(12, 0)]).await.unwrap().version.unwrap();
    assert_eq!(b.sha256, v.sha256);
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'version.published'").await, 2);
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_invalid_argument_naming_row_and_field_and_stores_nothing() {
    let t = TestGateway::start().await;
    let mut owner = owner_with_survey(&t).await;
    let mut bad = survey_rows(3, 4).decode().unwrap();
    bad.columns[4] = strings(&["2025-01-01", "2025-13-01", "2025-01-03"]);
    let err = publish(&mut owner, "survey", "k", vec![survey_rows(4, 0), RowBatch::from_columns(3, bad.columns)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("row 5") && err.message().contains("founded"), "{}", err.message());

    let mut bad = survey_rows(2, 0).decode().unwrap();
    bad.columns[5] = strings(&["12", "13"]);
    let err = publish(&mut owner, "survey", "k", vec![RowBatch::from_columns(2, bad.columns)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("employees") && err.message().contains("ints"), "{}", err.message());

    let mut short = survey_rows(2, 0).decode().unwrap();
    short.columns.pop();
    let err = publish(&mut owner, "survey", "k", vec![RowBatch::from_columns(2, short.columns)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    assert_eq!(t.count("SELECT COUNT(*) FROM versions").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM chunks").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM uploads").await, 0);
}

#[tokio::test]
async fn a_cut_publish_stream_leaves_no_trace() {
    let t = TestGateway::start().await;
    let mut owner = owner_with_survey(&t).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header("survey", "cut")).await.unwrap();
    tx.send(batch(survey_rows(9, 0))).await.unwrap();
    let mut publishing = owner.publishing.clone();
    let call = tokio::spawn(async move { publishing.publish(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    // Wait until the server has staged chunks of the upload, then cut the stream.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while t.count("SELECT COUNT(*) FROM chunks").await < 2 {
        assert!(std::time::Instant::now() < deadline, "the upload was never staged");
        tokio::task::yield_now().await;
    }
    // The stream is cut (reset), not ended: the sender stays open until the server has cleaned
    // up (dropping it first could let the body end normally and publish what was sent).
    call.abort();
    while t.count("SELECT COUNT(*) FROM chunks").await + t.count("SELECT COUNT(*) FROM uploads").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the cut upload was not discarded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(tx);
    assert_eq!(t.count("SELECT COUNT(*) FROM versions").await, 0);
    let d = owner.catalog.get_dataset(pb::GetDatasetRequest { id: "survey".into() }).await.unwrap().into_inner();
    assert_eq!(d.latest_version, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM records WHERE kind = 'version.published'").await, 0);
}

#[tokio::test]
async fn retrying_with_the_same_idempotency_key_returns_the_same_version() {
    let t = TestGateway::start().await;
    let mut owner = owner_with_survey(&t).await;
    let first = publish(&mut owner, "survey", "2025-q1", vec![survey_rows(5, 0)]).await.unwrap();
    let again = publish(&mut owner, "survey", "2025-q1", vec![survey_rows(5, 0)]).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.version, again.version);
    assert_eq!(t.count("SELECT COUNT(*) FROM versions").await, 1);
    let err = publish(&mut owner, "survey", "2025-q1", vec![survey_rows(6, 0)]).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(t.count("SELECT COUNT(*) FROM versions").await, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM chunks").await, 2, "only version 1's chunks");
}

#[tokio::test]
async fn only_the_owner_publishes() {
    let t = TestGateway::start().await;
    owner_with_survey(&t).await;
    let mut other = t.publisher("tj-tax").await;
    let err = publish(&mut other, "survey", "k", vec![survey_rows(1, 0)]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    let err = publish(&mut consumer, "survey", "k", vec![survey_rows(1, 0)]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let t = TestGateway::start().await;
    let mut owner = owner_with_survey(&t).await;
    let big = "x".repeat(MAX_MESSAGE + 1);
    let mut cols = survey_rows(1, 0).decode().unwrap().columns;
    cols[0] = strings(&[&big]);
    let err = publish(&mut owner, "survey", "k", vec![RowBatch::from_columns(1, cols)]).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(t.count("SELECT COUNT(*) FROM chunks").await, 0);

    // A unary request over the limit too.
    let mut req = survey("big");
    req.description = big;
    let err = owner.catalog.register_dataset(req).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // The server is still up.
    owner.catalog.list_datasets(pb::ListDatasetsRequest::default()).await.unwrap();
}

#[tokio::test]
async fn a_stream_must_start_with_a_header() {
    let t = TestGateway::start().await;
    let mut owner = owner_with_survey(&t).await;
    let err = owner.publishing.publish(tokio_stream::iter(vec![batch(survey_rows(1, 0))])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("header"));
    let err = owner.publishing.publish(tokio_stream::iter(vec![header("survey", "")])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("idempotency_key"));
}

#[tokio::test]
async fn chunks_are_sized_from_the_schema_to_about_chunk_bytes_and_a_retry_cut_otherwise_is_the_same_version() {
    let limits = bth_gateway::service::Limits { chunk_rows: 8192, chunk_bytes: 4096, ..Default::default() };
    let t = TestGateway::start_with(limits).await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(survey("survey")).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(600, 0), survey_rows(400, 600)]).await.unwrap();
    let chunks = t.count("SELECT COUNT(*) FROM chunks").await;
    let largest = t.count("SELECT CAST(MAX(LENGTH(data)) AS BIGINT) FROM chunks").await;
    assert!(chunks >= 20, "1 000 rows of ~130 bytes in chunks of about 4 KiB, not {chunks}");
    assert!(largest <= 4096 + 512, "a chunk of {largest} bytes");
    assert_eq!(t.count("SELECT CAST(SUM(rows) AS BIGINT) FROM chunks").await, 1000);
    // The same rows cut into other batches (a retry after a lost answer): the same chunks.
    let again = publish(&mut owner, "survey", "v1", vec![survey_rows(1000, 0)]).await.unwrap();
    assert!(!again.created, "a retry with the same rows is the same version");
}

#[tokio::test]
async fn a_publisher_suspended_during_its_upload_publishes_nothing() {
    let t = TestGateway::start().await;
    let owner = owner_with_survey(&t).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header("survey", "during-suspension")).await.unwrap();
    tx.send(batch(survey_rows(9, 0))).await.unwrap();
    let mut publishing = owner.publishing.clone();
    let call = tokio::spawn(async move { publishing.publish(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    while t.count("SELECT COUNT(*) FROM chunks").await < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut admin = t.client("admin").await;
    admin
        .admin
        .suspend_participant(pb::SuspendParticipantRequest { id: "tj-stats".into(), reason: "audit".into() })
        .await
        .unwrap();
    tx.send(batch(survey_rows(3, 9))).await.unwrap();
    drop(tx);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("suspended"), "{}", err.message());
    assert_eq!(t.count("SELECT COUNT(*) FROM versions").await, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.count("SELECT COUNT(*) FROM uploads").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the staged chunks were not discarded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
