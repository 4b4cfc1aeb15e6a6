//! `Catalog`: registering and reading classified datasets.

use tonic::{Request, Response, Status};

use super::convert::{dataset_id_in, dataset_in, dataset_out, receipt_text};
use super::identity::caller;
use crate::pb;
use crate::service::{catalog, Gateway, ServiceError};

/// The `bth.gateway.v1.Catalog` service.
#[derive(Debug, Clone)]
pub struct CatalogService(pub Gateway);

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogService {
    async fn register_dataset(
        &self,
        request: Request<pb::RegisterDatasetRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let caller = caller(&request)?;
        let d = dataset_in(&caller.participant.id, request.get_ref())?;
        let d = catalog::register(&self.0, &caller, d).await?;
        let view = catalog::DatasetView { dataset: d, is_owner: true, versions: Vec::new(), latest_version: 0 };
        Ok(Response::new(dataset_out(&view)))
    }

    async fn get_dataset(&self, request: Request<pb::GetDatasetRequest>) -> Result<Response<pb::Dataset>, Status> {
        let caller = caller(&request)?;
        let id = dataset_id_in("id", &request.get_ref().id)?;
        let view = catalog::get(&self.0, &caller, &id).await?;
        Ok(Response::new(dataset_out(&view)))
    }

    async fn set_table_rules(
        &self,
        request: Request<pb::SetTableRulesRequest>,
    ) -> Result<Response<pb::SetTableRulesResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = dataset_id_in("dataset_id", &r.dataset_id)?;
        let domestic = table_rules_in("domestic", r.domestic.as_ref())?;
        let export = table_rules_in("export", r.export.as_ref())?;
        let receipt = crate::service::tables::set_table_rules(&self.0, &caller, &dataset, domestic, export).await?;
        Ok(Response::new(pb::SetTableRulesResponse {
            receipt: receipt_text(receipt.as_ref()),
            record: super::convert::receipt_record(receipt.as_ref()),
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let after = if r.page_token.is_empty() { None } else { Some(dataset_id_in("page_token", &r.page_token)?) };
        let (views, next) = catalog::list(&self.0, &caller, after.as_ref(), r.page_size).await?;
        Ok(Response::new(pb::ListDatasetsResponse {
            datasets: views.iter().map(dataset_out).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }
}

/// One direction's table parameters from the wire; required.
fn table_rules_in(field: &str, r: Option<&pb::TableRules>) -> Result<crate::policy::TableRules, ServiceError> {
    let r = r.ok_or_else(|| ServiceError::invalid(field, "is required"))?;
    Ok(crate::policy::TableRules {
        min_frequency: r.min_frequency,
        zeros_unsafe: r.zeros_unsafe,
        p_percent: r.p_percent,
        dominance: r.dominance.as_ref().map(|d| [d.n, d.k]),
    })
}
