//! Exchange: authorise a pull, assess it against the rules, record the decision, then deliver
//! the granted fields of a version masked, chunk by chunk, and record the completion.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::StreamExt;

use ring::digest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::assessment::{self, Counting, RowSelection};
use super::extract::{masked_chunks, ChunkPlan, Pace, Reader, Shape};
use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::dataset::{Dataset, FieldName, VersionInfo};
use crate::domain::grant::{Grant, GrantStatus, GrantUse};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{Participant, ParticipantStatus, Role};
use crate::domain::record::bodies::{self, DecisionField, TransferDecision};
use crate::domain::record::{shanghai, NewRecord, RecordBody, TransferAction, TransferFacets};
use crate::log::sequencer::Receipt;
use crate::policy::{self, Action, Decision, DecisionJson};
use crate::wire::RowBatch;

/// What a consumer asks to pull.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// The dataset.
    pub dataset: Option<DatasetId>,
    /// A pinned version; `None` = latest.
    pub version: Option<u64>,
    /// A subset of the granted fields; empty = all granted.
    pub fields: Vec<FieldName>,
    /// The first batch to send.
    pub from_batch: u64,
    /// Accessed from outside mainland China (an export whatever the recipient's region).
    pub access_from_outside_mainland: bool,
    /// The grant to use; `None` = the caller's usable grant on the dataset.
    pub grant: Option<String>,
}

/// Everything decided before the first row: what is delivered, how, and the rules' verdict.
#[derive(Debug, Clone)]
pub struct PullPlan {
    /// Names the transfer in the log and the header.
    pub transfer_id: String,
    /// The dataset.
    pub dataset: Dataset,
    /// The version delivered.
    pub version: VersionInfo,
    /// The grant used.
    pub grant: Grant,
    /// What is delivered of every chunk: columns, masks, row filter.
    pub shape: Shape,
    /// The rules' verdict.
    pub decision: Decision,
    /// What the rules read.
    pub transfer: policy::Transfer,
    /// The instant the rules used (under the exporter ledger's lock when persons were counted).
    pub at: DateTime<Utc>,
    /// Where the decision stands in the exporter's ledger; `None` when nobody was counted.
    pub ledger: Option<bodies::DecisionLedger>,
    /// Rows delivered (the grant's row filter applied), from batch 0.
    pub rows: u64,
    /// The facts the rules read, each with the leaf of its latest record.
    pub facts: Vec<bodies::FactCited>,
    /// First batch to send.
    pub from_batch: u64,
    recipient: Participant,
    exporter: Participant,
    access_from_outside_mainland: bool,
    /// The decision record's receipt, once recorded ([`authorize`]).
    pub receipt: Option<Receipt>,
    /// The recipient's place among its streaming pulls, held until the pull ends.
    slot: Option<Arc<PullSlot>>,
}

/// Pulls streaming in this process: how many per participant, and their transfer ids (a
/// decision without completion is only cut by a crash when its transfer is not among them).
#[derive(Debug, Default)]
pub struct PullSlots {
    per_participant: Mutex<HashMap<ParticipantId, usize>>,
    transfers: Mutex<HashSet<String>>,
}

/// One streaming pull of a participant; its place is given back when dropped.
#[derive(Debug)]
pub(super) struct PullSlot {
    slots: Arc<PullSlots>,
    participant: ParticipantId,
    transfer: Mutex<Option<String>>,
}

impl PullSlots {
    /// Takes one of `participant`'s `max` places.
    pub(super) fn take(self: &Arc<Self>, participant: &ParticipantId, max: usize) -> Result<PullSlot, ServiceError> {
        let mut counts = self.per_participant.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(participant.clone()).or_insert(0);
        if *n >= max {
            return Err(ServiceError::ResourceExhausted(format!(
                "{participant} already has {n} pulls streaming (max_pulls_per_participant = {max}); \
                 retry when one ends"
            )));
        }
        *n += 1;
        Ok(PullSlot { slots: self.clone(), participant: participant.clone(), transfer: Mutex::new(None) })
    }

    /// Whether `transfer` is streaming from this process.
    pub fn is_streaming(&self, transfer: &str) -> bool {
        self.transfers.lock().unwrap_or_else(|p| p.into_inner()).contains(transfer)
    }
}

impl PullSlot {
    /// Marks `transfer` as streaming until this slot is dropped.
    /// A slot streams one transfer: marking another (a table retried under a new id) unmarks
    /// the first.
    pub(super) fn streams(&self, transfer: &str) {
        let mut mine = self.transfer.lock().unwrap_or_else(|p| p.into_inner());
        let mut transfers = self.slots.transfers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = mine.replace(transfer.to_owned()) {
            transfers.remove(&before);
        }
        transfers.insert(transfer.to_owned());
    }
}

impl Drop for PullSlot {
    fn drop(&mut self) {
        if let Some(t) = self.transfer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.slots.transfers.lock().unwrap_or_else(|p| p.into_inner()).remove(&t);
        }
        let mut counts = self.slots.per_participant.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.participant) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.participant);
            }
        }
    }
}

/// Picks the grant a pull uses: the named one, or the caller's usable ROWS grant on the
/// dataset. A TABLES grant never releases a row.
async fn choose_grant(
    gw: &Gateway,
    caller: &Caller,
    dataset: &Dataset,
    named: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Grant, ServiceError> {
    choose_grant_for(gw, caller, dataset, named, now, GrantUse::Rows).await
}

/// The transfer the rules assess when `recipient` receives `fields` of `dataset` under `grant`
/// at `now` (no persons counted yet), with the dataset's owner: one description for pulls and
/// tables alike.
///
/// # Errors
/// `Internal` when the dataset's owner is not registered.
pub(crate) async fn transfer_of(
    gw: &Gateway,
    dataset: &Dataset,
    grant: &Grant,
    recipient: &crate::domain::participant::Participant,
    now: DateTime<Utc>,
    access_from_outside_mainland: bool,
    fields: Vec<policy::Field>,
) -> Result<(crate::domain::participant::Participant, policy::Transfer), ServiceError> {
    let exporter = gw.store.participant(&dataset.owner).await?.ok_or_else(|| {
        ServiceError::Internal(anyhow::anyhow!("owner {} of dataset {} is not registered", dataset.owner, dataset.id))
    })?;
    let transfer = policy::Transfer {
        ruleset: policy::Ruleset::default(),
        at: now.with_timezone(&shanghai()),
        exporter: policy::Exporter {
            id: exporter.id.to_string(),
            kind: exporter.kind,
            in_tianjin_ftz: exporter.in_tianjin_ftz,
        },
        recipient: policy::Recipient {
            id: recipient.id.to_string(),
            kind: recipient.recipient_type,
            region: recipient.region.clone(),
        },
        access_from_outside_mainland,
        government_data: dataset.government_data,
        purpose: grant.purpose.clone(),
        legal_basis: Some(grant.legal_basis.clone()).filter(|l| !l.trim().is_empty()),
        statistical_purpose: grant.statistical_purpose,
        exemption: policy::ExemptionClaim {
            exemption: grant.exemption,
            attested_by: grant.exemption_attested_by.as_ref().map(|p| p.to_string()),
        },
        fields,
        persons: policy::Persons::default(),
    };
    Ok((exporter, transfer))
}

/// Picks the grant of `usage` a transfer uses: the named one (refused when it is of the other
/// use), or the caller's latest usable grant of that use on the dataset.
pub(crate) async fn choose_grant_for(
    gw: &Gateway,
    caller: &Caller,
    dataset: &Dataset,
    named: Option<&str>,
    now: DateTime<Utc>,
    usage: GrantUse,
) -> Result<Grant, ServiceError> {
    let me = &caller.participant.id;
    let grants = match named {
        Some(id) => {
            let g = gw.store.grant(id).await?.ok_or_else(|| ServiceError::NotFound(format!("grant {id}")))?;
            if &g.consumer != me || g.dataset != dataset.id {
                return Err(ServiceError::PermissionDenied(format!(
                    "grant {id} is not a grant of {me} on dataset {}",
                    dataset.id
                )));
            }
            if g.usage != usage {
                return Err(ServiceError::PermissionDenied(match g.usage {
                    GrantUse::Tables => format!("grant {id} is a TABLES grant: it releases tables, never a row"),
                    GrantUse::Rows => format!("grant {id} is a ROWS grant: tables need a TABLES grant"),
                }));
            }
            vec![g]
        }
        None => gw.store.grants_of(me, &dataset.id).await?.into_iter().filter(|g| g.usage == usage).collect(),
    };
    if let Some(g) = grants.iter().rev().find(|g| g.is_usable(now)) {
        return Ok(g.clone());
    }
    let why = match grants.last() {
        None if usage == GrantUse::Rows => "no grant".to_owned(),
        None => format!("no {usage} grant"),
        Some(g) if g.status == GrantStatus::Approved => format!("grant {} expired", g.id),
        Some(g) => format!("grant {} is {}", g.id, g.status),
    };
    let verb = match usage {
        GrantUse::Rows => "pull",
        GrantUse::Tables => "tabulate",
    };
    Err(ServiceError::PermissionDenied(format!("{me} may not {verb} dataset {}: {why}", dataset.id)))
}

/// Authorises and assesses a pull without recording or counting anything.
///
/// # Errors
/// `PermissionDenied` without the consumer role, without a usable grant, or for a field not
/// granted; `NotFound` for an unknown dataset or version; `InvalidArgument` for a bad request.
pub async fn plan(
    gw: &Gateway,
    caller: &Caller,
    req: &PullRequest,
    counting: Counting,
) -> Result<PullPlan, ServiceError> {
    caller.require(Role::Consumer)?;
    let dataset_id = req.dataset.as_ref().ok_or_else(|| ServiceError::invalid("dataset_id", "is required"))?;
    let dataset =
        gw.store.dataset(dataset_id).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset_id}")))?;
    let now = gw.clock.now();
    let grant = choose_grant(gw, caller, &dataset, req.grant.as_deref(), now).await?;
    let version = gw.store.version(&dataset.id, req.version).await?.filter(super::review::is_released).ok_or_else(
        || match req.version {
            // A version in review or returned is, to a consumer, not there at all.
            Some(v) => ServiceError::NotFound(format!("version {v} of dataset {}", dataset.id)),
            None => ServiceError::NotFound(format!("a published version of dataset {}", dataset.id)),
        },
    )?;
    if req.from_batch > version.chunks {
        return Err(ServiceError::invalid(
            "from_batch",
            format!("version {} has {} batches", version.version, version.chunks),
        ));
    }
    let mut wanted = HashSet::new();
    for (i, f) in req.fields.iter().enumerate() {
        if grant.field(f).is_none() {
            return Err(ServiceError::PermissionDenied(format!("field `{f}` is not granted (fields[{i}])")));
        }
        if !wanted.insert(f) {
            return Err(ServiceError::invalid(format!("fields[{i}]"), format!("`{f}` is listed twice")));
        }
    }
    let recipient = caller.participant.clone();
    let shape = Shape::of(&dataset, &grant, &recipient, &wanted);
    // REDACT fields are not part of the transfer (docs/rules.md §1); DROP ones are gone already.
    let fields = shape
        .fields
        .iter()
        .filter(|f| !f.mask.removes_field())
        .map(|f| policy::Field { name: f.name.to_string(), classification: f.class })
        .collect();
    let (exporter, transfer) =
        transfer_of(gw, &dataset, &grant, &recipient, now, req.access_from_outside_mainland, fields).await?;
    let parties = assessment::Parties { exporter: &exporter, recipient: &recipient, dataset: &dataset, grant: &grant };
    let assessed = assessment::assess(
        gw,
        &transfer,
        parties,
        &version,
        &RowSelection { filter: shape.row_filter.as_ref() },
        counting,
    )
    .await?;
    Ok(PullPlan {
        transfer_id: new_id("t-"),
        dataset,
        version,
        grant,
        shape,
        decision: assessed.decision,
        at: assessed.transfer.at.with_timezone(&Utc),
        transfer: assessed.transfer,
        ledger: assessed.ledger,
        rows: assessed.rows,
        facts: assessed.facts,
        from_batch: req.from_batch,
        recipient,
        exporter,
        access_from_outside_mainland: req.access_from_outside_mainland,
        receipt: None,
        slot: None,
    })
}

/// The searchable facts of this transfer's records.
fn facets(plan: &PullPlan, action: TransferAction) -> TransferFacets {
    TransferFacets {
        transfer: plan.transfer_id.clone(),
        dataset: plan.dataset.id.to_string(),
        recipient: plan.recipient.id.to_string(),
        exporter: plan.exporter.id.to_string(),
        region: plan.recipient.region.to_string(),
        export: plan.decision.is_export(),
        mechanism: Some(plan.decision.mechanism),
        action,
    }
}

/// Why a planned pull may not proceed, if it may not; a held transfer joins the review queue.
async fn refusal(gw: &Gateway, caller: &Caller, plan: &PullPlan) -> Result<Option<ServiceError>, ServiceError> {
    let d = &plan.decision;
    let rules: Vec<String> = d.rules.iter().map(|r| r.to_string()).collect();
    Ok(match d.action {
        Action::Pass => {
            match assessment::release_holds(gw, caller, &plan.grant, &plan.transfer_id, &plan.transfer, d).await {
                Ok(()) => None,
                Err(e @ ServiceError::PermissionDenied(_)) => Some(e),
                Err(e) => return Err(e),
            }
        }
        Action::Block => Some(ServiceError::Blocked { message: format!("{} for this transfer", d.mechanism), rules }),
        Action::Hold => {
            let hold = match assessment::queue_hold(
                gw,
                caller,
                &plan.grant,
                &plan.dataset,
                &plan.transfer_id,
                &plan.transfer,
                d,
            )
            .await
            {
                Ok(hold) => hold,
                Err(e @ ServiceError::PermissionDenied(_)) => return Ok(Some(e)),
                Err(e) => return Err(e),
            };
            let needed: Vec<&str> =
                d.hold.as_ref().map_or(Vec::new(), |h| h.satisfied_by.iter().map(|t| t.as_str()).collect());
            Some(ServiceError::Held {
                hold,
                mechanism: d.mechanism.to_string(),
                message: format!("no applicable approval ({}) is recorded", needed.join(" or ")),
                rules,
            })
        }
    })
}

/// The decision record of docs/rules.md §6 (never any value of the data).
fn decision_record(plan: &PullPlan, caller: &Caller, refused: Option<&ServiceError>) -> NewRecord {
    let d = &plan.decision;
    let body = TransferDecision {
        transfer: plan.transfer_id.clone(),
        caller: bodies::DecisionCaller { id: caller.participant.id.clone(), cert_sha256: caller.cert_sha256.clone() },
        exporter: bodies::DecisionExporter::from(&plan.exporter),
        recipient: bodies::DecisionRecipient::new(&plan.recipient, plan.access_from_outside_mainland),
        dataset: plan.dataset.id.clone(),
        version: plan.version.version,
        version_sha256: plan.version.sha256,
        government_data: plan.dataset.government_data,
        grant: plan.grant.id.clone(),
        purpose: plan.grant.purpose.clone(),
        legal_basis: plan.grant.legal_basis.clone(),
        statistical_purpose: plan.grant.statistical_purpose,
        exemption: plan.transfer.exemption.exemption,
        exemption_attested_by: plan.transfer.exemption.attested_by.clone(),
        persons: bodies::DecisionPersons::from(&plan.transfer.persons),
        approval: d.approval.as_ref().map(bodies::DecisionApproval::from),
        fields: plan
            .shape
            .fields
            .iter()
            .map(|f| DecisionField::Delivered {
                name: f.name.clone(),
                level: f.class.level,
                pi: f.class.pi,
                stat_micro: f.class.stat_micro,
                share: f.class.share,
                ftz_negative_list: f.class.ftz_negative_list,
                mask: f.mask,
            })
            .chain(plan.shape.dropped.iter().cloned().map(DecisionField::Dropped))
            .collect(),
        rows: plan.rows,
        from_batch: plan.from_batch,
        ledger: plan.ledger,
        facts: plan.facts.clone(),
        ruleset: d.ruleset,
        decision: DecisionJson::from(d),
        outcome: match refused {
            None => "AUTHORISED".to_owned(),
            Some(e) => e.to_string(),
        },
    };
    let mut rec = NewRecord::new(caller.actor(), plan.at, RecordBody::TransferDecision(Box::new(body)));
    let action = if refused.is_some() && plan.decision.action == Action::Pass {
        TransferAction::Refused
    } else {
        plan.decision.action.into()
    };
    rec.facets = Some(facets(plan, action));
    rec
}

/// `PreviewPull`: what a pull would deliver and its decision. Records and counts nothing (a
/// refused preview is counted among the refused attempts, see [`super::maintenance`]).
pub async fn preview(gw: &Gateway, caller: &Caller, req: &PullRequest) -> Result<PullPlan, ServiceError> {
    let planned = plan(gw, caller, req, Counting::DryRun).await;
    if let Err(e) = &planned {
        gw.refusals.note(caller, req.dataset.as_ref(), e, gw.clock.now());
    }
    planned
}

/// One message of a pull's stream after the header.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A batch of masked rows.
    Batch(RowBatch),
    /// The end: what was delivered.
    Trailer(Completion),
}

/// What a completed pull delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Rows delivered.
    pub rows: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Encoded bytes of the delivered batches.
    pub bytes: u64,
    /// SHA-256 over the SHA-256 digests of the delivered batches' encodings, concatenated in
    /// order.
    pub sha256: [u8; 32],
    /// The completion record's receipt.
    pub receipt: Receipt,
}

/// Authorises a pull: plans it, records the decision (whatever it is) in the transfer log and
/// waits until it is integrated under a signed checkpoint, and refuses a transfer the rules hold
/// or block.
///
/// # Errors
/// As [`plan`]; `Held` (HOLD), `Blocked` (BLOCK) or `FailedPrecondition` (an export) naming the
/// rules; `Unavailable` when the decision cannot be logged — then nothing is sent (fail closed);
/// `ResourceExhausted` when the caller already has [`Limits::max_pulls_per_participant`] pulls
/// streaming.
///
/// [`Limits::max_pulls_per_participant`]: super::Limits::max_pulls_per_participant
pub async fn authorize(gw: &Gateway, caller: &Caller, req: &PullRequest) -> Result<PullPlan, ServiceError> {
    if let Err(e) = caller.require(Role::Consumer) {
        gw.refusals.note(caller, req.dataset.as_ref(), &e, gw.clock.now());
        return Err(e);
    }
    // No data leaves while the log goes unwitnessed beyond the policy (docs/witness.md).
    gw.witnessed().await?;
    let slot = gw.pulls.take(&caller.participant.id, gw.limits.max_pulls_per_participant)?;
    let mut plan = match plan(gw, caller, req, Counting::Commit).await {
        Ok(plan) => plan,
        Err(e) => {
            gw.refusals.note(caller, req.dataset.as_ref(), &e, gw.clock.now());
            return Err(e);
        }
    };
    // Before its decision is stored: maintenance never takes a streaming pull for a cut one.
    slot.streams(&plan.transfer_id);
    plan.slot = Some(Arc::new(slot));
    let refused = refusal(gw, caller, &plan).await?;
    let rec = decision_record(&plan, caller, refused.as_ref());
    plan.receipt = Some(gw.log.append(rec).await?);
    tracing::info!(
        transfer = %plan.transfer_id,
        dataset = %plan.dataset.id,
        version = plan.version.version,
        recipient = %plan.recipient.id,
        action = %plan.decision.action,
        refused = refused.is_some(),
        "pull assessed"
    );
    match refused {
        Some(e) => Err(e),
        None => Ok(plan),
    }
}

/// `work`, unless `watcher` says first that the pull was withdrawn (then why). `watcher` must not
/// be polled again once it has answered.
pub(super) async fn unless_withdrawn<T>(
    watcher: std::pin::Pin<&mut impl std::future::Future<Output = String>>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    tokio::select! {
        biased;
        why = watcher => Err(why),
        done = work => Ok(done),
    }
}

/// How often a streaming pull re-checks that it is still authorised.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Consecutive failed (or slower than [`RECHECK`]) re-checks after which a pull stops: it
/// cannot show it is still allowed.
const RECHECK_FAILURES: u32 = 5;

/// What a streaming transfer's authorisation rests on, re-checked while it streams (a pull's
/// or a table's).
#[derive(Debug, Clone)]
pub(super) struct Standing {
    /// The transfer (a pull's `t-…`, a table's `tb-…`).
    pub transfer: String,
    /// Its recipient, who must stay active.
    pub recipient: ParticipantId,
    /// Its grant, which must stay usable.
    pub grant: String,
    /// The approvals its decision used, which must not be revoked.
    pub approvals: Vec<String>,
}

impl Standing {
    /// The standing of a transfer decided by `decision`.
    pub(super) fn of(transfer: &str, recipient: &ParticipantId, grant: &str, decision: &Decision) -> Standing {
        let used = [&decision.approval, &decision.authority];
        Standing {
            transfer: transfer.to_owned(),
            recipient: recipient.clone(),
            grant: grant.to_owned(),
            approvals: used
                .into_iter()
                .flatten()
                .filter(|a| a.check == policy::ApprovalCheck::Valid)
                .map(|a| a.id.to_string())
                .collect(),
        }
    }
}

/// Why a running transfer may no longer proceed, if it may not: its recipient suspended, its
/// grant revoked or expired, or an approval its decision used revoked.
async fn withdrawn(gw: &Gateway, standing: &Standing) -> Result<Option<String>, ServiceError> {
    let recipient = gw.store.participant(&standing.recipient).await?;
    if recipient.is_none_or(|p| p.status != ParticipantStatus::Active) {
        return Ok(Some(format!("participant {} was suspended", standing.recipient)));
    }
    let grant = gw.store.grant(&standing.grant).await?;
    match grant {
        Some(g) if g.is_usable(gw.clock.now()) => {}
        Some(g) if g.status == GrantStatus::Approved => return Ok(Some(format!("grant {} expired", g.id))),
        Some(g) => return Ok(Some(format!("grant {} is {}", g.id, g.status))),
        None => return Ok(Some(format!("grant {} is gone", standing.grant))),
    }
    for a in &standing.approvals {
        if gw.store.approval(a).await?.is_none_or(|s| s.approval.revoked) {
            return Ok(Some(format!("approval {a} was revoked")));
        }
    }
    Ok(None)
}

/// Re-checks a running transfer every [`RECHECK`] until `done`; when it is withdrawn (or cannot
/// be re-checked [`RECHECK_FAILURES`] times in a row: fail closed) returns why.
pub(super) async fn watch_authorisation(gw: Gateway, standing: Standing, done: CancellationToken) -> Option<String> {
    let mut failures = 0;
    loop {
        tokio::select! {
            _ = done.cancelled() => return None,
            _ = tokio::time::sleep(RECHECK) => {}
        }
        let checked = tokio::time::timeout(RECHECK, withdrawn(&gw, &standing)).await.unwrap_or_else(|_| {
            Err(ServiceError::Unavailable(anyhow::anyhow!("the re-check took over a second").into()))
        });
        match checked {
            Ok(None) => failures = 0,
            Ok(Some(why)) => return Some(why),
            Err(e) => {
                failures += 1;
                tracing::warn!(transfer = %standing.transfer, error = %e, failures, "cannot re-check a running transfer");
                if failures >= RECHECK_FAILURES {
                    return Some("its authorisation cannot be re-checked".into());
                }
            }
        }
    }
}

/// Streams an authorised pull: one batch per stored chunk from `plan.from_batch`, then the
/// trailer. Runs in its own task; room for the next batch is reserved before the next chunk is
/// asked of [`masked_chunks`] (which reads, checks and masks two chunks at a time), so nothing
/// more is read or masked for a slow receiver; when the receiver goes away the pull is recorded
/// as cut. Every [`RECHECK`] the pull is checked again: once its recipient is suspended, its
/// grant revoked or expired, or an approval its decision used revoked, no further batch is sent,
/// the receiver gets `PermissionDenied` and the completion record says `REVOKED` with what was
/// sent. The trailer's digest is SHA-256 over the SHA-256 of each delivered batch, so a chunk
/// delivered as stored is hashed once (or not at all when it comes verified from the cache).
///
/// Chunks come as [`masked_chunks`] finds them: the recipient's prepared extract, the cached
/// verified version, the store; a whole version read from the store, and a whole extract masked
/// on the fly, are kept in the cache for the next pull.
pub fn deliver(gw: &Gateway, caller: &Caller, plan: PullPlan) -> mpsc::Receiver<Result<Delivery, ServiceError>> {
    // One batch waits for a slow receiver: a pull holds at most that beyond what is in flight.
    let (tx, rx) = mpsc::channel(1);
    let gw = gw.clone();
    let actor = caller.actor();
    tokio::spawn(async move {
        let done = CancellationToken::new();
        // Also when this task ends abnormally: the watcher (and the pull's slot it holds) ends.
        let _stop_watching = done.clone().drop_guard();
        let standing = Standing::of(&plan.transfer_id, &plan.recipient.id, plan.grant.id.as_str(), &plan.decision);
        let watcher = tokio::spawn(watch_authorisation(gw.clone(), standing, done.clone()));
        // Ends once: with why the pull was withdrawn (then the loop below stops at once).
        let mut watcher = std::pin::pin!(async move {
            watcher.await.ok().flatten().unwrap_or_else(|| "its authorisation cannot be re-checked".into())
        });
        let mut revoked: Option<String> = None;
        let mut digest = digest::Context::new(&digest::SHA256);
        let (mut rows, mut batches, mut bytes) = (0u64, 0u64, 0u64);
        let mut failure: Option<String> = None;
        let chunks = ChunkPlan {
            dataset: plan.dataset.clone(),
            version: plan.version.clone(),
            from: plan.from_batch,
            reader: Reader::Recipient { id: plan.recipient.id.clone(), shape: plan.shape.clone() },
        };
        let mut chunks = masked_chunks(&gw, chunks, Pace::Pull);
        loop {
            // Room for the next batch first, then the next chunk: while the recipient is slow
            // nothing more is read or masked for it.
            let permit = match unless_withdrawn(watcher.as_mut(), tx.reserve()).await {
                Err(why) => {
                    revoked = Some(why);
                    break;
                }
                Ok(permit) => permit,
            };
            let Ok(permit) = permit else {
                failure = Some("cut: the recipient went away".into());
                break;
            };
            let item = match unless_withdrawn(watcher.as_mut(), chunks.next()).await {
                Err(why) => {
                    revoked = Some(why);
                    break;
                }
                Ok(item) => item,
            };
            let Some(item) = item else { break };
            let out = match item {
                Ok(out) => out,
                Err(e) => {
                    failure = Some(e.to_string());
                    permit.send(Err(e));
                    break;
                }
            };
            digest.update(&out.sha256);
            bytes += out.data.len() as u64;
            rows += u64::from(out.rows);
            batches += 1;
            permit.send(Ok(Delivery::Batch(RowBatch::from_encoded(out.data))));
        }
        // A pull that stopped early keeps nothing in the cache.
        drop(chunks);
        if let Some(why) = &revoked {
            failure = Some(format!("REVOKED: {why}"));
        }
        done.cancel();
        let sha256: [u8; 32] = digest.finish().as_ref().try_into().expect("32 bytes");
        let mut rec = NewRecord::new(
            actor,
            gw.clock.now(),
            RecordBody::TransferCompleted(bodies::TransferCompleted {
                transfer: plan.transfer_id.clone(),
                dataset: plan.dataset.id.clone(),
                version: plan.version.version,
                recipient: plan.recipient.id.clone(),
                rows,
                batches,
                bytes,
                sha256,
                outcome: failure.as_deref().unwrap_or("COMPLETED").to_owned(),
            }),
        );
        let action = match (&revoked, &failure) {
            (Some(_), _) => TransferAction::Revoked,
            (None, Some(_)) => TransferAction::Cut,
            (None, None) => TransferAction::Completed,
        };
        rec.facets = Some(facets(&plan, action));
        let stored = gw.log.append(rec).await;
        tracing::info!(transfer = %plan.transfer_id, rows, bytes, %action, "pull ended");
        if let Some(why) = revoked {
            let stop = ServiceError::PermissionDenied(format!(
                "the pull was stopped after {batches} batches ({rows} rows): {why}"
            ));
            // A receiver that no longer reads does not keep this task alive.
            let _ = tokio::time::timeout(Duration::from_secs(30), tx.send(Err(stop))).await;
            return;
        }
        if failure.is_some() {
            return;
        }
        let msg = match stored {
            Ok(receipt) => Ok(Delivery::Trailer(Completion { rows, batches, bytes, sha256, receipt })),
            Err(e) => Err(ServiceError::from(e)),
        };
        let _ = tx.send(msg).await;
    });
    rx
}
