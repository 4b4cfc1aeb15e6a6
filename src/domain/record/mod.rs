//! Records: one per state change and per transfer decision, the leaves of the transfer log.
//!
//! [`bodies`] holds what each kind records; this module the kinds, the envelope (`type`,
//! `schema`, `at`, `at_local`, `actor`) and the searchable facets of transfer records.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::classification::named_enum;

pub mod bodies;

pub use bodies::RecordBody;

/// The members every record carries besides its body's.
pub const ENVELOPE: [&str; 5] = ["type", "schema", "at", "at_local", "actor"];

/// The members in which `row` (a record body as a state row serialises it) and `logged` (a
/// stored record) differ, by name: a member either one lacks counts (an absent member is not a
/// wildcard); the envelope and `ignore` are not compared.
pub fn body_differences(row: &Map<String, Value>, logged: &Map<String, Value>, ignore: &[&str]) -> Vec<String> {
    let mut names: Vec<&String> = row.keys().chain(logged.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| !ENVELOPE.contains(&k.as_str()) && !ignore.contains(&k.as_str()))
        .filter(|k| row.get(*k) != logged.get(*k))
        .cloned()
        .collect()
}

/// The schema version written into every record.
pub const RECORD_SCHEMA: u32 = 1;

/// Asia/Shanghai ([`super::SHANGHAI`]).
pub fn shanghai() -> FixedOffset {
    super::SHANGHAI
}

named_enum! {
    /// What a record records.
    RecordKind, "record type" {
        /// A participant was registered.
        ParticipantRegistered = "participant.registered",
        /// A participant was suspended.
        ParticipantSuspended = "participant.suspended",
        /// A dataset was registered in the catalog.
        DatasetRegistered = "dataset.registered",
        /// A version was published.
        VersionPublished = "version.published",
        /// A consumer requested a grant.
        GrantRequested = "grant.requested",
        /// The owner approved a grant.
        GrantApproved = "grant.approved",
        /// The owner refused a grant.
        GrantRefused = "grant.refused",
        /// A grant was revoked.
        GrantRevoked = "grant.revoked",
        /// A pull was assessed (whatever the outcome), before any row was sent.
        TransferDecision = "transfer.decision",
        /// A pull ended: delivered completely or cut.
        TransferCompleted = "transfer.completed",
        /// A held transfer entered the officers' review queue.
        HoldQueued = "hold.queued",
        /// An officer released (linking an approval) or refused a hold.
        HoldResolved = "hold.resolved",
        /// An officer recorded an approval.
        ApprovalRecorded = "approval.recorded",
        /// An officer revoked an approval.
        ApprovalRevoked = "approval.revoked",
        /// A second officer confirmed an approval (maker-checker).
        ApprovalConfirmed = "approval.confirmed",
        /// An officer attested a grant's exemption claim.
        ExemptionAttested = "exemption.attested",
        /// Pull attempts refused before any assessment (no grant, a field not granted, an
        /// unknown dataset), counted per participant, dataset and reason over about a minute.
        AccessRefused = "access.refused",
        /// A table (or its preview) was assessed and protected, whatever the outcome, before any
        /// cell was sent; stored with the table's release-ledger rows.
        TableDecision = "table.decision",
        /// A table's cells were sent (or the stream was cut).
        TableCompleted = "table.completed",
        /// An officer widened (or reset) a recipient's release-ledger scope.
        LedgerScopeSet = "ledger.scope_set",
        /// A dataset's owner set stricter table parameters (recorded as their HMAC).
        TableRulesSet = "table_rules.set",
        /// The gateway started with an export policy other than the last one logged.
        PolicyApplied = "policy.applied",
        /// A dataset's owner set (or removed) its review policy.
        ReviewPolicySet = "review_policy.set",
        /// A reviewer approved or returned a version at one level.
        VersionReviewed = "version.reviewed",
        /// The owner or a reviewer was sent the first rows of a version before its release.
        VersionPreviewed = "version.previewed",
        /// A dataset's owner declared (or withdrew) its release cadence.
        CadenceSet = "cadence.set",
        /// An officer or a dataset's owner defined a standing report.
        ReportDefined = "report.defined",
        /// One recipient's table of one period of a standing report was kept, or not produced.
        ReportRun = "report.run",
        /// Someone read the kept table of one run of a standing report.
        ReportFetched = "report.fetched",
    }
}

named_enum! {
    /// What a transfer record says happened: a decision's action, a completion's outcome, or
    /// refused attempts.
    TransferAction, "transfer action" {
        /// Authorised: the pull streams.
        Pass = "PASS",
        /// Held for an officer's approval.
        Hold = "HOLD",
        /// Blocked by the rules.
        Block = "BLOCK",
        /// The rules passed it but it was refused all the same.
        Refused = "REFUSED",
        /// Every batch was delivered.
        Completed = "COMPLETED",
        /// The recipient went away (or a chunk failed) before the end.
        Cut = "CUT",
        /// Stopped mid-stream: a suspension, a revoked or expired grant, a revoked approval.
        Revoked = "REVOKED",
        /// The gateway stopped while the pull streamed; what was sent is not known.
        Interrupted = "INTERRUPTED",
        /// Pull attempts refused before any assessment, counted.
        Denied = "DENIED",
    }
}

impl From<crate::policy::Action> for TransferAction {
    fn from(a: crate::policy::Action) -> TransferAction {
        match a {
            crate::policy::Action::Pass => TransferAction::Pass,
            crate::policy::Action::Hold => TransferAction::Hold,
            crate::policy::Action::Block => TransferAction::Block,
        }
    }
}

/// The searchable facts of a transfer record (`ListTransfers` filters, a participant's own
/// records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFacets {
    /// The transfer id.
    pub transfer: String,
    /// The dataset.
    pub dataset: String,
    /// The recipient participant.
    pub recipient: String,
    /// The exporter (dataset owner).
    pub exporter: String,
    /// The recipient's region.
    pub region: String,
    /// Export or domestic.
    pub export: bool,
    /// The mechanism the rules required; `None` on `access.refused` records, which no rules
    /// assessed (stored as the empty string).
    pub mechanism: Option<crate::policy::Mechanism>,
    /// What happened.
    pub action: TransferAction,
}

/// A record about to be stored. Never holds a record's data values, keys or tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// What happened.
    pub kind: RecordKind,
    /// Who did it: a participant id, or `local:<command>` for offline CLI bootstrap.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The facts, by name: the body's members (no `type`, `schema`, `at`, `at_local`, `actor`:
    /// those are added). The store adds `version` to a `version.published` record's.
    pub body: Map<String, Value>,
    /// Set on transfer records.
    pub facets: Option<TransferFacets>,
    /// The fact a state record is about ([`RecordBody::subject`]).
    pub subject: Option<String>,
}

impl NewRecord {
    /// A record of `body` (which says its kind) by `actor` at `at` (the time of the use case's
    /// clock, so that the record and the state it records agree).
    pub fn new(actor: impl Into<String>, at: DateTime<Utc>, body: RecordBody) -> NewRecord {
        let subject = body.subject();
        NewRecord { kind: body.kind(), actor: actor.into(), at, body: body.into_members(), facets: None, subject }
    }

    /// A record of `kind` whose body is any JSON (a non-object is put under `value`): for tests
    /// and benchmarks of the store and the log, which need leaves and not a use case's facts. The
    /// gateway's records are [`NewRecord::new`]'s.
    pub fn untyped(kind: RecordKind, actor: impl Into<String>, at: DateTime<Utc>, body: Value) -> NewRecord {
        let body = match body {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        NewRecord { kind, actor: actor.into(), at, body, facets: None, subject: None }
    }

    /// The leaf: the record's RFC 8785 canonical JSON.
    ///
    /// # Errors
    /// A number outside the range RFC 8785 represents exactly (never produced by the gateway).
    pub fn leaf(&self) -> Result<String, crate::translog::canonical::CanonicalError> {
        crate::translog::canonical::to_canonical_json(&self.to_json())
    }

    /// The whole record as JSON: `type`, `schema`, `at` (UTC), `at_local` (Asia/Shanghai),
    /// `actor`, then the body.
    pub fn to_json(&self) -> Value {
        let mut m = self.body.clone();
        m.insert("type".into(), self.kind.as_str().into());
        m.insert("schema".into(), RECORD_SCHEMA.into());
        m.insert("at".into(), self.at.to_rfc3339_opts(SecondsFormat::Micros, true).into());
        m.insert(
            "at_local".into(),
            self.at.with_timezone(&shanghai()).to_rfc3339_opts(SecondsFormat::Micros, false).into(),
        );
        m.insert("actor".into(), self.actor.clone().into());
        Value::Object(m)
    }
}

/// A record with its leaf (RFC 8785 JSON) computed once, outside the store's transaction: the
/// transfer log's callers prepare their records in parallel, the sequencer only stores them.
/// The record cannot be changed afterwards, so the leaf always matches it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRecord {
    record: NewRecord,
    leaf: String,
}

impl PreparedRecord {
    /// Computes `record`'s leaf.
    ///
    /// # Errors
    /// As [`NewRecord::leaf`].
    pub fn new(record: NewRecord) -> Result<PreparedRecord, crate::translog::canonical::CanonicalError> {
        let leaf = record.leaf()?;
        Ok(PreparedRecord { record, leaf })
    }

    /// The record.
    pub fn record(&self) -> &NewRecord {
        &self.record
    }

    /// Its leaf.
    pub fn leaf(&self) -> &str {
        &self.leaf
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Position in the order records were stored, from 1.
    pub seq: u64,
    /// Its leaf index once integrated into the log.
    pub leaf_index: Option<u64>,
    /// What it records.
    pub kind: RecordKind,
    /// The record's canonical JSON, exactly as stored: the leaf.
    pub json: String,
}

#[cfg(test)]
mod body_tests {
    use super::*;

    #[test]
    fn a_member_either_side_lacks_is_a_difference_and_the_envelope_is_not_compared() {
        let map = |v: Value| v.as_object().cloned().unwrap();
        let logged = map(serde_json::json!({"type": "grant.approved", "at": "x", "grant": "g", "use": "TABLES"}));
        // A TABLES grant turned into a ROWS one in the database: its row no longer says `use`.
        assert_eq!(body_differences(&map(serde_json::json!({"grant": "g"})), &logged, &[]), ["use"]);
        let same = map(serde_json::json!({"grant": "g", "use": "TABLES"}));
        assert!(body_differences(&same, &logged, &[]).is_empty());
        let extra = map(serde_json::json!({"grant": "g", "use": "TABLES", "status": "APPROVED"}));
        assert_eq!(body_differences(&extra, &logged, &[]), ["status"]);
        assert!(body_differences(&extra, &logged, &["status"]).is_empty());
    }
}
