//! Oversight: officers record and revoke approvals, attest exemption claims and resolve the
//! held transfers in the review queue. Separation of duties: an officer never decides on a
//! transfer where its organisation is the exporter (the dataset's owner) or the recipient —
//! checked here when it records, revokes, resolves or attests, and again when an approval is
//! used (`assessment::usable_approvals`: one recorded by a party to the transfer never applies).

use chrono::NaiveDate;

use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::grant::Grant;
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::ParticipantId;
use crate::domain::participant::Region;
use crate::domain::participant::Role;
use crate::domain::record::bodies::{ApprovalConfirmed, ApprovalRecorded, ApprovalRevoked, GrantRecord, HoldResolved};
use crate::domain::record::{NewRecord, RecordBody};
use crate::log::sequencer::Receipt;
use crate::policy::{Approval, ApprovalType, Exemption, Scope};
use crate::store::{HoldFilter, StoredApproval};

/// Longest reason an officer gives, in bytes.
const REASON_MAX: usize = 1024;

/// What an officer records.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// Optional id; generated when `None`.
    pub id: Option<String>,
    /// The approval's type.
    pub kind: ApprovalType,
    /// The exporter it was granted to.
    pub exporter: ParticipantId,
    /// The authority's reference number.
    pub reference: String,
    /// First valid day.
    pub issued: NaiveDate,
    /// Last valid day; `None`: the rules' default.
    pub expires: Option<NaiveDate>,
    /// What it covers.
    pub scope: Scope,
}

/// How an officer resolves a hold.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Link the approval that releases it.
    Release {
        /// The approval's id.
        approval: String,
    },
    /// Refuse it.
    Refuse {
        /// Why.
        reason: String,
    },
}

fn require_reader(caller: &Caller) -> Result<(), ServiceError> {
    if caller.participant.has_role(Role::Officer) || caller.participant.has_role(Role::Auditor) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied(format!(
            "participant {} is neither officer nor auditor",
            caller.participant.id
        )))
    }
}

/// Records an approval; returns it with the receipt of its log record (`None` when that cannot be
/// produced in time: the approval is recorded either way).
///
/// # Errors
/// `PermissionDenied` without the officer role, or for an approval of the officer's own
/// organisation (as exporter or named as a recipient in the scope); `InvalidArgument` for a bad id, an unknown exporter or scope recipient, a blank
/// reference or an expiry before the issue date; `AlreadyExists` for a taken id.
pub async fn record_approval(
    gw: &Gateway,
    caller: &Caller,
    new: NewApproval,
) -> Result<(StoredApproval, Option<Receipt>), ServiceError> {
    caller.require(Role::Officer)?;
    if new.exporter == caller.participant.id {
        return Err(ServiceError::PermissionDenied(
            "an officer cannot record an approval for its own organisation".into(),
        ));
    }
    let id = match new.id {
        Some(id) => {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return Err(ServiceError::invalid("id", "1-64 characters of A-Z a-z 0-9 - _ ."));
            }
            id
        }
        None => new_id("a-"),
    };
    super::check_text("reference", &new.reference, true, 256)?;
    if new.expires.is_some_and(|e| e < new.issued) {
        return Err(ServiceError::invalid("expires", "is before issued"));
    }
    if gw.store.participant(&new.exporter).await?.is_none() {
        return Err(ServiceError::invalid("exporter", format!("no participant {}", new.exporter)));
    }
    // A scope naming a recipient that does not exist is a typo that would cover nobody (or,
    // once registered, someone the officer never meant): refused.
    for (i, recipient) in new.scope.recipients.iter().enumerate() {
        let field = format!("scope.recipients[{i}]");
        let id = ParticipantId::parse(recipient).map_err(|e| ServiceError::invalid(&field, e))?;
        if id == caller.participant.id {
            return Err(ServiceError::PermissionDenied(format!(
                "separation of duties: {field} names the officer's own organisation; an officer cannot approve transfers it receives"
            )));
        }
        if gw.store.participant(&id).await?.is_none() {
            return Err(ServiceError::invalid(field, format!("no participant {id}")));
        }
    }
    let approval = Approval {
        id,
        kind: new.kind,
        exporter: new.exporter.to_string(),
        reference: new.reference,
        issued: new.issued,
        expires: new.expires,
        revoked: false,
        scope: new.scope,
    };
    let stored = StoredApproval {
        approval,
        recorded_by: caller.actor(),
        recorded_at: gw.clock.now(),
        revoked_by: None,
        revoke_reason: None,
        confirmed_by: None,
        confirmed_at: None,
        record_seq: None,
    };
    let rec = NewRecord::new(
        caller.actor(),
        gw.clock.now(),
        RecordBody::ApprovalRecorded(ApprovalRecorded::from(&stored.approval)),
    );
    let seq = gw.store.insert_approval(&stored, &rec).await?;
    tracing::info!(approval = %stored.approval.id, kind = %stored.approval.kind, exporter = %stored.approval.exporter, "approval recorded");
    let receipt = super::audit::receipt_if_integrated(gw, seq).await;
    Ok((stored, receipt))
}

/// Revokes an approval: transfers it covered are held again from their next pull.
///
/// # Errors
/// `PermissionDenied` without the officer role, or for an approval whose exporter or a scope
/// recipient is the officer's organisation; `NotFound`; `FailedPrecondition` when already
/// revoked; `InvalidArgument` for a blank reason.
pub async fn revoke_approval(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    reason: &str,
) -> Result<(StoredApproval, Option<Receipt>), ServiceError> {
    caller.require(Role::Officer)?;
    super::check_text("reason", reason, true, REASON_MAX)?;
    let existing = gw.store.approval(id).await?;
    if let Some(a) = &existing {
        let me = caller.participant.id.as_str();
        if a.approval.exporter == me || a.approval.scope.recipients.iter().any(|r| r == me) {
            return Err(ServiceError::PermissionDenied(
                "separation of duties: an officer cannot revoke an approval of its own organisation's transfers".into(),
            ));
        }
    }
    let exporter = existing.map(|a| a.approval.exporter);
    let body = ApprovalRevoked { approval: id.to_owned(), reason: reason.to_owned(), exporter };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::ApprovalRevoked(body));
    let (a, seq) = gw
        .store
        .revoke_approval(id, &caller.participant.id, reason, gw.clock.now(), &rec)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("approval {id}")))?;
    tracing::info!(approval = id, "approval revoked");
    Ok((a, super::audit::receipt_if_integrated(gw, seq).await))
}

/// Confirms an approval another officer recorded (maker-checker, `[policy]
/// confirmed_approvals`); returns it with the receipt of the confirmation's log record.
///
/// # Errors
/// `PermissionDenied` without the officer role, for the officer who recorded it, or for an
/// approval whose exporter or a scope recipient is the officer's organisation; `NotFound`;
/// `FailedPrecondition` when its type needs no confirmation, or it is already confirmed or
/// revoked.
pub async fn confirm_approval(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<(StoredApproval, Option<Receipt>), ServiceError> {
    caller.require(Role::Officer)?;
    let a = gw.store.approval(id).await?.ok_or_else(|| ServiceError::NotFound(format!("approval {id}")))?;
    let me = caller.participant.id.as_str();
    if a.recorded_by == me {
        return Err(ServiceError::PermissionDenied(
            "maker-checker: the officer who recorded an approval cannot confirm it".into(),
        ));
    }
    if a.approval.exporter == me || a.approval.scope.recipients.iter().any(|r| r == me) {
        return Err(ServiceError::PermissionDenied(
            "separation of duties: an officer cannot confirm an approval of its own organisation's transfers".into(),
        ));
    }
    if !gw.policy.confirmed_approvals.contains(&a.approval.kind) {
        return Err(ServiceError::FailedPrecondition(format!(
            "a {} approval needs no confirmation ([policy] confirmed_approvals)",
            a.approval.kind
        )));
    }
    let body = ApprovalConfirmed {
        approval: id.to_owned(),
        approval_type: a.approval.kind,
        exporter: a.approval.exporter.clone(),
        recorded_by: a.recorded_by.clone(),
    };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::ApprovalConfirmed(body));
    let (a, seq) = gw
        .store
        .confirm_approval(id, &caller.participant.id, gw.clock.now(), &rec)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("approval {id}")))?;
    tracing::info!(approval = id, "approval confirmed");
    Ok((a, super::audit::receipt_if_integrated(gw, seq).await))
}

/// Approvals, optionally of one exporter.
pub async fn list_approvals(
    gw: &Gateway,
    caller: &Caller,
    exporter: Option<&str>,
) -> Result<Vec<StoredApproval>, ServiceError> {
    require_reader(caller)?;
    Ok(gw.store.approvals(exporter).await?)
}

/// Holds matching `filter` whose consumer is in `region` (any region when `None`), oldest
/// first; officers and auditors only.
pub async fn list_holds(
    gw: &Gateway,
    caller: &Caller,
    filter: &HoldFilter,
    region: Option<&Region>,
) -> Result<Vec<Hold>, ServiceError> {
    require_reader(caller)?;
    let holds = gw.store.holds(filter).await?;
    let Some(region) = region else { return Ok(holds) };
    let in_region: std::collections::HashSet<ParticipantId> =
        gw.store.participants().await?.into_iter().filter(|p| &p.region == region).map(|p| p.id).collect();
    Ok(holds.into_iter().filter(|h| in_region.contains(&h.consumer)).collect())
}

/// How long `hold` has waited for an officer at `now`: until `now` while open, until its
/// resolution otherwise.
pub fn waited(hold: &Hold, now: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    let until = match hold.status {
        HoldStatus::Open => now,
        _ => hold.resolved_at.unwrap_or(now),
    };
    (until - hold.created_at).to_std().unwrap_or_default()
}

/// Resolves an open hold.
///
/// # Errors
/// `PermissionDenied` without the officer role or when the officer is the consumer or the
/// dataset's owner (separation of duties); `NotFound`; `FailedPrecondition` when the hold is not
/// open, or the approval is revoked, of another exporter or of a type that does not satisfy the
/// hold's mechanism.
pub async fn resolve_hold(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    resolution: Resolution,
) -> Result<(Hold, Option<Receipt>), ServiceError> {
    caller.require(Role::Officer)?;
    let mut hold = gw.store.hold(id).await?.ok_or_else(|| ServiceError::NotFound(format!("hold {id}")))?;
    let me = &caller.participant.id;
    if &hold.consumer == me || &hold.exporter == me {
        return Err(ServiceError::PermissionDenied(
            "separation of duties: an officer cannot resolve a hold on a transfer where it is the consumer or the dataset's owner"
                .into(),
        ));
    }
    if hold.status != HoldStatus::Open {
        return Err(ServiceError::FailedPrecondition(format!("hold {id} is {}", hold.status)));
    }
    match resolution {
        Resolution::Refuse { reason } => {
            super::check_text("refuse_reason", &reason, true, REASON_MAX)?;
            hold.status = HoldStatus::Refused;
            hold.reason = reason;
        }
        Resolution::Release { approval } => {
            let stored = gw
                .store
                .approval(&approval)
                .await?
                .ok_or_else(|| ServiceError::invalid("release_with_approval", format!("no approval {approval}")))?;
            // The release is only worth something if the next pull can use the approval: the
            // same conditions as the rules' (logged, not by a party, confirmed when required,
            // in its validity period), so that a hold is never closed on one that will not apply.
            if super::facts::approval(gw, &stored).await?.is_none() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "approval {approval} differs from its log record and is not used"
                )));
            }
            let parties = [hold.exporter.as_str(), hold.consumer.as_str()];
            match crate::policy::approvals::usable(
                &stored.approval,
                &stored.recorded_by,
                stored.confirmed_by.as_deref(),
                parties,
                &gw.policy,
            ) {
                Ok(()) => {}
                Err(crate::policy::approvals::Unusable::ByAParty) => {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "approval {approval} was recorded or confirmed by a party to the transfer and is not used"
                    )))
                }
                Err(crate::policy::approvals::Unusable::Unconfirmed) => {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "approval {approval} awaits a second officer's confirmation (ConfirmApproval)"
                    )))
                }
            }
            let today = crate::policy::calendar::shanghai_date(gw.clock.now().fixed_offset());
            if !stored.approval.issued_by(today)
                || stored.approval.last_day(&gw.policy).is_some_and(|last| today > last)
            {
                return Err(ServiceError::FailedPrecondition(format!("approval {approval} is not valid today")));
            }
            let a = stored.approval;
            let satisfies: Vec<String> = hold.body["requirement"]["satisfied_by"]
                .as_array()
                .map(|v| v.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            if a.revoked {
                return Err(ServiceError::FailedPrecondition(format!("approval {approval} is revoked")));
            }
            if a.exporter != hold.exporter.as_str() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "approval {approval} was granted to {}, the exporter is {}",
                    a.exporter, hold.exporter
                )));
            }
            if !satisfies.iter().any(|t| t == a.kind.as_str()) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "a {} approval does not satisfy {} (needs {})",
                    a.kind,
                    hold.mechanism,
                    satisfies.join(" or ")
                )));
            }
            hold.status = HoldStatus::Released;
            hold.approval_id = Some(approval);
        }
    }
    hold.resolved_by = Some(me.clone());
    hold.resolved_at = Some(gw.clock.now());
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::HoldResolved(HoldResolved::from(&hold)));
    let seq = gw.store.resolve_hold(&hold, &rec).await?;
    tracing::info!(hold = %hold.id, status = %hold.status, "hold resolved");
    Ok((hold, super::audit::receipt_if_integrated(gw, seq).await))
}

/// Attests a grant's exemption claim.
///
/// # Errors
/// `PermissionDenied` without the officer role, or on the officer's own grant or dataset;
/// `NotFound`; `FailedPrecondition` when the grant claims no exemption or is already attested.
pub async fn attest_exemption(
    gw: &Gateway,
    caller: &Caller,
    grant_id: &str,
) -> Result<(Grant, Option<Receipt>), ServiceError> {
    caller.require(Role::Officer)?;
    let mut g = gw.store.grant(grant_id).await?.ok_or_else(|| ServiceError::NotFound(format!("grant {grant_id}")))?;
    let owner = gw.store.dataset(&g.dataset).await?.map(|d| d.owner);
    let me = &caller.participant.id;
    if &g.consumer == me || owner.as_ref() == Some(me) {
        return Err(ServiceError::PermissionDenied(
            "separation of duties: an officer cannot attest a claim on its own grant or dataset".into(),
        ));
    }
    if g.exemption == Exemption::None {
        return Err(ServiceError::FailedPrecondition(format!("grant {grant_id} claims no exemption")));
    }
    if g.exemption_attested_by.is_some() {
        return Err(ServiceError::FailedPrecondition(format!("grant {grant_id}'s claim is already attested")));
    }
    let status = g.status;
    g.exemption_attested_by = Some(me.clone());
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::ExemptionAttested(GrantRecord::from(&g)));
    let seq = gw.store.update_grant(&g, status, &rec).await?;
    Ok((g, super::audit::receipt_if_integrated(gw, seq).await))
}
