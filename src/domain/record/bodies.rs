//! What each record kind records: the log's external format, read by auditors, re-hashed by `audit verify`.
//!
//! One `Serialize` struct per kind; [`RecordBody`] pairs each kind with its body, so that
//! [`NewRecord::new`](super::NewRecord::new) cannot file a body under the wrong kind. The grant
//! kinds share one body ([`GrantRecord`]: the grant as it stands after the change), and
//! `transfer.completed` has two ([`TransferCompleted`] from the pull itself,
//! [`TransferInterrupted`] from maintenance after a stop).
//!
//! A record is its body's members plus `type`, `schema`, `at`, `at_local` and `actor`
//! ([`NewRecord::to_json`](super::NewRecord::to_json)); its leaf is the RFC 8785 canonical JSON of
//! the whole. So the order of a struct's fields does not matter, but their names, their number
//! types, and whether an absent value is `null` (an `Option`) or no member at all
//! (`skip_serializing_if`) are the format: the golden tests below pin every kind's bytes.
//!
//! No body holds a value of the data, a key or a token. Names of enums (levels, masks, rules,
//! mechanisms, …) are their wire names. The bodies name `policy`'s enums and its decision format
//! ([`DecisionJson`]): a record states the rules' verdict in the rules' terms.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::RecordKind;
use crate::domain::classification::{named_enum, Classification, Level, Pi, Share};
use crate::domain::dataset::{Dataset, FieldDef, FieldName, FieldType};
use crate::domain::grant::{Grant, GrantStatus, GrantUse};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::mask::Mask;
use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use crate::policy::{
    Approval, ApprovalCheck, ApprovalOutcome, ApprovalType, Decision, DecisionJson, Exemption, Mechanism, Persons,
    RuleId, Ruleset, Scope, ScopeMiss,
};

/// A record's body, by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RecordBody {
    /// `participant.registered`.
    ParticipantRegistered(ParticipantRegistered),
    /// `participant.suspended`.
    ParticipantSuspended(ParticipantSuspended),
    /// `dataset.registered`.
    DatasetRegistered(DatasetRegistered),
    /// `version.published`.
    VersionPublished(VersionPublished),
    /// `grant.requested`: the grant as requested.
    GrantRequested(GrantRecord),
    /// `grant.approved`: the grant as approved (possibly narrowed).
    GrantApproved(GrantRecord),
    /// `grant.refused`: the grant with its refusal reason.
    GrantRefused(GrantRecord),
    /// `grant.revoked`: the grant with its revocation reason.
    GrantRevoked(GrantRecord),
    /// `exemption.attested`: the grant with its attesting officer.
    ExemptionAttested(GrantRecord),
    /// `transfer.decision`.
    TransferDecision(Box<TransferDecision>),
    /// `transfer.completed`, written by the pull when it ends.
    TransferCompleted(TransferCompleted),
    /// `transfer.completed`, written by maintenance for a pull a stop cut (`INTERRUPTED`).
    TransferInterrupted(TransferInterrupted),
    /// `hold.queued`.
    HoldQueued(HoldQueued),
    /// `hold.resolved`.
    HoldResolved(HoldResolved),
    /// `approval.recorded`.
    ApprovalRecorded(ApprovalRecorded),
    /// `approval.revoked`.
    ApprovalRevoked(ApprovalRevoked),
    /// `approval.confirmed`.
    ApprovalConfirmed(ApprovalConfirmed),
    /// `access.refused`.
    AccessRefused(AccessRefused),
    /// `table.decision`.
    TableDecision(Box<TableDecision>),
    /// `table.completed`.
    TableCompleted(TableCompleted),
    /// `table.completed`, written by maintenance for a table a stop cut (`INTERRUPTED`).
    TableInterrupted(TableInterrupted),
    /// `ledger.scope_set`.
    LedgerScopeSet(LedgerScopeSet),
    /// `table_rules.set`.
    TableRulesSet(TableRulesSet),
    /// `policy.applied`.
    PolicyApplied(PolicyApplied),
    /// `review_policy.set`.
    ReviewPolicySet(ReviewPolicySet),
    /// `version.reviewed`.
    VersionReviewed(VersionReviewed),
    /// `version.previewed`.
    VersionPreviewed(VersionPreviewed),
    /// `cadence.set`.
    CadenceSet(CadenceSet),
    /// `report.defined`.
    ReportDefined(ReportDefined),
    /// `report.run`.
    ReportRun(ReportRun),
    /// `report.fetched`.
    ReportFetched(ReportFetched),
}

impl RecordBody {
    /// The kind this body is recorded under.
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordBody::ParticipantRegistered(_) => RecordKind::ParticipantRegistered,
            RecordBody::ParticipantSuspended(_) => RecordKind::ParticipantSuspended,
            RecordBody::DatasetRegistered(_) => RecordKind::DatasetRegistered,
            RecordBody::VersionPublished(_) => RecordKind::VersionPublished,
            RecordBody::GrantRequested(_) => RecordKind::GrantRequested,
            RecordBody::GrantApproved(_) => RecordKind::GrantApproved,
            RecordBody::GrantRefused(_) => RecordKind::GrantRefused,
            RecordBody::GrantRevoked(_) => RecordKind::GrantRevoked,
            RecordBody::ExemptionAttested(_) => RecordKind::ExemptionAttested,
            RecordBody::TransferDecision(_) => RecordKind::TransferDecision,
            RecordBody::TransferCompleted(_) | RecordBody::TransferInterrupted(_) => RecordKind::TransferCompleted,
            RecordBody::HoldQueued(_) => RecordKind::HoldQueued,
            RecordBody::HoldResolved(_) => RecordKind::HoldResolved,
            RecordBody::ApprovalRecorded(_) => RecordKind::ApprovalRecorded,
            RecordBody::ApprovalRevoked(_) => RecordKind::ApprovalRevoked,
            RecordBody::ApprovalConfirmed(_) => RecordKind::ApprovalConfirmed,
            RecordBody::AccessRefused(_) => RecordKind::AccessRefused,
            RecordBody::TableDecision(_) => RecordKind::TableDecision,
            RecordBody::TableCompleted(_) | RecordBody::TableInterrupted(_) => RecordKind::TableCompleted,
            RecordBody::LedgerScopeSet(_) => RecordKind::LedgerScopeSet,
            RecordBody::TableRulesSet(_) => RecordKind::TableRulesSet,
            RecordBody::PolicyApplied(_) => RecordKind::PolicyApplied,
            RecordBody::ReviewPolicySet(_) => RecordKind::ReviewPolicySet,
            RecordBody::VersionReviewed(_) => RecordKind::VersionReviewed,
            RecordBody::VersionPreviewed(_) => RecordKind::VersionPreviewed,
            RecordBody::CadenceSet(_) => RecordKind::CadenceSet,
            RecordBody::ReportDefined(_) => RecordKind::ReportDefined,
            RecordBody::ReportRun(_) => RecordKind::ReportRun,
            RecordBody::ReportFetched(_) => RecordKind::ReportFetched,
        }
    }

    /// The fact a state record is about, as the store indexes it: `participant:<id>`,
    /// `dataset:<id>`, `grant:<id>`, `approval:<id>` or `policy:<sha256>`; `None` for records of
    /// transfers, holds and tables. The latest record about a fact is what a decision cites.
    pub fn subject(&self) -> Option<String> {
        Some(match self {
            RecordBody::ParticipantRegistered(b) => Fact::Participant.subject(b.participant.as_str()),
            RecordBody::ParticipantSuspended(b) => Fact::Participant.subject(b.participant.as_str()),
            RecordBody::DatasetRegistered(b) => Fact::Dataset.subject(b.dataset.as_str()),
            RecordBody::GrantRequested(g)
            | RecordBody::GrantApproved(g)
            | RecordBody::GrantRefused(g)
            | RecordBody::GrantRevoked(g)
            | RecordBody::ExemptionAttested(g) => Fact::Grant.subject(&g.grant),
            RecordBody::ApprovalRecorded(a) => Fact::Approval.subject(&a.approval),
            RecordBody::ApprovalRevoked(a) => Fact::Approval.subject(&a.approval),
            RecordBody::ApprovalConfirmed(a) => Fact::Approval.subject(&a.approval),
            RecordBody::PolicyApplied(p) => Fact::Policy.subject(&p.sha256),
            RecordBody::VersionReviewed(v) => Fact::Version.subject(&format!("{}@{}", v.dataset, v.version)),
            _ => return None,
        })
    }

    /// The body's members.
    pub(super) fn into_members(self) -> Map<String, Value> {
        members(&self)
    }
}

/// The members of a body, which is always a struct of strings, integers, booleans, options,
/// sequences and nested structs.
fn members(body: &impl Serialize) -> Map<String, Value> {
    // serde_json fails only on maps with non-string keys and on types that refuse to serialise;
    // no body has either, and the golden tests serialise every kind.
    match serde_json::to_value(body) {
        Ok(Value::Object(members)) => members,
        other => unreachable!("a record body serialises to a JSON object, not {other:?}"),
    }
}

/// Text forms that are part of the format.
mod text {
    use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
    use serde::Serializer;

    /// Lower-case hex.
    pub fn hex<S: Serializer>(digest: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(digest))
    }

    /// RFC 3339 in UTC with microseconds and `Z`: `2025-03-04T05:06:07.123456Z`.
    pub fn micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    /// chrono's `to_rfc3339`: UTC as `+00:00`, fractional seconds only when not zero
    /// (`2025-12-31T16:00:00.500+00:00`); `null` when absent.
    pub fn rfc3339_or_null<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&t.to_rfc3339()),
            None => s.serialize_none(),
        }
    }

    /// `YYYY-MM-DD`.
    pub fn day<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    /// `YYYY-MM-DD`; `null` when absent.
    pub fn day_or_null<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.to_string()),
            None => s.serialize_none(),
        }
    }
}

// --- participants --------------------------------------------------------------------------------

/// `participant.registered`: who may now call the gateway, as what. No key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantRegistered {
    /// The participant's id: the common name of its client certificate.
    pub participant: ParticipantId,
    /// Its human-readable name.
    pub display_name: String,
    /// Organisation kind, the exporter kind of the export rules (X5, X6, A2–A4, C1, C2, V1).
    pub kind: ParticipantKind,
    /// What it is as a recipient (rules X4, D2).
    pub recipient_type: RecipientType,
    /// Where it is: whether a transfer to it is an export.
    pub region: Region,
    /// Whether it is in the Tianjin free-trade zone (rule E4).
    pub in_tianjin_ftz: bool,
    /// Its roles, in the order `publisher`, `consumer`, `officer`, `auditor`, `admin`.
    pub roles: BTreeSet<Role>,
    /// The highest level it receives unmasked; fields above it are delivered `REDACT`.
    pub clearance: Level,
    /// `ACTIVE` at registration.
    pub status: ParticipantStatus,
}

impl From<&Participant> for ParticipantRegistered {
    fn from(p: &Participant) -> ParticipantRegistered {
        ParticipantRegistered {
            participant: p.id.clone(),
            display_name: p.display_name.clone(),
            kind: p.kind,
            recipient_type: p.recipient_type,
            region: p.region.clone(),
            in_tianjin_ftz: p.in_tianjin_ftz,
            roles: p.roles.clone(),
            clearance: p.clearance,
            status: p.status,
        }
    }
}

/// `participant.suspended`: every call of the participant is refused from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantSuspended {
    /// The participant.
    pub participant: ParticipantId,
    /// Why, as the administrator gave it (may be empty).
    pub reason: String,
}

// --- catalog and publishing ----------------------------------------------------------------------

/// `dataset.registered`: a dataset's classified schema. Its title and description are not
/// recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetRegistered {
    /// The dataset's id.
    pub dataset: DatasetId,
    /// The publisher that registered it: the exporter when it leaves the country.
    pub owner: ParticipantId,
    /// Government data (政务数据): rules X6 and E4.
    pub government_data: bool,
    /// The field identifying a natural person (distinct-person counting); `null` when none.
    pub person_key_field: Option<FieldName>,
    /// The field identifying a respondent (statistical disclosure control); `null` when none.
    pub contributor_key_field: Option<FieldName>,
    /// The field naming a respondent's holding; no member at all when none (datasets registered
    /// before holdings existed kept their format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holding_key_field: Option<FieldName>,
    /// The schema, in column order.
    pub fields: Vec<SchemaField>,
}

/// One field of a registered schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaField {
    /// The field's name.
    pub name: FieldName,
    /// The values' type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Classification level (docs/rules.md §1).
    pub level: Level,
    /// Personal information: `NONE`, `PI` or `SPI`.
    pub pi: Pi,
    /// Identifiable statistical survey material (rule X3).
    pub stat_micro: bool,
    /// The catalogue's share attribute (rule D3).
    pub share: Share,
    /// In a category of the Tianjin FTZ data-export negative list.
    pub ftz_negative_list: bool,
    /// The mask applied when a grant sets no stricter one: `{"kind": …}` and its parameters.
    pub default_mask: Mask,
}

impl From<&FieldDef> for SchemaField {
    fn from(f: &FieldDef) -> SchemaField {
        let Classification { level, pi, stat_micro, share, ftz_negative_list } = f.class;
        SchemaField {
            name: f.name.clone(),
            ty: f.ty,
            level,
            pi,
            stat_micro,
            share,
            ftz_negative_list,
            default_mask: f.default_mask,
        }
    }
}

impl From<&Dataset> for DatasetRegistered {
    fn from(d: &Dataset) -> DatasetRegistered {
        DatasetRegistered {
            dataset: d.id.clone(),
            owner: d.owner.clone(),
            government_data: d.government_data,
            person_key_field: d.person_key_field.clone(),
            contributor_key_field: d.contributor_key_field.clone(),
            holding_key_field: d.holding_key_field.clone(),
            fields: d.fields.iter().map(SchemaField::from).collect(),
        }
    }
}

/// `version.published`: a version became visible, whole. The store adds `version`, the number it
/// gave the version, in the transaction that publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionPublished {
    /// The dataset.
    pub dataset: DatasetId,
    /// Rows in the version.
    pub rows: u64,
    /// Stored chunks (one delivered batch each).
    pub chunks: u64,
    /// SHA-256 over the SHA-256 digests of its chunks, concatenated in order (hex).
    #[serde(serialize_with = "text::hex")]
    pub sha256: [u8; 32],
    /// The publisher's idempotency key: a retried publish names the same version.
    pub idempotency_key: String,
}

// --- sharing -------------------------------------------------------------------------------------

/// The grant kinds (`grant.requested`, `.approved`, `.refused`, `.revoked`) and
/// `exemption.attested`: the grant as it stands after the change. The row filter's values are
/// not recorded (they may be personal data), only its field and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecord {
    /// The grant's id.
    pub grant: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// Who receives.
    pub consumer: ParticipantId,
    /// The granted fields and the owner's masks.
    pub fields: Vec<GrantRecordField>,
    /// What the consumer will use the data for.
    pub purpose: String,
    /// The statutory duty relied on (rule D6); empty when none.
    pub legal_basis: String,
    /// The purpose is statistical (rule D2).
    pub statistical_purpose: bool,
    /// `PENDING`, `APPROVED`, `REFUSED` or `REVOKED`.
    pub status: GrantStatus,
    /// When pulls stop being allowed (chrono's RFC 3339: `+00:00`, fractional seconds only when
    /// not zero); `null` when the grant does not expire or is not approved yet.
    #[serde(serialize_with = "text::rfc3339_or_null")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The field of the owner's row filter; `null` when there is none.
    pub row_filter_field: Option<FieldName>,
    /// How many values the row filter accepts; `null` when there is none.
    pub row_filter_values: Option<u64>,
    /// Why it was refused or revoked; empty otherwise.
    pub reason: String,
    /// The consumer's exemption claim (E2/E3); `NONE` when none.
    pub exemption: Exemption,
    /// The officer who attested the claim; `null` until attested.
    pub exemption_attested_by: Option<ParticipantId>,
    /// A TABLES grant's use, dimensions and measures; no member at all for a ROWS grant (so
    /// that records of ROWS grants kept their format when uses were introduced).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tables: Option<GrantRecordTables>,
}

/// What a TABLES grant adds to its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecordTables {
    /// Always `TABLES`.
    #[serde(rename = "use")]
    pub usage: GrantUse,
    /// The fields the consumer may tabulate by.
    pub dimensions: Vec<FieldName>,
    /// The numeric fields it may sum.
    pub measures: Vec<FieldName>,
}

/// One granted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecordField {
    /// The field.
    pub name: FieldName,
    /// A mask stricter than the field's default set by the owner; `null`: the default.
    pub mask: Option<Mask>,
}

impl From<&Grant> for GrantRecord {
    fn from(g: &Grant) -> GrantRecord {
        GrantRecord {
            grant: g.id.clone(),
            dataset: g.dataset.clone(),
            consumer: g.consumer.clone(),
            fields: g.fields.iter().map(|f| GrantRecordField { name: f.name.clone(), mask: f.mask }).collect(),
            purpose: g.purpose.clone(),
            legal_basis: g.legal_basis.clone(),
            statistical_purpose: g.statistical_purpose,
            status: g.status,
            expires_at: g.expires_at,
            row_filter_field: g.row_filter.as_ref().map(|f| f.field.clone()),
            row_filter_values: g.row_filter.as_ref().map(|f| f.values.len() as u64),
            reason: g.reason.clone(),
            exemption: g.exemption,
            exemption_attested_by: g.exemption_attested_by.clone(),
            tables: (g.usage == GrantUse::Tables).then(|| GrantRecordTables {
                usage: g.usage,
                dimensions: g.dimensions.clone(),
                measures: g.measures.clone(),
            }),
        }
    }
}

// --- exchange ------------------------------------------------------------------------------------

/// `transfer.decision` (docs/rules.md §6): a pull assessed, whatever the outcome, before any row
/// was sent. Never a value of the data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferDecision {
    /// The transfer's id; its completion names it too.
    pub transfer: String,
    /// Who pulled, and with which certificate.
    pub caller: DecisionCaller,
    /// The dataset's owner, as the rules saw it.
    pub exporter: DecisionExporter,
    /// The recipient, as the rules saw it.
    pub recipient: DecisionRecipient,
    /// The dataset.
    pub dataset: DatasetId,
    /// The version delivered.
    pub version: u64,
    /// The version's digest ([`VersionPublished::sha256`]), hex.
    #[serde(serialize_with = "text::hex")]
    pub version_sha256: [u8; 32],
    /// Government data (rules X6, E4).
    pub government_data: bool,
    /// The grant pulled under.
    pub grant: String,
    /// The grant's purpose.
    pub purpose: String,
    /// The grant's legal basis (rule D6).
    pub legal_basis: String,
    /// The grant's statistical-purpose flag (rule D4).
    pub statistical_purpose: bool,
    /// The grant's exemption claim; it counts only when attested.
    pub exemption: Exemption,
    /// The officer who attested it; `null` when not attested.
    pub exemption_attested_by: Option<String>,
    /// Distinct natural persons the transfer carries.
    pub persons: DecisionPersons,
    /// The approval used, or the closest candidate and why it did not apply; `null` when none.
    pub approval: Option<DecisionApproval>,
    /// The delivered fields with the masks applied, then the granted fields dropped.
    pub fields: Vec<DecisionField>,
    /// Rows of the version the grant's row filter selects (all of them without a filter); a
    /// resumed pull sends those from `from_batch` on.
    pub rows: u64,
    /// The first batch sent (a resumed pull starts after 0).
    pub from_batch: u64,
    /// Where the decision stands in the exporter's person ledger; `null` when no person was
    /// counted (domestic sharing, or no personal information in the transfer).
    pub ledger: Option<DecisionLedger>,
    /// Every fact the rules read, each with the leaf index of the latest record about it.
    pub facts: Vec<FactCited>,
    /// The ruleset evaluated.
    pub ruleset: Ruleset,
    /// The rules' verdict, in the format of docs/assess.md.
    pub decision: DecisionJson,
    /// `AUTHORISED`, or the refusal the caller received.
    pub outcome: String,
}

/// A decision's place in its exporter's person ledger, read and taken under the ledger's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DecisionLedger {
    /// Entries the exporter's ledger had before this decision: its window totals are theirs.
    pub position: u64,
    /// Whether this decision's persons entered the ledger, as entry `position + 1` (a passed
    /// export of personal information).
    pub counted: bool,
    /// The Asia/Shanghai year of the decision's `at`: the ledger's bucket.
    pub year: i32,
}

named_enum! {
    /// What kind of fact a decision cites.
    Fact, "fact" {
        /// The export policy in force (`policy.applied`).
        Policy = "policy",
        /// A participant (`participant.*`).
        Participant = "participant",
        /// A dataset's classification (`dataset.registered`).
        Dataset = "dataset",
        /// A grant (`grant.*`, `exemption.attested`).
        Grant = "grant",
        /// An approval given to the rules (`approval.*`).
        Approval = "approval",
        /// The version delivered, as released (`version.published`, `version.reviewed`); its id
        /// is `<dataset>@<version>`.
        Version = "version",
    }
}

impl Fact {
    /// The store's subject of the fact `id` of this kind: `<fact>:<id>`.
    pub fn subject(self, id: &str) -> String {
        format!("{}:{id}", self.as_str())
    }
}

/// A fact a decision rests on: the latest record about it when the decision was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FactCited {
    /// What kind of fact.
    pub fact: Fact,
    /// Its id (a policy's: the SHA-256 of its canonical JSON, hex).
    pub id: String,
    /// The leaf index of the latest record about it.
    pub leaf: u64,
}

/// Who pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionCaller {
    /// The participant.
    pub id: ParticipantId,
    /// Lower-case hex SHA-256 of its client certificate.
    pub cert_sha256: String,
}

/// The exporter, as the export rules read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionExporter {
    /// The dataset's owner.
    pub id: ParticipantId,
    /// Its organisation kind.
    pub kind: ParticipantKind,
    /// In the Tianjin free-trade zone (rule E4).
    pub in_tianjin_ftz: bool,
}

impl From<&Participant> for DecisionExporter {
    fn from(p: &Participant) -> DecisionExporter {
        DecisionExporter { id: p.id.clone(), kind: p.kind, in_tianjin_ftz: p.in_tianjin_ftz }
    }
}

/// The recipient, as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecipient {
    /// The participant receiving.
    pub id: ParticipantId,
    /// Its recipient type (rules X4, D2).
    #[serde(rename = "type")]
    pub recipient_type: RecipientType,
    /// Its region.
    pub region: Region,
    /// The pull said it is a remote query from outside mainland China: an export wherever the
    /// recipient is.
    pub access_from_outside_mainland: bool,
}

impl DecisionRecipient {
    /// `p` receiving, from outside mainland China or not.
    pub fn new(p: &Participant, access_from_outside_mainland: bool) -> DecisionRecipient {
        DecisionRecipient {
            id: p.id.clone(),
            recipient_type: p.recipient_type,
            region: p.region.clone(),
            access_from_outside_mainland,
        }
    }
}

/// Distinct natural persons of a transfer (docs/rules.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DecisionPersons {
    /// In the non-sensitive bucket (a `PI` field is delivered).
    pub nonsensitive: u64,
    /// In the sensitive bucket (an `SPI` field is delivered).
    pub sensitive: u64,
    /// Of `nonsensitive`, how many the exporter's window already counted.
    pub already_counted_nonsensitive: u64,
    /// Of `sensitive`, how many the exporter's window already counted.
    pub already_counted_sensitive: u64,
}

impl From<&Persons> for DecisionPersons {
    fn from(p: &Persons) -> DecisionPersons {
        DecisionPersons {
            nonsensitive: p.nonsensitive,
            sensitive: p.sensitive,
            already_counted_nonsensitive: p.already_counted_nonsensitive,
            already_counted_sensitive: p.already_counted_sensitive,
        }
    }
}

/// The approval a decision reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionApproval {
    /// The approval's id.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ApprovalType,
    /// `valid` when it was used; otherwise why not: `expired`, `revoked`, `out_of_scope`.
    pub check: ApprovalCheck,
    /// For `out_of_scope`, the first part of the scope missed; `null` otherwise.
    pub scope_miss: Option<ScopeMiss>,
}

impl From<&ApprovalOutcome> for DecisionApproval {
    fn from(a: &ApprovalOutcome) -> DecisionApproval {
        DecisionApproval { id: a.id.clone(), kind: a.kind, check: a.check, scope_miss: a.scope_miss }
    }
}

/// A granted field of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DecisionField {
    /// Delivered: its classification and the mask applied (never `DROP`).
    Delivered {
        /// The field.
        name: FieldName,
        /// Its level.
        level: Level,
        /// Its personal-information flag.
        pi: Pi,
        /// Identifiable statistical survey material.
        stat_micro: bool,
        /// Its catalogue share attribute (rules D1–D3).
        share: Share,
        /// In a category of the Tianjin FTZ negative list (rule E4).
        ftz_negative_list: bool,
        /// The mask applied.
        mask: Mask,
    },
    /// Granted but not delivered, its mask being `DROP`: `{"name": …, "mask": {"kind": "DROP"}}`.
    #[serde(serialize_with = "dropped_field")]
    Dropped(FieldName),
}

fn dropped_field<S: Serializer>(name: &FieldName, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Dropped<'a> {
        name: &'a FieldName,
        mask: Mask,
    }
    Dropped { name, mask: Mask::Drop }.serialize(s)
}

/// `transfer.completed`, written by the pull: what was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferCompleted {
    /// The transfer (its decision names it too).
    pub transfer: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// The version.
    pub version: u64,
    /// The recipient.
    pub recipient: ParticipantId,
    /// Rows delivered.
    pub rows: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Encoded bytes of the delivered batches.
    pub bytes: u64,
    /// SHA-256 over the SHA-256 digests of the delivered batches' encodings, concatenated in
    /// order (hex): what the recipient can recompute from what it received.
    #[serde(serialize_with = "text::hex")]
    pub sha256: [u8; 32],
    /// `COMPLETED`, or why it ended early: `REVOKED: …` when a suspension or revocation stopped
    /// it, otherwise the error that cut it.
    pub outcome: String,
}

/// `transfer.completed`, written by maintenance for an authorised transfer without completion
/// that no longer streams: the gateway stopped while it streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferInterrupted {
    /// The transfer.
    pub transfer: String,
    /// The dataset, as the decision's facets name it.
    pub dataset: String,
    /// The version the decision named; `null` when the decision record could not be read.
    pub version: Option<u64>,
    /// The recipient, as the decision's facets name it.
    pub recipient: String,
    /// The decision's leaf index.
    pub decision_index: u64,
    /// Always [`TransferInterrupted::OUTCOME`].
    pub outcome: String,
}

impl TransferInterrupted {
    /// The outcome of every interrupted transfer.
    pub const OUTCOME: &'static str =
        "INTERRUPTED: the gateway stopped while the pull was streaming; what was sent before is not known";
}

// --- tables --------------------------------------------------------------------------------------

/// `table.decision` (docs/tables.md §6): a table assessed as aggregate data and protected, before
/// any cell was sent. Never a cell value, never the coordinates of a suppressed cell, never the
/// primary-rule parameters (only their HMAC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDecision {
    /// The table's id (`tb-…`); its completion names it too.
    pub table: String,
    /// A preview: nothing was sent and the release ledger was not written.
    pub preview: bool,
    /// Who asked, and with which certificate.
    pub caller: DecisionCaller,
    /// The dataset's owner, as the rules saw it.
    pub exporter: DecisionExporter,
    /// The recipient, as the rules saw it.
    pub recipient: DecisionRecipient,
    /// The dataset.
    pub dataset: DatasetId,
    /// The version tabulated.
    pub version: u64,
    /// The version's digest, hex.
    #[serde(serialize_with = "text::hex")]
    pub version_sha256: [u8; 32],
    /// Government data (rules X6, E4).
    pub government_data: bool,
    /// The TABLES grant used.
    pub grant: String,
    /// The grant's purpose.
    pub purpose: String,
    /// The grant's legal basis (rule D6).
    pub legal_basis: String,
    /// What was asked: dimensions with their hierarchies and filters, the statistic.
    pub definition: TableDefinition,
    /// The fields the table uses, with their classification in the catalog. The rules read
    /// them as aggregate data: `pi` NONE, `stat_micro` false, 0 persons, the level kept.
    pub fields: Vec<TableField>,
    /// HMAC-SHA-256 (hex) of the primary-rule parameters applied, keyed with a key derived from
    /// the gateway secret: an auditor holding the parameters can check which applied.
    pub parameters_hmac: String,
    /// How many cells of the table were published or suppressed; `null` when the table was not
    /// protected (bad grant use, a hold or a block came first).
    pub cells: Option<TableCells>,
    /// The release ledger the table was checked against.
    pub ledger: TableLedger,
    /// SHA-256 of the published cells (the trailer's digest), hex; `null` when nothing is sent.
    pub sha256: Option<String>,
    /// The ruleset evaluated.
    pub ruleset: Ruleset,
    /// Every fact the rules read, each with the leaf index of the latest record about it (as in
    /// [`TransferDecision::facts`]).
    pub facts: Vec<FactCited>,
    /// The rules' verdict.
    pub decision: DecisionJson,
    /// `AUTHORISED`, `PREVIEW`, or the refusal (never naming a suppressed cell).
    pub outcome: String,
}

/// A table's definition as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDefinition {
    /// `COUNT`, `SUM` or `MEAN`.
    pub statistic: String,
    /// The summed field (SUM, MEAN); `null` for COUNT.
    pub measure: Option<FieldName>,
    /// The dimensions, in request order.
    pub dimensions: Vec<TableDimensionRecord>,
}

/// One dimension of a recorded table definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDimensionRecord {
    /// The field.
    pub field: FieldName,
    /// `YEAR`, `QUARTER` or `MONTH` for a date; `null` otherwise.
    pub period: Option<String>,
    /// The hierarchy's groups, `[name, [children…]]`, in request order.
    pub groups: Vec<(String, Vec<String>)>,
    /// Administrative-code prefix lengths.
    pub prefixes: Vec<u64>,
    /// The filter's categories; empty when every category is tabulated.
    pub filter: Vec<String>,
}

/// A field a table uses, as the catalog classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableField {
    /// The field.
    pub name: FieldName,
    /// `dimension` or `measure`.
    pub role: String,
    /// Its level (kept by the assessment).
    pub level: Level,
    /// Its personal-information flag in the catalog (read as NONE for the table).
    pub pi: Pi,
    /// Identifiable survey material in the catalog (read as false for the table).
    pub stat_micro: bool,
}

/// Cell counts of a protected table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableCells {
    /// Cells of the table (every combination of codes).
    pub total: u64,
    /// Published with a value.
    pub published: u64,
    /// Suppressed by a primary rule.
    pub primary: u64,
    /// Suppressed to protect another cell.
    pub secondary: u64,
}

/// The release ledger a table was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableLedger {
    /// The ledger's scope: the recipient, or the group an officer widened it to.
    pub scope: String,
    /// Cells released earlier from the same version to the scope, forced published.
    pub checked: u64,
    /// Cells this table adds to the ledger (0 for a preview or a refusal).
    pub added: u64,
}

/// `ledger.scope_set`: an officer made the release ledger of `participant` the shared ledger
/// `scope` (recipients who share data among themselves are checked against what any of them
/// received), or reset it to the participant's own (`scope` equal to the participant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerScopeSet {
    /// The recipient.
    pub participant: ParticipantId,
    /// Its ledger scope from now on.
    pub scope: String,
    /// Why (free text).
    pub reason: String,
}

/// `table_rules.set`: a dataset's owner set its table parameters, each direction at least as
/// strict as the gateway's. Only their HMACs (as in [`TableDecision::parameters_hmac`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRulesSet {
    /// The dataset.
    pub dataset: DatasetId,
    /// HMAC of the domestic parameters, hex.
    pub domestic_hmac: String,
    /// HMAC of the export parameters, hex.
    pub export_hmac: String,
}

/// `policy.applied`: the gateway started with an export policy other than the last one logged.
/// Only the export rules' values (thresholds, windows, validity, maker-checker); the table
/// parameters are confidential and logged as HMACs in `table.decision`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyApplied {
    /// The policy, named as in the `[policy]` section of the configuration.
    pub policy: Map<String, Value>,
    /// SHA-256 of the policy's canonical JSON, hex: the id decisions cite it by.
    pub sha256: String,
}

impl PolicyApplied {
    /// The record of `policy`'s export rules.
    ///
    /// # Errors
    /// Only if the policy held a value canonical JSON cannot represent (it holds none).
    pub fn of(
        policy: &crate::policy::PolicyConfig,
    ) -> Result<PolicyApplied, crate::translog::canonical::CanonicalError> {
        let mut members = members(policy);
        members.remove("tables");
        let canonical = crate::translog::canonical::to_canonical_json(&Value::Object(members.clone()))?;
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()));
        Ok(PolicyApplied { policy: members, sha256 })
    }
}

/// `review_policy.set`: a dataset's owner set (or removed) the review its versions go through
/// before release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewPolicySet {
    /// The dataset.
    pub dataset: DatasetId,
    /// The levels, in order; empty: versions are released when published.
    pub levels: Vec<crate::domain::review::ReviewLevel>,
}

/// `version.reviewed`: a reviewer approved or returned a version at one level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionReviewed {
    /// The dataset.
    pub dataset: DatasetId,
    /// The version.
    pub version: u64,
    /// The level reviewed (0 = the first).
    pub level: u32,
    /// Its jurisdiction.
    pub jurisdiction: Region,
    /// `APPROVED` or `RETURNED`.
    pub outcome: crate::domain::review::ReviewOutcome,
    /// Why (required to return).
    pub reasons: String,
    /// The version's status after the step: `IN_REVIEW` (the next level reviews), `RELEASED`
    /// (the last level approved: consumers see it from now) or `RETURNED`.
    pub status: crate::domain::review::VersionStatus,
}

/// `version.previewed`: the owner or a reviewer was sent the first rows of a version (in review,
/// returned or released), masked for its clearance, before any row left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionPreviewed {
    /// The dataset.
    pub dataset: DatasetId,
    /// The version.
    pub version: u64,
    /// Its status when previewed.
    pub status: crate::domain::review::VersionStatus,
    /// `owner` or `reviewer`: why the caller may see it.
    pub seen_as: String,
    /// The fields sent with their masks (`DROP` ones are not sent).
    pub fields: Vec<GrantRecordField>,
    /// Rows sent.
    pub rows: u64,
    /// SHA-256 over the SHA-256 digests of the batches sent, concatenated in order, hex.
    pub sha256: String,
}

/// `cadence.set`: a dataset's owner declared (or withdrew) how often it releases a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CadenceSet {
    /// The dataset.
    pub dataset: DatasetId,
    /// The schedule (`monthly:5`, `quarterly:1`); `null` when withdrawn.
    pub cadence: Option<String>,
}

/// One recipient of a standing report and the slice of the table it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReportRecipientRecord {
    /// The participant.
    pub participant: ParticipantId,
    /// Its slice: only these categories of one dimension; `null`: the whole table.
    pub slice: Option<ReportSlice>,
}

/// The categories of one dimension a recipient's slice keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReportSlice {
    /// A dimension of the report's table.
    pub dimension: FieldName,
    /// Its categories kept.
    pub values: Vec<String>,
}

/// `report.defined`: an officer or a dataset's owner defined a standing report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportDefined {
    /// `r-…`.
    pub report: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// `monthly:DAY`, `quarterly:DAY` or `on-release`.
    pub schedule: String,
    /// The table, as `table.decision` records a definition.
    pub table: TableDefinition,
    /// Who gets it, and which slice.
    pub recipients: Vec<ReportRecipientRecord>,
}

/// `report.run`: one recipient's table of one period of a standing report was produced and kept,
/// or could not be, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRun {
    /// The report.
    pub report: String,
    /// The period (`2026-03`, `2026-Q2`, `v7`).
    pub period: String,
    /// The recipient.
    pub recipient: ParticipantId,
    /// `PRODUCED` or `NOT_PRODUCED`.
    pub outcome: String,
    /// Why not produced (the refusal, word for word); empty when produced.
    pub reason: String,
    /// The table produced (its `table.decision` and `table.completed` name it); `null` when none.
    pub table: Option<String>,
    /// The version tabulated; `null` when none.
    pub version: Option<u64>,
    /// SHA-256 of the published cells, hex; `null` when none.
    pub sha256: Option<String>,
    /// Periods owed before this one and skipped (a missed run is caught up once).
    pub missed: u32,
}

/// `report.fetched`: someone read the kept table of one run of a standing report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportFetched {
    /// The report.
    pub report: String,
    /// The period.
    pub period: String,
    /// Whose run (the reader is the record's `actor`).
    pub recipient: ParticipantId,
    /// The table; `null` for a run not produced.
    pub table: Option<String>,
    /// SHA-256 of its published cells, hex; `null` for a run not produced.
    pub sha256: Option<String>,
}

/// `table.completed`: a table's cells were sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCompleted {
    /// The table (its decision names it too).
    pub table: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// The version.
    pub version: u64,
    /// The recipient.
    pub recipient: ParticipantId,
    /// Cells sent.
    pub cells: u64,
    /// Of them, published.
    pub published: u64,
    /// SHA-256 of the published cells, hex (as in the decision and the trailer).
    pub sha256: String,
    /// `COMPLETED`, or why the stream ended early.
    pub outcome: String,
}

/// `table.completed`, written by maintenance for a released table without completion that no
/// longer streams: the gateway stopped while its cells streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInterrupted {
    /// The table.
    pub table: String,
    /// The dataset, as the decision's facets name it.
    pub dataset: String,
    /// The version the decision named; `null` when the decision record could not be read.
    pub version: Option<u64>,
    /// The recipient, as the decision's facets name it.
    pub recipient: String,
    /// The decision's leaf index.
    pub decision_index: u64,
    /// Always [`TableInterrupted::OUTCOME`].
    pub outcome: String,
}

impl TableInterrupted {
    /// The outcome of every interrupted table.
    pub const OUTCOME: &'static str =
        "INTERRUPTED: the gateway stopped while the table was streaming; what was sent before is not known";
}

// --- assessment and oversight --------------------------------------------------------------------

/// `hold.queued`: a held transfer entered the officers' review queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldQueued {
    /// The hold's id.
    pub hold: String,
    /// The grant pulled under.
    pub grant: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// Who pulled.
    pub consumer: ParticipantId,
    /// What the review queue shows of it, as members of this record.
    #[serde(flatten)]
    pub review: HoldReview,
}

/// What the officers' review queue shows of a held transfer (no data values): the members of
/// `hold.queued` and the hold's stored body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldReview {
    /// The transfer held.
    pub transfer: String,
    /// Whether it is an export.
    pub export: bool,
    /// The rows that fired, in table order.
    pub rules: Vec<RuleId>,
    /// The most severe mechanism among them.
    pub mechanism: Mechanism,
    /// The fields the rules read (those delivered neither `REDACT` nor `DROP`).
    pub fields: Vec<HoldField>,
    /// What an approval must cover to release it; `null` when not held.
    pub requirement: Option<HoldRequirementRecord>,
    /// The closest approval and why it did not apply; `null` when there is no candidate.
    pub closest_approval: Option<ClosestApproval>,
}

impl HoldReview {
    /// The review of transfer `transfer_id` with `fields` (the transfer's, as the rules read them),
    /// held by `decision`.
    pub fn new(transfer_id: &str, fields: &[crate::policy::Field], decision: &Decision) -> HoldReview {
        HoldReview {
            transfer: transfer_id.to_owned(),
            export: decision.is_export(),
            rules: decision.rules.iter().collect(),
            mechanism: decision.mechanism,
            fields: fields
                .iter()
                .map(|f| HoldField { name: f.name.clone(), level: f.classification.level, pi: f.classification.pi })
                .collect(),
            requirement: decision.hold.as_ref().map(|h| HoldRequirementRecord {
                mechanism: h.mechanism,
                satisfied_by: h.satisfied_by.to_vec(),
                exporter: h.exporter.clone(),
                recipient: h.recipient.clone(),
                region: h.region.clone(),
                purpose: h.purpose.clone(),
                nonsensitive_after: h.counts.nonsensitive_after,
                sensitive_after: h.counts.sensitive_after,
            }),
            closest_approval: decision.approval.as_ref().map(|a| ClosestApproval { id: a.id.clone(), check: a.check }),
        }
    }

    /// As JSON: the hold's stored body.
    pub fn to_json(&self) -> Value {
        Value::Object(members(self))
    }
}

/// A field of a held transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldField {
    /// The field.
    pub name: String,
    /// Its level.
    pub level: Level,
    /// Its personal-information flag.
    pub pi: Pi,
}

/// What an approval must cover for a held transfer to pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldRequirementRecord {
    /// The mechanism to satisfy.
    pub mechanism: Mechanism,
    /// Any one of these approval types, applicable, satisfies it.
    pub satisfied_by: Vec<ApprovalType>,
    /// The exporter the approval must be granted to.
    pub exporter: String,
    /// The recipient its scope must cover.
    pub recipient: String,
    /// The region its scope must cover.
    pub region: Region,
    /// The purpose its scope must cover.
    pub purpose: String,
    /// Its non-sensitive maximum must not be below this.
    pub nonsensitive_after: u64,
    /// Its sensitive maximum must not be below this.
    pub sensitive_after: u64,
}

/// The closest approval of a held transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosestApproval {
    /// The approval's id.
    pub id: String,
    /// Why it did not apply.
    pub check: ApprovalCheck,
}

/// `hold.resolved`: an officer released a hold (naming the approval) or refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldResolved {
    /// The hold.
    pub hold: String,
    /// `RELEASED` or `REFUSED`.
    pub status: HoldStatus,
    /// The grant pulled under.
    pub grant: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// Who pulled.
    pub consumer: ParticipantId,
    /// The dataset's owner.
    pub exporter: ParticipantId,
    /// The approval it was released with; `null` when refused.
    pub approval: Option<String>,
    /// Why it was refused (or a note on the release); may be empty.
    pub reason: String,
}

impl From<&Hold> for HoldResolved {
    fn from(h: &Hold) -> HoldResolved {
        HoldResolved {
            hold: h.id.clone(),
            status: h.status,
            grant: h.grant_id.clone(),
            dataset: h.dataset.clone(),
            consumer: h.consumer.clone(),
            exporter: h.exporter.clone(),
            approval: h.approval_id.clone(),
            reason: h.reason.clone(),
        }
    }
}

/// `approval.recorded`: an officer recorded an approval (a CAC assessment, a filed contract, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRecorded {
    /// The approval's id.
    pub approval: String,
    /// What was approved.
    pub approval_type: ApprovalType,
    /// The exporter it was granted to.
    pub exporter: String,
    /// The authority's reference (e.g. the CAC file number).
    pub reference: String,
    /// First valid day, `YYYY-MM-DD` (Asia/Shanghai).
    #[serde(serialize_with = "text::day")]
    pub issued: NaiveDate,
    /// Last valid day, `YYYY-MM-DD`; `null`: the type's default validity.
    #[serde(serialize_with = "text::day_or_null")]
    pub expires: Option<NaiveDate>,
    /// What it covers.
    pub scope: ApprovalScope,
}

/// What an approval covers: an empty list means any, `null` no maximum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalScope {
    /// Recipient ids.
    pub recipients: Vec<String>,
    /// Recipient regions (a country covers its subdivisions).
    pub destinations: Vec<Region>,
    /// Purposes.
    pub purposes: Vec<String>,
    /// Highest non-sensitive person count covered.
    pub max_persons_nonsensitive: Option<u64>,
    /// Highest sensitive person count covered.
    pub max_persons_sensitive: Option<u64>,
}

impl From<&Scope> for ApprovalScope {
    fn from(s: &Scope) -> ApprovalScope {
        ApprovalScope {
            recipients: s.recipients.clone(),
            destinations: s.destinations.clone(),
            purposes: s.purposes.clone(),
            max_persons_nonsensitive: s.max_persons_nonsensitive,
            max_persons_sensitive: s.max_persons_sensitive,
        }
    }
}

impl From<&Approval> for ApprovalRecorded {
    fn from(a: &Approval) -> ApprovalRecorded {
        ApprovalRecorded {
            approval: a.id.clone(),
            approval_type: a.kind,
            exporter: a.exporter.clone(),
            reference: a.reference.clone(),
            issued: a.issued,
            expires: a.expires,
            scope: ApprovalScope::from(&a.scope),
        }
    }
}

/// `approval.revoked`: transfers the approval covered are held again from their next pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRevoked {
    /// The approval's id, as the officer gave it.
    pub approval: String,
    /// Why.
    pub reason: String,
    /// The exporter it was granted to; absent (no member) when no such approval was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporter: Option<String>,
}

/// `approval.confirmed`: a second officer confirmed an approval recorded by another (the
/// maker-checker of `[policy] confirmed_approvals`); the approval applies from then on. The
/// confirming officer is the record's `actor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalConfirmed {
    /// The approval's id.
    pub approval: String,
    /// Its type (named as in `approval.recorded`).
    pub approval_type: crate::policy::ApprovalType,
    /// The exporter it was granted to.
    pub exporter: String,
    /// The officer who recorded it (the maker).
    pub recorded_by: String,
}

// --- maintenance ---------------------------------------------------------------------------------

/// `access.refused`: pull attempts refused before any assessment (no grant, a field not granted,
/// an unknown dataset, no consumer role), counted per participant, dataset and reason between two
/// flushes (about a minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRefused {
    /// The participant refused; empty for the attempts of everyone counted together once too many
    /// distinct keys were counted.
    pub participant: String,
    /// The dataset asked for; empty when none was named or when the attempts are counted together.
    pub dataset: String,
    /// The refusal the caller received (shortened), or `other refusals …` for attempts counted
    /// together (too many distinct keys: of this participant, or of everyone).
    pub reason: String,
    /// How many attempts.
    pub attempts: u64,
    /// The first attempt (RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "text::micros")]
    pub first_at: DateTime<Utc>,
    /// The last attempt.
    #[serde(serialize_with = "text::micros")]
    pub last_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    //! Golden canonical bytes of every record kind. The literals were captured from the records
    //! as the use cases built them with `json!` before the bodies were typed (issue 10); a change
    //! here is a change of the log's external format.

    use chrono::TimeZone;
    use serde_json::json;

    use super::super::NewRecord;
    use super::*;
    use crate::domain::dataset::VersionInfo;
    use crate::domain::grant::{GrantedField, RowFilter};
    use crate::domain::mask::DateGranularity;
    use crate::policy::{Action, Counts, Direction, ExemptionClaim, Field, Fired, HoldRequirement};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::microseconds(123_456)
    }

    fn pid(s: &str) -> ParticipantId {
        ParticipantId::parse(s).unwrap()
    }

    fn did(s: &str) -> DatasetId {
        DatasetId::parse(s).unwrap()
    }

    fn field(s: &str) -> FieldName {
        FieldName::parse(s).unwrap()
    }

    fn class(level: Level, pi: Pi) -> Classification {
        Classification { level, pi, stat_micro: false, share: Share::Conditional, ftz_negative_list: false }
    }

    fn leaf(actor: &str, body: RecordBody) -> String {
        NewRecord::new(actor, at(), body).leaf().unwrap()
    }

    fn participant() -> Participant {
        Participant {
            id: pid("hk-research"),
            display_name: "香港统计研究所 \"HKSR\"".into(),
            kind: ParticipantKind::Other,
            recipient_type: RecipientType::Research,
            region: Region::parse("HK").unwrap(),
            in_tianjin_ftz: false,
            roles: BTreeSet::from([Role::Consumer, Role::Publisher]),
            clearance: Level::G3,
            status: ParticipantStatus::Active,
        }
    }

    fn dataset() -> Dataset {
        let def = |name: &str, ty, class, default_mask| FieldDef {
            name: field(name),
            ty,
            class,
            default_mask,
            description: "not recorded".into(),
            nullable: true,
        };
        Dataset {
            id: did("survey"),
            owner: pid("tj-stats"),
            title: "not recorded".into(),
            description: "not recorded".into(),
            government_data: true,
            fields: vec![
                def("enterprise", FieldType::String, class(Level::G2, Pi::None), Mask::None),
                def(
                    "person_id",
                    FieldType::String,
                    Classification {
                        level: Level::G4,
                        pi: Pi::Spi,
                        stat_micro: true,
                        share: Share::NotShared,
                        ftz_negative_list: true,
                    },
                    Mask::Hash,
                ),
                def(
                    "contact",
                    FieldType::String,
                    class(Level::G3, Pi::Pi),
                    Mask::Partial { keep_first: 1, keep_last: 2 },
                ),
                def(
                    "founded",
                    FieldType::Date,
                    class(Level::G2, Pi::None),
                    Mask::GeneralizeDate { granularity: DateGranularity::Month },
                ),
                def("revenue", FieldType::Int64, class(Level::G3, Pi::None), Mask::Bucket { width: 1000 }),
            ],
            person_key_field: Some(field("person_id")),
            contributor_key_field: None,
            holding_key_field: None,
            registered_at: at(),
        }
    }

    fn grant() -> Grant {
        Grant {
            id: "g-0123456789abcdef0123456789abcdef".into(),
            dataset: did("survey"),
            consumer: pid("tj-commerce"),
            fields: vec![
                GrantedField { name: field("enterprise"), mask: None },
                GrantedField { name: field("contact"), mask: Some(Mask::Redact) },
            ],
            purpose: "统计分析".into(),
            legal_basis: "统计法 第七条".into(),
            statistical_purpose: true,
            status: GrantStatus::Pending,
            requested_expiry: None,
            expires_at: None,
            row_filter: None,
            reason: String::new(),
            requested_at: at(),
            decided_at: None,
            exemption: Exemption::None,
            exemption_attested_by: None,
            usage: Default::default(),
            dimensions: Vec::new(),
            measures: Vec::new(),
        }
    }

    /// A grant approved with everything optional set.
    fn approved_grant() -> Grant {
        Grant {
            status: GrantStatus::Approved,
            expires_at: Some(
                Utc.with_ymd_and_hms(2025, 12, 31, 16, 0, 0).unwrap() + chrono::Duration::milliseconds(500),
            ),
            row_filter: Some(RowFilter {
                field: field("enterprise"),
                values: vec!["a".into(), "b".into(), "c".into()],
            }),
            decided_at: Some(at()),
            exemption: Exemption::ForeignOriginTransit,
            ..grant()
        }
    }

    fn approval(expires: Option<NaiveDate>, scope: Scope) -> Approval {
        Approval {
            id: "a-cac-7".into(),
            kind: ApprovalType::CacSa,
            exporter: "tj-stats".into(),
            reference: "CAC-2025-017".into(),
            issued: NaiveDate::from_ymd_opt(2025, 1, 2).unwrap(),
            expires,
            revoked: false,
            scope,
        }
    }

    fn decision() -> Decision {
        let mut rules = Fired::default();
        rules.insert(RuleId::A2);
        rules.insert(RuleId::A3);
        Decision {
            direction: Direction::Export,
            ruleset: Ruleset::Cn2024,
            mechanism: Mechanism::RequiresSecurityAssessment,
            action: Action::Hold,
            rules,
            approval: Some(ApprovalOutcome {
                id: "a-cac-7".into(),
                kind: ApprovalType::CacSa,
                check: ApprovalCheck::OutOfScope,
                scope_miss: Some(ScopeMiss::Destination),
            }),
            authority: None,
            counts: Counts {
                window_start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                nonsensitive_before: 90_000,
                nonsensitive_after: 100_200,
                sensitive_before: 7_000,
                sensitive_after: 8_200,
            },
            hold: Some(HoldRequirement {
                mechanism: Mechanism::RequiresSecurityAssessment,
                satisfied_by: Mechanism::RequiresSecurityAssessment.satisfied_by(),
                exporter: "tj-stats".into(),
                recipient: "hk-research".into(),
                region: Region::parse("HK").unwrap(),
                purpose: "统计分析".into(),
                counts: Counts {
                    window_start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                    nonsensitive_before: 90_000,
                    nonsensitive_after: 100_200,
                    sensitive_before: 7_000,
                    sensitive_after: 8_200,
                },
            }),
        }
    }

    fn hold(status: HoldStatus, approval_id: Option<&str>, reason: &str) -> Hold {
        Hold {
            id: "h-00112233445566778899aabbccddeeff".into(),
            status,
            grant_id: "g-0123456789abcdef0123456789abcdef".into(),
            dataset: did("survey"),
            consumer: pid("hk-research"),
            exporter: pid("tj-stats"),
            mechanism: "REQUIRES_SECURITY_ASSESSMENT".into(),
            body: json!({}),
            created_at: at(),
            resolved_by: Some(pid("officer-1")),
            resolved_at: Some(at()),
            reason: reason.into(),
            approval_id: approval_id.map(str::to_owned),
        }
    }

    // --- participants ---------------------------------------------------------------------------

    #[test]
    fn participant_registered() {
        let body = RecordBody::ParticipantRegistered(ParticipantRegistered::from(&participant()));
        assert_eq!(
            leaf("local:participants", body),
            r#"{"actor":"local:participants","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","clearance":"G3","display_name":"香港统计研究所 \"HKSR\"","in_tianjin_ftz":false,"kind":"OTHER","participant":"hk-research","recipient_type":"RESEARCH","region":"HK","roles":["publisher","consumer"],"schema":1,"status":"ACTIVE","type":"participant.registered"}"#
        );
    }

    #[test]
    fn participant_suspended() {
        let (id, reason) = (pid("hk-research"), "证书泄露\nticket 42");
        let body = RecordBody::ParticipantSuspended(ParticipantSuspended { participant: id, reason: reason.into() });
        assert_eq!(
            leaf("admin-1", body),
            r#"{"actor":"admin-1","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","participant":"hk-research","reason":"证书泄露\nticket 42","schema":1,"type":"participant.suspended"}"#
        );
    }

    // --- catalog and publishing -----------------------------------------------------------------

    #[test]
    fn dataset_registered() {
        let body = RecordBody::DatasetRegistered(DatasetRegistered::from(&dataset()));
        assert_eq!(
            leaf("tj-stats", body),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","contributor_key_field":null,"dataset":"survey","fields":[{"default_mask":{"kind":"NONE"},"ftz_negative_list":false,"level":"G2","name":"enterprise","pi":"NONE","share":"CONDITIONAL","stat_micro":false,"type":"STRING"},{"default_mask":{"kind":"HASH"},"ftz_negative_list":true,"level":"G4","name":"person_id","pi":"SPI","share":"NOT_SHARED","stat_micro":true,"type":"STRING"},{"default_mask":{"keep_first":1,"keep_last":2,"kind":"PARTIAL"},"ftz_negative_list":false,"level":"G3","name":"contact","pi":"PI","share":"CONDITIONAL","stat_micro":false,"type":"STRING"},{"default_mask":{"granularity":"MONTH","kind":"GENERALIZE_DATE"},"ftz_negative_list":false,"level":"G2","name":"founded","pi":"NONE","share":"CONDITIONAL","stat_micro":false,"type":"DATE"},{"default_mask":{"kind":"BUCKET","width":1000},"ftz_negative_list":false,"level":"G3","name":"revenue","pi":"NONE","share":"CONDITIONAL","stat_micro":false,"type":"INT64"}],"government_data":true,"owner":"tj-stats","person_key_field":"person_id","schema":1,"type":"dataset.registered"}"#
        );
    }

    #[test]
    fn version_published() {
        let (dataset, rows, chunks, sha256, key) = (did("survey"), 1_200u64, 3u64, [0xabu8; 32], "upload-2025-03");
        let body = RecordBody::VersionPublished(VersionPublished {
            dataset,
            rows,
            chunks,
            sha256,
            idempotency_key: key.into(),
        });
        assert_eq!(
            leaf("tj-stats", body),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","chunks":3,"dataset":"survey","idempotency_key":"upload-2025-03","rows":1200,"schema":1,"sha256":"abababababababababababababababababababababababababababababababab","type":"version.published"}"#
        );
    }

    // --- sharing --------------------------------------------------------------------------------

    #[test]
    fn grant_requested() {
        assert_eq!(
            leaf("tj-commerce", RecordBody::GrantRequested(GrantRecord::from(&grant()))),
            r#"{"actor":"tj-commerce","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"NONE","exemption_attested_by":null,"expires_at":null,"fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"","row_filter_field":null,"row_filter_values":null,"schema":1,"statistical_purpose":true,"status":"PENDING","type":"grant.requested"}"#
        );
    }

    #[test]
    fn grant_approved() {
        assert_eq!(
            leaf("tj-stats", RecordBody::GrantApproved(GrantRecord::from(&approved_grant()))),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":null,"expires_at":"2025-12-31T16:00:00.500+00:00","fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"","row_filter_field":"enterprise","row_filter_values":3,"schema":1,"statistical_purpose":true,"status":"APPROVED","type":"grant.approved"}"#
        );
    }

    #[test]
    fn grant_refused() {
        let g = Grant { status: GrantStatus::Refused, reason: "purpose too broad".into(), ..grant() };
        assert_eq!(
            leaf("tj-stats", RecordBody::GrantRefused(GrantRecord::from(&g))),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"NONE","exemption_attested_by":null,"expires_at":null,"fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"purpose too broad","row_filter_field":null,"row_filter_values":null,"schema":1,"statistical_purpose":true,"status":"REFUSED","type":"grant.refused"}"#
        );
    }

    #[test]
    fn grant_revoked() {
        let g = Grant { status: GrantStatus::Revoked, reason: "contract ended".into(), ..approved_grant() };
        assert_eq!(
            leaf("tj-stats", RecordBody::GrantRevoked(GrantRecord::from(&g))),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":null,"expires_at":"2025-12-31T16:00:00.500+00:00","fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"contract ended","row_filter_field":"enterprise","row_filter_values":3,"schema":1,"statistical_purpose":true,"status":"REVOKED","type":"grant.revoked"}"#
        );
    }

    #[test]
    fn exemption_attested() {
        let g = Grant { exemption_attested_by: Some(pid("officer-1")), ..approved_grant() };
        assert_eq!(
            leaf("officer-1", RecordBody::ExemptionAttested(GrantRecord::from(&g))),
            r#"{"actor":"officer-1","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":"officer-1","expires_at":"2025-12-31T16:00:00.500+00:00","fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"","row_filter_field":"enterprise","row_filter_values":3,"schema":1,"statistical_purpose":true,"status":"APPROVED","type":"exemption.attested"}"#
        );
    }

    // --- exchange -------------------------------------------------------------------------------

    /// The decision record as `exchange::decision_record` builds it, from the plan's parts.
    fn decision_body(approval: Option<ApprovalOutcome>, dropped: &[&str], outcome: &str) -> RecordBody {
        let caller =
            (pid("hk-research"), "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e".to_owned());
        let exporter = Participant {
            id: pid("tj-stats"),
            kind: ParticipantKind::StateOrgan,
            in_tianjin_ftz: true,
            region: Region::parse("CN-TJ").unwrap(),
            ..participant()
        };
        let recipient = participant();
        let access_from_outside_mainland = true;
        let dataset = dataset();
        let version = VersionInfo {
            dataset: did("survey"),
            version: 3,
            rows: 1_200,
            chunks: 3,
            sha256: [0xab; 32],
            publisher: pid("tj-stats"),
            published_at: at(),
            idempotency_key: "upload-2025-03".into(),
            status: crate::domain::review::VersionStatus::Released,
            review: None,
        };
        let grant = approved_grant();
        let exemption =
            ExemptionClaim { exemption: Exemption::ForeignOriginTransit, attested_by: Some("officer-1".into()) };
        let persons = Persons {
            nonsensitive: 1_200,
            sensitive: 1_200,
            already_counted_nonsensitive: 1_000,
            already_counted_sensitive: 0,
        };
        let delivered = [
            (field("enterprise"), class(Level::G2, Pi::None), Mask::None),
            (field("contact"), class(Level::G3, Pi::Pi), Mask::Partial { keep_first: 1, keep_last: 2 }),
            (
                field("founded"),
                Classification { stat_micro: true, ..class(Level::G2, Pi::None) },
                Mask::GeneralizeDate { granularity: DateGranularity::Year },
            ),
            (field("revenue"), class(Level::G3, Pi::None), Mask::Bucket { width: 1000 }),
            (field("person_id"), class(Level::G4, Pi::Spi), Mask::Hash),
            (field("phone"), class(Level::G4, Pi::Pi), Mask::Redact),
        ];
        let dropped: Vec<FieldName> = dropped.iter().map(|n| field(n)).collect();
        let d = Decision { approval, ..decision() };
        RecordBody::TransferDecision(Box::new(TransferDecision {
            transfer: "t-0123456789abcdef".into(),
            caller: DecisionCaller { id: caller.0, cert_sha256: caller.1 },
            exporter: DecisionExporter::from(&exporter),
            recipient: DecisionRecipient::new(&recipient, access_from_outside_mainland),
            dataset: dataset.id.clone(),
            version: version.version,
            version_sha256: version.sha256,
            government_data: dataset.government_data,
            grant: grant.id.clone(),
            purpose: grant.purpose.clone(),
            legal_basis: grant.legal_basis.clone(),
            statistical_purpose: grant.statistical_purpose,
            exemption: exemption.exemption,
            exemption_attested_by: exemption.attested_by.clone(),
            persons: DecisionPersons::from(&persons),
            approval: d.approval.as_ref().map(DecisionApproval::from),
            fields: delivered
                .iter()
                .map(|(name, class, mask)| DecisionField::Delivered {
                    name: name.clone(),
                    level: class.level,
                    pi: class.pi,
                    stat_micro: class.stat_micro,
                    share: class.share,
                    ftz_negative_list: class.ftz_negative_list,
                    mask: *mask,
                })
                .chain(dropped.iter().cloned().map(DecisionField::Dropped))
                .collect(),
            rows: 60,
            from_batch: 2,
            ledger: Some(DecisionLedger { position: 41, counted: false, year: 2025 }),
            facts: vec![
                FactCited { fact: Fact::Policy, id: "9f".repeat(32), leaf: 0 },
                FactCited { fact: Fact::Participant, id: "tj-stats".into(), leaf: 2 },
                FactCited { fact: Fact::Participant, id: "hk-research".into(), leaf: 3 },
                FactCited { fact: Fact::Dataset, id: "survey".into(), leaf: 5 },
                FactCited { fact: Fact::Grant, id: grant.id.clone(), leaf: 9 },
                FactCited { fact: Fact::Approval, id: "a-cac-7".into(), leaf: 12 },
            ],
            ruleset: d.ruleset,
            decision: DecisionJson::from(&d),
            outcome: outcome.into(),
        }))
    }

    #[test]
    fn transfer_decision_held_with_the_closest_approval_and_a_dropped_field() {
        let body = decision_body(
            decision().approval,
            &["mobile"],
            "transfer held by rules A2, A3: requires REQUIRES_SECURITY_ASSESSMENT: no applicable approval (CAC_SA) is recorded (hold h-1)",
        );
        assert_eq!(
            leaf("hk-research", body),
            r#"{"actor":"hk-research","approval":{"check":"out_of_scope","id":"a-cac-7","scope_miss":"destination","type":"CAC_SA"},"at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","caller":{"cert_sha256":"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","id":"hk-research"},"dataset":"survey","decision":{"action":"HOLD","approval":{"check":"out_of_scope","id":"a-cac-7"},"counts":{"nonsensitive_after":100200,"nonsensitive_before":90000,"sensitive_after":8200,"sensitive_before":7000,"window_start":"2025-01-01"},"export":true,"mechanism":"REQUIRES_SECURITY_ASSESSMENT","rules":["A2","A3"]},"exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":"officer-1","exporter":{"id":"tj-stats","in_tianjin_ftz":true,"kind":"STATE_ORGAN"},"facts":[{"fact":"policy","id":"9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f","leaf":0},{"fact":"participant","id":"tj-stats","leaf":2},{"fact":"participant","id":"hk-research","leaf":3},{"fact":"dataset","id":"survey","leaf":5},{"fact":"grant","id":"g-0123456789abcdef0123456789abcdef","leaf":9},{"fact":"approval","id":"a-cac-7","leaf":12}],"fields":[{"ftz_negative_list":false,"level":"G2","mask":{"kind":"NONE"},"name":"enterprise","pi":"NONE","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G3","mask":{"keep_first":1,"keep_last":2,"kind":"PARTIAL"},"name":"contact","pi":"PI","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G2","mask":{"granularity":"YEAR","kind":"GENERALIZE_DATE"},"name":"founded","pi":"NONE","share":"CONDITIONAL","stat_micro":true},{"ftz_negative_list":false,"level":"G3","mask":{"kind":"BUCKET","width":1000},"name":"revenue","pi":"NONE","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G4","mask":{"kind":"HASH"},"name":"person_id","pi":"SPI","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G4","mask":{"kind":"REDACT"},"name":"phone","pi":"PI","share":"CONDITIONAL","stat_micro":false},{"mask":{"kind":"DROP"},"name":"mobile"}],"from_batch":2,"government_data":true,"grant":"g-0123456789abcdef0123456789abcdef","ledger":{"counted":false,"position":41,"year":2025},"legal_basis":"统计法 第七条","outcome":"transfer held by rules A2, A3: requires REQUIRES_SECURITY_ASSESSMENT: no applicable approval (CAC_SA) is recorded (hold h-1)","persons":{"already_counted_nonsensitive":1000,"already_counted_sensitive":0,"nonsensitive":1200,"sensitive":1200},"purpose":"统计分析","recipient":{"access_from_outside_mainland":true,"id":"hk-research","region":"HK","type":"RESEARCH"},"rows":60,"ruleset":"CN2024","schema":1,"statistical_purpose":true,"transfer":"t-0123456789abcdef","type":"transfer.decision","version":3,"version_sha256":"abababababababababababababababababababababababababababababababab"}"#
        );
    }

    #[test]
    fn transfer_decision_authorised_without_approval() {
        let body = decision_body(None, &[], "AUTHORISED");
        assert_eq!(
            leaf("hk-research", body),
            r#"{"actor":"hk-research","approval":null,"at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","caller":{"cert_sha256":"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","id":"hk-research"},"dataset":"survey","decision":{"action":"HOLD","approval":null,"counts":{"nonsensitive_after":100200,"nonsensitive_before":90000,"sensitive_after":8200,"sensitive_before":7000,"window_start":"2025-01-01"},"export":true,"mechanism":"REQUIRES_SECURITY_ASSESSMENT","rules":["A2","A3"]},"exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":"officer-1","exporter":{"id":"tj-stats","in_tianjin_ftz":true,"kind":"STATE_ORGAN"},"facts":[{"fact":"policy","id":"9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f","leaf":0},{"fact":"participant","id":"tj-stats","leaf":2},{"fact":"participant","id":"hk-research","leaf":3},{"fact":"dataset","id":"survey","leaf":5},{"fact":"grant","id":"g-0123456789abcdef0123456789abcdef","leaf":9},{"fact":"approval","id":"a-cac-7","leaf":12}],"fields":[{"ftz_negative_list":false,"level":"G2","mask":{"kind":"NONE"},"name":"enterprise","pi":"NONE","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G3","mask":{"keep_first":1,"keep_last":2,"kind":"PARTIAL"},"name":"contact","pi":"PI","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G2","mask":{"granularity":"YEAR","kind":"GENERALIZE_DATE"},"name":"founded","pi":"NONE","share":"CONDITIONAL","stat_micro":true},{"ftz_negative_list":false,"level":"G3","mask":{"kind":"BUCKET","width":1000},"name":"revenue","pi":"NONE","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G4","mask":{"kind":"HASH"},"name":"person_id","pi":"SPI","share":"CONDITIONAL","stat_micro":false},{"ftz_negative_list":false,"level":"G4","mask":{"kind":"REDACT"},"name":"phone","pi":"PI","share":"CONDITIONAL","stat_micro":false}],"from_batch":2,"government_data":true,"grant":"g-0123456789abcdef0123456789abcdef","ledger":{"counted":false,"position":41,"year":2025},"legal_basis":"统计法 第七条","outcome":"AUTHORISED","persons":{"already_counted_nonsensitive":1000,"already_counted_sensitive":0,"nonsensitive":1200,"sensitive":1200},"purpose":"统计分析","recipient":{"access_from_outside_mainland":true,"id":"hk-research","region":"HK","type":"RESEARCH"},"rows":60,"ruleset":"CN2024","schema":1,"statistical_purpose":true,"transfer":"t-0123456789abcdef","type":"transfer.decision","version":3,"version_sha256":"abababababababababababababababababababababababababababababababab"}"#
        );
    }

    fn completed_body(rows: u64, batches: u64, bytes: u64, outcome: Option<&str>) -> RecordBody {
        RecordBody::TransferCompleted(TransferCompleted {
            transfer: "t-0123456789abcdef".into(),
            dataset: did("survey"),
            version: 3,
            recipient: pid("hk-research"),
            rows,
            batches,
            bytes,
            sha256: [0x5a; 32],
            outcome: outcome.unwrap_or("COMPLETED").into(),
        })
    }

    #[test]
    fn transfer_completed() {
        let body = completed_body(1_200, 3, 65_536, None);
        assert_eq!(
            leaf("hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","batches":3,"bytes":65536,"dataset":"survey","outcome":"COMPLETED","recipient":"hk-research","rows":1200,"schema":1,"sha256":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","transfer":"t-0123456789abcdef","type":"transfer.completed","version":3}"#
        );
    }

    #[test]
    fn transfer_completed_cut_by_a_revocation() {
        let body = completed_body(400, 1, 0, Some("REVOKED: grant g-1 was revoked"));
        assert_eq!(
            leaf("hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","batches":1,"bytes":0,"dataset":"survey","outcome":"REVOKED: grant g-1 was revoked","recipient":"hk-research","rows":400,"schema":1,"sha256":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","transfer":"t-0123456789abcdef","type":"transfer.completed","version":3}"#
        );
    }

    fn interrupted_body(version: Option<u64>) -> RecordBody {
        RecordBody::TransferInterrupted(TransferInterrupted {
            transfer: "t-0123456789abcdef".into(),
            dataset: "survey".into(),
            version,
            recipient: "hk-research".into(),
            decision_index: 41,
            outcome: TransferInterrupted::OUTCOME.into(),
        })
    }

    #[test]
    fn transfer_interrupted() {
        assert_eq!(
            leaf("local:maintenance", interrupted_body(Some(3))),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","dataset":"survey","decision_index":41,"outcome":"INTERRUPTED: the gateway stopped while the pull was streaming; what was sent before is not known","recipient":"hk-research","schema":1,"transfer":"t-0123456789abcdef","type":"transfer.completed","version":3}"#
        );
    }

    #[test]
    fn transfer_interrupted_whose_decision_does_not_parse() {
        assert_eq!(
            leaf("local:maintenance", interrupted_body(None)),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","dataset":"survey","decision_index":41,"outcome":"INTERRUPTED: the gateway stopped while the pull was streaming; what was sent before is not known","recipient":"hk-research","schema":1,"transfer":"t-0123456789abcdef","type":"transfer.completed","version":null}"#
        );
    }

    #[test]
    fn table_interrupted() {
        let body = RecordBody::TableInterrupted(TableInterrupted {
            table: "tb-0123456789abcdef".into(),
            dataset: "survey".into(),
            version: Some(2),
            recipient: "hk-research".into(),
            decision_index: 7,
            outcome: TableInterrupted::OUTCOME.into(),
        });
        assert_eq!(
            leaf("local:maintenance", body),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","dataset":"survey","decision_index":7,"outcome":"INTERRUPTED: the gateway stopped while the table was streaming; what was sent before is not known","recipient":"hk-research","schema":1,"table":"tb-0123456789abcdef","type":"table.completed","version":2}"#
        );
    }

    // --- tables ---------------------------------------------------------------------------------

    /// A TABLES grant's records add `use`, `dimensions` and `measures`; a ROWS grant's do not.
    #[test]
    fn grant_requested_for_tables() {
        let g = Grant {
            usage: GrantUse::Tables,
            dimensions: vec![field("district")],
            measures: vec![field("revenue")],
            fields: vec![
                GrantedField { name: field("district"), mask: None },
                GrantedField { name: field("revenue"), mask: None },
            ],
            ..grant()
        };
        assert_eq!(
            leaf("tj-commerce", RecordBody::GrantRequested(GrantRecord::from(&g))),
            r#"{"actor":"tj-commerce","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","dimensions":["district"],"exemption":"NONE","exemption_attested_by":null,"expires_at":null,"fields":[{"mask":null,"name":"district"},{"mask":null,"name":"revenue"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","measures":["revenue"],"purpose":"统计分析","reason":"","row_filter_field":null,"row_filter_values":null,"schema":1,"statistical_purpose":true,"status":"PENDING","type":"grant.requested","use":"TABLES"}"#
        );
    }

    /// `tables::decision_record` for a table released to a Hong Kong research partner.
    fn table_decision(outcome: &str, cells: Option<TableCells>, sha256: Option<String>) -> RecordBody {
        let mut rules = Fired::default();
        rules.insert(RuleId::E1);
        let d = Decision {
            direction: Direction::Export,
            mechanism: Mechanism::Allow,
            action: Action::Pass,
            rules,
            approval: None,
            counts: Counts {
                nonsensitive_before: 0,
                nonsensitive_after: 0,
                sensitive_before: 0,
                sensitive_after: 0,
                ..decision().counts
            },
            ..decision()
        };
        let added = if cells.is_some() { 24 } else { 0 };
        let exporter = Participant { id: pid("tj-stats"), kind: ParticipantKind::StateOrgan, ..participant() };
        RecordBody::TableDecision(Box::new(TableDecision {
            table: "tb-0123456789abcdef".into(),
            preview: false,
            caller: DecisionCaller {
                id: pid("hk-research"),
                cert_sha256: "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e".into(),
            },
            exporter: DecisionExporter::from(&exporter),
            recipient: DecisionRecipient::new(&participant(), false),
            dataset: did("survey"),
            version: 3,
            version_sha256: [0xab; 32],
            government_data: false,
            grant: "g-0123456789abcdef0123456789abcdef".into(),
            purpose: "统计分析".into(),
            legal_basis: String::new(),
            definition: TableDefinition {
                statistic: "SUM".into(),
                measure: Some(field("revenue")),
                dimensions: vec![
                    TableDimensionRecord {
                        field: field("district"),
                        period: None,
                        groups: vec![("Binhai".into(), vec!["120116".into(), "120117".into()])],
                        prefixes: vec![4],
                        filter: Vec::new(),
                    },
                    TableDimensionRecord {
                        field: field("founded"),
                        period: Some("QUARTER".into()),
                        groups: Vec::new(),
                        prefixes: Vec::new(),
                        filter: vec!["2024-Q1".into(), "2024-Q2".into()],
                    },
                ],
            },
            fields: vec![
                TableField {
                    name: field("district"),
                    role: "dimension".into(),
                    level: Level::G2,
                    pi: Pi::None,
                    stat_micro: false,
                },
                TableField {
                    name: field("founded"),
                    role: "dimension".into(),
                    level: Level::G2,
                    pi: Pi::None,
                    stat_micro: false,
                },
                TableField {
                    name: field("revenue"),
                    role: "measure".into(),
                    level: Level::G4,
                    pi: Pi::None,
                    stat_micro: true,
                },
            ],
            parameters_hmac: "77".repeat(32),
            cells,
            ledger: TableLedger { scope: "hk-research".into(), checked: 12, added },
            sha256,
            ruleset: Ruleset::Cn2024,
            facts: vec![FactCited { fact: Fact::Grant, id: "g-0123456789abcdef0123456789abcdef".into(), leaf: 9 }],
            decision: DecisionJson::from(&d),
            outcome: outcome.into(),
        }))
    }

    #[test]
    fn table_decision_released() {
        let cells = TableCells { total: 30, published: 24, primary: 2, secondary: 4 };
        assert_eq!(
            leaf("hk-research", table_decision("AUTHORISED", Some(cells), Some("5a".repeat(32)))),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","caller":{"cert_sha256":"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","id":"hk-research"},"cells":{"primary":2,"published":24,"secondary":4,"total":30},"dataset":"survey","decision":{"action":"PASS","approval":null,"counts":{"nonsensitive_after":0,"nonsensitive_before":0,"sensitive_after":0,"sensitive_before":0,"window_start":"2025-01-01"},"export":true,"mechanism":"ALLOW","rules":["E1"]},"definition":{"dimensions":[{"field":"district","filter":[],"groups":[["Binhai",["120116","120117"]]],"period":null,"prefixes":[4]},{"field":"founded","filter":["2024-Q1","2024-Q2"],"groups":[],"period":"QUARTER","prefixes":[]}],"measure":"revenue","statistic":"SUM"},"exporter":{"id":"tj-stats","in_tianjin_ftz":false,"kind":"STATE_ORGAN"},"facts":[{"fact":"grant","id":"g-0123456789abcdef0123456789abcdef","leaf":9}],"fields":[{"level":"G2","name":"district","pi":"NONE","role":"dimension","stat_micro":false},{"level":"G2","name":"founded","pi":"NONE","role":"dimension","stat_micro":false},{"level":"G4","name":"revenue","pi":"NONE","role":"measure","stat_micro":true}],"government_data":false,"grant":"g-0123456789abcdef0123456789abcdef","ledger":{"added":24,"checked":12,"scope":"hk-research"},"legal_basis":"","outcome":"AUTHORISED","parameters_hmac":"7777777777777777777777777777777777777777777777777777777777777777","preview":false,"purpose":"统计分析","recipient":{"access_from_outside_mainland":false,"id":"hk-research","region":"HK","type":"RESEARCH"},"ruleset":"CN2024","schema":1,"sha256":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","table":"tb-0123456789abcdef","type":"table.decision","version":3,"version_sha256":"abababababababababababababababababababababababababababababababab"}"#
        );
    }

    #[test]
    fn table_decision_refused() {
        assert_eq!(
            leaf("hk-research", table_decision("REFUSED: released cells reveal a protected cell", None, None)),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","caller":{"cert_sha256":"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","id":"hk-research"},"cells":null,"dataset":"survey","decision":{"action":"PASS","approval":null,"counts":{"nonsensitive_after":0,"nonsensitive_before":0,"sensitive_after":0,"sensitive_before":0,"window_start":"2025-01-01"},"export":true,"mechanism":"ALLOW","rules":["E1"]},"definition":{"dimensions":[{"field":"district","filter":[],"groups":[["Binhai",["120116","120117"]]],"period":null,"prefixes":[4]},{"field":"founded","filter":["2024-Q1","2024-Q2"],"groups":[],"period":"QUARTER","prefixes":[]}],"measure":"revenue","statistic":"SUM"},"exporter":{"id":"tj-stats","in_tianjin_ftz":false,"kind":"STATE_ORGAN"},"facts":[{"fact":"grant","id":"g-0123456789abcdef0123456789abcdef","leaf":9}],"fields":[{"level":"G2","name":"district","pi":"NONE","role":"dimension","stat_micro":false},{"level":"G2","name":"founded","pi":"NONE","role":"dimension","stat_micro":false},{"level":"G4","name":"revenue","pi":"NONE","role":"measure","stat_micro":true}],"government_data":false,"grant":"g-0123456789abcdef0123456789abcdef","ledger":{"added":0,"checked":12,"scope":"hk-research"},"legal_basis":"","outcome":"REFUSED: released cells reveal a protected cell","parameters_hmac":"7777777777777777777777777777777777777777777777777777777777777777","preview":false,"purpose":"统计分析","recipient":{"access_from_outside_mainland":false,"id":"hk-research","region":"HK","type":"RESEARCH"},"ruleset":"CN2024","schema":1,"sha256":null,"table":"tb-0123456789abcdef","type":"table.decision","version":3,"version_sha256":"abababababababababababababababababababababababababababababababab"}"#
        );
    }

    #[test]
    fn table_completed() {
        let body = RecordBody::TableCompleted(TableCompleted {
            table: "tb-0123456789abcdef".into(),
            dataset: did("survey"),
            version: 3,
            recipient: pid("hk-research"),
            cells: 30,
            published: 24,
            sha256: "5a".repeat(32),
            outcome: "COMPLETED".into(),
        });
        assert_eq!(
            leaf("hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","cells":30,"dataset":"survey","outcome":"COMPLETED","published":24,"recipient":"hk-research","schema":1,"sha256":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","table":"tb-0123456789abcdef","type":"table.completed","version":3}"#
        );
    }

    #[test]
    fn ledger_scope_set() {
        let body = RecordBody::LedgerScopeSet(LedgerScopeSet {
            participant: pid("hk-research"),
            scope: "group:hk-partners".into(),
            reason: "the partners share their tables".into(),
        });
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","participant":"hk-research","reason":"the partners share their tables","schema":1,"scope":"group:hk-partners","type":"ledger.scope_set"}"#
        );
    }

    #[test]
    fn policy_applied_names_the_export_rules_and_their_digest() {
        let body = PolicyApplied::of(&crate::policy::PolicyConfig::default()).unwrap();
        assert!(!body.policy.contains_key("tables"), "table parameters are confidential");
        let leaf = leaf("local:gateway", RecordBody::PolicyApplied(body.clone()));
        assert_eq!(
            leaf,
            format!(
                r#"{{"actor":"local:gateway","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","policy":{{"cn2022_security_assessment_nonsensitive":100000,"cn2022_security_assessment_sensitive":10000,"cn2022_window_years_back":1,"cn2024_window_years_back":0,"confirmed_approvals":[],"scc_nonsensitive":100000,"security_assessment_cutoff":"2024-03-22","security_assessment_nonsensitive":1000000,"security_assessment_sensitive":10000,"security_assessment_years":3,"security_assessment_years_before_cutoff":2}},"schema":1,"sha256":"{}","type":"policy.applied"}}"#,
                body.sha256
            )
        );
        let canonical = crate::translog::canonical::to_canonical_json(&Value::Object(body.policy.clone())).unwrap();
        assert_eq!(body.sha256, hex::encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes())));
        // The policy read back is the policy applied (tables aside).
        let back: crate::policy::PolicyConfig = serde_json::from_value(Value::Object(body.policy)).unwrap();
        assert_eq!(back, crate::policy::PolicyConfig::default());
        let other = crate::policy::PolicyConfig { scc_nonsensitive: 99_999, ..Default::default() };
        assert_ne!(PolicyApplied::of(&other).unwrap().sha256, body.sha256);
    }

    #[test]
    fn table_rules_set() {
        let body = RecordBody::TableRulesSet(TableRulesSet {
            dataset: did("survey"),
            domestic_hmac: "11".repeat(32),
            export_hmac: "22".repeat(32),
        });
        assert_eq!(
            leaf("tj-stats", body),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","dataset":"survey","domestic_hmac":"1111111111111111111111111111111111111111111111111111111111111111","export_hmac":"2222222222222222222222222222222222222222222222222222222222222222","schema":1,"type":"table_rules.set"}"#
        );
    }

    // --- assessment and oversight ---------------------------------------------------------------

    /// `assessment::queue_hold`'s record.
    fn hold_queued(decision: &Decision) -> String {
        let fields = [
            Field { name: "contact".into(), classification: class(Level::G3, Pi::Pi) },
            Field { name: "person_id".into(), classification: class(Level::G4, Pi::Spi) },
        ];
        let body = RecordBody::HoldQueued(HoldQueued {
            hold: "h-00112233445566778899aabbccddeeff".into(),
            grant: "g-0123456789abcdef0123456789abcdef".into(),
            dataset: did("survey"),
            consumer: pid("hk-research"),
            review: HoldReview::new("t-0123456789abcdef", &fields, decision),
        });
        leaf("hk-research", body)
    }

    #[test]
    fn hold_queued_with_its_requirement_and_closest_approval() {
        assert_eq!(
            hold_queued(&decision()),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","closest_approval":{"check":"out_of_scope","id":"a-cac-7"},"consumer":"hk-research","dataset":"survey","export":true,"fields":[{"level":"G3","name":"contact","pi":"PI"},{"level":"G4","name":"person_id","pi":"SPI"}],"grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","mechanism":"REQUIRES_SECURITY_ASSESSMENT","requirement":{"exporter":"tj-stats","mechanism":"REQUIRES_SECURITY_ASSESSMENT","nonsensitive_after":100200,"purpose":"统计分析","recipient":"hk-research","region":"HK","satisfied_by":["CAC_SA"],"sensitive_after":8200},"rules":["A2","A3"],"schema":1,"transfer":"t-0123456789abcdef","type":"hold.queued"}"#
        );
    }

    #[test]
    fn hold_queued_without_requirement_or_approval() {
        assert_eq!(
            hold_queued(&Decision { hold: None, approval: None, ..decision() }),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","closest_approval":null,"consumer":"hk-research","dataset":"survey","export":true,"fields":[{"level":"G3","name":"contact","pi":"PI"},{"level":"G4","name":"person_id","pi":"SPI"}],"grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","mechanism":"REQUIRES_SECURITY_ASSESSMENT","requirement":null,"rules":["A2","A3"],"schema":1,"transfer":"t-0123456789abcdef","type":"hold.queued"}"#
        );
    }

    #[test]
    fn hold_resolved_released() {
        let body = RecordBody::HoldResolved(HoldResolved::from(&hold(HoldStatus::Released, Some("a-cac-7"), "")));
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"hk-research","dataset":"survey","exporter":"tj-stats","grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","reason":"","schema":1,"status":"RELEASED","type":"hold.resolved"}"#
        );
    }

    #[test]
    fn hold_resolved_refused() {
        let body =
            RecordBody::HoldResolved(HoldResolved::from(&hold(HoldStatus::Refused, None, "no assessment on file")));
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","approval":null,"at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"hk-research","dataset":"survey","exporter":"tj-stats","grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","reason":"no assessment on file","schema":1,"status":"REFUSED","type":"hold.resolved"}"#
        );
    }

    #[test]
    fn approval_recorded() {
        let scope = Scope {
            recipients: vec!["hk-research".into()],
            destinations: vec![Region::parse("HK").unwrap(), Region::parse("CN-TJ").unwrap()],
            purposes: vec!["统计分析".into()],
            max_persons_nonsensitive: Some(1_000_000),
            max_persons_sensitive: Some(10_000),
        };
        let body = RecordBody::ApprovalRecorded(ApprovalRecorded::from(&approval(
            NaiveDate::from_ymd_opt(2027, 12, 31),
            scope,
        )));
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","approval_type":"CAC_SA","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","expires":"2027-12-31","exporter":"tj-stats","issued":"2025-01-02","reference":"CAC-2025-017","schema":1,"scope":{"destinations":["HK","CN-TJ"],"max_persons_nonsensitive":1000000,"max_persons_sensitive":10000,"purposes":["统计分析"],"recipients":["hk-research"]},"type":"approval.recorded"}"#
        );
    }

    #[test]
    fn approval_recorded_without_expiry_with_any_scope() {
        let body = RecordBody::ApprovalRecorded(ApprovalRecorded::from(&approval(None, Scope::default())));
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","approval_type":"CAC_SA","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","expires":null,"exporter":"tj-stats","issued":"2025-01-02","reference":"CAC-2025-017","schema":1,"scope":{"destinations":[],"max_persons_nonsensitive":null,"max_persons_sensitive":null,"purposes":[],"recipients":[]},"type":"approval.recorded"}"#
        );
    }

    #[test]
    fn approval_revoked() {
        let body = RecordBody::ApprovalRevoked(ApprovalRevoked {
            approval: "a-cac-7".into(),
            reason: "scope exceeded".into(),
            exporter: Some("tj-stats".into()),
        });
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","exporter":"tj-stats","reason":"scope exceeded","schema":1,"type":"approval.revoked"}"#
        );
    }

    #[test]
    fn approval_revoked_of_an_unknown_approval() {
        let body = RecordBody::ApprovalRevoked(ApprovalRevoked {
            approval: "a-none".into(),
            reason: "typo".into(),
            exporter: None,
        });
        assert_eq!(
            leaf("officer-1", body),
            r#"{"actor":"officer-1","approval":"a-none","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","reason":"typo","schema":1,"type":"approval.revoked"}"#
        );
    }

    #[test]
    fn approval_confirmed() {
        let body = RecordBody::ApprovalConfirmed(ApprovalConfirmed {
            approval: "a-cac-7".into(),
            approval_type: crate::policy::ApprovalType::CacSa,
            exporter: "tj-stats".into(),
            recorded_by: "officer-1".into(),
        });
        assert_eq!(
            leaf("officer-2", body),
            r#"{"actor":"officer-2","approval":"a-cac-7","approval_type":"CAC_SA","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","exporter":"tj-stats","recorded_by":"officer-1","schema":1,"type":"approval.confirmed"}"#
        );
    }

    // --- maintenance ----------------------------------------------------------------------------

    fn refused_body(participant: &str, dataset: &str, reason: &str, attempts: u64) -> RecordBody {
        RecordBody::AccessRefused(AccessRefused {
            participant: participant.into(),
            dataset: dataset.into(),
            reason: reason.into(),
            attempts,
            first_at: Utc.with_ymd_and_hms(2025, 3, 4, 5, 5, 0).unwrap(),
            last_at: at(),
        })
    }

    #[test]
    fn access_refused() {
        let body = refused_body("hk-research", "Survey 2025", "no grant", 17);
        assert_eq!(
            leaf("hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","attempts":17,"dataset":"Survey 2025","first_at":"2025-03-04T05:05:00.000000Z","last_at":"2025-03-04T05:06:07.123456Z","participant":"hk-research","reason":"no grant","schema":1,"type":"access.refused"}"#
        );
    }

    #[test]
    fn access_refused_counted_together() {
        let body = refused_body("", "", "", 10_001);
        assert_eq!(
            leaf("local:maintenance", body),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","attempts":10001,"dataset":"","first_at":"2025-03-04T05:05:00.000000Z","last_at":"2025-03-04T05:06:07.123456Z","participant":"","reason":"","schema":1,"type":"access.refused"}"#
        );
    }
}
