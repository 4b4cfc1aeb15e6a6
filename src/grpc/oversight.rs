//! `Oversight`: approvals, exemption attestations and the review queue of held transfers.

use chrono::NaiveDate;
use tonic::{Request, Response, Status};

use super::convert::{
    dataset_id_in, grant_out, participant_id_in, receipt_record, receipt_text, record_id_in, time_out,
};
use super::identity::caller;
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::participant::Region;
use crate::pb::{self, resolve_hold_request::Resolution as PbResolution};
use crate::policy::Scope;
use crate::service::oversight::{self, NewApproval, Resolution};
use crate::service::{Gateway, ServiceError};
use crate::store::{HoldFilter, StoredApproval};

/// The `bth.gateway.v1.Oversight` service.
#[derive(Debug, Clone)]
pub struct OversightService(pub Gateway);

fn day_in(field: &str, s: &str) -> Result<NaiveDate, ServiceError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| ServiceError::invalid(field, "must be a date YYYY-MM-DD"))
}

fn scope_in(s: Option<&pb::ApprovalScope>) -> Result<Scope, ServiceError> {
    let Some(s) = s else { return Ok(Scope::default()) };
    Ok(Scope {
        recipients: s
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| participant_id_in(&format!("scope.recipients[{i}]"), r).map(|id| id.to_string()))
            .collect::<Result<_, _>>()?,
        destinations: s
            .destinations
            .iter()
            .enumerate()
            .map(|(i, r)| Region::parse(r).map_err(|e| ServiceError::invalid(format!("scope.destinations[{i}]"), e)))
            .collect::<Result<_, _>>()?,
        purposes: s.purposes.clone(),
        max_persons_nonsensitive: s.max_persons_nonsensitive,
        max_persons_sensitive: s.max_persons_sensitive,
    })
}

fn approval_out(s: &StoredApproval) -> pb::Approval {
    let a = &s.approval;
    pb::Approval {
        id: a.id.clone(),
        r#type: a.kind.to_string(),
        exporter: a.exporter.clone(),
        reference: a.reference.clone(),
        issued: a.issued.to_string(),
        expires: a.expires.map(|d| d.to_string()).unwrap_or_default(),
        revoked: a.revoked,
        scope: Some(pb::ApprovalScope {
            recipients: a.scope.recipients.clone(),
            destinations: a.scope.destinations.iter().map(|r| r.to_string()).collect(),
            purposes: a.scope.purposes.clone(),
            max_persons_nonsensitive: a.scope.max_persons_nonsensitive,
            max_persons_sensitive: a.scope.max_persons_sensitive,
        }),
        recorded_by: s.recorded_by.clone(),
        recorded_at: Some(time_out(s.recorded_at)),
        revoked_by: s.revoked_by.clone().unwrap_or_default(),
        revoke_reason: s.revoke_reason.clone().unwrap_or_default(),
        confirmed_by: s.confirmed_by.clone().unwrap_or_default(),
        confirmed_at: s.confirmed_at.map(time_out),
        receipt: String::new(),
        record: String::new(),
    }
}

fn hold_out(h: &Hold, now: chrono::DateTime<chrono::Utc>) -> pb::Hold {
    pb::Hold {
        id: h.id.clone(),
        status: h.status.to_string(),
        grant_id: h.grant_id.clone(),
        dataset_id: h.dataset.to_string(),
        consumer: h.consumer.to_string(),
        exporter: h.exporter.to_string(),
        mechanism: h.mechanism.clone(),
        details_json: h.body.to_string(),
        created_at: Some(time_out(h.created_at)),
        resolved_by: h.resolved_by.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        resolved_at: h.resolved_at.map(time_out),
        reason: h.reason.clone(),
        approval_id: h.approval_id.clone().unwrap_or_default(),
        receipt: String::new(),
        record: String::new(),
        waited_seconds: oversight::waited(h, now).as_secs(),
    }
}

#[tonic::async_trait]
impl pb::oversight_server::Oversight for OversightService {
    async fn list_holds(
        &self,
        request: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let status = if r.status.is_empty() {
            None
        } else {
            Some(r.status.parse::<HoldStatus>().map_err(|e| ServiceError::invalid("status", e))?)
        };
        let now = self.0.clock.now();
        let min_age = i64::try_from(r.min_age_seconds)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| ServiceError::invalid("min_age_seconds", "too large"))?;
        let filter = HoldFilter {
            status,
            dataset: (!r.dataset_id.is_empty()).then(|| dataset_id_in("dataset_id", &r.dataset_id)).transpose()?,
            consumer: (!r.consumer.is_empty()).then(|| participant_id_in("consumer", &r.consumer)).transpose()?,
            exporter: (!r.exporter.is_empty()).then(|| participant_id_in("exporter", &r.exporter)).transpose()?,
            created_before: (r.min_age_seconds > 0).then(|| now - min_age),
        };
        let region = (!r.region.is_empty())
            .then(|| Region::parse(&r.region).map_err(|e| ServiceError::invalid("region", e)))
            .transpose()?;
        let holds = oversight::list_holds(&self.0, &caller, &filter, region.as_ref()).await?;
        Ok(Response::new(pb::ListHoldsResponse { holds: holds.iter().map(|h| hold_out(h, now)).collect() }))
    }

    async fn record_approval(
        &self,
        request: Request<pb::RecordApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let new = NewApproval {
            id: (!r.id.is_empty()).then(|| r.id.clone()),
            kind: r.r#type.parse().map_err(|e| ServiceError::invalid("type", e))?,
            exporter: participant_id_in("exporter", &r.exporter)?,
            reference: r.reference.clone(),
            issued: day_in("issued", &r.issued)?,
            expires: if r.expires.is_empty() { None } else { Some(day_in("expires", &r.expires)?) },
            scope: scope_in(r.scope.as_ref())?,
        };
        let (a, receipt) = oversight::record_approval(&self.0, &caller, new).await?;
        Ok(Response::new(pb::Approval {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..approval_out(&a)
        }))
    }

    async fn confirm_approval(
        &self,
        request: Request<pb::ConfirmApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = caller(&request)?;
        let id = record_id_in("id", &request.get_ref().id)?;
        let (a, receipt) = oversight::confirm_approval(&self.0, &caller, id).await?;
        Ok(Response::new(pb::Approval {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..approval_out(&a)
        }))
    }

    async fn revoke_approval(
        &self,
        request: Request<pb::RevokeApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let id = record_id_in("id", &r.id)?;
        let (a, receipt) = oversight::revoke_approval(&self.0, &caller, id, &r.reason).await?;
        Ok(Response::new(pb::Approval {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..approval_out(&a)
        }))
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let caller = caller(&request)?;
        let exporter = &request.get_ref().exporter;
        let exporter = if exporter.is_empty() { None } else { Some(participant_id_in("exporter", exporter)?) };
        let list = oversight::list_approvals(&self.0, &caller, exporter.as_ref().map(|e| e.as_str())).await?;
        Ok(Response::new(pb::ListApprovalsResponse { approvals: list.iter().map(approval_out).collect() }))
    }

    async fn resolve_hold(&self, request: Request<pb::ResolveHoldRequest>) -> Result<Response<pb::Hold>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let hold_id = record_id_in("hold_id", &r.hold_id)?;
        let resolution = match &r.resolution {
            Some(PbResolution::ReleaseWithApproval(a)) => {
                Resolution::Release { approval: record_id_in("release_with_approval", a)?.to_owned() }
            }
            Some(PbResolution::RefuseReason(reason)) => Resolution::Refuse { reason: reason.clone() },
            None => {
                return Err(
                    ServiceError::invalid("resolution", "release_with_approval or refuse_reason is required").into()
                )
            }
        };
        let (h, receipt) = oversight::resolve_hold(&self.0, &caller, hold_id, resolution).await?;
        Ok(Response::new(pb::Hold {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..hold_out(&h, self.0.clock.now())
        }))
    }

    async fn attest_exemption(
        &self,
        request: Request<pb::AttestExemptionRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let caller = caller(&request)?;
        let grant_id = record_id_in("grant_id", &request.get_ref().grant_id)?;
        let (g, receipt) = oversight::attest_exemption(&self.0, &caller, grant_id).await?;
        Ok(Response::new(pb::Grant {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..grant_out(&g)
        }))
    }

    async fn get_suppression_report(
        &self,
        request: Request<pb::GetSuppressionReportRequest>,
    ) -> Result<Response<pb::SuppressionReport>, Status> {
        let caller = caller(&request)?;
        let table = request.get_ref().table_id.as_str();
        if table.is_empty() || table.len() > 64 || !table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ServiceError::invalid("table_id", "is not a table id").into());
        }
        let r = crate::service::tables::suppression_report(&self.0, &caller, table).await?;
        Ok(Response::new(pb::SuppressionReport {
            table_id: table.to_owned(),
            dataset_id: r.dataset,
            recipient: r.recipient,
            report: r.report,
        }))
    }

    async fn set_ledger_scope(
        &self,
        request: Request<pb::SetLedgerScopeRequest>,
    ) -> Result<Response<pb::SetLedgerScopeResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let participant = participant_id_in("participant", &r.participant)?;
        let receipt =
            crate::service::tables::set_ledger_scope(&self.0, &caller, &participant, &r.scope, &r.reason).await?;
        Ok(Response::new(pb::SetLedgerScopeResponse {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
        }))
    }
}
