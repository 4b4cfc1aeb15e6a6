//! Review before release (docs/review.md): a dataset's owner sets the levels its versions go
//! through; reviewers of each level approve or return a version; consumers only ever see
//! released versions.

use chrono::{DateTime, Utc};

use super::extract::Shape;
use super::{check_text, Caller, Gateway, ServiceError};
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::{ParticipantStatus, Role};
use crate::domain::record::bodies::{ReviewPolicySet, VersionPreviewed, VersionReviewed};
use crate::domain::record::{NewRecord, RecordBody};
use crate::domain::review::{ReviewLevel, ReviewOutcome, ReviewPolicy, StepError, VersionStatus};
use crate::log::sequencer::Receipt;
use crate::store::StoreError;

/// Longest reasons a reviewer may give, in bytes.
pub const REASONS_MAX: usize = 4000;

/// The dataset `id`, which `caller` must own.
async fn owned(gw: &Gateway, caller: &Caller, id: &DatasetId) -> Result<Dataset, ServiceError> {
    let dataset = gw.store.dataset(id).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {id}")))?;
    if dataset.owner != caller.participant.id {
        return Err(ServiceError::PermissionDenied(format!(
            "only {}, the owner of dataset {id}, sets its review policy",
            dataset.owner
        )));
    }
    Ok(dataset)
}

/// Sets (or, with `None`, removes) the review policy of `dataset`: versions published from now
/// on are reviewed under it before consumers see them. Every reviewer must be an active
/// participant with the `reviewer` role registered in the level's jurisdiction, and not the
/// owner.
///
/// # Errors
/// `PermissionDenied` unless the caller owns the dataset; `InvalidArgument` naming the level or
/// reviewer at fault; `NotFound` for an unknown dataset.
pub async fn set_policy(
    gw: &Gateway,
    caller: &Caller,
    dataset: &DatasetId,
    policy: Option<ReviewPolicy>,
) -> Result<Option<Receipt>, ServiceError> {
    caller.require(Role::Publisher)?;
    let d = owned(gw, caller, dataset).await?;
    if let Some(p) = &policy {
        p.validate().map_err(|e| ServiceError::invalid(e.field(), e))?;
        for (i, level) in p.levels.iter().enumerate() {
            for (j, id) in level.reviewers.iter().enumerate() {
                check_reviewer(gw, &d, i, j, level, id).await?;
            }
        }
    }
    let body =
        ReviewPolicySet { dataset: d.id.clone(), levels: policy.as_ref().map_or_else(Vec::new, |p| p.levels.clone()) };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::ReviewPolicySet(body));
    let seq = gw.store.set_review_policy(&d.id, policy.as_ref(), &rec).await?;
    gw.log.kick();
    tracing::info!(dataset = %d.id, levels = policy.as_ref().map_or(0, |p| p.levels.len()), "review policy set");
    Ok(super::audit::receipt_if_integrated(gw, seq).await)
}

/// Reviewer `j` of level `i`: active, a `reviewer`, of the level's jurisdiction, not the owner.
async fn check_reviewer(
    gw: &Gateway,
    dataset: &Dataset,
    i: usize,
    j: usize,
    level: &ReviewLevel,
    id: &ParticipantId,
) -> Result<(), ServiceError> {
    let field = format!("levels[{i}].reviewers[{j}]");
    let p =
        gw.store.participant(id).await?.ok_or_else(|| ServiceError::invalid(&field, format!("no participant {id}")))?;
    let why = if p.status != ParticipantStatus::Active {
        Some(format!("{id} is suspended"))
    } else if !p.has_role(Role::Reviewer) {
        Some(format!("{id} does not hold the reviewer role"))
    } else if p.region != level.jurisdiction {
        Some(format!("{id} is registered in {}, not in the level's jurisdiction {}", p.region, level.jurisdiction))
    } else if p.id == dataset.owner {
        Some(format!("{id} owns the dataset; nobody reviews their own organisation's versions"))
    } else {
        None
    };
    why.map_or(Ok(()), |why| Err(ServiceError::invalid(field, why)))
}

/// A version awaiting review, as a reviewer's or officer's queue shows it (its level, reviewers
/// and deadline are its review's: [`crate::domain::review::VersionReview`]).
#[derive(Debug, Clone)]
pub struct Pending {
    /// The version (its review included).
    pub version: VersionInfo,
    /// The dataset's owner.
    pub owner: ParticipantId,
    /// When its current level is overdue (the order of the queue).
    pub due: DateTime<Utc>,
}

/// Which versions in review to list.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// Only this dataset's.
    pub dataset: Option<DatasetId>,
    /// Only those past their level's deadline.
    pub overdue_only: bool,
}

/// The versions awaiting review the caller may see, oldest deadline first: all of them for
/// officers and auditors, those awaiting its level for a reviewer, its own datasets' for an
/// owner.
///
/// # Errors
/// `PermissionDenied` without one of those roles.
pub async fn list(gw: &Gateway, caller: &Caller, filter: &ReviewFilter) -> Result<Vec<Pending>, ServiceError> {
    let me = &caller.participant;
    let overseer = me.has_role(Role::Officer) || me.has_role(Role::Auditor);
    if !overseer && !me.has_role(Role::Reviewer) && !me.has_role(Role::Publisher) {
        return Err(ServiceError::PermissionDenied(format!(
            "{} holds none of the roles that see reviews (officer, auditor, reviewer, publisher)",
            me.id
        )));
    }
    let now = gw.clock.now();
    let mut out = Vec::new();
    for v in gw.store.versions_in_review().await? {
        if filter.dataset.as_ref().is_some_and(|d| d != &v.dataset) {
            continue;
        }
        let (Some(review), Some(due)) = (&v.review, v.review.as_ref().and_then(|r| r.due())) else { continue };
        let level = review.level();
        let Some(current) = review.policy.levels.get(level as usize) else { continue };
        let Some(dataset) = gw.store.dataset(&v.dataset).await? else { continue };
        let visible =
            overseer || dataset.owner == me.id || (me.has_role(Role::Reviewer) && current.reviewers.contains(&me.id));
        if !visible || (filter.overdue_only && due > now) {
            continue;
        }
        out.push(Pending { owner: dataset.owner, due, version: v });
    }
    out.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.version.version_id().cmp(&b.version.version_id())));
    Ok(out)
}

/// `caller`, a reviewer of the current level, approves or returns version `version` of
/// `dataset`. The last level's approval releases it; a return is final.
///
/// # Errors
/// `PermissionDenied` for a caller who is not a reviewer of the current level, who reviewed the
/// version at another level, or whose organisation published it; `FailedPrecondition` when the
/// version is not in review or another step was taken meanwhile; `InvalidArgument` for a return
/// without reasons; `NotFound` for an unknown dataset or version.
pub async fn decide(
    gw: &Gateway,
    caller: &Caller,
    dataset: &DatasetId,
    version: u64,
    outcome: ReviewOutcome,
    reasons: &str,
) -> Result<(VersionInfo, Option<Receipt>), ServiceError> {
    caller.require(Role::Reviewer)?;
    check_text("reasons", reasons, false, REASONS_MAX)?;
    let d = gw.store.dataset(dataset).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset}")))?;
    let v = gw
        .store
        .version(dataset, Some(version))
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("version {version} of dataset {dataset}")))?;
    let Some(review) = &v.review else {
        return Err(ServiceError::FailedPrecondition(format!(
            "version {} was released when published: its dataset had no review policy",
            v.version_id()
        )));
    };
    let now = gw.clock.now();
    let after =
        review.step(&caller.participant.id, &v.publisher, &d.owner, outcome, reasons, now).map_err(|e| match e {
            StepError::NotInReview(_) => ServiceError::FailedPrecondition(format!("version {}: {e}", v.version_id())),
            StepError::NoReasons => ServiceError::invalid("reasons", "required to return a version"),
            _ => ServiceError::PermissionDenied(format!("version {}: {e}", v.version_id())),
        })?;
    let level = review.level();
    let body = VersionReviewed {
        dataset: v.dataset.clone(),
        version: v.version,
        level,
        jurisdiction: review.policy.levels[level as usize].jurisdiction.clone(),
        outcome,
        reasons: reasons.to_owned(),
        status: after.status(),
    };
    let rec = NewRecord::new(caller.actor(), now, RecordBody::VersionReviewed(body));
    let seq = match gw.store.review_version(&v, &after, &rec).await {
        Ok(seq) => seq,
        Err(StoreError::Conflict(_)) => {
            return Err(ServiceError::FailedPrecondition(format!(
                "the review of version {} changed meanwhile; list it again",
                v.version_id()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    gw.log.kick();
    let status = after.status();
    tracing::info!(version = %v.version_id(), level, %outcome, %status, "version reviewed");
    let v = VersionInfo { status, review: Some(after), ..v };
    Ok((v, super::audit::receipt_if_integrated(gw, seq).await))
}

/// Whether consumers may see `v`.
pub fn is_released(v: &VersionInfo) -> bool {
    v.status == VersionStatus::Released
}

/// Most rows a preview sends (whole batches: up to one batch more).
pub const PREVIEW_MAX_ROWS: u32 = 1000;

/// What a preview sends: the delivered fields and the first batches, after its record.
#[derive(Debug)]
pub struct Preview {
    /// The version.
    pub version: VersionInfo,
    /// The fields sent, with their masks.
    pub shape: Shape,
    /// The first batches, masked.
    pub batches: Vec<crate::wire::RowBatch>,
    /// Rows in them.
    pub rows: u64,
    /// The `version.previewed` record's receipt.
    pub receipt: Receipt,
}

/// The first `max_rows` rows (0: 100; whole batches) of version `version` of `dataset`, every
/// field masked by its default mask for the caller's clearance: for its owner (whatever its
/// status), or, while it is in review, a reviewer of its current level. The `version.previewed` record is integrated before
/// anything is returned.
///
/// # Errors
/// `PermissionDenied` for anyone else; `InvalidArgument` for `max_rows` above
/// [`PREVIEW_MAX_ROWS`]; `NotFound` for an unknown dataset or version; `Unavailable` when the
/// record cannot be logged (nothing is sent); `ResourceExhausted` over the caller's pull cap.
pub async fn preview(
    gw: &Gateway,
    caller: &Caller,
    dataset: &DatasetId,
    version: u64,
    max_rows: u32,
) -> Result<Preview, ServiceError> {
    use futures::StreamExt;

    use super::extract::{masked_chunks, ChunkPlan, Pace, Reader};

    let max_rows = match max_rows {
        0 => 100,
        n if n > PREVIEW_MAX_ROWS => {
            return Err(ServiceError::invalid("max_rows", format!("at most {PREVIEW_MAX_ROWS}")));
        }
        n => n,
    };
    let me = &caller.participant;
    let d = gw.store.dataset(dataset).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset}")))?;
    let v = gw
        .store
        .version(dataset, Some(version))
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("version {version} of dataset {dataset}")))?;
    // A reviewer of the level now reviewing it, while it is in review; the owner at any time.
    let current = v
        .review
        .as_ref()
        .filter(|_| v.status == VersionStatus::InReview)
        .and_then(|r| r.policy.levels.get(r.level() as usize));
    let seen_as = if d.owner == me.id && me.has_role(Role::Publisher) {
        "owner"
    } else if let Some(level) = current.filter(|l| l.reviewers.contains(&me.id) && me.has_role(Role::Reviewer)) {
        // Still what the level requires (active, of its jurisdiction): checked now, not only
        // when the policy was set.
        if me.region != level.jurisdiction {
            return Err(ServiceError::PermissionDenied(format!(
                "{} is no longer registered in the level's jurisdiction {}",
                me.id, level.jurisdiction
            )));
        }
        "reviewer"
    } else {
        return Err(ServiceError::PermissionDenied(format!(
            "only the owner of dataset {dataset} and, while version {version} is in review, the reviewers of its current level may preview it"
        )));
    };
    // No data leaves while the log goes unwitnessed beyond the policy (docs/witness.md), and
    // only on facts the log supports.
    gw.witnessed().await?;
    if super::facts::participant(gw, me).await?.is_none() || super::facts::version(gw, &v).await?.is_none() {
        return Err(ServiceError::PermissionDenied(format!(
            "{} or version {} differs from its log records; the preview is refused and the officers are alerted in the gateway's log",
            me.id,
            v.version_id()
        )));
    }
    let _slot = gw.pulls.take(&me.id, gw.limits.max_pulls_per_participant)?;
    let shape = Shape::for_review(&d, me);
    let plan = ChunkPlan {
        dataset: d.clone(),
        version: v.clone(),
        from: 0,
        reader: Reader::Recipient { id: me.id.clone(), shape: shape.clone() },
    };
    let mut chunks = masked_chunks(gw, plan, Pace::Pull);
    let (mut batches, mut rows, mut digests) = (Vec::new(), 0u64, ring::digest::Context::new(&ring::digest::SHA256));
    while rows < u64::from(max_rows) {
        let Some(chunk) = chunks.next().await else { break };
        let chunk = chunk?;
        rows += u64::from(chunk.rows);
        digests.update(&chunk.sha256);
        batches.push(crate::wire::RowBatch::from_encoded(chunk.data));
    }
    drop(chunks);
    let body = VersionPreviewed {
        dataset: d.id.clone(),
        version: v.version,
        status: v.status,
        seen_as: seen_as.to_owned(),
        fields: shape
            .fields
            .iter()
            .map(|f| crate::domain::record::bodies::GrantRecordField { name: f.name.clone(), mask: Some(f.mask) })
            .collect(),
        rows,
        sha256: hex::encode(digests.finish()),
    };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::VersionPreviewed(body));
    let receipt = gw.log.append(rec).await?;
    tracing::info!(version = %v.version_id(), caller = %me.id, seen_as, rows, "version previewed");
    Ok(Preview { version: v, shape, batches, rows, receipt })
}
