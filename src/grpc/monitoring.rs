//! `Monitoring`: releases against their cadence, review backlogs, late regions.

use tonic::{Request, Response, Status};

use super::convert::{dataset_id_in, receipt_record, receipt_text, time_out};
use super::identity::caller;
use crate::pb;
use crate::service::monitoring::{self, DatasetHealth};
use crate::service::Gateway;

/// The `bth.gateway.v1.Monitoring` service.
#[derive(Debug, Clone)]
pub struct MonitoringService(pub Gateway);

fn health_out(h: &DatasetHealth) -> pb::DatasetHealth {
    pb::DatasetHealth {
        dataset_id: h.dataset.id.to_string(),
        owner: h.dataset.owner.to_string(),
        owner_region: h.owner_region.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        cadence: h.cadence.map(|c| c.to_string()).unwrap_or_default(),
        last_release_version: h.last_release.map_or(0, |(v, _)| v),
        last_released_at: h.last_release.map(|(_, at)| time_out(at)),
        next_due: h.next_due.map(time_out),
        late: h.late,
        backlog: h
            .backlog
            .iter()
            .map(|b| pb::LevelBacklog {
                level: b.level,
                jurisdiction: b.jurisdiction.to_string(),
                versions: b.versions,
                overdue: b.overdue,
            })
            .collect(),
        returned: h.returned,
    }
}

#[tonic::async_trait]
impl pb::monitoring_server::Monitoring for MonitoringService {
    async fn set_cadence(
        &self,
        request: Request<pb::SetCadenceRequest>,
    ) -> Result<Response<pb::SetCadenceResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = dataset_id_in("dataset_id", &r.dataset_id)?;
        let cadence = Some(r.cadence.as_str()).filter(|c| !c.is_empty());
        let receipt = monitoring::set_cadence(&self.0, &caller, &dataset, cadence).await?;
        Ok(Response::new(pb::SetCadenceResponse {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
        }))
    }

    async fn dataset_status(
        &self,
        request: Request<pb::DatasetStatusRequest>,
    ) -> Result<Response<pb::DatasetStatusResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = if r.dataset_id.is_empty() { None } else { Some(dataset_id_in("dataset_id", &r.dataset_id)?) };
        let health = monitoring::status(&self.0, &caller, dataset.as_ref(), r.late_only).await?;
        Ok(Response::new(pb::DatasetStatusResponse {
            datasets: health.iter().map(health_out).collect(),
            late_regions: monitoring::late_regions(&health)
                .into_iter()
                .map(|(region, datasets)| pb::LateRegion { region: region.to_string(), datasets })
                .collect(),
        }))
    }
}
