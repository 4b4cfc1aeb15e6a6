//! Rows as both SQL dialects return them (`#[derive(FromRow)]`), and one conversion from each
//! to its domain type. A row that does not convert is `Corrupt`, naming what it was.

use bytes::Bytes;
use chrono::NaiveDate;

use super::codec::{from_micros, mechanism_from_column, scope_from_json};
use super::{StoreError, StoredApproval, StoredCheckpoint, StoredChunk, StoredTransfer};
use crate::domain::classification::UnknownName;
use crate::domain::dataset::{Dataset, FieldName, VersionInfo};
use crate::domain::grant::Grant;
use crate::domain::hold::Hold;
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::Participant;
use crate::domain::record::{StoredRecord, TransferFacets};
use crate::policy::Approval;

/// Makes the `Corrupt` error of a `what` row that does not decode.
fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt(format!("{what}: {detail}"))
}

/// A 32-byte hash column.
fn hash32(what: &'static str, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| corrupt(what)("hash is not 32 bytes".into()))
}

/// A name column parsed into its enum.
fn name<T: std::str::FromStr<Err = UnknownName>>(what: &'static str, text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|e: UnknownName| corrupt(what)(e.to_string()))
}

/// `participants`.
#[derive(sqlx::FromRow)]
pub struct ParticipantRow {
    id: String,
    display_name: String,
    kind: String,
    recipient_type: String,
    region: String,
    in_tianjin_ftz: bool,
    /// JSON array of role names.
    roles: String,
    clearance: String,
    status: String,
}

impl TryFrom<ParticipantRow> for Participant {
    type Error = StoreError;

    fn try_from(r: ParticipantRow) -> Result<Participant, StoreError> {
        const WHAT: &str = "participant";
        let bad = corrupt(WHAT);
        let roles: Vec<String> = serde_json::from_str(&r.roles).map_err(|e| bad(e.to_string()))?;
        Ok(Participant {
            id: ParticipantId::parse(&r.id).map_err(|e| bad(e.to_string()))?,
            display_name: r.display_name,
            kind: name(WHAT, &r.kind)?,
            recipient_type: name(WHAT, &r.recipient_type)?,
            region: name(WHAT, &r.region)?,
            in_tianjin_ftz: r.in_tianjin_ftz,
            roles: roles.iter().map(|role| name(WHAT, role)).collect::<Result<_, _>>()?,
            clearance: name(WHAT, &r.clearance)?,
            status: name(WHAT, &r.status)?,
        })
    }
}

/// `datasets`.
#[derive(sqlx::FromRow)]
pub struct DatasetRow {
    id: String,
    owner: String,
    title: String,
    description: String,
    government_data: bool,
    /// JSON array of field definitions.
    fields: String,
    person_key_field: Option<String>,
    contributor_key_field: Option<String>,
    holding_key_field: Option<String>,
    registered_at: i64,
}

impl TryFrom<DatasetRow> for Dataset {
    type Error = StoreError;

    fn try_from(r: DatasetRow) -> Result<Dataset, StoreError> {
        let bad = corrupt("dataset");
        let key = |k: Option<String>| k.map(|s| FieldName::parse(&s)).transpose().map_err(|e| bad(e.to_string()));
        Ok(Dataset {
            id: DatasetId::parse(&r.id).map_err(|e| bad(e.to_string()))?,
            owner: ParticipantId::parse(&r.owner).map_err(|e| bad(e.to_string()))?,
            title: r.title,
            description: r.description,
            government_data: r.government_data,
            fields: serde_json::from_str(&r.fields).map_err(|e| bad(e.to_string()))?,
            person_key_field: key(r.person_key_field)?,
            contributor_key_field: key(r.contributor_key_field)?,
            holding_key_field: key(r.holding_key_field)?,
            registered_at: from_micros(r.registered_at),
        })
    }
}

/// `versions`, the columns of [`super::sql::VERSION_COLUMNS`].
#[derive(sqlx::FromRow)]
pub struct VersionRow {
    dataset_id: String,
    version: i64,
    rows: i64,
    chunks: i64,
    sha256: Vec<u8>,
    publisher: String,
    published_at: i64,
    idempotency_key: String,
    status: String,
    review: Option<String>,
}

impl TryFrom<VersionRow> for VersionInfo {
    type Error = StoreError;

    fn try_from(r: VersionRow) -> Result<VersionInfo, StoreError> {
        let bad = corrupt("version");
        Ok(VersionInfo {
            dataset: DatasetId::parse(&r.dataset_id).map_err(|e| bad(e.to_string()))?,
            version: r.version as u64,
            rows: r.rows as u64,
            chunks: r.chunks as u64,
            sha256: hash32("version", r.sha256)?,
            publisher: ParticipantId::parse(&r.publisher).map_err(|e| bad(e.to_string()))?,
            published_at: from_micros(r.published_at),
            idempotency_key: r.idempotency_key,
            status: r.status.parse().map_err(|e: crate::domain::classification::UnknownName| bad(e.to_string()))?,
            review: r.review.map(|j| serde_json::from_str(&j)).transpose().map_err(|e| bad(e.to_string()))?,
        })
    }
}

/// `grants.body`: the whole grant as JSON.
#[derive(sqlx::FromRow)]
pub struct GrantRow {
    body: String,
}

impl TryFrom<GrantRow> for Grant {
    type Error = StoreError;

    fn try_from(r: GrantRow) -> Result<Grant, StoreError> {
        serde_json::from_str(&r.body).map_err(|e| corrupt("grant")(e.to_string()))
    }
}

/// `chunks`, as [`super::codec::sql::CHUNK`] reads them.
#[derive(sqlx::FromRow)]
pub struct ChunkRow {
    seq: i64,
    rows: i64,
    sha256: Vec<u8>,
    data: Vec<u8>,
}

impl TryFrom<ChunkRow> for StoredChunk {
    type Error = StoreError;

    fn try_from(r: ChunkRow) -> Result<StoredChunk, StoreError> {
        Ok(StoredChunk {
            seq: r.seq as u64,
            rows: u32::try_from(r.rows).map_err(|e| corrupt("chunk")(e.to_string()))?,
            sha256: hash32("chunk", r.sha256)?,
            data: Bytes::from(r.data),
        })
    }
}

/// `checkpoints`.
#[derive(sqlx::FromRow)]
pub struct CheckpointRow {
    size: i64,
    root: Vec<u8>,
    note: String,
    at: i64,
}

impl TryFrom<CheckpointRow> for StoredCheckpoint {
    type Error = StoreError;

    fn try_from(r: CheckpointRow) -> Result<StoredCheckpoint, StoreError> {
        Ok(StoredCheckpoint {
            size: r.size as u64,
            root: hash32("checkpoint", r.root)?,
            note: r.note,
            at: from_micros(r.at),
        })
    }
}

/// `records`: `seq, leaf_index, kind, json`.
#[derive(sqlx::FromRow)]
pub struct RecordRow {
    seq: i64,
    leaf_index: Option<i64>,
    kind: String,
    json: String,
}

impl TryFrom<RecordRow> for StoredRecord {
    type Error = StoreError;

    fn try_from(r: RecordRow) -> Result<StoredRecord, StoreError> {
        Ok(StoredRecord {
            seq: r.seq as u64,
            leaf_index: r.leaf_index.map(|i| i as u64),
            kind: name("record", &r.kind)?,
            json: r.json,
        })
    }
}

/// The facet columns of `records` (`transfer` … `action`); all null on a record about no
/// transfer.
#[derive(sqlx::FromRow)]
pub struct FacetsRow {
    transfer: Option<String>,
    dataset: Option<String>,
    recipient: Option<String>,
    exporter: Option<String>,
    region: Option<String>,
    export: Option<bool>,
    mechanism: Option<String>,
    action: Option<String>,
}

impl TryFrom<FacetsRow> for Option<TransferFacets> {
    type Error = StoreError;

    fn try_from(r: FacetsRow) -> Result<Option<TransferFacets>, StoreError> {
        let Some(transfer) = r.transfer else { return Ok(None) };
        Ok(Some(TransferFacets {
            transfer,
            dataset: r.dataset.unwrap_or_default(),
            recipient: r.recipient.unwrap_or_default(),
            exporter: r.exporter.unwrap_or_default(),
            region: r.region.unwrap_or_default(),
            export: r.export.unwrap_or(false),
            mechanism: mechanism_from_column(r.mechanism).map_err(corrupt("record facets"))?,
            action: name("record facets", r.action.as_deref().unwrap_or_default())?,
        }))
    }
}

/// The facets of one leaf: `leaf_index` and the facet columns.
#[derive(sqlx::FromRow)]
pub struct LeafFacetsRow {
    leaf_index: i64,
    #[sqlx(flatten)]
    facets: FacetsRow,
}

impl TryFrom<LeafFacetsRow> for (u64, Option<TransferFacets>) {
    type Error = StoreError;

    fn try_from(r: LeafFacetsRow) -> Result<(u64, Option<TransferFacets>), StoreError> {
        Ok((r.leaf_index as u64, r.facets.try_into()?))
    }
}

/// An integrated transfer record: the record, its time and its facets.
#[derive(sqlx::FromRow)]
pub struct TransferRow {
    #[sqlx(flatten)]
    record: RecordRow,
    at: i64,
    #[sqlx(flatten)]
    facets: FacetsRow,
}

impl TryFrom<TransferRow> for StoredTransfer {
    type Error = StoreError;

    fn try_from(r: TransferRow) -> Result<StoredTransfer, StoreError> {
        let bad = corrupt("transfer record");
        let record = StoredRecord::try_from(r.record)?;
        Ok(StoredTransfer {
            seq: record.seq,
            leaf_index: record.leaf_index.ok_or_else(|| bad("no leaf index".into()))?,
            kind: record.kind,
            at: from_micros(r.at),
            json: record.json,
            facets: Option::<TransferFacets>::try_from(r.facets)?.ok_or_else(|| bad("no facets".into()))?,
        })
    }
}

/// `approvals`.
#[derive(sqlx::FromRow)]
pub struct ApprovalRow {
    id: String,
    kind: String,
    exporter: String,
    reference: String,
    /// `YYYY-MM-DD`.
    issued: String,
    expires: Option<String>,
    revoked: bool,
    /// JSON.
    scope: String,
    recorded_by: String,
    recorded_at: i64,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
    confirmed_by: Option<String>,
    confirmed_at: Option<i64>,
    record_seq: Option<i64>,
}

impl TryFrom<ApprovalRow> for StoredApproval {
    type Error = StoreError;

    fn try_from(r: ApprovalRow) -> Result<StoredApproval, StoreError> {
        const WHAT: &str = "approval";
        let bad = corrupt(WHAT);
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| bad(e.to_string()));
        Ok(StoredApproval {
            approval: Approval {
                kind: name(WHAT, &r.kind)?,
                issued: day(&r.issued)?,
                expires: r.expires.as_deref().map(day).transpose()?,
                scope: scope_from_json(&r.scope).map_err(&bad)?,
                id: r.id,
                exporter: r.exporter,
                reference: r.reference,
                revoked: r.revoked,
            },
            recorded_by: r.recorded_by,
            recorded_at: from_micros(r.recorded_at),
            revoked_by: r.revoked_by,
            revoke_reason: r.revoke_reason,
            confirmed_by: r.confirmed_by,
            confirmed_at: r.confirmed_at.map(from_micros),
            record_seq: r.record_seq.map(|s| s as u64),
        })
    }
}

/// `holds`.
#[derive(sqlx::FromRow)]
pub struct HoldRow {
    id: String,
    status: String,
    grant_id: String,
    dataset: String,
    consumer: String,
    exporter: String,
    mechanism: String,
    /// JSON.
    body: String,
    created_at: i64,
    resolved_by: Option<String>,
    resolved_at: Option<i64>,
    reason: Option<String>,
    approval_id: Option<String>,
}

impl TryFrom<HoldRow> for Hold {
    type Error = StoreError;

    fn try_from(r: HoldRow) -> Result<Hold, StoreError> {
        const WHAT: &str = "hold";
        let bad = corrupt(WHAT);
        let id = |s: &str| ParticipantId::parse(s).map_err(|e| bad(e.to_string()));
        Ok(Hold {
            status: name(WHAT, &r.status)?,
            dataset: DatasetId::parse(&r.dataset).map_err(|e| bad(e.to_string()))?,
            consumer: id(&r.consumer)?,
            exporter: id(&r.exporter)?,
            body: serde_json::from_str(&r.body).map_err(|e| bad(e.to_string()))?,
            created_at: from_micros(r.created_at),
            resolved_by: r.resolved_by.as_deref().map(id).transpose()?,
            resolved_at: r.resolved_at.map(from_micros),
            reason: r.reason.unwrap_or_default(),
            id: r.id,
            grant_id: r.grant_id,
            mechanism: r.mechanism,
            approval_id: r.approval_id,
        })
    }
}

/// `tree_nodes`.
#[derive(sqlx::FromRow)]
pub struct NodeRow {
    /// `SMALLINT` on PostgreSQL.
    level: i16,
    idx: i64,
    hash: Vec<u8>,
}

impl TryFrom<NodeRow> for ((u8, u64), [u8; 32]) {
    type Error = StoreError;

    fn try_from(r: NodeRow) -> Result<((u8, u64), [u8; 32]), StoreError> {
        let level = u8::try_from(r.level).map_err(|e| corrupt("tree node")(e.to_string()))?;
        Ok(((level, r.idx as u64), hash32("tree node", r.hash)?))
    }
}

/// `(seq, json)` of a record waiting to be integrated.
#[derive(sqlx::FromRow)]
pub struct QueuedRow {
    seq: i64,
    json: String,
}

impl From<QueuedRow> for super::QueuedRecord {
    fn from(r: QueuedRow) -> super::QueuedRecord {
        super::QueuedRecord { seq: r.seq as u64, json: r.json }
    }
}

/// `reports`.
#[derive(sqlx::FromRow)]
pub struct ReportRow {
    id: String,
    dataset_id: String,
    definer: String,
    schedule: String,
    request: String,
    recipients: String,
    defined_at: i64,
    latest_at_definition: Option<i64>,
    last_period: String,
}

impl TryFrom<ReportRow> for super::StoredReport {
    type Error = StoreError;

    fn try_from(r: ReportRow) -> Result<super::StoredReport, StoreError> {
        let bad = corrupt("report");
        Ok(super::StoredReport {
            dataset: DatasetId::parse(&r.dataset_id).map_err(|e| bad(e.to_string()))?,
            definer: ParticipantId::parse(&r.definer).map_err(|e| bad(e.to_string()))?,
            id: r.id,
            schedule: r.schedule,
            request: r.request,
            recipients: r.recipients,
            defined_at: from_micros(r.defined_at),
            latest_at_definition: r.latest_at_definition.map(|v| v as u64),
            last_period: Some(r.last_period).filter(|p| !p.is_empty()),
        })
    }
}

/// `report_runs`.
#[derive(sqlx::FromRow)]
pub struct RunRow {
    report_id: String,
    period: String,
    recipient: String,
    status: String,
    claimed_at: i64,
    missed: i64,
    reason: String,
    table_id: Option<String>,
    version: Option<i64>,
    cells: Option<String>,
    sha256: Option<String>,
    record_seq: Option<i64>,
}

impl TryFrom<RunRow> for super::StoredRun {
    type Error = StoreError;

    fn try_from(r: RunRow) -> Result<super::StoredRun, StoreError> {
        let bad = corrupt("report run");
        Ok(super::StoredRun {
            recipient: ParticipantId::parse(&r.recipient).map_err(|e| bad(e.to_string()))?,
            report: r.report_id,
            period: r.period,
            status: r.status,
            claimed_at: from_micros(r.claimed_at),
            missed: r.missed as u32,
            reason: r.reason,
            table_id: r.table_id,
            version: r.version.map(|v| v as u64),
            cells: r.cells,
            sha256: r.sha256,
            record_seq: r.record_seq.map(|s| s as u64),
        })
    }
}
