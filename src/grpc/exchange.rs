//! `Exchange`: pulls (header, batches, trailer) and previews.

use std::pin::Pin;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::convert::{dataset_id_in, decision_out, delivered_out, field_name_in, pull_header, record_id_in};
use super::identity::caller;
use crate::pb::{self, pull_response::Msg};
use crate::service::exchange::{self, Delivery, PullRequest};
use crate::service::{Gateway, ServiceError};

/// The `bth.gateway.v1.Exchange` service.
#[derive(Debug, Clone)]
pub struct ExchangeService(pub Gateway);

/// Largest version or batch number a pull may name: the store keeps them as signed 64-bit
/// integers, and a larger number must not wrap around to a small one.
const MAX_POSITION: u64 = i64::MAX as u64;

fn position_in(field: &str, n: u64) -> Result<u64, ServiceError> {
    if n > MAX_POSITION {
        return Err(ServiceError::invalid(field, format!("must be at most {MAX_POSITION} (2^63 - 1)")));
    }
    Ok(n)
}

fn pull_request_in(r: &pb::PullRequest) -> Result<PullRequest, ServiceError> {
    Ok(PullRequest {
        dataset: Some(dataset_id_in("dataset_id", &r.dataset_id)?),
        version: (r.version != 0).then(|| position_in("version", r.version)).transpose()?,
        fields: r
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| field_name_in(&format!("fields[{i}]"), f))
            .collect::<Result<_, _>>()?,
        from_batch: position_in("from_batch", r.from_batch)?,
        access_from_outside_mainland: r.access_from_outside_mainland,
        // Empty: the caller's approved grant on the dataset (documented); otherwise well-formed.
        grant: (!r.grant_id.is_empty())
            .then(|| record_id_in("grant_id", &r.grant_id).map(str::to_owned))
            .transpose()?,
    })
}

type PullStream = Pin<Box<dyn Stream<Item = Result<pb::PullResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::exchange_server::Exchange for ExchangeService {
    type PullStream = PullStream;

    async fn pull(&self, request: Request<pb::PullRequest>) -> Result<Response<PullStream>, Status> {
        let caller = caller(&request)?;
        let req = pull_request_in(request.get_ref())?;
        let plan = exchange::authorize(&self.0, &caller, &req).await?;
        let header = pb::PullResponse { msg: Some(Msg::Header(pull_header(&plan))) };
        let rows = ReceiverStream::new(exchange::deliver(&self.0, &caller, plan)).map(|d| {
            let msg = match d? {
                Delivery::Batch(batch) => Msg::Batch(batch),
                Delivery::Trailer(c) => Msg::Trailer(pb::PullTrailer {
                    rows: c.rows,
                    batches: c.batches,
                    bytes: c.bytes,
                    sha256: hex::encode(c.sha256),
                    completion_index: c.receipt.index,
                    completion_receipt: c.receipt.text(),
                    completion_record: c.receipt.record.clone(),
                }),
            };
            Ok(pb::PullResponse { msg: Some(msg) })
        });
        let stream = tokio_stream::once(Ok(header)).chain(rows);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn preview_pull(
        &self,
        request: Request<pb::PullRequest>,
    ) -> Result<Response<pb::PreviewPullResponse>, Status> {
        let caller = caller(&request)?;
        let req = pull_request_in(request.get_ref())?;
        let plan = exchange::preview(&self.0, &caller, &req).await?;
        Ok(Response::new(pb::PreviewPullResponse {
            dataset_id: plan.dataset.id.to_string(),
            version: plan.version.version,
            fields: plan.shape.fields.iter().map(delivered_out).collect(),
            decision: Some(decision_out(&plan.decision)),
            rows: plan.version.rows,
        }))
    }
}
