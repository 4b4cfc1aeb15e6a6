//! The bad-input corpus: malformed, unset, out-of-range and undecodable requests to every RPC.
//! Each is refused with the expected code, names the offending field (in the message or the
//! `BadRequest` detail), writes nothing, and leaves the gateway answering normal calls.

use bth_gateway::domain::classification::Level;
use bth_gateway::domain::ids::ParticipantId;
use bth_gateway::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use bth_gateway::grpc::status::{UNDECODABLE_FIELD, UNDECODABLE_MESSAGE};
use bth_gateway::pb::{self, audit_client::AuditClient};
use bth_gateway::service::{participants, ServiceError};
use bth_gateway::wire::RowBatch;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::harness::*;

/// 2^63: the first size or index that no longer fits the store's signed 64-bit integers.
const TWO_63: u64 = 1 << 63;

/// Every field of `r` with its share attribute set (to `CONDITIONAL` where unset): the corpus
/// starts from fully classified requests and unsets one thing at a time.
fn classified(mut r: pb::RegisterDatasetRequest) -> pb::RegisterDatasetRequest {
    for f in &mut r.fields {
        if f.share == 0 {
            f.share = pb::Share::Conditional as i32;
        }
    }
    r
}

// ---- a codec that sends arbitrary bytes as a gRPC message ----

/// Sends each `Vec<u8>` as one gRPC message, as is; reads answers as bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use prost::bytes::Buf;
        let out = src.chunk().to_vec();
        src.advance(out.len());
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Bodies that are not the protobuf encoding of any message.
const GARBAGE: &[(&str, &[u8])] = &[
    ("an invalid wire type", &[0x0f]),
    ("a length-delimited field longer than the body", &[0x0a, 0x05, b'a']),
    ("a varint of eleven bytes", &[0xff; 11]),
    ("field number zero", &[0x00, 0x01]),
];

/// Every method of the gateway's services.
const METHODS: &[&str] = &[
    "/bth.gateway.v1.Catalog/RegisterDataset",
    "/bth.gateway.v1.Catalog/GetDataset",
    "/bth.gateway.v1.Catalog/ListDatasets",
    "/bth.gateway.v1.Publishing/Publish",
    "/bth.gateway.v1.Sharing/RequestGrant",
    "/bth.gateway.v1.Sharing/DecideGrant",
    "/bth.gateway.v1.Sharing/RevokeGrant",
    "/bth.gateway.v1.Sharing/ListGrants",
    "/bth.gateway.v1.Exchange/Pull",
    "/bth.gateway.v1.Exchange/PreviewPull",
    "/bth.gateway.v1.Oversight/ListHolds",
    "/bth.gateway.v1.Oversight/RecordApproval",
    "/bth.gateway.v1.Oversight/RevokeApproval",
    "/bth.gateway.v1.Oversight/ListApprovals",
    "/bth.gateway.v1.Oversight/ResolveHold",
    "/bth.gateway.v1.Oversight/AttestExemption",
    "/bth.gateway.v1.Admin/RegisterParticipant",
    "/bth.gateway.v1.Admin/SuspendParticipant",
    "/bth.gateway.v1.Admin/ListParticipants",
    "/bth.gateway.v1.Audit/GetCheckpoint",
    "/bth.gateway.v1.Audit/ListCheckpoints",
    "/bth.gateway.v1.Audit/GetEntries",
    "/bth.gateway.v1.Audit/GetInclusionProof",
    "/bth.gateway.v1.Audit/GetConsistencyProof",
    "/bth.gateway.v1.Audit/ListTransfers",
];

// ---- the corpus ----

/// One request of the corpus.
enum Call {
    RegisterDataset(pb::RegisterDatasetRequest),
    GetDataset(pb::GetDatasetRequest),
    ListDatasets(pb::ListDatasetsRequest),
    Publish(Vec<pb::PublishRequest>),
    RequestGrant(pb::RequestGrantRequest),
    DecideGrant(pb::DecideGrantRequest),
    RevokeGrant(pb::RevokeGrantRequest),
    ListGrants(pb::ListGrantsRequest),
    Pull(pb::PullRequest),
    PreviewPull(pb::PullRequest),
    ListHolds(pb::ListHoldsRequest),
    RecordApproval(pb::RecordApprovalRequest),
    RevokeApproval(pb::RevokeApprovalRequest),
    ListApprovals(pb::ListApprovalsRequest),
    ResolveHold(pb::ResolveHoldRequest),
    AttestExemption(pb::AttestExemptionRequest),
    RegisterParticipant(pb::RegisterParticipantRequest),
    SuspendParticipant(pb::SuspendParticipantRequest),
    GetCheckpoint(pb::GetCheckpointRequest),
    ListCheckpoints(pb::ListCheckpointsRequest),
    GetEntries(pb::GetEntriesRequest),
    GetInclusionProof(pb::GetInclusionProofRequest),
    GetConsistencyProof(pb::GetConsistencyProofRequest),
    ListTransfers(pb::ListTransfersRequest),
    /// These bytes as the messages of a call to the method at this path.
    Raw(&'static str, Vec<Vec<u8>>),
}

/// A bad request and what its refusal must say.
struct Case {
    what: String,
    call: Call,
    code: Code,
    /// The request field the refusal names (the `BadRequest` detail, or in the message).
    field: String,
}

/// An `INVALID_ARGUMENT` case naming `field`.
fn bad(what: impl Into<String>, field: impl Into<String>, call: Call) -> Case {
    Case { what: what.into(), call, code: Code::InvalidArgument, field: field.into() }
}

/// The gateway and the participants the corpus calls as.
struct Fixture {
    t: TestGateway,
    owner: Client,
    consumer: Client,
    officer: Client,
    admin: Client,
    audit: AuditClient<Channel>,
    /// The owner's channel, for raw calls.
    raw: Channel,
    /// A pending grant of `consumer` on `survey`.
    pending: String,
}

/// `tj-stats` owns `survey` (version 1, 10 rows); `tj-commerce` (G2) holds an approved grant on
/// two fields and a pending one; `officer` is an officer (and reads the log); `admin` an admin.
async fn fixture() -> Fixture {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(classified(survey("survey"))).await.unwrap();
    publish(&mut owner, "survey", "v1", vec![survey_rows(10, 0)]).await.unwrap();
    let mut consumer = t.consumer("tj-commerce", Level::G2).await;
    granted(&mut owner, &mut consumer, "survey", &["enterprise", "district"], pb::Approve::default()).await;
    let pending = consumer.sharing.request_grant(grant_request()).await.unwrap().into_inner().id;
    let officer = t
        .register("officer", ParticipantKind::StateOrgan, RecipientType::GovDept, "CN-BJ", &[Role::Officer], Level::G1)
        .await;
    let admin = t.client("admin").await;
    let audit = AuditClient::new(t.channel("officer").await);
    let raw = t.channel("tj-stats").await;
    Fixture { t, owner, consumer, officer, admin, audit, raw, pending }
}

fn grant_request() -> pb::RequestGrantRequest {
    pb::RequestGrantRequest {
        r#use: pb::GrantUse::Rows as i32,
        dataset_id: "survey".into(),
        fields: vec!["enterprise".into(), "revenue".into()],
        purpose: "industry statistics".into(),
        legal_basis: "统计法 Art. 7".into(),
        ..Default::default()
    }
}

impl Fixture {
    /// Makes the call as the participant whose call it naturally is.
    async fn call(&mut self, call: Call) -> Result<(), Status> {
        match call {
            Call::RegisterDataset(r) => self.owner.catalog.register_dataset(r).await.map(drop),
            Call::GetDataset(r) => self.owner.catalog.get_dataset(r).await.map(drop),
            Call::ListDatasets(r) => self.owner.catalog.list_datasets(r).await.map(drop),
            Call::Publish(msgs) => self.owner.publishing.publish(tokio_stream::iter(msgs)).await.map(drop),
            Call::RequestGrant(r) => self.consumer.sharing.request_grant(r).await.map(drop),
            Call::DecideGrant(r) => self.owner.sharing.decide_grant(r).await.map(drop),
            Call::RevokeGrant(r) => self.owner.sharing.revoke_grant(r).await.map(drop),
            Call::ListGrants(r) => self.owner.sharing.list_grants(r).await.map(drop),
            Call::Pull(r) => self.consumer.exchange.pull(r).await.map(drop),
            Call::PreviewPull(r) => self.consumer.exchange.preview_pull(r).await.map(drop),
            Call::ListHolds(r) => self.officer.oversight.list_holds(r).await.map(drop),
            Call::RecordApproval(r) => self.officer.oversight.record_approval(r).await.map(drop),
            Call::RevokeApproval(r) => self.officer.oversight.revoke_approval(r).await.map(drop),
            Call::ListApprovals(r) => self.officer.oversight.list_approvals(r).await.map(drop),
            Call::ResolveHold(r) => self.officer.oversight.resolve_hold(r).await.map(drop),
            Call::AttestExemption(r) => self.officer.oversight.attest_exemption(r).await.map(drop),
            Call::RegisterParticipant(r) => self.admin.admin.register_participant(r).await.map(drop),
            Call::SuspendParticipant(r) => self.admin.admin.suspend_participant(r).await.map(drop),
            Call::GetCheckpoint(r) => self.audit.get_checkpoint(r).await.map(drop),
            Call::ListCheckpoints(r) => self.audit.list_checkpoints(r).await.map(drop),
            Call::GetEntries(r) => self.audit.get_entries(r).await.map(drop),
            Call::GetInclusionProof(r) => self.audit.get_inclusion_proof(r).await.map(drop),
            Call::GetConsistencyProof(r) => self.audit.get_consistency_proof(r).await.map(drop),
            Call::ListTransfers(r) => self.audit.list_transfers(r).await.map(drop),
            Call::Raw(path, mut msgs) => {
                let mut grpc = tonic::client::Grpc::new(self.raw.clone());
                grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
                let at = PathAndQuery::from_static(path);
                if msgs.len() == 1 && !path.ends_with("/Publish") {
                    let body = msgs.pop().unwrap();
                    grpc.unary(tonic::Request::new(body), at, RawCodec).await.map(drop)
                } else {
                    grpc.client_streaming(tonic::Request::new(tokio_stream::iter(msgs)), at, RawCodec).await.map(drop)
                }
            }
        }
    }

    /// What is stored: one count per table a request could write, and the pending grants.
    async fn stored(&self) -> Vec<String> {
        let tables = [
            "records",
            "participants",
            "datasets",
            "uploads",
            "chunks",
            "versions",
            "grants",
            "approvals",
            "holds",
            "export_persons",
            "export_counts",
        ];
        let counts: Vec<String> = tables.iter().map(|t| format!("'{t}=' || (SELECT COUNT(*) FROM {t})")).collect();
        let sql = format!(
            "SELECT {} || ' pending=' || (SELECT COUNT(*) FROM grants WHERE status = 'PENDING') \
             || ' suspended=' || (SELECT COUNT(*) FROM participants WHERE status = 'SUSPENDED')",
            counts.join(" || ' ' || ")
        );
        self.t.strings(&sql).await
    }

    /// Runs every case: each is refused as expected, writes nothing, and a normal call works
    /// afterwards. Returns how many ran.
    async fn refuse_all(&mut self, cases: Vec<Case>) -> usize {
        let n = cases.len();
        for Case { what, call, code, field } in cases {
            let before = self.stored().await;
            let err = match self.call(call).await {
                Ok(()) => panic!("{what}: accepted"),
                Err(e) => e,
            };
            assert_eq!(err.code(), code, "{what}: {err:?}");
            let detail = err.get_details_bad_request();
            let in_detail = detail.as_ref().is_some_and(|d| d.field_violations.iter().any(|v| v.field == field));
            assert!(
                in_detail || err.message().contains(&field),
                "{what}: the refusal does not name `{field}`: {} {detail:?}",
                err.message()
            );
            if code == Code::InvalidArgument {
                assert!(detail.is_some(), "{what}: INVALID_ARGUMENT without a BadRequest detail: {err:?}");
            }
            if field == UNDECODABLE_FIELD {
                assert_eq!(err.message(), UNDECODABLE_MESSAGE, "{what}: {err:?}");
            }
            for leak in ["Protobuf", "failed to decode", "wire type", "varint", "SQL", "sqlite"] {
                assert!(!err.message().contains(leak), "{what}: the message leaks `{leak}`: {}", err.message());
            }
            assert_eq!(self.stored().await, before, "{what}: something was written");
            self.owner
                .catalog
                .list_datasets(pb::ListDatasetsRequest::default())
                .await
                .unwrap_or_else(|e| panic!("{what}: the gateway no longer answers: {e:?}"));
        }
        n
    }
}

// ---- Catalog ----

fn catalog_cases() -> Vec<Case> {
    type Change = Box<dyn Fn(&mut pb::RegisterDatasetRequest)>;
    let unknown = 99;
    let changes: Vec<(&str, &str, Change)> = vec![
        ("unset pi on a plain field", "fields[0].pi", Box::new(|r| r.fields[0].pi = 0)),
        ("unset pi on a phone-number field", "fields[3].pi", Box::new(|r| r.fields[3].pi = 0)),
        ("unset pi on an identity field", "fields[2].pi", Box::new(|r| r.fields[2].pi = 0)),
        ("unset share", "fields[0].share", Box::new(|r| r.fields[0].share = 0)),
        ("unset share on a PI field", "fields[3].share", Box::new(|r| r.fields[3].share = 0)),
        ("unset share on the last field", "fields[10].share", Box::new(|r| r.fields[10].share = 0)),
        ("unset level", "fields[1].level", Box::new(|r| r.fields[1].level = 0)),
        ("unset type", "fields[2].type", Box::new(|r| r.fields[2].r#type = 0)),
        ("unknown pi", "fields[0].pi", Box::new(move |r| r.fields[0].pi = unknown)),
        ("unknown share", "fields[0].share", Box::new(move |r| r.fields[0].share = unknown)),
        ("unknown level", "fields[0].level", Box::new(move |r| r.fields[0].level = unknown)),
        ("negative type", "fields[0].type", Box::new(|r| r.fields[0].r#type = -1)),
        ("level X", "fields", Box::new(|r| r.fields[0].level = pb::Level::X as i32)),
        ("PI below G3", "fields", Box::new(|r| r.fields[2].level = pb::Level::G2 as i32)),
        ("SPI below G4", "fields", Box::new(|r| r.fields[3].pi = pb::Pi::Spi as i32)),
        ("stat_micro below G4", "fields", Box::new(|r| r.fields[0].stat_micro = true)),
        (
            "a default mask without a kind",
            "fields[0].default_mask.kind",
            Box::new(|r| r.fields[0].default_mask = Some(pb::Mask::default())),
        ),
        (
            "a default mask of an unknown kind",
            "fields[0].default_mask.kind",
            Box::new(move |r| r.fields[0].default_mask = Some(pb::Mask { kind: unknown, ..Default::default() })),
        ),
        (
            "GENERALIZE_DATE without a granularity",
            "fields[4].default_mask.granularity",
            Box::new(|r| r.fields[4].default_mask = Some(mask(pb::MaskKind::GeneralizeDate))),
        ),
        (
            "BUCKET of width 0",
            "fields[5].default_mask.bucket_width",
            Box::new(|r| r.fields[5].default_mask = Some(mask(pb::MaskKind::Bucket))),
        ),
        ("PARTIAL on an integer", "fields", Box::new(|r| r.fields[5].default_mask = Some(mask(pb::MaskKind::Partial)))),
        ("an upper-case field name", "fields[1].name", Box::new(|r| r.fields[1].name = "District".into())),
        ("an empty field name", "fields[1].name", Box::new(|r| r.fields[1].name = String::new())),
        ("a field name of 65 characters", "fields[1].name", Box::new(|r| r.fields[1].name = "d".repeat(65))),
        ("a field twice", "fields", Box::new(|r| r.fields[1].name = "enterprise".into())),
        ("no fields", "fields", Box::new(|r| r.fields.clear())),
        ("an unknown person key", "person_key_field", Box::new(|r| r.person_key_field = "nobody".into())),
        ("a malformed person key", "person_key_field", Box::new(|r| r.person_key_field = "No Body".into())),
        ("a malformed contributor key", "contributor_key_field", Box::new(|r| r.contributor_key_field = "-".into())),
        ("an empty id", "id", Box::new(|r| r.id = String::new())),
        ("an id with a space", "id", Box::new(|r| r.id = "Bad Id".into())),
        ("an id of 65 characters", "id", Box::new(|r| r.id = "s".repeat(65))),
        ("an id starting with a dash", "id", Box::new(|r| r.id = "-survey".into())),
        ("a control character in the title", "title", Box::new(|r| r.title = "survey\0".into())),
        ("a control character in a description", "description", Box::new(|r| r.fields[3].description = "\u{7}".into())),
    ];
    let mut cases: Vec<Case> = changes
        .into_iter()
        .map(|(what, field, change)| {
            let mut r = classified(survey("survey2"));
            change(&mut r);
            bad(format!("RegisterDataset: {what}"), field, Call::RegisterDataset(r))
        })
        .collect();
    for (what, id) in [("an empty id", ""), ("an upper-case id", "Survey"), ("a path", "../survey")] {
        cases.push(bad(format!("GetDataset: {what}"), "id", Call::GetDataset(pb::GetDatasetRequest { id: id.into() })));
    }
    for (what, token) in [("a malformed page token", "Not An Id"), ("a page token of 65 characters", &"p".repeat(65))] {
        cases.push(bad(
            format!("ListDatasets: {what}"),
            "page_token",
            Call::ListDatasets(pb::ListDatasetsRequest { page_size: 0, page_token: token.to_string() }),
        ));
    }
    cases.push(bad(
        "ListDatasets: a page of 501",
        "page_size",
        Call::ListDatasets(pb::ListDatasetsRequest { page_size: 501, page_token: String::new() }),
    ));
    cases
}

#[tokio::test]
async fn bad_catalog_requests_are_refused_naming_the_field_and_write_nothing() {
    let mut f = fixture().await;
    let n = f.refuse_all(catalog_cases()).await;
    assert!(n >= 40, "{n}");
    // The same request, classified, is accepted.
    f.owner.catalog.register_dataset(classified(survey("survey2"))).await.unwrap();
}

#[tokio::test]
async fn a_field_without_pi_is_never_registered_as_carrying_no_personal_information() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    // The finding: ID-card numbers registered without `pi` were exported in clear as PI_NONE.
    let mut r = classified(survey("ids"));
    r.fields[2].pi = pb::Pi::Unspecified as i32;
    let err = owner.catalog.register_dataset(r).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.get_details_bad_request().unwrap().field_violations[0].field, "fields[2].pi");
    assert!(err.message().contains("is required"), "{}", err.message());
    assert!(err.message().contains("PI_NONE, PI_PI, PI_SPI"), "{}", err.message());
    // Nor with a default share attribute.
    let mut r = classified(survey("ids"));
    r.fields[0].share = pb::Share::Unspecified as i32;
    let err = owner.catalog.register_dataset(r).await.unwrap_err();
    assert_eq!(err.get_details_bad_request().unwrap().field_violations[0].field, "fields[0].share");
    assert_eq!(t.count("SELECT COUNT(*) FROM datasets").await, 0);
    // Declared, the same fields are accepted and kept as declared.
    let d = owner.catalog.register_dataset(classified(survey("ids"))).await.unwrap().into_inner();
    assert_eq!(d.fields[2].pi, pb::Pi::Pi as i32);
    assert_eq!(d.fields[0].share, pb::Share::Conditional as i32);
}

// ---- Publishing ----

fn publishing_cases() -> Vec<Case> {
    let rows = |n| survey_rows(n, 0);
    let mut short = rows(2).decode().unwrap();
    short.columns.pop();
    let mut bad_date = rows(2).decode().unwrap();
    bad_date.columns[4] = strings(&["2025-02-30", "2025-01-01"]);
    let mut bad_int = rows(1).decode().unwrap();
    bad_int.columns[5] = strings(&["many"]);
    let empty = RowBatch::from_columns(0, vec![pb::Column::default(); 11]);
    let garbage_batch = RowBatch::from_encoded(prost::bytes::Bytes::from_static(&[0x12, 0x01, 0x0f]));
    let none = pb::PublishRequest { msg: None };
    let h = |key: &str| header("survey", key);
    let cases: Vec<(&str, &str, Code, Vec<pb::PublishRequest>)> = vec![
        ("an empty stream", "header", Code::InvalidArgument, vec![]),
        ("a batch before the header", "header", Code::InvalidArgument, vec![batch(rows(1)), h("k")]),
        ("an empty first message", "header", Code::InvalidArgument, vec![none.clone()]),
        ("an empty dataset id", "header.dataset_id", Code::InvalidArgument, vec![header("", "k"), batch(rows(1))]),
        ("a malformed dataset id", "header.dataset_id", Code::InvalidArgument, vec![header("Bad Id", "k")]),
        ("an empty idempotency key", "header.idempotency_key", Code::InvalidArgument, vec![h(""), batch(rows(1))]),
        ("an idempotency key with a space", "header.idempotency_key", Code::InvalidArgument, vec![h("a b")]),
        (
            "an idempotency key of 129 characters",
            "header.idempotency_key",
            Code::InvalidArgument,
            vec![h(&"k".repeat(129))],
        ),
        ("a header and no batch", "batch", Code::InvalidArgument, vec![h("k-empty")]),
        (
            "only batches of no rows",
            "batch",
            Code::InvalidArgument,
            vec![h("k-zero"), batch(empty.clone()), batch(empty)],
        ),
        ("a second header", "header", Code::InvalidArgument, vec![h("k2"), batch(rows(1)), h("k2")]),
        ("an empty message after the header", "msg", Code::InvalidArgument, vec![h("k3"), batch(rows(1)), none]),
        (
            "a batch with a column missing",
            "batch[0].columns",
            Code::InvalidArgument,
            vec![h("k4"), batch(RowBatch::from_columns(short.row_count, short.columns))],
        ),
        (
            "an impossible date",
            "batch[1].columns[4]",
            Code::InvalidArgument,
            vec![h("k5"), batch(rows(3)), batch(RowBatch::from_columns(bad_date.row_count, bad_date.columns))],
        ),
        (
            "text in an integer column",
            "batch[0].columns[5]",
            Code::InvalidArgument,
            vec![h("k6"), batch(RowBatch::from_columns(bad_int.row_count, bad_int.columns))],
        ),
        ("a batch that does not decode", "batch", Code::InvalidArgument, vec![h("k7"), batch(garbage_batch)]),
        ("an unknown dataset", "nosuch", Code::NotFound, vec![header("nosuch", "k"), batch(rows(1))]),
        ("new content under a used idempotency key", "v1", Code::AlreadyExists, vec![h("v1"), batch(rows(3))]),
    ];
    cases
        .into_iter()
        .map(|(what, field, code, msgs)| Case {
            what: format!("Publish: {what}"),
            call: Call::Publish(msgs),
            code,
            field: field.into(),
        })
        .collect()
}

#[tokio::test]
async fn bad_publish_streams_are_refused_naming_the_field_and_leave_the_latest_version_unchanged() {
    let mut f = fixture().await;
    let n = f.refuse_all(publishing_cases()).await;
    assert!(n >= 18, "{n}");
    let d = f.owner.catalog.get_dataset(pb::GetDatasetRequest { id: "survey".into() }).await.unwrap().into_inner();
    assert_eq!((d.latest_version, d.versions.len()), (1, 1), "no empty or partial version");
    // A stream with rows still publishes.
    let v = publish(&mut f.owner, "survey", "v2", vec![survey_rows(2, 0)]).await.unwrap();
    assert_eq!(v.version.unwrap().version, 2);
}

#[tokio::test]
async fn a_publish_with_a_header_and_no_batch_creates_no_version() {
    let t = TestGateway::start().await;
    let mut owner = t.publisher("tj-stats").await;
    owner.catalog.register_dataset(classified(survey("survey"))).await.unwrap();
    let err = publish(&mut owner, "survey", "empty", vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.get_details_bad_request().unwrap().field_violations[0].field, "batch");
    assert!(err.message().contains("a version needs at least one batch"), "{}", err.message());
    assert_eq!(t.count("SELECT COUNT(*) FROM versions").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM uploads").await, 0, "the staged upload is discarded");
    let d = owner.catalog.get_dataset(pb::GetDatasetRequest { id: "survey".into() }).await.unwrap().into_inner();
    assert_eq!(d.latest_version, 0);
}

// ---- Sharing ----

fn sharing_cases(pending: &str) -> Vec<Case> {
    type Change = Box<dyn Fn(&mut pb::RequestGrantRequest)>;
    let past = prost_types::Timestamp { seconds: 1_000_000_000, nanos: 0 };
    let changes: Vec<(&str, &str, Change)> = vec![
        ("an empty dataset id", "dataset_id", Box::new(|r| r.dataset_id = String::new())),
        ("a malformed dataset id", "dataset_id", Box::new(|r| r.dataset_id = "Bad Id".into())),
        ("a dataset id of 65 characters", "dataset_id", Box::new(|r| r.dataset_id = "d".repeat(65))),
        ("no fields", "fields", Box::new(|r| r.fields.clear())),
        ("an upper-case field", "fields[0]", Box::new(|r| r.fields[0] = "Enterprise".into())),
        ("an empty field", "fields[1]", Box::new(|r| r.fields[1] = String::new())),
        ("an unknown field", "fields[1]", Box::new(|r| r.fields[1] = "salary".into())),
        ("a field twice", "fields[1]", Box::new(|r| r.fields[1] = "enterprise".into())),
        ("a blank purpose", "purpose", Box::new(|r| r.purpose = "  ".into())),
        ("a control character in the purpose", "purpose", Box::new(|r| r.purpose = "stats\u{1b}[2J".into())),
        ("a control character in the legal basis", "legal_basis", Box::new(|r| r.legal_basis = "\0".into())),
        ("an expiry in the past", "requested_expiry", Box::new(move |r| r.requested_expiry = Some(past))),
        (
            "an expiry with negative nanoseconds",
            "requested_expiry",
            Box::new(|r| r.requested_expiry = Some(prost_types::Timestamp { seconds: 4_000_000_000, nanos: -1 })),
        ),
        ("an unknown exemption", "exemption", Box::new(|r| r.exemption = "DIPLOMATIC".into())),
    ];
    let mut cases: Vec<Case> = changes
        .into_iter()
        .map(|(what, field, change)| {
            let mut r = grant_request();
            change(&mut r);
            bad(format!("RequestGrant: {what}"), field, Call::RequestGrant(r))
        })
        .collect();

    use pb::decide_grant_request::Decision;
    let approve = |a: pb::Approve| Some(Decision::Approve(a));
    let decide = |grant_id: &str, decision| pb::DecideGrantRequest { grant_id: grant_id.into(), decision };
    let masked = |name: &str, m: pb::Mask| pb::Approve { masks: [(name.to_owned(), m)].into(), ..Default::default() };
    let filter = |field: &str, values: Vec<String>| pb::Approve {
        row_filter: Some(pb::RowFilter { field: field.into(), values }),
        ..Default::default()
    };
    let decisions: Vec<(&str, &str, pb::DecideGrantRequest)> = vec![
        ("an empty grant id", "grant_id", decide("", approve(pb::Approve::default()))),
        ("a grant id with a slash", "grant_id", decide("g/../x", approve(pb::Approve::default()))),
        ("a grant id of 65 characters", "grant_id", decide(&"g".repeat(65), approve(pb::Approve::default()))),
        ("no decision", "decision", decide(pending, None)),
        (
            "an upper-case approved field",
            "approve.fields[0]",
            decide(pending, approve(pb::Approve { fields: vec!["Enterprise".into()], ..Default::default() })),
        ),
        (
            "approving a field that was not requested",
            "approve.fields[0]",
            decide(pending, approve(pb::Approve { fields: vec!["phone".into()], ..Default::default() })),
        ),
        (
            "a mask without a kind",
            "approve.masks[enterprise].kind",
            decide(pending, approve(masked("enterprise", pb::Mask::default()))),
        ),
        (
            "a mask of an unknown kind",
            "approve.masks[enterprise].kind",
            decide(pending, approve(masked("enterprise", pb::Mask { kind: 42, ..Default::default() }))),
        ),
        (
            "GENERALIZE_DATE without a granularity",
            "approve.masks[revenue].granularity",
            decide(pending, approve(masked("revenue", mask(pb::MaskKind::GeneralizeDate)))),
        ),
        (
            "BUCKET of width 0",
            "approve.masks[revenue].bucket_width",
            decide(pending, approve(masked("revenue", mask(pb::MaskKind::Bucket)))),
        ),
        (
            "a mask for a malformed field name",
            "approve.masks[Revenue]",
            decide(pending, approve(masked("Revenue", mask(pb::MaskKind::Hash)))),
        ),
        (
            "a mask for a field of no dataset",
            "approve.masks[salary]",
            decide(pending, approve(masked("salary", mask(pb::MaskKind::Hash)))),
        ),
        (
            "a row filter on a malformed field",
            "approve.row_filter.field",
            decide(pending, approve(filter("No Field", vec!["x".into()]))),
        ),
        (
            "a row filter without values",
            "approve.row_filter.values",
            decide(pending, approve(filter("enterprise", vec![]))),
        ),
        (
            "an approval expiring in the past",
            "approve.expires_at",
            decide(
                pending,
                approve(pb::Approve { expires_at: Some(prost_types::Timestamp::default()), ..Default::default() }),
            ),
        ),
        (
            "a refusal without a reason",
            "refuse.reason",
            decide(pending, Some(Decision::Refuse(pb::Refuse { reason: " ".into() }))),
        ),
    ];
    cases.extend(
        decisions.into_iter().map(|(what, field, r)| bad(format!("DecideGrant: {what}"), field, Call::DecideGrant(r))),
    );
    let revoke =
        |grant_id: &str, reason: &str| pb::RevokeGrantRequest { grant_id: grant_id.into(), reason: reason.into() };
    for (what, field, r) in [
        ("an empty grant id", "grant_id", revoke("", "no longer needed")),
        ("a grant id with a space", "grant_id", revoke("g 1", "no longer needed")),
        ("a control character in the reason", "reason", revoke(pending, "\u{8}")),
    ] {
        cases.push(bad(format!("RevokeGrant: {what}"), field, Call::RevokeGrant(r)));
    }
    for (what, id) in [("a malformed dataset filter", "Bad Id"), ("a dataset filter of 65 characters", &"d".repeat(65))]
    {
        cases.push(bad(
            format!("ListGrants: {what}"),
            "dataset_id",
            Call::ListGrants(pb::ListGrantsRequest { dataset_id: id.to_string() }),
        ));
    }
    cases
}

#[tokio::test]
async fn bad_sharing_requests_are_refused_naming_the_field_and_write_nothing() {
    let mut f = fixture().await;
    let pending = f.pending.clone();
    let n = f.refuse_all(sharing_cases(&pending)).await;
    assert!(n >= 35, "{n}");
    let grants = f.owner.sharing.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner().grants;
    let g = grants.iter().find(|g| g.id == pending).unwrap();
    assert_eq!(g.status, pb::GrantStatus::Pending as i32, "still pending");
}

// ---- Exchange ----

fn exchange_cases() -> Vec<Case> {
    type Change = Box<dyn Fn(&mut pb::PullRequest)>;
    let changes: Vec<(&str, &str, Change)> = vec![
        ("an empty dataset id", "dataset_id", Box::new(|r| r.dataset_id = String::new())),
        ("an upper-case dataset id", "dataset_id", Box::new(|r| r.dataset_id = "SURVEY".into())),
        ("a malformed field", "fields[0]", Box::new(|r| r.fields = vec!["Bad Name".into()])),
        ("an empty field", "fields[1]", Box::new(|r| r.fields = vec!["enterprise".into(), String::new()])),
        ("version 2^63", "version", Box::new(|r| r.version = TWO_63)),
        ("version 2^64 - 1", "version", Box::new(|r| r.version = u64::MAX)),
        ("from_batch 2^63", "from_batch", Box::new(|r| r.from_batch = TWO_63)),
        ("from_batch 2^64 - 1", "from_batch", Box::new(|r| r.from_batch = u64::MAX)),
        ("a grant id with a space", "grant_id", Box::new(|r| r.grant_id = "g 1".into())),
        ("a grant id of 65 characters", "grant_id", Box::new(|r| r.grant_id = "g".repeat(65))),
        ("a grant id with a control character", "grant_id", Box::new(|r| r.grant_id = "g\n".into())),
    ];
    let mut cases = Vec::new();
    for (what, field, change) in &changes {
        let mut r = pull_req("survey");
        change(&mut r);
        cases.push(bad(format!("Pull: {what}"), *field, Call::Pull(r.clone())));
        cases.push(bad(format!("PreviewPull: {what}"), *field, Call::PreviewPull(r)));
    }
    cases
}

#[tokio::test]
async fn bad_pull_requests_are_refused_naming_the_field_and_log_nothing() {
    let mut f = fixture().await;
    let n = f.refuse_all(exchange_cases()).await;
    assert!(n >= 22, "{n}");
    // The consumer still pulls what it was granted.
    let p = pull(&mut f.consumer, pull_req("survey")).await.unwrap();
    assert_eq!(p.rows(), 10);
}

// ---- Oversight ----

fn approval() -> pb::RecordApprovalRequest {
    pb::RecordApprovalRequest {
        id: String::new(),
        r#type: "CAC_SA".into(),
        exporter: "tj-stats".into(),
        reference: "CAC-2025-001".into(),
        issued: "2025-01-01".into(),
        expires: String::new(),
        scope: Some(pb::ApprovalScope { recipients: vec!["tj-commerce".into()], ..Default::default() }),
    }
}

fn oversight_cases() -> Vec<Case> {
    type Change = Box<dyn Fn(&mut pb::RecordApprovalRequest)>;
    let scope = |r: &mut pb::RecordApprovalRequest| r.scope.get_or_insert_with(Default::default).clone();
    let changes: Vec<(&str, &str, Change)> = vec![
        ("an empty type", "type", Box::new(|r| r.r#type = String::new())),
        ("an unknown type", "type", Box::new(|r| r.r#type = "NOTARY".into())),
        ("an empty exporter", "exporter", Box::new(|r| r.exporter = String::new())),
        ("a malformed exporter", "exporter", Box::new(|r| r.exporter = "TJ Stats".into())),
        ("an exporter that does not exist", "exporter", Box::new(|r| r.exporter = "tj-ghost".into())),
        ("an empty reference", "reference", Box::new(|r| r.reference = String::new())),
        ("a control character in the reference", "reference", Box::new(|r| r.reference = "CAC\0".into())),
        ("an empty issue date", "issued", Box::new(|r| r.issued = String::new())),
        ("an impossible issue date", "issued", Box::new(|r| r.issued = "2025-13-01".into())),
        ("an issue date with a time", "issued", Box::new(|r| r.issued = "2025-01-01T00:00:00Z".into())),
        ("a malformed expiry", "expires", Box::new(|r| r.expires = "tomorrow".into())),
        ("an expiry before the issue date", "expires", Box::new(|r| r.expires = "2024-12-31".into())),
        ("an id with a space", "id", Box::new(|r| r.id = "approval 1".into())),
        ("an id of 65 characters", "id", Box::new(|r| r.id = "a".repeat(65))),
        (
            "a scope recipient that does not exist",
            "scope.recipients[0]",
            Box::new(|r| r.scope.as_mut().unwrap().recipients = vec!["hk-ghost".into()]),
        ),
        (
            "a second scope recipient that does not exist",
            "scope.recipients[1]",
            Box::new(|r| r.scope.as_mut().unwrap().recipients = vec!["tj-commerce".into(), "hk-univ".into()]),
        ),
        (
            "a malformed scope recipient",
            "scope.recipients[0]",
            Box::new(|r| r.scope.as_mut().unwrap().recipients = vec!["HK Univ".into()]),
        ),
        (
            "an empty scope recipient",
            "scope.recipients[0]",
            Box::new(|r| r.scope.as_mut().unwrap().recipients = vec![String::new()]),
        ),
        (
            "a lower-case destination",
            "scope.destinations[0]",
            Box::new(move |r| {
                let mut s = scope(r);
                s.destinations = vec!["hk".into()];
                r.scope = Some(s);
            }),
        ),
        (
            "a three-letter destination",
            "scope.destinations[1]",
            Box::new(move |r| {
                let mut s = scope(r);
                s.destinations = vec!["HK".into(), "CHN".into()];
                r.scope = Some(s);
            }),
        ),
    ];
    let mut cases: Vec<Case> = changes
        .into_iter()
        .map(|(what, field, change)| {
            let mut r = approval();
            change(&mut r);
            bad(format!("RecordApproval: {what}"), field, Call::RecordApproval(r))
        })
        .collect();
    let revoke = |id: &str, reason: &str| pb::RevokeApprovalRequest { id: id.into(), reason: reason.into() };
    for (what, field, r) in [
        ("an empty id", "id", revoke("", "withdrawn by CAC")),
        ("an id with a space", "id", revoke("a 1", "withdrawn by CAC")),
        ("an empty reason", "reason", revoke("a-1", "")),
    ] {
        cases.push(bad(format!("RevokeApproval: {what}"), field, Call::RevokeApproval(r)));
    }
    cases.push(bad(
        "ListApprovals: a malformed exporter filter",
        "exporter",
        Call::ListApprovals(pb::ListApprovalsRequest { exporter: "TJ Stats".into() }),
    ));
    for status in ["open", "PENDING"] {
        cases.push(bad(
            format!("ListHolds: status {status}"),
            "status",
            Call::ListHolds(pb::ListHoldsRequest { status: status.into(), ..Default::default() }),
        ));
    }
    for (what, field, r) in [
        (
            "a malformed dataset",
            "dataset_id",
            pb::ListHoldsRequest { dataset_id: "Survey 1".into(), ..Default::default() },
        ),
        ("a malformed consumer", "consumer", pb::ListHoldsRequest { consumer: "HK Univ".into(), ..Default::default() }),
        ("a malformed exporter", "exporter", pb::ListHoldsRequest { exporter: "a/b".into(), ..Default::default() }),
        ("an unknown region", "region", pb::ListHoldsRequest { region: "Atlantis".into(), ..Default::default() }),
        (
            "an age past any time",
            "min_age_seconds",
            pb::ListHoldsRequest { min_age_seconds: u64::MAX, ..Default::default() },
        ),
    ] {
        cases.push(bad(format!("ListHolds: {what}"), field, Call::ListHolds(r)));
    }
    use pb::resolve_hold_request::Resolution;
    let resolve = |hold_id: &str, resolution| pb::ResolveHoldRequest { hold_id: hold_id.into(), resolution };
    let refuse = || Some(Resolution::RefuseReason("not covered".into()));
    for (what, field, r) in [
        ("an empty hold id", "hold_id", resolve("", refuse())),
        ("a hold id with a slash", "hold_id", resolve("h/1", refuse())),
        ("a hold id of 65 characters", "hold_id", resolve(&"h".repeat(65), refuse())),
        ("no resolution", "resolution", resolve("h-1", None)),
        (
            "an empty approval id",
            "release_with_approval",
            resolve("h-1", Some(Resolution::ReleaseWithApproval(String::new()))),
        ),
        (
            "a malformed approval id",
            "release_with_approval",
            resolve("h-1", Some(Resolution::ReleaseWithApproval("a 1".into()))),
        ),
    ] {
        cases.push(bad(format!("ResolveHold: {what}"), field, Call::ResolveHold(r)));
    }
    for (what, id) in
        [("an empty grant id", ""), ("a grant id with a space", "g 1"), ("a grant id with a quote", "g'1")]
    {
        cases.push(bad(
            format!("AttestExemption: {what}"),
            "grant_id",
            Call::AttestExemption(pb::AttestExemptionRequest { grant_id: id.into() }),
        ));
    }
    cases
}

#[tokio::test]
async fn bad_oversight_requests_are_refused_naming_the_field_and_write_nothing() {
    let mut f = fixture().await;
    let n = f.refuse_all(oversight_cases()).await;
    assert!(n >= 35, "{n}");
    // The same approval, naming registered participants, is recorded.
    let a = f.officer.oversight.record_approval(approval()).await.unwrap().into_inner();
    assert_eq!(a.scope.unwrap().recipients, ["tj-commerce"]);
}

// ---- Admin ----

fn hebei() -> pb::Participant {
    pb::Participant {
        id: "hb-stats".into(),
        display_name: "Hebei Statistics Bureau".into(),
        kind: pb::ParticipantKind::StateOrgan as i32,
        recipient_type: pb::RecipientType::StatisticsAgency as i32,
        region: "CN-HE".into(),
        roles: vec!["consumer".into()],
        clearance: pb::Level::G3 as i32,
        ..Default::default()
    }
}

fn admin_cases() -> Vec<Case> {
    type Change = Box<dyn Fn(&mut pb::Participant)>;
    let changes: Vec<(&str, &str, Change)> = vec![
        ("an empty id", "participant.id", Box::new(|p| p.id = String::new())),
        ("an upper-case id", "participant.id", Box::new(|p| p.id = "HB-Stats".into())),
        ("an unset kind", "participant.kind", Box::new(|p| p.kind = 0)),
        ("an unknown kind", "participant.kind", Box::new(|p| p.kind = 99)),
        ("an unset recipient type", "participant.recipient_type", Box::new(|p| p.recipient_type = 0)),
        ("an unknown recipient type", "participant.recipient_type", Box::new(|p| p.recipient_type = 77)),
        ("an unset clearance", "participant.clearance", Box::new(|p| p.clearance = 0)),
        ("clearance X", "participant.clearance", Box::new(|p| p.clearance = pb::Level::X as i32)),
        ("an unknown clearance", "participant.clearance", Box::new(|p| p.clearance = 42)),
        ("an empty region", "participant.region", Box::new(|p| p.region = String::new())),
        ("a lower-case region", "participant.region", Box::new(|p| p.region = "cn-he".into())),
        ("a region of three letters", "participant.region", Box::new(|p| p.region = "CHN".into())),
        ("no roles", "participant.roles", Box::new(|p| p.roles.clear())),
        ("an unknown role", "participant.roles[1]", Box::new(|p| p.roles.push("king".into()))),
        ("an empty display name", "participant.display_name", Box::new(|p| p.display_name = String::new())),
        ("a control character in the name", "participant.display_name", Box::new(|p| p.display_name = "\u{1b}".into())),
    ];
    let mut cases: Vec<Case> = changes
        .into_iter()
        .map(|(what, field, change)| {
            let mut p = hebei();
            change(&mut p);
            bad(
                format!("RegisterParticipant: {what}"),
                field,
                Call::RegisterParticipant(pb::RegisterParticipantRequest { participant: Some(p) }),
            )
        })
        .collect();
    cases.push(bad(
        "RegisterParticipant: no participant",
        "participant",
        Call::RegisterParticipant(pb::RegisterParticipantRequest { participant: None }),
    ));
    let suspend = |id: &str, reason: &str| pb::SuspendParticipantRequest { id: id.into(), reason: reason.into() };
    for (what, field, r) in [
        ("an empty id", "id", suspend("", "audit finding")),
        ("a malformed id", "id", suspend("TJ Commerce", "audit finding")),
        ("a control character in the reason", "reason", suspend("tj-commerce", "\u{0}")),
    ] {
        cases.push(bad(format!("SuspendParticipant: {what}"), field, Call::SuspendParticipant(r)));
    }
    cases
}

#[tokio::test]
async fn bad_admin_requests_are_refused_naming_the_field_and_write_nothing() {
    let mut f = fixture().await;
    let n = f.refuse_all(admin_cases()).await;
    assert!(n >= 20, "{n}");
    // tj-commerce was not suspended by the refused call, and hb-stats registers as sent.
    f.consumer.sharing.list_grants(pb::ListGrantsRequest::default()).await.unwrap();
    let request = pb::RegisterParticipantRequest { participant: Some(hebei()) };
    f.admin.admin.register_participant(request).await.unwrap();
}

#[tokio::test]
async fn clearance_x_is_refused_on_the_path_participants_add_shares() {
    let t = TestGateway::start().await;
    let p = Participant {
        id: ParticipantId::parse("secret-office").unwrap(),
        display_name: "a secret office".into(),
        kind: ParticipantKind::StateOrgan,
        recipient_type: RecipientType::GovDept,
        region: Region::parse("CN-TJ").unwrap(),
        in_tianjin_ftz: false,
        roles: [Role::Consumer].into(),
        clearance: Level::X,
        status: ParticipantStatus::Active,
    };
    let err = participants::register_as(&t.gw, "cli", p.clone()).await.unwrap_err();
    assert!(matches!(&err, ServiceError::InvalidArgument { field, .. } if field == "participant.clearance"), "{err:?}");
    assert_eq!(t.count("SELECT COUNT(*) FROM participants WHERE id = 'secret-office'").await, 0);
    participants::register_as(&t.gw, "cli", Participant { clearance: Level::C, ..p }).await.unwrap();
}

// ---- Audit ----

fn audit_cases() -> Vec<Case> {
    let exact = pb::CheckpointMatch::Exact as i32;
    let at_least = pb::CheckpointMatch::FirstAtLeast as i32;
    let mut cases = Vec::new();
    for (size, m, name) in [
        (TWO_63, exact, "2^63, exact"),
        (u64::MAX, exact, "2^64 - 1, exact"),
        (TWO_63, at_least, "2^63, at least"),
        (TWO_63 + 1, at_least, "2^63 + 1, at least"),
        (u64::MAX, at_least, "2^64 - 1, at least"),
    ] {
        cases.push(bad(
            format!("GetCheckpoint: tree size {name}"),
            "tree_size",
            Call::GetCheckpoint(pb::GetCheckpointRequest { tree_size: size, r#match: m }),
        ));
    }
    cases.push(bad(
        "GetCheckpoint: an unknown match",
        "match",
        Call::GetCheckpoint(pb::GetCheckpointRequest { tree_size: 1, r#match: 7 }),
    ));
    for (after, page, field) in [(TWO_63, 0, "after_size"), (u64::MAX, 10, "after_size"), (0, 1001, "page_size")] {
        cases.push(bad(
            format!("ListCheckpoints: after {after}, page {page}"),
            field,
            Call::ListCheckpoints(pb::ListCheckpointsRequest { after_size: after, page_size: page }),
        ));
    }
    for (start, end, page, field) in [
        (TWO_63, 0, 0, "start"),
        (u64::MAX, 0, 0, "start"),
        (0, TWO_63, 0, "end"),
        (0, u64::MAX, 0, "end"),
        (0, 0, 5000, "page_size"),
        (3, 1, 0, "start"),
    ] {
        cases.push(bad(
            format!("GetEntries: [{start}, {end}) page {page}"),
            field,
            Call::GetEntries(pb::GetEntriesRequest { start, end, page_size: page }),
        ));
    }
    for (leaf_index, tree_size, field) in [
        (TWO_63, 0, "leaf_index"),
        (u64::MAX, 0, "leaf_index"),
        (0, TWO_63, "tree_size"),
        (0, u64::MAX, "tree_size"),
        (TWO_63, TWO_63 + 1, "leaf_index"),
    ] {
        cases.push(bad(
            format!("GetInclusionProof: leaf {leaf_index} of {tree_size}"),
            field,
            Call::GetInclusionProof(pb::GetInclusionProofRequest { leaf_index, tree_size }),
        ));
    }
    for (old_size, new_size, field) in
        [(TWO_63, 0, "old_size"), (u64::MAX, u64::MAX, "old_size"), (0, TWO_63, "new_size"), (1, u64::MAX, "new_size")]
    {
        cases.push(bad(
            format!("GetConsistencyProof: {old_size} to {new_size}"),
            field,
            Call::GetConsistencyProof(pb::GetConsistencyProofRequest { old_size, new_size }),
        ));
    }
    type Change = Box<dyn Fn(&mut pb::ListTransfersRequest)>;
    let changes: Vec<(&str, &str, Change)> = vec![
        ("an unknown direction", "direction", Box::new(|r| r.direction = 9)),
        ("an unknown record type", "type", Box::new(|r| r.r#type = "approval.recorded".into())),
        ("a page of 501", "page_size", Box::new(|r| r.page_size = 501)),
        ("a garbage page token", "page_token", Box::new(|r| r.page_token = "x.y".into())),
        (
            "a page token past 2^63",
            "page_token",
            Box::new(|r| r.page_token = "1700000000000000.18446744073709551615".into()),
        ),
        ("a malformed dataset id", "dataset_id", Box::new(|r| r.dataset_id = "Bad Id".into())),
        ("a malformed recipient", "recipient", Box::new(|r| r.recipient = "HK Univ".into())),
        ("a malformed exporter", "exporter", Box::new(|r| r.exporter = "-".into())),
        ("a lower-case region", "region", Box::new(|r| r.region = "hk".into())),
        (
            "from after to",
            "from",
            Box::new(|r| {
                r.from = Some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: 0 });
                r.to = Some(prost_types::Timestamp { seconds: 1_000_000_000, nanos: 0 });
            }),
        ),
        (
            "from with nanoseconds out of range",
            "from",
            Box::new(|r| r.from = Some(prost_types::Timestamp { seconds: 0, nanos: 2_000_000_000 })),
        ),
    ];
    for (what, field, change) in changes {
        let mut r = pb::ListTransfersRequest::default();
        change(&mut r);
        cases.push(bad(format!("ListTransfers: {what}"), field, Call::ListTransfers(r)));
    }
    cases
}

#[tokio::test]
async fn bad_audit_requests_are_refused_naming_the_field_and_a_huge_size_never_answers_the_first_checkpoint() {
    let mut f = fixture().await;
    let first = f
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 1, r#match: pb::CheckpointMatch::FirstAtLeast as i32 })
        .await
        .unwrap()
        .into_inner();
    let n = f.refuse_all(audit_cases()).await;
    assert!(n >= 30, "{n}");
    // The largest size a store holds is a size, not a wrap-around: simply not found.
    let err = f.audit.get_checkpoint(pb::GetCheckpointRequest { tree_size: TWO_63 - 1, r#match: 0 }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let listed = f
        .audit
        .list_checkpoints(pb::ListCheckpointsRequest { after_size: TWO_63 - 1, page_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.checkpoints.is_empty(), "nothing is above 2^63 - 1, least of all {}", first.tree_size);
}

// ---- bytes that are not the request message ----

fn undecodable_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for path in METHODS {
        for (what, body) in GARBAGE {
            cases.push(bad(format!("{path}: {what}"), UNDECODABLE_FIELD, Call::Raw(path, vec![body.to_vec()])));
        }
    }
    // A unary or server-streaming call whose body holds no message at all.
    for path in
        ["/bth.gateway.v1.Catalog/GetDataset", "/bth.gateway.v1.Exchange/Pull", "/bth.gateway.v1.Audit/GetCheckpoint"]
    {
        cases.push(bad(format!("{path}: no message"), UNDECODABLE_FIELD, Call::Raw(path, vec![])));
    }
    // A client stream: a good header, then bytes that are no PublishRequest.
    let publish = "/bth.gateway.v1.Publishing/Publish";
    let good_header = header("survey", "raw").encode_to_vec();
    let good_batch = batch(survey_rows(1, 0)).encode_to_vec();
    for (what, body) in GARBAGE {
        cases.push(bad(
            format!("Publish: a header, then {what}"),
            UNDECODABLE_FIELD,
            Call::Raw(publish, vec![good_header.clone(), body.to_vec()]),
        ));
    }
    cases.push(bad(
        "Publish: a header and a batch, then garbage",
        UNDECODABLE_FIELD,
        Call::Raw(publish, vec![good_header, good_batch, GARBAGE[0].1.to_vec()]),
    ));
    cases
}

#[tokio::test]
async fn bytes_that_are_not_the_request_message_are_invalid_argument_without_decoder_text() {
    let mut f = fixture().await;
    let n = f.refuse_all(undecodable_cases()).await;
    assert!(n >= 100, "{n}");
}

#[tokio::test]
async fn the_corpus_covers_every_rpc_with_at_least_150_bad_requests() {
    let cases: Vec<Vec<Case>> = vec![
        catalog_cases(),
        publishing_cases(),
        sharing_cases("g-0"),
        exchange_cases(),
        oversight_cases(),
        admin_cases(),
        audit_cases(),
        undecodable_cases(),
    ];
    let total: usize = cases.iter().map(Vec::len).sum();
    assert!(total >= 150, "{total}");
    // Every method gets typed bad requests, not only garbage bytes (Admin/ListParticipants
    // has no field to get wrong).
    let typed: Vec<&str> = cases[..7].iter().flatten().map(|c| c.what.split(':').next().unwrap()).collect();
    for method in METHODS {
        let name = method.rsplit('/').next().unwrap();
        assert!(typed.contains(&name) || name == "ListParticipants", "no typed bad request for {name}");
    }
    println!("bad-input corpus: {total} requests");
}
