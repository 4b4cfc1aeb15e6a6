//! `Sharing`: grant requests, decisions, revocations.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use super::convert::{
    dataset_id_in, field_name_in, grant_out, grant_use_in, mask_in, names_in, receipt_record, receipt_text,
    record_id_in, row_filter_in, time_in,
};
use super::identity::caller;
use crate::pb::{self, decide_grant_request::Decision};
use crate::service::sharing::{self, Approval, GrantRequest};
use crate::service::{Gateway, ServiceError};

/// The `bth.gateway.v1.Sharing` service.
#[derive(Debug, Clone)]
pub struct SharingService(pub Gateway);

#[tonic::async_trait]
impl pb::sharing_server::Sharing for SharingService {
    async fn request_grant(&self, request: Request<pb::RequestGrantRequest>) -> Result<Response<pb::Grant>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let req = GrantRequest {
            dataset: dataset_id_in("dataset_id", &r.dataset_id)?,
            fields: r
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| field_name_in(&format!("fields[{i}]"), f))
                .collect::<Result<_, _>>()?,
            purpose: r.purpose.clone(),
            legal_basis: r.legal_basis.clone(),
            statistical_purpose: r.statistical_purpose,
            requested_expiry: r.requested_expiry.as_ref().map(|t| time_in("requested_expiry", t)).transpose()?,
            exemption: if r.exemption.is_empty() {
                crate::policy::Exemption::None
            } else {
                r.exemption.parse().map_err(|e| ServiceError::invalid("exemption", e))?
            },
            usage: grant_use_in("use", r.r#use)?,
            dimensions: names_in("dimensions", &r.dimensions)?,
            measures: names_in("measures", &r.measures)?,
        };
        let g = sharing::request(&self.0, &caller, req).await?;
        Ok(Response::new(grant_out(&g)))
    }

    async fn decide_grant(&self, request: Request<pb::DecideGrantRequest>) -> Result<Response<pb::Grant>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let grant_id = record_id_in("grant_id", &r.grant_id)?;
        let decision = match &r.decision {
            None => return Err(ServiceError::invalid("decision", "approve or refuse is required").into()),
            Some(Decision::Refuse(refuse)) => sharing::Decision::Refuse(refuse.reason.clone()),
            Some(Decision::Approve(a)) => {
                let mut masks = BTreeMap::new();
                for (name, mask) in &a.masks {
                    let at = format!("approve.masks[{name}]");
                    let field = field_name_in(&at, name)?;
                    let mask = mask_in(&at, Some(mask))?
                        .ok_or_else(|| ServiceError::invalid(&at, "a mask kind is required"))?;
                    masks.insert(field, mask);
                }
                sharing::Decision::Approve(Approval {
                    fields: a
                        .fields
                        .iter()
                        .enumerate()
                        .map(|(i, f)| field_name_in(&format!("approve.fields[{i}]"), f))
                        .collect::<Result<_, _>>()?,
                    masks,
                    row_filter: row_filter_in("approve.row_filter", a.row_filter.as_ref())?,
                    expires_at: a.expires_at.as_ref().map(|t| time_in("approve.expires_at", t)).transpose()?,
                })
            }
        };
        let (g, receipt) = sharing::decide(&self.0, &caller, grant_id, decision).await?;
        Ok(Response::new(pb::Grant {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..grant_out(&g)
        }))
    }

    async fn revoke_grant(&self, request: Request<pb::RevokeGrantRequest>) -> Result<Response<pb::Grant>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let grant_id = record_id_in("grant_id", &r.grant_id)?;
        let (g, receipt) = sharing::revoke(&self.0, &caller, grant_id, &r.reason).await?;
        Ok(Response::new(pb::Grant {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
            ..grant_out(&g)
        }))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = if r.dataset_id.is_empty() { None } else { Some(dataset_id_in("dataset_id", &r.dataset_id)?) };
        let grants = sharing::list(&self.0, &caller, dataset.as_ref()).await?;
        Ok(Response::new(pb::ListGrantsResponse { grants: grants.iter().map(grant_out).collect() }))
    }
}
