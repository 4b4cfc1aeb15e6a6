//! `Reports`: standing reports.

use tonic::{Request, Response, Status};

use super::convert::{field_name_in, participant_id_in, receipt_record, receipt_text, time_out};
use super::exchange::table_request_in;
use super::identity::caller;
use crate::domain::record::bodies::{ReportRecipientRecord, ReportSlice};
use crate::pb;
use crate::service::reports::{self, KeptCell, ReportDefinition};
use crate::service::{Gateway, ServiceError};
use crate::store::StoredRun;

/// The `bth.gateway.v1.Reports` service.
#[derive(Debug, Clone)]
pub struct ReportsService(pub Gateway);

fn run_out(r: &StoredRun) -> pb::ReportRun {
    pb::ReportRun {
        report_id: r.report.clone(),
        period: r.period.clone(),
        recipient: r.recipient.to_string(),
        status: r.status.clone(),
        reason: r.reason.clone(),
        missed: r.missed,
        table_id: r.table_id.clone().unwrap_or_default(),
        version: r.version.unwrap_or(0),
        sha256: r.sha256.clone().unwrap_or_default(),
        claimed_at: Some(time_out(r.claimed_at)),
        cells: Vec::new(),
        receipt: String::new(),
        record: String::new(),
    }
}

fn cell_out(c: &KeptCell) -> pb::TableCell {
    let status = match c.status.as_str() {
        "PUBLISHED" => pb::CellStatus::Published,
        "PRIMARY" => pb::CellStatus::Primary,
        _ => pb::CellStatus::Secondary,
    };
    pb::TableCell { codes: c.codes.clone(), status: status as i32, value: c.value, contributors: c.contributors }
}

#[tonic::async_trait]
impl pb::reports_server::Reports for ReportsService {
    async fn define_report(
        &self,
        request: Request<pb::DefineReportRequest>,
    ) -> Result<Response<pb::DefineReportResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let table = r.table.as_ref().ok_or_else(|| ServiceError::invalid("table", "is required"))?;
        let table = table_request_in(table).map_err(|e| match e {
            ServiceError::InvalidArgument { field, message } => {
                ServiceError::invalid(format!("table.{field}"), message)
            }
            e => e,
        })?;
        let schedule = r.schedule.parse().map_err(|e| ServiceError::invalid("schedule", e))?;
        let recipients = r
            .recipients
            .iter()
            .enumerate()
            .map(|(i, rc)| {
                let at = format!("recipients[{i}]");
                Ok(ReportRecipientRecord {
                    participant: participant_id_in(&format!("{at}.participant"), &rc.participant)?,
                    slice: rc
                        .slice
                        .as_ref()
                        .map(|s| {
                            Ok::<_, ServiceError>(ReportSlice {
                                dimension: field_name_in(&format!("{at}.slice.dimension"), &s.dimension)?,
                                values: s.values.clone(),
                            })
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        let (id, receipt) = reports::define(&self.0, &caller, ReportDefinition { table, schedule, recipients }).await?;
        Ok(Response::new(pb::DefineReportResponse {
            report_id: id,
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
        }))
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let report = Some(r.report_id.as_str()).filter(|id| !id.is_empty());
        let runs = reports::runs(&self.0, &caller, report).await?;
        Ok(Response::new(pb::ListReportsResponse { runs: runs.iter().map(run_out).collect() }))
    }

    async fn get_report(&self, request: Request<pb::GetReportRequest>) -> Result<Response<pb::ReportRun>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        if r.report_id.is_empty() || r.period.is_empty() {
            return Err(ServiceError::invalid(
                if r.report_id.is_empty() { "report_id" } else { "period" },
                "is required",
            )
            .into());
        }
        let recipient = (!r.recipient.is_empty()).then(|| participant_id_in("recipient", &r.recipient)).transpose()?;
        let (run, receipt) = reports::run(&self.0, &caller, &r.report_id, &r.period, recipient.as_ref()).await?;
        let cells: Vec<KeptCell> = match &run.cells {
            Some(json) => serde_json::from_str(json).map_err(|_| {
                ServiceError::DataLoss(format!("the cells of run {} of report {}", run.period, run.report))
            })?,
            None => Vec::new(),
        };
        let mut out = run_out(&run);
        out.cells = cells.iter().map(cell_out).collect();
        out.receipt = receipt_text(receipt.as_ref());
        out.record = receipt_record(receipt.as_ref());
        Ok(Response::new(out))
    }
}
