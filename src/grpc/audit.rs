//! `Audit`: checkpoints, entries, proofs and transfer records of the verifiable log.

use tonic::{Request, Response, Status};

use super::convert::{time_in, time_out};
use super::identity::caller;
use crate::domain::classification::UnknownName;
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::participant::Region;
use crate::domain::record::RecordKind;
use crate::pb;
use crate::service::audit::{self, TransferCursor};
use crate::service::{Gateway, ServiceError};
use crate::store::TransferFilter;
use crate::store::{StoredCheckpoint, StoredTransfer};

/// The `bth.gateway.v1.Audit` service.
#[derive(Debug, Clone)]
pub struct AuditService(pub Gateway);

fn checkpoint_out(c: StoredCheckpoint) -> pb::Checkpoint {
    pb::Checkpoint { tree_size: c.size, root_hash: c.root.to_vec(), note: c.note, signed_at: Some(time_out(c.at)) }
}

fn transfer_out(t: StoredTransfer) -> pb::TransferRecord {
    let f = t.facets;
    pb::TransferRecord {
        leaf_index: t.leaf_index,
        r#type: t.kind.to_string(),
        json: t.json,
        at: Some(time_out(t.at)),
        transfer_id: f.transfer,
        dataset_id: f.dataset,
        recipient: f.recipient,
        exporter: f.exporter,
        region: f.region,
        export: f.export,
        mechanism: f.mechanism.map_or_else(String::new, |m| m.to_string()),
        action: f.action.to_string(),
    }
}

/// A non-empty filter that must parse (as an id, a region, …) to match anything; refused naming
/// `field` when it does not.
fn parsed<T, E: ToString>(
    field: &str,
    s: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<String>, ServiceError> {
    if s.is_empty() {
        return Ok(None);
    }
    parse(s).map_err(|e| ServiceError::invalid(field, e.to_string()))?;
    Ok(Some(s.to_owned()))
}

fn transfer_query_in(r: &pb::ListTransfersRequest) -> Result<TransferFilter, ServiceError> {
    let kind = match r.r#type.as_str() {
        "" => None,
        s => match s.parse::<RecordKind>() {
            Ok(
                k @ (RecordKind::TransferDecision
                | RecordKind::TransferCompleted
                | RecordKind::AccessRefused
                | RecordKind::TableDecision
                | RecordKind::TableCompleted),
            ) => Some(k),
            _ => {
                return Err(ServiceError::invalid(
                    "type",
                    "must be transfer.decision, transfer.completed, access.refused, table.decision or \
                     table.completed",
                ))
            }
        },
    };
    let export = match pb::TransferDirection::try_from(r.direction) {
        Ok(pb::TransferDirection::Unspecified) => None,
        Ok(pb::TransferDirection::Export) => Some(true),
        Ok(pb::TransferDirection::Domestic) => Some(false),
        Err(_) => return Err(ServiceError::invalid("direction", "unknown value")),
    };
    Ok(TransferFilter {
        from: r.from.as_ref().map(|t| time_in("from", t)).transpose()?,
        to: r.to.as_ref().map(|t| time_in("to", t)).transpose()?,
        dataset: parsed("dataset_id", &r.dataset_id, DatasetId::parse)?,
        recipient: parsed("recipient", &r.recipient, ParticipantId::parse)?,
        exporter: parsed("exporter", &r.exporter, ParticipantId::parse)?,
        region: parsed("region", &r.region, Region::parse)?,
        export,
        mechanism: parsed("mechanism", &r.mechanism, |m| m.parse::<crate::policy::Mechanism>())?,
        action: (!r.action.is_empty())
            .then(|| r.action.parse().map_err(|e: UnknownName| ServiceError::invalid("action", e.to_string())))
            .transpose()?,
        kind,
        ..TransferFilter::default()
    })
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let found = match pb::CheckpointMatch::try_from(r.r#match) {
            Ok(pb::CheckpointMatch::Exact) => {
                audit::checkpoint(&self.0, &caller, (r.tree_size != 0).then_some(r.tree_size)).await?
            }
            Ok(pb::CheckpointMatch::FirstAtLeast) => audit::checkpoint_at_least(&self.0, &caller, r.tree_size).await?,
            Err(_) => return Err(ServiceError::invalid("match", "unknown value").into()),
        };
        Ok(Response::new(checkpoint_out(found)))
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let list = audit::checkpoints(&self.0, &caller, r.after_size, r.page_size).await?;
        Ok(Response::new(pb::ListCheckpointsResponse { checkpoints: list.into_iter().map(checkpoint_out).collect() }))
    }

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let page = audit::entries(&self.0, &caller, r.start, (r.end != 0).then_some(r.end), r.page_size).await?;
        Ok(Response::new(pb::GetEntriesResponse {
            entries: page
                .entries
                .into_iter()
                .map(|e| pb::Entry {
                    index: e.index,
                    r#type: e.kind.to_string(),
                    json: e.json,
                    leaf_hash: e.leaf_hash.to_vec(),
                })
                .collect(),
            next_start: page.next_start,
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let p =
            audit::inclusion_proof(&self.0, &caller, r.leaf_index, (r.tree_size != 0).then_some(r.tree_size)).await?;
        Ok(Response::new(pb::InclusionProof {
            leaf_index: p.index,
            tree_size: p.size,
            leaf_hash: p.leaf_hash.to_vec(),
            hashes: p.proof.iter().map(|h| h.to_vec()).collect(),
            root_hash: p.root.to_vec(),
            checkpoint: p.checkpoint.map(checkpoint_out),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let p = audit::consistency_proof(&self.0, &caller, r.old_size, (r.new_size != 0).then_some(r.new_size)).await?;
        Ok(Response::new(pb::ConsistencyProof {
            old_size: p.old_size,
            new_size: p.new_size,
            hashes: p.proof.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn list_transfers(
        &self,
        request: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let query = transfer_query_in(r)?;
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(TransferCursor::parse(token)?),
        };
        let page = audit::list_transfers(&self.0, &caller, query, r.page_size, after).await?;
        Ok(Response::new(pb::ListTransfersResponse {
            transfers: page.transfers.into_iter().map(transfer_out).collect(),
            next_page_token: page.next.map(|c| c.token()).unwrap_or_default(),
        }))
    }
}
