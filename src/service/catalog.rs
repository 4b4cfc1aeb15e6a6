//! The catalog: registering classified datasets and reading catalog entries.

use super::{Caller, Gateway, ServiceError};
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::ids::DatasetId;
use crate::domain::participant::Role;
use crate::domain::record::bodies::DatasetRegistered;
use crate::domain::record::{NewRecord, RecordBody};

/// Upper bound on one page of `ListDatasets`.
pub const MAX_PAGE: u32 = 500;

/// A catalog entry as the caller may see it.
#[derive(Debug, Clone)]
pub struct DatasetView {
    /// The dataset (trimmed to the public entry for non-owners by the adapter).
    pub dataset: Dataset,
    /// Whether the caller owns it (then it sees everything).
    pub is_owner: bool,
    /// Published versions, newest first (owner only; empty otherwise).
    pub versions: Vec<VersionInfo>,
    /// The latest version number, 0 when none.
    pub latest_version: u64,
}

/// Registers a dataset owned by the caller.
///
/// # Errors
/// `PermissionDenied` without the publisher role; `InvalidArgument` naming the field whose
/// classification, mask or name is wrong; `AlreadyExists` for a taken id.
pub async fn register(gw: &Gateway, caller: &Caller, mut d: Dataset) -> Result<Dataset, ServiceError> {
    caller.require(Role::Publisher)?;
    d.owner = caller.participant.id.clone();
    d.registered_at = gw.clock.now();
    d.validate().map_err(|e| ServiceError::invalid("fields", e))?;
    let rec =
        NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::DatasetRegistered(DatasetRegistered::from(&d)));
    gw.store.insert_dataset(&d, &rec).await?;
    gw.log.kick();
    tracing::info!(dataset = %d.id, owner = %d.owner, fields = d.fields.len(), "registered dataset");
    Ok(d)
}

/// The catalog entry of one dataset; every participant may read it.
pub async fn get(gw: &Gateway, caller: &Caller, id: &DatasetId) -> Result<DatasetView, ServiceError> {
    let dataset = gw.store.dataset(id).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {id}")))?;
    view(gw, caller, dataset).await
}

async fn view(gw: &Gateway, caller: &Caller, dataset: Dataset) -> Result<DatasetView, ServiceError> {
    let is_owner = dataset.owner == caller.participant.id;
    let versions = gw.store.versions(&dataset.id).await?;
    // What consumers see: versions in review or returned are listed to the owner only.
    let latest_version = versions.iter().find(|v| super::review::is_released(v)).map_or(0, |v| v.version);
    Ok(DatasetView { dataset, is_owner, versions: if is_owner { versions } else { Vec::new() }, latest_version })
}

/// One page of the catalog, ordered by id, starting after `after`.
///
/// # Errors
/// `InvalidArgument` for a page size above [`MAX_PAGE`].
pub async fn list(
    gw: &Gateway,
    caller: &Caller,
    after: Option<&DatasetId>,
    page_size: u32,
) -> Result<(Vec<DatasetView>, Option<DatasetId>), ServiceError> {
    let size = match page_size {
        0 => 100,
        n if n > MAX_PAGE => return Err(ServiceError::invalid("page_size", format!("at most {MAX_PAGE}"))),
        n => n,
    };
    let page = gw.store.datasets(after, size + 1).await?;
    let more = page.len() > size as usize;
    let mut views = Vec::with_capacity(page.len().min(size as usize));
    for d in page.into_iter().take(size as usize) {
        views.push(view(gw, caller, d).await?);
    }
    let next = if more { views.last().map(|v| v.dataset.id.clone()) } else { None };
    Ok((views, next))
}
