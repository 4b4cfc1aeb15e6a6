//! Assessment of a planned transfer: the rules with the live ledger and approvals, the
//! per-exporter person counts, and the officers' hold queue.

use std::sync::Mutex;

use chrono::Datelike;
use futures::StreamExt;
use ring::hmac;

use super::extract::{masked_chunks, ChunkPlan, Pace, Reader};
use super::{facts, new_id, Caller, Gateway, ServiceError};
use crate::domain::classification::SetSummary;
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::grant::Grant;
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::participant::Participant;
use crate::domain::record::bodies::{DecisionLedger, FactCited, HoldQueued, HoldResolved, HoldReview};
use crate::domain::record::{shanghai, NewRecord, RecordBody};
use crate::domain::values::text_values;
use crate::pb::Column;
use crate::policy::{self, Action, Decision, Direction, Persons, Ruleset, Transfer, WindowTotals};
use crate::store::{LedgerCounts, PersonCount};
use crate::wire::RowBatch;

/// Whether an assessment may change the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// A pull: a passed export's persons enter the exporter's ledger.
    Commit,
    /// A preview: nothing is counted.
    DryRun,
}

/// Which rows a transfer delivers: all, or those whose filter column's text is accepted.
#[derive(Debug, Clone)]
pub struct RowSelection<'a> {
    /// `(stored column index, its type, accepted values)`.
    pub filter: Option<&'a super::extract::RowFilter>,
}

/// The rows a transfer delivers and, when `hash`, the keyed hashes of the distinct persons among
/// them: HMAC-SHA-256 of the person-key value's text with the gateway's counting key. A row whose
/// person key is null, or a dataset without a person-key field, counts each row as a distinct
/// person (conservative). Without a row filter and without `hash`, nothing is read.
async fn persons(
    gw: &Gateway,
    dataset: &Dataset,
    version: &VersionInfo,
    rows: &RowSelection<'_>,
    hash: bool,
) -> Result<(Vec<[u8; 32]>, u64), ServiceError> {
    if !hash && rows.filter.is_none() {
        return Ok((Vec::new(), version.rows));
    }
    let mut selected = 0u64;
    let key = gw.counting_key();
    let person_index = dataset.person_key_field.as_ref().and_then(|f| dataset.field_index(f));
    let mut out: Vec<[u8; 32]> = Vec::with_capacity(version.rows as usize);
    // Through the same verified cache as the pull: a version cached whole is not read again, one
    // read here is checked against its digests and cached for the pull that follows.
    let plan = ChunkPlan { dataset: dataset.clone(), version: version.clone(), from: 0, reader: Reader::Gateway };
    let mut chunks = masked_chunks(gw, plan, Pace::Pull);
    let corrupt = || ServiceError::DataLoss(format!("dataset {} version {}", dataset.id, version.version));
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let (n, columns) = RowBatch::from_encoded(chunk.data).split().map_err(|_| corrupt())?;
        let decode = |i: usize| -> Result<Column, ServiceError> {
            prost::Message::decode(columns.get(i).cloned().ok_or_else(corrupt)?).map_err(|_| corrupt())
        };
        let keep: Option<Vec<bool>> = match rows.filter {
            None => None,
            Some(filter) => Some(filter.keeps(&decode(filter.column)?, n)),
        };
        let kept = |row: usize| keep.as_ref().is_none_or(|k| k[row]);
        selected += keep.as_ref().map_or(u64::from(n), |k| k.iter().filter(|kept| **kept).count() as u64);
        if !hash {
            continue;
        }
        let tag = |parts: &[&[u8]]| -> [u8; 32] {
            let mut ctx = hmac::Context::with_key(&key);
            for p in parts {
                ctx.update(p);
            }
            ctx.sign().as_ref().try_into().expect("32 bytes")
        };
        let anonymous = |row: usize| {
            let seq = chunk.seq.to_be_bytes();
            let row = (row as u64).to_be_bytes();
            tag(&[b"row\0", dataset.id.as_str().as_bytes(), b"\0", &version.version.to_be_bytes(), &seq, &row])
        };
        match person_index.map(decode).transpose()? {
            // The common case: a text key, no row walking beyond the nulls.
            Some(c) if dataset.fields[person_index.unwrap_or(0)].ty.is_text() && c.ints.is_empty() => {
                let mut values = c.strings.iter();
                let mut nulls = c.nulls.iter().peekable();
                for row in 0..n as usize {
                    let value = if nulls.peek() == Some(&&(row as u32)) {
                        nulls.next();
                        None
                    } else {
                        values.next()
                    };
                    if kept(row) {
                        out.push(match value {
                            Some(v) => tag(&[b"person\0", v.as_bytes()]),
                            None => anonymous(row),
                        });
                    }
                }
            }
            Some(c) => {
                let ty = dataset.fields[person_index.unwrap_or(0)].ty;
                for (row, value) in text_values(&c, ty, n).into_iter().enumerate() {
                    if kept(row) {
                        out.push(match value {
                            Some(v) => tag(&[b"person\0", v.as_bytes()]),
                            None => anonymous(row),
                        });
                    }
                }
            }
            None => out.extend((0..n as usize).filter(|r| kept(*r)).map(anonymous)),
        }
    }
    // Sorted, the ledger inserts touch its B-tree in order.
    out.sort_unstable();
    out.dedup();
    Ok((out, selected))
}

/// The approvals the rules may use for `transfer` ([`policy::approvals::usable`]).
fn usable_approvals(
    stored: Vec<crate::store::StoredApproval>,
    transfer: &Transfer,
    config: &policy::PolicyConfig,
) -> Vec<crate::store::StoredApproval> {
    stored
        .into_iter()
        .filter(|a| {
            match policy::approvals::usable(
                &a.approval,
                &a.recorded_by,
                a.confirmed_by.as_deref(),
                [&transfer.exporter.id, &transfer.recipient.id],
                config,
            ) {
                Ok(()) => true,
                Err(policy::approvals::Unusable::ByAParty) => {
                    tracing::warn!(
                        approval = %a.approval.id,
                        recorded_by = %a.recorded_by,
                        "approval not used: recorded or confirmed by a party to the transfer (separation of duties)"
                    );
                    false
                }
                // Maker-checker: not applicable until a second officer confirmed it.
                Err(policy::approvals::Unusable::Unconfirmed) => false,
            }
        })
        .collect()
}

/// Who and what a transfer involves, each checked against its log records before the rules
/// read it.
#[derive(Debug, Clone, Copy)]
pub struct Parties<'a> {
    /// The dataset's owner.
    pub exporter: &'a Participant,
    /// Who receives.
    pub recipient: &'a Participant,
    /// The dataset.
    pub dataset: &'a Dataset,
    /// The grant used.
    pub grant: &'a Grant,
}

/// What an assessment found: the decision, and what its record needs to be checked on replay.
#[derive(Debug, Clone)]
pub struct Assessed {
    /// The rules' verdict.
    pub decision: Decision,
    /// The transfer as the rules read it: its persons, and the instant they used (taken under
    /// the exporter ledger's lock when persons were counted).
    pub transfer: Transfer,
    /// Where the decision stands in the exporter's ledger; `None` when nobody was counted.
    pub ledger: Option<DecisionLedger>,
    /// Rows the transfer delivers (the grant's row filter applied).
    pub rows: u64,
    /// The facts the rules read, each with the leaf of its latest record.
    pub facts: Vec<FactCited>,
}

/// The citation of a fact, or the refusal of a transfer resting on a row its records do not
/// support (the gateway's log says which and why).
fn supported(fact: Option<FactCited>, what: &str) -> Result<FactCited, ServiceError> {
    fact.ok_or_else(|| {
        ServiceError::PermissionDenied(format!(
            "{what} differs from its log records and is not used; the transfer is refused and the officers are \
             alerted in the gateway's log"
        ))
    })
}

/// Assesses `transfer`: checks every fact it rests on against its log records, gives the rules
/// the exporter's usable approvals, and for exports carrying personal information counts their
/// persons against the exporter's ledger (committed only for a passed pull).
///
/// # Errors
/// `PermissionDenied` when a participant, the dataset or the grant differs from its records.
pub async fn assess(
    gw: &Gateway,
    transfer: &Transfer,
    parties: Parties<'_>,
    version: &VersionInfo,
    rows: &RowSelection<'_>,
    counting: Counting,
) -> Result<Assessed, ServiceError> {
    let mut facts = vec![facts::policy(gw).await?];
    facts.push(supported(
        facts::participant(gw, parties.exporter).await?,
        &format!("participant {}", parties.exporter.id),
    )?);
    if parties.recipient.id != parties.exporter.id {
        facts.push(supported(
            facts::participant(gw, parties.recipient).await?,
            &format!("participant {}", parties.recipient.id),
        )?);
    }
    facts.push(supported(facts::dataset(gw, parties.dataset).await?, &format!("dataset {}", parties.dataset.id))?);
    facts.push(supported(facts::version(gw, version).await?, &format!("version {}", version.version_id()))?);
    facts.push(supported(facts::grant(gw, parties.grant).await?, &format!("grant {}", parties.grant.id))?);
    let mut stored = gw.store.approvals(Some(&transfer.exporter.id)).await?;
    stored.sort_by(|a, b| a.approval.id.cmp(&b.approval.id));
    let mut approvals = Vec::new();
    for a in usable_approvals(stored, transfer, &gw.policy) {
        // A row without matching records is not given to the rules (logged by `facts`).
        if let Some(cited) = facts::approval(gw, &a).await? {
            facts.push(cited);
            approvals.push(a.approval);
        }
    }
    let set = SetSummary::of(transfer.fields.iter().map(|f| &f.classification));
    let counted = transfer.direction() == Direction::Export && (set.has_pi || set.has_spi);
    let (persons, selected) = persons(gw, parties.dataset, version, rows, counted).await?;
    if !counted {
        let decision = policy::assess(transfer, WindowTotals::default(), &approvals, &gw.policy);
        return Ok(Assessed { decision, transfer: transfer.clone(), ledger: None, rows: selected, facts });
    }
    let n = persons.len() as u64;
    let year = transfer.at.with_timezone(&shanghai()).year();
    let assessed: Mutex<Option<(Decision, Transfer, DecisionLedger)>> = Mutex::new(None);
    // Under the exporter ledger's lock: the decision's instant and its place in the ledger.
    let keep = |c: &LedgerCounts| {
        let mut t = transfer.clone();
        t.at = gw.clock.now().with_timezone(&shanghai());
        t.persons = Persons {
            nonsensitive: if set.has_pi { n } else { 0 },
            sensitive: if set.has_spi { n } else { 0 },
            already_counted_nonsensitive: if set.has_pi { n - c.nonsensitive_new } else { 0 },
            already_counted_sensitive: if set.has_spi { n - c.sensitive_new } else { 0 },
        };
        let totals = WindowTotals { nonsensitive: c.nonsensitive_before, sensitive: c.sensitive_before };
        let d = policy::assess(&t, totals, &approvals, &gw.policy);
        let kept = counting == Counting::Commit && d.action == Action::Pass;
        let ledger = DecisionLedger { position: c.position, counted: kept, year };
        *assessed.lock().expect("not poisoned") = Some((d, t, ledger));
        kept
    };
    let count = PersonCount {
        exporter: &transfer.exporter.id,
        year,
        years_back: match transfer.ruleset {
            Ruleset::Cn2024 => gw.policy.cn2024_window_years_back,
            Ruleset::Cn2022 => gw.policy.cn2022_window_years_back,
        } as i32,
        nonsensitive: set.has_pi.then_some(&persons[..]),
        sensitive: set.has_spi.then_some(&persons[..]),
    };
    gw.store.count_persons(&count, &keep).await?;
    let (decision, transfer, ledger) = assessed
        .into_inner()
        .expect("not poisoned")
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("the ledger did not consult the rules")))?;
    Ok(Assessed { decision, transfer, ledger: Some(ledger), rows: selected, facts })
}

/// The holds of `grant` for `mechanism` that are about the same shape as `review` — the same
/// fields read by the rules — oldest first: one review item per (grant, shape, mechanism).
async fn holds_of_shape(
    gw: &Gateway,
    grant: &str,
    mechanism: &str,
    review: &HoldReview,
) -> Result<Vec<Hold>, ServiceError> {
    let fields = serde_json::to_value(&review.fields).map_err(|e| ServiceError::Internal(e.into()))?;
    Ok(gw.store.holds_for(grant, mechanism).await?.into_iter().filter(|h| h.body["fields"] == fields).collect())
}

/// The refusal that still stands among `holds`: the latest refused one, resolved since the grant
/// was last decided (deciding the grant again starts over; at the same instant, it stands).
fn standing_refusal<'a>(holds: &'a [Hold], grant: &Grant) -> Option<&'a Hold> {
    holds
        .iter()
        .filter(|h| h.status == HoldStatus::Refused)
        .filter(|h| match (h.resolved_at, grant.decided_at) {
            // Stored times keep microseconds; a grant's body may carry nanoseconds.
            (Some(refused), Some(decided)) => refused.timestamp_micros() >= decided.timestamp_micros(),
            _ => true,
        })
        .max_by_key(|h| h.resolved_at)
}

/// The error of a pull an officer's refusal still refuses.
fn refused_by(hold: &Hold) -> ServiceError {
    ServiceError::PermissionDenied(format!(
        "hold {} was refused by {}: {}; the same transfer stays refused until a new grant is approved or an approval recorded after the refusal covers it",
        hold.id,
        hold.resolved_by.as_ref().map_or("an officer", |p| p.as_str()),
        hold.reason
    ))
}

/// A pull the rules pass on an approval: refused when an officer refused the same (grant,
/// shape, mechanism) after that approval was recorded; otherwise every open hold of it is closed
/// as `RELEASED` with the approval's id (each its own log record).
///
/// # Errors
/// `PermissionDenied` naming the standing refusal.
pub async fn release_holds(
    gw: &Gateway,
    caller: &Caller,
    grant: &Grant,
    transfer_id: &str,
    transfer: &Transfer,
    decision: &Decision,
) -> Result<(), ServiceError> {
    let Some(used) = decision.approval.as_ref().filter(|a| a.check == policy::ApprovalCheck::Valid) else {
        return Ok(());
    };
    let review = HoldReview::new(transfer_id, &transfer.fields, decision);
    let holds = holds_of_shape(gw, &grant.id, decision.mechanism.as_str(), &review).await?;
    if let Some(refused) = standing_refusal(&holds, grant) {
        let recorded = gw.store.approval(&used.id).await?.map(|a| a.recorded_at);
        if recorded.is_none_or(|at| refused.resolved_at.is_some_and(|r| at <= r)) {
            return Err(refused_by(refused));
        }
    }
    for mut hold in holds.into_iter().filter(|h| h.status == HoldStatus::Open) {
        hold.status = HoldStatus::Released;
        hold.approval_id = Some(used.id.clone());
        hold.resolved_at = Some(gw.clock.now());
        hold.reason = format!("released by transfer {transfer_id}, which passed on approval {}", used.id);
        let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::HoldResolved(HoldResolved::from(&hold)));
        match gw.store.resolve_hold(&hold, &rec).await {
            // An officer (or another pull) resolved it meanwhile.
            Ok(_) | Err(crate::store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(hold = %hold.id, approval = %used.id, transfer = transfer_id, "hold released by a passing pull");
    }
    Ok(())
}

/// Queues a held transfer for the officers, or returns the open hold of the same (grant, shape,
/// mechanism) (a retry does not queue twice). Returns the hold's id.
///
/// # Errors
/// `PermissionDenied` when an officer refused the same (grant, shape, mechanism) since the
/// grant was last decided.
pub async fn queue_hold(
    gw: &Gateway,
    caller: &Caller,
    grant: &Grant,
    dataset: &Dataset,
    transfer_id: &str,
    transfer: &Transfer,
    decision: &Decision,
) -> Result<String, ServiceError> {
    let mechanism = decision.mechanism.as_str();
    // What the review queue shows of it: the hold's body, and members of its record.
    let review = HoldReview::new(transfer_id, &transfer.fields, decision);
    let holds = holds_of_shape(gw, &grant.id, mechanism, &review).await?;
    if let Some(refused) = standing_refusal(&holds, grant) {
        return Err(refused_by(refused));
    }
    if let Some(open) = holds.iter().find(|h| h.status == HoldStatus::Open) {
        return Ok(open.id.clone());
    }
    let hold = Hold {
        id: new_id("h-"),
        status: HoldStatus::Open,
        grant_id: grant.id.clone(),
        dataset: dataset.id.clone(),
        consumer: caller.participant.id.clone(),
        exporter: dataset.owner.clone(),
        mechanism: mechanism.to_owned(),
        body: review.to_json(),
        created_at: gw.clock.now(),
        resolved_by: None,
        resolved_at: None,
        reason: String::new(),
        approval_id: None,
    };
    let body = HoldQueued {
        hold: hold.id.clone(),
        grant: grant.id.clone(),
        dataset: dataset.id.clone(),
        consumer: caller.participant.id.clone(),
        review,
    };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::HoldQueued(body));
    gw.store.insert_hold(&hold, &rec).await?;
    gw.log.kick();
    tracing::info!(hold = %hold.id, transfer = transfer_id, mechanism, "transfer held for review");
    Ok(hold.id)
}
