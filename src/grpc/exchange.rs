//! `Exchange`: pulls (header, batches, trailer) and previews.

use std::pin::Pin;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::convert::{dataset_id_in, decision_out, delivered_out, field_name_in, pull_header, record_id_in};
use super::identity::caller;
use crate::pb::{self, pull_response::Msg};
use crate::sdc::Status as CellState;
use crate::service::exchange::{self, Delivery, PullRequest};
use crate::service::tables::{self, DimensionSpec, Mode, Period, StatisticSpec, TableDelivery, TableRequest};
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
type TabulateStream = Pin<Box<dyn Stream<Item = Result<pb::TabulateResponse, Status>> + Send>>;

/// Most groups, children, filter categories or prefixes one dimension may name.
const MAX_NAMES: usize = 10_000;

fn names(field: &str, v: &[String]) -> Result<Vec<String>, ServiceError> {
    if v.len() > MAX_NAMES {
        return Err(ServiceError::invalid(field, format!("at most {MAX_NAMES}")));
    }
    Ok(v.to_vec())
}

pub(crate) fn table_request_in(r: &pb::TabulateRequest) -> Result<TableRequest, ServiceError> {
    let statistic = match pb::TableStatistic::try_from(r.statistic) {
        Ok(pb::TableStatistic::Count) => {
            if !r.measure.is_empty() {
                return Err(ServiceError::invalid("measure", "COUNT takes no measure"));
            }
            StatisticSpec::Count
        }
        Ok(pb::TableStatistic::Sum) => StatisticSpec::Sum(field_name_in("measure", &r.measure)?),
        Ok(pb::TableStatistic::Mean) => StatisticSpec::Mean(field_name_in("measure", &r.measure)?),
        Ok(pb::TableStatistic::Unspecified) | Err(_) => {
            return Err(ServiceError::invalid("statistic", "is required: one of COUNT, SUM, MEAN"))
        }
    };
    if r.dimensions.is_empty() || r.dimensions.len() > 4 {
        return Err(ServiceError::invalid(
            "dimensions",
            format!("a table has 1 to 4 dimensions, not {}", r.dimensions.len()),
        ));
    }
    let mut dimensions = Vec::new();
    for (i, d) in r.dimensions.iter().enumerate() {
        let at = format!("dimensions[{i}]");
        let period = match pb::DatePeriod::try_from(d.period) {
            Ok(pb::DatePeriod::Unspecified) => None,
            Ok(pb::DatePeriod::PeriodYear) => Some(Period::Year),
            Ok(pb::DatePeriod::PeriodQuarter) => Some(Period::Quarter),
            Ok(pb::DatePeriod::PeriodMonth) => Some(Period::Month),
            Err(_) => return Err(ServiceError::invalid(format!("{at}.period"), "unknown value")),
        };
        let groups = d
            .groups
            .iter()
            .enumerate()
            .map(|(j, g)| Ok((g.name.clone(), names(&format!("{at}.groups[{j}].children"), &g.children)?)))
            .collect::<Result<Vec<_>, ServiceError>>()?;
        if groups.len() > MAX_NAMES || d.prefixes.len() > 8 {
            return Err(ServiceError::invalid(format!("{at}.groups"), "too many groups or prefixes"));
        }
        dimensions.push(DimensionSpec {
            field: field_name_in(&format!("{at}.field"), &d.field)?,
            period,
            groups,
            prefixes: d.prefixes.iter().map(|&p| p as usize).collect(),
            filter: names(&format!("{at}.filter"), &d.filter)?,
        });
    }
    Ok(TableRequest {
        dataset: dataset_id_in("dataset_id", &r.dataset_id)?,
        version: (r.version != 0).then(|| position_in("version", r.version)).transpose()?,
        dimensions,
        statistic,
        grant: (!r.grant_id.is_empty())
            .then(|| record_id_in("grant_id", &r.grant_id).map(str::to_owned))
            .transpose()?,
        access_from_outside_mainland: r.access_from_outside_mainland,
    })
}

#[tonic::async_trait]
impl pb::exchange_server::Exchange for ExchangeService {
    type PullStream = PullStream;
    type TabulateStream = TabulateStream;

    async fn tabulate(&self, request: Request<pb::TabulateRequest>) -> Result<Response<TabulateStream>, Status> {
        use pb::tabulate_response::Msg as T;
        let caller = caller(&request)?;
        let req = table_request_in(request.get_ref())?;
        let plan = tables::tabulate(&self.0, &caller, &req, Mode::Release).await?;
        let receipt = plan.receipt.as_ref();
        let header = pb::TableHeader {
            table_id: plan.table_id.clone(),
            dataset_id: plan.dataset.id.to_string(),
            version: plan.version.version,
            dimensions: plan.dimensions.clone(),
            decision: Some(decision_out(&plan.decision)),
            decision_index: receipt.map_or(0, |r| r.index),
            decision_receipt: receipt.map(|r| r.text()).unwrap_or_default(),
            decision_record: receipt.map(|r| r.record.clone()).unwrap_or_default(),
        };
        let header = pb::TabulateResponse { msg: Some(T::Header(header)) };
        let rest = ReceiverStream::new(tables::deliver(&self.0, &caller, plan)).map(|d| {
            let msg = match d? {
                TableDelivery::Cells(cells) => {
                    T::Cells(pb::TableCells { cells: cells.iter().map(|c| c.to_pb()).collect() })
                }
                TableDelivery::Trailer { cells, published, sha256, receipt } => T::Trailer(pb::TableTrailer {
                    cells,
                    published,
                    sha256: hex::encode(sha256),
                    completion_index: receipt.index,
                    completion_receipt: receipt.text(),
                    completion_record: receipt.record.clone(),
                }),
            };
            Ok(pb::TabulateResponse { msg: Some(msg) })
        });
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(header)).chain(rest))))
    }

    async fn preview_tabulate(
        &self,
        request: Request<pb::TabulateRequest>,
    ) -> Result<Response<pb::PreviewTabulateResponse>, Status> {
        let caller = caller(&request)?;
        let req = table_request_in(request.get_ref())?;
        let plan = tables::tabulate(&self.0, &caller, &req, Mode::Preview).await?;
        let refused = plan.refused.clone().unwrap_or_default();
        let counts = |s| if refused.is_empty() { plan.count(s) } else { 0 };
        Ok(Response::new(pb::PreviewTabulateResponse {
            dataset_id: plan.dataset.id.to_string(),
            version: plan.version.version,
            decision: Some(decision_out(&plan.decision)),
            cells: plan.cells.len() as u64,
            published: counts(CellState::Published),
            primary: counts(CellState::Primary),
            secondary: counts(CellState::Secondary),
            refused,
        }))
    }

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
