//! The facts a transfer's decision rests on (docs/records.md, "Facts"): a participant, dataset,
//! grant or approval row is used only when the latest records about it say what the row says,
//! and the decision cites the latest one by its leaf index. A row inserted or altered behind the
//! gateway's back is not used; the gateway's own log says why.

use serde::Serialize;
use serde_json::Value;

use super::{Gateway, ServiceError};
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::grant::Grant;
use crate::domain::participant::{Participant, ParticipantStatus};
use crate::domain::record::bodies::{
    ApprovalRecorded, DatasetRegistered, Fact, FactCited, GrantRecord, ParticipantRegistered, PolicyApplied,
};
use crate::domain::record::{NewRecord, RecordBody, RecordKind, StoredRecord};
use crate::store::StoredApproval;

/// The most records about one fact read (a grant or an approval has a handful; a participant
/// one per registration and suspension).
const HISTORY: u32 = 256;

/// The records about `fact` `id`, oldest first.
async fn history(gw: &Gateway, fact: Fact, id: &str) -> Result<Vec<StoredRecord>, ServiceError> {
    Ok(gw.store.records_about(&fact.subject(id), HISTORY).await?)
}

/// A record's members.
fn members(record: &StoredRecord) -> Result<serde_json::Map<String, Value>, ServiceError> {
    match serde_json::from_str(&record.json) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ServiceError::DataLoss(format!("record {} is not a JSON object", record.seq))),
    }
}

/// The members of `row` (a record body, serialised) that differ from `record`'s, by name, in
/// either direction (a member the row lacks counts too); `ignore` names members not compared.
fn differences(record: &StoredRecord, row: &impl Serialize, ignore: &[&str]) -> Result<Vec<String>, ServiceError> {
    let logged = members(record)?;
    let Value::Object(row) = serde_json::to_value(row).map_err(|e| ServiceError::Internal(e.into()))? else {
        return Err(ServiceError::Internal(anyhow::anyhow!("a record body is a JSON object")));
    };
    Ok(crate::domain::record::body_differences(&row, &logged, ignore))
}

/// Cites `record` about `fact` `id`: its leaf index, waiting for the sequencer to integrate it
/// (a fact recorded a moment ago).
async fn cite(gw: &Gateway, fact: Fact, id: &str, record: &StoredRecord) -> Result<FactCited, ServiceError> {
    let leaf = match record.leaf_index {
        Some(leaf) => leaf,
        None => crate::log::proofs::integrated(&gw.log, &*gw.store, record.seq).await?.0,
    };
    Ok(FactCited { fact, id: id.to_owned(), leaf })
}

/// Why a row is not used: logged at error level for the officers (never a value of the data).
fn not_logged(fact: Fact, id: &str, why: &str) {
    tracing::error!(
        fact = %fact,
        id,
        why,
        "not used: the row differs from its log records (inserted or altered outside the gateway)"
    );
}

/// Participant `p` as its records say it: the latest `participant.registered` says what the row
/// says, and the row is `SUSPENDED` exactly when a `participant.suspended` came after it.
/// `None` (logged at error level) when not.
pub(crate) async fn participant(gw: &Gateway, p: &Participant) -> Result<Option<FactCited>, ServiceError> {
    let records = history(gw, Fact::Participant, p.id.as_str()).await?;
    let Some(registered) = records.iter().rposition(|r| r.kind == RecordKind::ParticipantRegistered) else {
        not_logged(Fact::Participant, p.id.as_str(), "no participant.registered record");
        return Ok(None);
    };
    let differs = differences(&records[registered], &ParticipantRegistered::from(p), &["status"])?;
    if !differs.is_empty() {
        not_logged(Fact::Participant, p.id.as_str(), &format!("differs in {}", differs.join(", ")));
        return Ok(None);
    }
    let suspended = records[registered..].iter().any(|r| r.kind == RecordKind::ParticipantSuspended);
    let logged_status = if suspended {
        ParticipantStatus::Suspended
    } else {
        match members(&records[registered])?.get("status").and_then(Value::as_str) {
            Some("SUSPENDED") => ParticipantStatus::Suspended,
            _ => ParticipantStatus::Active,
        }
    };
    if logged_status != p.status {
        not_logged(Fact::Participant, p.id.as_str(), "its status differs from its records");
        return Ok(None);
    }
    let latest = records.last().unwrap_or(&records[registered]);
    cite(gw, Fact::Participant, p.id.as_str(), latest).await.map(Some)
}

/// Dataset `d` as its `dataset.registered` says it (owner, classification of every field).
pub(crate) async fn dataset(gw: &Gateway, d: &Dataset) -> Result<Option<FactCited>, ServiceError> {
    let records = history(gw, Fact::Dataset, d.id.as_str()).await?;
    let Some(registered) = records.iter().rev().find(|r| r.kind == RecordKind::DatasetRegistered) else {
        not_logged(Fact::Dataset, d.id.as_str(), "no dataset.registered record");
        return Ok(None);
    };
    let differs = differences(registered, &DatasetRegistered::from(d), &[])?;
    if !differs.is_empty() {
        not_logged(Fact::Dataset, d.id.as_str(), &format!("differs in {}", differs.join(", ")));
        return Ok(None);
    }
    cite(gw, Fact::Dataset, d.id.as_str(), registered).await.map(Some)
}

/// Version `v` as its records say it: its `version.published` carries its digest and row
/// count, and the latest record about it (`version.published`, or the last `version.reviewed`)
/// says it is released. A version released only in the database is not used.
pub(crate) async fn version(gw: &Gateway, v: &VersionInfo) -> Result<Option<FactCited>, ServiceError> {
    let id = v.version_id();
    let records = history(gw, Fact::Version, &id).await?;
    let Some(published) = records.iter().find(|r| r.kind == RecordKind::VersionPublished) else {
        not_logged(Fact::Version, &id, "no version.published record");
        return Ok(None);
    };
    let logged = members(published)?;
    let mut differs = Vec::new();
    if logged.get("sha256").and_then(Value::as_str) != Some(hex::encode(v.sha256).as_str()) {
        differs.push("sha256");
    }
    if logged.get("rows").and_then(Value::as_u64) != Some(v.rows) {
        differs.push("rows");
    }
    let latest = records.last().unwrap_or(published);
    // A record without `status` predates review before release: it released the version.
    let status = members(latest)?.get("status").and_then(Value::as_str).unwrap_or("RELEASED").to_owned();
    if status != v.status.as_str() {
        differs.push("status");
    }
    if !differs.is_empty() {
        not_logged(Fact::Version, &id, &format!("differs from its records in {}", differs.join(", ")));
        return Ok(None);
    }
    cite(gw, Fact::Version, &id, latest).await.map(Some)
}

/// Grant `g` as its latest record says it (fields, masks, status, expiry, row filter, use,
/// exemption and its attestation).
pub(crate) async fn grant(gw: &Gateway, g: &Grant) -> Result<Option<FactCited>, ServiceError> {
    let records = history(gw, Fact::Grant, &g.id).await?;
    let Some(latest) = records.last() else {
        not_logged(Fact::Grant, &g.id, "no grant record");
        return Ok(None);
    };
    let differs = differences(latest, &GrantRecord::from(g), &[])?;
    if !differs.is_empty() {
        not_logged(Fact::Grant, &g.id, &format!("differs from its latest record in {}", differs.join(", ")));
        return Ok(None);
    }
    cite(gw, Fact::Grant, &g.id, latest).await.map(Some)
}

/// Approval `a` as its records say it: its `approval.recorded` (by the officer the row names)
/// says what the row says, the row is revoked exactly when an `approval.revoked` exists, and it
/// names as confirming officer exactly the one of an `approval.confirmed`.
pub(crate) async fn approval(gw: &Gateway, a: &StoredApproval) -> Result<Option<FactCited>, ServiceError> {
    let id = &a.approval.id;
    let records = history(gw, Fact::Approval, id).await?;
    let Some(recorded) = records.iter().find(|r| r.kind == RecordKind::ApprovalRecorded) else {
        not_logged(Fact::Approval, id, "no approval.recorded record");
        return Ok(None);
    };
    let mut differs = differences(recorded, &ApprovalRecorded::from(&a.approval), &[])?;
    if members(recorded)?.get("actor").and_then(Value::as_str) != Some(a.recorded_by.as_str()) {
        differs.push("recorded_by".into());
    }
    let revoked = records.iter().any(|r| r.kind == RecordKind::ApprovalRevoked);
    if revoked != a.approval.revoked {
        differs.push("revoked".into());
    }
    let confirmed_by = match records.iter().find(|r| r.kind == RecordKind::ApprovalConfirmed) {
        Some(r) => members(r)?.get("actor").and_then(Value::as_str).map(str::to_owned),
        None => None,
    };
    if confirmed_by != a.confirmed_by {
        differs.push("confirmed_by".into());
    }
    if !differs.is_empty() {
        not_logged(Fact::Approval, id, &format!("differs from its records in {}", differs.join(", ")));
        return Ok(None);
    }
    let latest = records.last().unwrap_or(recorded);
    cite(gw, Fact::Approval, id, latest).await.map(Some)
}

/// The export policy this gateway applies, as logged: its `policy.applied` record, written the
/// first time a decision needs it when no record of the same policy exists.
pub(crate) async fn policy(gw: &Gateway) -> Result<FactCited, ServiceError> {
    gw.policy_fact
        .get_or_try_init(|| async {
            let body = PolicyApplied::of(&gw.policy).map_err(|e| ServiceError::Internal(e.into()))?;
            let sha256 = body.sha256.clone();
            if let Some(latest) = history(gw, Fact::Policy, &sha256).await?.last() {
                return cite(gw, Fact::Policy, &sha256, latest).await;
            }
            let rec = NewRecord::new("local:gateway", gw.clock.now(), RecordBody::PolicyApplied(body));
            let receipt = gw.log.append(rec).await?;
            tracing::info!(policy = %sha256, leaf = receipt.index, "export policy logged");
            Ok(FactCited { fact: Fact::Policy, id: sha256, leaf: receipt.index })
        })
        .await
        .cloned()
}
