//! The members of the log's records that replay reads, as typed structs: the one place that knows
//! their names (docs/records.md). Unknown members are ignored, so records may grow.

use serde::{Deserialize, Deserializer};

use crate::domain::classification::{Level, Pi, Share};
use crate::domain::grant::GrantStatus;
use crate::domain::hold::HoldStatus;
use crate::domain::mask::Mask;
use crate::domain::participant::{ParticipantKind, ParticipantStatus, RecipientType, Region};
use crate::policy::{Action, ApprovalType, Exemption, Ruleset};

/// The record kinds replay reads (`type`).
pub(super) mod kind {
    pub const PARTICIPANT_REGISTERED: &str = "participant.registered";
    pub const PARTICIPANT_SUSPENDED: &str = "participant.suspended";
    pub const DATASET_REGISTERED: &str = "dataset.registered";
    pub const VERSION_PUBLISHED: &str = "version.published";
    pub const VERSION_REVIEWED: &str = "version.reviewed";
    pub const REVIEW_POLICY_SET: &str = "review_policy.set";
    pub const GRANT_KINDS: [&str; 5] =
        ["grant.requested", "grant.approved", "grant.refused", "grant.revoked", "exemption.attested"];
    pub const APPROVAL_RECORDED: &str = "approval.recorded";
    pub const APPROVAL_REVOKED: &str = "approval.revoked";
    pub const APPROVAL_CONFIRMED: &str = "approval.confirmed";
    pub const HOLD_QUEUED: &str = "hold.queued";
    pub const HOLD_RESOLVED: &str = "hold.resolved";
    pub const POLICY_APPLIED: &str = "policy.applied";
    pub const TRANSFER_DECISION: &str = "transfer.decision";
}

/// Every record's envelope (`schema` and `at_local` are not read).
#[derive(Debug, Deserialize)]
pub(super) struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub at: String,
    pub actor: String,
}

/// `participant.registered`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ParticipantRegistered {
    pub participant: String,
    pub kind: ParticipantKind,
    pub recipient_type: RecipientType,
    pub region: Region,
    pub in_tianjin_ftz: bool,
    pub clearance: Level,
    pub status: ParticipantStatus,
}

/// `participant.suspended`.
#[derive(Debug, Deserialize)]
pub(super) struct ParticipantSuspended {
    pub participant: String,
}

/// `dataset.registered`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct DatasetRegistered {
    pub dataset: String,
    pub owner: String,
    pub government_data: bool,
    pub fields: Vec<SchemaField>,
}

/// An element of `dataset.registered`'s `fields`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct SchemaField {
    pub name: String,
    pub level: Level,
    pub pi: Pi,
    pub stat_micro: bool,
    pub share: Share,
    pub ftz_negative_list: bool,
    pub default_mask: Mask,
}

/// `version.published` (the n-th of a dataset is its version n).
#[derive(Debug, Deserialize)]
pub(super) struct VersionPublished {
    pub dataset: String,
    pub sha256: String,
    /// `RELEASED` or `IN_REVIEW`; absent before review before release existed (released).
    #[serde(default)]
    pub status: Option<String>,
}

/// `version.reviewed`: a review step and the status it left.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct VersionReviewed {
    pub dataset: String,
    pub version: u64,
    pub level: u32,
    pub outcome: String,
    pub status: String,
}

/// `review_policy.set`: the levels (empty: removed), each naming its reviewers.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ReviewPolicySet {
    pub dataset: String,
    pub levels: Vec<ReviewLevel>,
}

/// One level of a logged review policy.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ReviewLevel {
    pub reviewers: Vec<String>,
}

/// The body shared by the five grant kinds: the grant as it stands after the change.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct GrantRecord {
    pub grant: String,
    pub dataset: String,
    pub consumer: String,
    pub fields: Vec<GrantField>,
    pub status: GrantStatus,
    pub expires_at: Option<String>,
    pub purpose: String,
    pub legal_basis: String,
    pub statistical_purpose: bool,
    pub exemption: Exemption,
    pub exemption_attested_by: Option<String>,
}

/// A granted field and the owner's stricter mask (`null`: the field's default).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct GrantField {
    pub name: String,
    pub mask: Option<Mask>,
}

/// `approval.recorded` (the officer is the envelope's `actor`).
#[derive(Debug, Deserialize)]
pub(super) struct ApprovalRecorded {
    pub approval: String,
    pub approval_type: ApprovalType,
    pub exporter: String,
    pub reference: String,
    pub issued: String,
    pub expires: Option<String>,
    pub scope: ApprovalScope,
}

/// `approval.recorded`'s `scope`.
#[derive(Debug, Deserialize)]
pub(super) struct ApprovalScope {
    pub recipients: Vec<String>,
    pub destinations: Vec<Region>,
    pub purposes: Vec<String>,
    pub max_persons_nonsensitive: Option<u64>,
    pub max_persons_sensitive: Option<u64>,
}

/// `approval.revoked` (`exporter` is absent when the gateway found no such approval).
#[derive(Debug, Deserialize)]
pub(super) struct ApprovalRevoked {
    pub approval: String,
    #[serde(default)]
    pub exporter: Option<String>,
}

/// `approval.confirmed` (the confirming officer is the envelope's `actor`).
#[derive(Debug, Deserialize)]
pub(super) struct ApprovalConfirmed {
    pub approval: String,
}

/// `hold.queued`.
#[derive(Debug, Deserialize)]
pub(super) struct HoldQueued {
    pub hold: String,
}

/// `hold.resolved`.
#[derive(Debug, Deserialize)]
pub(super) struct HoldResolved {
    pub hold: String,
    pub status: HoldStatus,
    pub approval: Option<String>,
}

/// `policy.applied`: the export policy a gateway started with (every member of
/// [`crate::policy::PolicyConfig`] except `tables`) and the SHA-256 of its canonical JSON.
#[derive(Debug, Deserialize)]
pub(super) struct PolicyApplied {
    pub policy: serde_json::Value,
    pub sha256: String,
}

/// `transfer.decision`. `facts`, `ledger` and `statistical_purpose` are `None` when the member is
/// absent (a decision written before they existed); `ledger` is `Some(None)` when it is `null`.
#[derive(Debug, Deserialize)]
pub(super) struct TransferDecision {
    pub transfer: String,
    pub caller: Caller,
    pub exporter: Exporter,
    pub recipient: Recipient,
    pub dataset: String,
    pub version: u64,
    pub version_sha256: String,
    pub government_data: bool,
    pub grant: String,
    pub purpose: String,
    pub legal_basis: String,
    pub exemption: Exemption,
    pub exemption_attested_by: Option<String>,
    pub persons: Persons,
    pub fields: Vec<DecisionField>,
    pub ruleset: Ruleset,
    /// The engine's verdict as `crate::policy::DecisionJson` renders it, compared member for member.
    pub decision: serde_json::Value,
    #[serde(default)]
    pub statistical_purpose: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub ledger: Option<Option<Ledger>>,
    #[serde(default)]
    pub facts: Option<Vec<Fact>>,
}

/// `transfer.decision`'s `caller`.
#[derive(Debug, Deserialize)]
pub(super) struct Caller {
    pub id: String,
}

/// `transfer.decision`'s `exporter`.
#[derive(Debug, Deserialize)]
pub(super) struct Exporter {
    pub id: String,
    pub kind: ParticipantKind,
    pub in_tianjin_ftz: bool,
}

/// `transfer.decision`'s `recipient`.
#[derive(Debug, Deserialize)]
pub(super) struct Recipient {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: RecipientType,
    pub region: Region,
    pub access_from_outside_mainland: bool,
}

/// `transfer.decision`'s `persons`.
#[derive(Debug, Deserialize)]
pub(super) struct Persons {
    pub nonsensitive: u64,
    pub sensitive: u64,
    pub already_counted_nonsensitive: u64,
    pub already_counted_sensitive: u64,
}

/// An element of `transfer.decision`'s `fields`: delivered when it has `level`, otherwise a
/// granted field dropped (`{"mask":{"kind":"DROP"},"name":…}`).
#[derive(Debug, Deserialize)]
pub(super) struct DecisionField {
    pub name: String,
    pub mask: Mask,
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub pi: Option<Pi>,
    #[serde(default)]
    pub stat_micro: Option<bool>,
    #[serde(default)]
    pub share: Option<Share>,
    #[serde(default)]
    pub ftz_negative_list: Option<bool>,
}

/// `transfer.decision`'s `ledger` when persons were counted.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) struct Ledger {
    /// Entries the exporter's ledger had before this decision.
    pub position: u64,
    /// This decision's persons entered the ledger as entry `position + 1`.
    pub counted: bool,
    /// The Asia/Shanghai year of the decision (the ledger bucket).
    pub year: i32,
}

/// What the engine read, with the leaf of the latest record about it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Fact {
    pub fact: FactKind,
    pub id: String,
    pub leaf: u64,
}

/// The kinds of fact a decision cites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum FactKind {
    Policy,
    Participant,
    Dataset,
    Grant,
    Approval,
    Version,
}

impl FactKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FactKind::Policy => "policy",
            FactKind::Participant => "participant",
            FactKind::Dataset => "dataset",
            FactKind::Grant => "grant",
            FactKind::Approval => "approval",
            FactKind::Version => "version",
        }
    }
}

/// The members of a decision's `decision` replay reads beside the whole-value comparison.
#[derive(Debug, Deserialize)]
pub(super) struct Verdict {
    pub action: Action,
    pub counts: VerdictCounts,
}

/// `decision.counts`.
#[derive(Debug, Deserialize)]
pub(super) struct VerdictCounts {
    pub nonsensitive_before: u64,
    pub nonsensitive_after: u64,
    pub sensitive_before: u64,
    pub sensitive_after: u64,
}

/// A member that may be `null`: absent gives the field's default (`None`), `null` gives `Some(None)`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}
