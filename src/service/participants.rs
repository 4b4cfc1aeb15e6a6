//! Participant registry: register, suspend, list (admins over gRPC, or the offline CLI).

use super::{Caller, Gateway, ServiceError};
use crate::domain::classification::Level;
use crate::domain::ids::ParticipantId;
use crate::domain::participant::{Participant, ParticipantStatus, Role};
use crate::domain::record::bodies::{ParticipantRegistered, ParticipantSuspended};
use crate::domain::record::{NewRecord, RecordBody};

/// Registers `p` (status forced to `ACTIVE`), recording `actor` as the one who did it. Used by
/// the `Admin` service and by `participants add` on the database directly.
///
/// # Errors
/// `InvalidArgument` for a blank display name, no roles or clearance `X`; `AlreadyExists` for a
/// taken id.
pub async fn register_as(gw: &Gateway, actor: &str, mut p: Participant) -> Result<Participant, ServiceError> {
    super::check_text("participant.display_name", &p.display_name, true, 256)?;
    if p.clearance == Level::X {
        // Secret data never enters the gateway, so no participant is cleared to receive it.
        return Err(ServiceError::invalid(
            "participant.clearance",
            "X (secret) is not a clearance: secret data never enters the gateway; at most C",
        ));
    }
    if p.roles.is_empty() {
        return Err(ServiceError::invalid("participant.roles", "at least one role is required"));
    }
    p.status = ParticipantStatus::Active;
    let rec = NewRecord::new(actor, gw.clock.now(), RecordBody::ParticipantRegistered(ParticipantRegistered::from(&p)));
    gw.store.insert_participant(&p, &rec).await?;
    tracing::info!(participant = %p.id, actor, "registered participant");
    Ok(p)
}

/// Suspends a participant; it is refused from its next call on.
///
/// # Errors
/// `NotFound` when there is no such participant.
pub async fn suspend_as(
    gw: &Gateway,
    actor: &str,
    id: &ParticipantId,
    reason: &str,
) -> Result<Participant, ServiceError> {
    super::check_text("reason", reason, false, 1024)?;
    let rec = NewRecord::new(
        actor,
        gw.clock.now(),
        RecordBody::ParticipantSuspended(ParticipantSuspended { participant: id.clone(), reason: reason.to_owned() }),
    );
    let p = gw
        .store
        .set_participant_status(id, ParticipantStatus::Suspended, &rec)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("participant {id}")))?;
    tracing::info!(participant = %id, actor, "suspended participant");
    Ok(p)
}

/// `Admin.RegisterParticipant`: admins only.
pub async fn register(gw: &Gateway, caller: &Caller, p: Participant) -> Result<Participant, ServiceError> {
    caller.require(Role::Admin)?;
    let p = register_as(gw, &caller.actor(), p).await?;
    gw.log.kick();
    Ok(p)
}

/// `Admin.SuspendParticipant`: admins only; an admin cannot suspend itself (that would lock the
/// registry out).
pub async fn suspend(
    gw: &Gateway,
    caller: &Caller,
    id: &ParticipantId,
    reason: &str,
) -> Result<Participant, ServiceError> {
    caller.require(Role::Admin)?;
    if id == &caller.participant.id {
        return Err(ServiceError::FailedPrecondition("an admin cannot suspend itself".into()));
    }
    let p = suspend_as(gw, &caller.actor(), id, reason).await?;
    gw.log.kick();
    Ok(p)
}

/// `Admin.ListParticipants`: admins only.
pub async fn list(gw: &Gateway, caller: &Caller) -> Result<Vec<Participant>, ServiceError> {
    caller.require(Role::Admin)?;
    Ok(gw.store.participants().await?)
}
