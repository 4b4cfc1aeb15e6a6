//! The database's current rows against the state rebuilt from the log: a row the log does not
//! account for, or one that differs from its latest record, is a finding.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::state::{LedgerTotals, State};
use crate::domain::participant::ParticipantStatus;
use crate::domain::record::bodies::{ApprovalRecorded, GrantRecord, ParticipantRegistered};
use crate::store::Store;

/// A database row that does not match the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `participant`, `approval`, `grant` or `ledger`.
    pub table: &'static str,
    /// The row's id.
    pub id: String,
    /// The leaf of the latest record about it; `None` when the log has none.
    pub leaf: Option<u64>,
    /// What differs, in one line.
    pub what: String,
}

/// Compares the database's participants, approvals and grants with `state`.
///
/// Grants are listed as those visible to some participant (consumer or owner) plus those the
/// log names. The person ledger's totals per exporter and year must be what the log's counted
/// decisions add up to (at least that, where a window of several years was used).
///
/// # Errors
/// The store cannot be read, or a row cannot be rendered as its record.
pub async fn compare_store(state: &State, store: &dyn Store) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut finding = |table, id: &str, leaf, what: String| out.push(Finding { table, id: id.to_owned(), leaf, what });

    // Participants: every member of the registration, the status from the suspensions.
    let participants = store.participants().await?;
    for p in &participants {
        let id = p.id.to_string();
        let Some(logged) = state.participants.get(&id) else {
            finding("participant", &id, None, "in the database, but no participant.registered record".into());
            continue;
        };
        let mut row = members(&ParticipantRegistered::from(p))?;
        row.remove("status");
        if let Some(diff) = differs(&row, &logged.registered, &["status"]) {
            finding("participant", &id, Some(logged.leaf), diff);
        }
        let suspended = p.status == ParticipantStatus::Suspended;
        if suspended != logged.suspended {
            let logged_status = if logged.suspended { "SUSPENDED" } else { "ACTIVE" };
            finding(
                "participant",
                &id,
                Some(logged.leaf),
                format!("status {}, the log says {logged_status}", p.status),
            );
        }
    }
    for (id, logged) in &state.participants {
        if !participants.iter().any(|p| p.id.as_str() == id) {
            finding("participant", id, Some(logged.leaf), "registered in the log, absent from the database".into());
        }
    }

    // Approvals: the recorded members and officer, revocation and confirmation.
    let approvals = store.approvals(None).await?;
    for a in &approvals {
        let id = &a.approval.id;
        let Some(logged) = state.approvals.get(id) else {
            finding("approval", id, None, "in the database, but no approval.recorded record".into());
            continue;
        };
        let leaf = Some(logged.leaf);
        if let Some(diff) = differs(&members(&ApprovalRecorded::from(&a.approval))?, &logged.recorded, &[]) {
            finding("approval", id, leaf, diff);
        }
        if a.recorded_by != logged.recorded_by {
            finding(
                "approval",
                id,
                leaf,
                format!("recorded_by {}, the log says {}", a.recorded_by, logged.recorded_by),
            );
        }
        if a.approval.revoked != logged.approval.revoked {
            finding(
                "approval",
                id,
                leaf,
                format!("revoked {}, the log says {}", a.approval.revoked, logged.approval.revoked),
            );
        }
        if a.confirmed_by != logged.confirmed_by {
            finding(
                "approval",
                id,
                leaf,
                format!("confirmed_by {:?}, the log says {:?}", a.confirmed_by, logged.confirmed_by),
            );
        }
    }
    for (id, logged) in &state.approvals {
        if !approvals.iter().any(|a| &a.approval.id == id) {
            finding("approval", id, Some(logged.leaf), "recorded in the log, absent from the database".into());
        }
    }

    // Grants: every member of the latest record.
    let mut grants = BTreeMap::new();
    for p in &participants {
        for g in store.grants_visible_to(&p.id, None).await? {
            grants.insert(g.id.clone(), g);
        }
    }
    for id in state.grants.keys() {
        if !grants.contains_key(id) {
            if let Some(g) = store.grant(id).await? {
                grants.insert(id.clone(), g);
            }
        }
    }
    for (id, g) in &grants {
        let Some(logged) = state.grants.get(id) else {
            finding("grant", id, None, "in the database, but no grant record".into());
            continue;
        };
        if let Some(diff) = differs(&members(&GrantRecord::from(g))?, &logged.latest, &[]) {
            finding("grant", id, Some(logged.leaf), diff);
        }
    }
    for (id, logged) in &state.grants {
        if !grants.contains_key(id) {
            finding("grant", id, Some(logged.leaf), "in the log, absent from the database".into());
        }
    }

    // The person ledger: per exporter and year, the persons the counted decisions added.
    let mut stored: BTreeMap<(String, i32), LedgerTotals> = BTreeMap::new();
    for t in store.ledger_totals().await? {
        let totals = stored.entry((t.exporter, t.year)).or_default();
        match t.bucket.as_str() {
            "N" => totals.nonsensitive = t.persons,
            _ => totals.sensitive = t.persons,
        }
    }
    let keys: std::collections::BTreeSet<&(String, i32)> = stored.keys().chain(state.ledger.keys()).collect();
    for key @ (exporter, year) in keys {
        let db = stored.get(key).copied().unwrap_or_default();
        let log = state.ledger.get(key).copied().unwrap_or_default();
        // With a window of several years a year's bucket holds its distinct persons, which can
        // exceed those new to the windows the decisions counted against: never fewer.
        let agrees = if log.multi_year {
            db.nonsensitive >= log.nonsensitive && db.sensitive >= log.sensitive
        } else {
            (db.nonsensitive, db.sensitive) == (log.nonsensitive, log.sensitive)
        };
        if !agrees {
            finding(
                "ledger",
                &format!("{exporter} {year}"),
                None,
                format!(
                    "holds non-sensitive {}, sensitive {} persons; the log's counted decisions add up to non-sensitive {}, sensitive {}",
                    db.nonsensitive, db.sensitive, log.nonsensitive, log.sensitive
                ),
            );
        }
    }
    Ok(out)
}

fn members<T: Serialize>(body: &T) -> anyhow::Result<Map<String, Value>> {
    match serde_json::to_value(body)? {
        Value::Object(m) => Ok(m),
        other => anyhow::bail!("a record body rendered as {other}"),
    }
}

/// The members of `row` whose value the logged record does not have, as one line.
fn differs(row: &Map<String, Value>, logged: &Map<String, Value>, ignore: &[&str]) -> Option<String> {
    let show = |v: Option<&Value>| v.map_or("nothing".into(), Value::to_string);
    let diffs: Vec<String> = crate::domain::record::body_differences(row, logged, ignore)
        .into_iter()
        .map(|k| format!("{k}: database {}, log {}", show(row.get(&k)), show(logged.get(&k))))
        .collect();
    (!diffs.is_empty()).then(|| diffs.join("; "))
}
