//! Sharing: consumers request grants on fields; owners approve (narrowing), refuse or revoke.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::dataset::{Dataset, FieldName, FieldType};
use crate::domain::grant::{Grant, GrantStatus, GrantUse, GrantedField, RowFilter, MAX_FILTER_VALUES};
use crate::domain::ids::DatasetId;
use crate::domain::mask::Mask;
use crate::domain::participant::Role;
use crate::domain::record::bodies::GrantRecord;
use crate::domain::record::{NewRecord, RecordBody};
use crate::log::sequencer::Receipt;

/// Upper bound on purpose, legal basis and reasons, in bytes.
const MAX_TEXT: usize = 1024;

/// What a consumer asks for.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// The dataset.
    pub dataset: DatasetId,
    /// The fields, at least one.
    pub fields: Vec<FieldName>,
    /// What for.
    pub purpose: String,
    /// The statutory duty relied on (rule D6).
    pub legal_basis: String,
    /// Statistical purpose (rule D2).
    pub statistical_purpose: bool,
    /// Requested expiry.
    pub requested_expiry: Option<DateTime<Utc>>,
    /// An exemption claim (docs/rules.md §3, E2/E3); it counts once an officer attests it.
    pub exemption: crate::policy::Exemption,
    /// Rows or tables.
    pub usage: GrantUse,
    /// TABLES: the dimension fields (categorical); empty for ROWS.
    pub dimensions: Vec<FieldName>,
    /// TABLES: the measure fields (numeric); empty for ROWS.
    pub measures: Vec<FieldName>,
}

/// Checks the fields a request names and returns what the grant covers: for ROWS the fields;
/// for TABLES the dimensions (STRING, INT64, BOOL, DATE) and measures (INT64, FLOAT64, DECIMAL),
/// with `fields` empty. A field is named once in all.
fn requested_fields(d: &Dataset, req: &GrantRequest) -> Result<Vec<FieldName>, ServiceError> {
    let mut seen = HashSet::new();
    let mut check = |list: &str, i: usize, f: &FieldName| -> Result<FieldType, ServiceError> {
        let def = d.field(f).ok_or_else(|| {
            ServiceError::invalid(format!("{list}[{i}]"), format!("`{f}` is not a field of dataset {}", d.id))
        })?;
        if !seen.insert(f.clone()) {
            return Err(ServiceError::invalid(format!("{list}[{i}]"), format!("`{f}` is listed twice")));
        }
        Ok(def.ty)
    };
    match req.usage {
        GrantUse::Rows => {
            if req.fields.is_empty() {
                return Err(ServiceError::invalid("fields", "at least one field is required"));
            }
            if !req.dimensions.is_empty() || !req.measures.is_empty() {
                return Err(ServiceError::invalid("dimensions", "only a TABLES grant names dimensions and measures"));
            }
            for (i, f) in req.fields.iter().enumerate() {
                check("fields", i, f)?;
            }
            Ok(req.fields.clone())
        }
        GrantUse::Tables => {
            if !req.fields.is_empty() {
                return Err(ServiceError::invalid(
                    "fields",
                    "a TABLES grant names dimensions and measures, not fields",
                ));
            }
            if req.dimensions.is_empty() {
                return Err(ServiceError::invalid("dimensions", "a TABLES grant needs at least one dimension"));
            }
            for (i, f) in req.dimensions.iter().enumerate() {
                let ty = check("dimensions", i, f)?;
                if !matches!(ty, FieldType::String | FieldType::Int64 | FieldType::Bool | FieldType::Date) {
                    return Err(ServiceError::invalid(
                        format!("dimensions[{i}]"),
                        format!("`{f}` is {ty}: a dimension is STRING, INT64, BOOL or DATE"),
                    ));
                }
            }
            for (i, f) in req.measures.iter().enumerate() {
                let ty = check("measures", i, f)?;
                if !matches!(ty, FieldType::Int64 | FieldType::Float64 | FieldType::Decimal) {
                    return Err(ServiceError::invalid(
                        format!("measures[{i}]"),
                        format!("`{f}` is {ty}, not numeric: a measure is INT64, FLOAT64 or DECIMAL"),
                    ));
                }
            }
            Ok(req.dimensions.iter().chain(&req.measures).cloned().collect())
        }
    }
}

/// The owner's approval, possibly narrowing the request.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    /// A subset of the requested fields; empty = all requested.
    pub fields: Vec<FieldName>,
    /// Stricter masks per field.
    pub masks: BTreeMap<FieldName, Mask>,
    /// Row restriction.
    pub row_filter: Option<RowFilter>,
    /// Expiry; defaults to the requested one and may not be later.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The owner's decision.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Approve, optionally narrowing.
    Approve(Approval),
    /// Refuse with a reason.
    Refuse(String),
}

fn check_text(field: &str, text: &str, required: bool) -> Result<(), ServiceError> {
    super::check_text(field, text, required, MAX_TEXT)
}

async fn dataset(gw: &Gateway, id: &DatasetId) -> Result<Dataset, ServiceError> {
    gw.store.dataset(id).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {id}")))
}

async fn grant(gw: &Gateway, id: &str) -> Result<Grant, ServiceError> {
    gw.store.grant(id).await?.ok_or_else(|| ServiceError::NotFound(format!("grant {id}")))
}

/// A consumer requests a grant.
///
/// # Errors
/// `PermissionDenied` without the consumer role; `NotFound` for an unknown dataset;
/// `InvalidArgument` for no fields, an unknown or repeated field, a blank purpose, or an
/// expiry in the past.
pub async fn request(gw: &Gateway, caller: &Caller, req: GrantRequest) -> Result<Grant, ServiceError> {
    caller.require(Role::Consumer)?;
    let d = dataset(gw, &req.dataset).await?;
    let fields = requested_fields(&d, &req)?;
    check_text("purpose", &req.purpose, true)?;
    check_text("legal_basis", &req.legal_basis, false)?;
    let now = gw.clock.now();
    if req.requested_expiry.is_some_and(|e| e <= now) {
        return Err(ServiceError::invalid("requested_expiry", "must be in the future"));
    }
    let g = Grant {
        id: new_id("g-"),
        dataset: d.id.clone(),
        consumer: caller.participant.id.clone(),
        fields: fields.into_iter().map(|name| GrantedField { name, mask: None }).collect(),
        purpose: req.purpose,
        legal_basis: req.legal_basis,
        statistical_purpose: req.statistical_purpose,
        status: GrantStatus::Pending,
        requested_expiry: req.requested_expiry,
        expires_at: None,
        row_filter: None,
        reason: String::new(),
        requested_at: now,
        decided_at: None,
        exemption: req.exemption,
        exemption_attested_by: None,
        usage: req.usage,
        dimensions: req.dimensions,
        measures: req.measures,
    };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::GrantRequested(GrantRecord::from(&g)));
    gw.store.insert_grant(&g, &rec).await?;
    gw.log.kick();
    tracing::info!(grant = %g.id, dataset = %g.dataset, consumer = %g.consumer, "grant requested");
    Ok(g)
}

/// The dataset's owner decides a pending grant.
///
/// # Errors
/// `PermissionDenied` unless the caller owns the dataset; `FailedPrecondition` unless the grant
/// is pending; `InvalidArgument` when the approval widens the request (a field not requested,
/// a mask less strict than the field's default, a later expiry) or names unknown fields.
pub async fn decide(
    gw: &Gateway,
    caller: &Caller,
    grant_id: &str,
    decision: Decision,
) -> Result<(Grant, Option<Receipt>), ServiceError> {
    caller.require(Role::Publisher)?;
    let mut g = grant(gw, grant_id).await?;
    let d = dataset(gw, &g.dataset).await?;
    if d.owner != caller.participant.id {
        return Err(ServiceError::PermissionDenied(format!("only the owner of dataset {} decides its grants", d.id)));
    }
    if g.status != GrantStatus::Pending {
        return Err(ServiceError::FailedPrecondition(format!("grant {} is {}, not PENDING", g.id, g.status)));
    }
    let now = gw.clock.now();
    let kind: fn(GrantRecord) -> RecordBody = match decision {
        Decision::Refuse(reason) => {
            check_text("refuse.reason", &reason, true)?;
            g.status = GrantStatus::Refused;
            g.reason = reason;
            RecordBody::GrantRefused
        }
        Decision::Approve(a) => {
            approve(&mut g, &d, a, now)?;
            RecordBody::GrantApproved
        }
    };
    g.decided_at = Some(now);
    let rec = NewRecord::new(caller.actor(), now, kind(GrantRecord::from(&g)));
    let seq = gw.store.update_grant(&g, GrantStatus::Pending, &rec).await?;
    tracing::info!(grant = %g.id, status = %g.status, "grant decided");
    // A TABLES grant releases no row: there is no extract to prepare.
    if g.status == GrantStatus::Approved && g.usage == GrantUse::Rows {
        super::extract::prepare_in_background(gw, g.clone());
    }
    Ok((g, super::audit::receipt_if_integrated(gw, seq).await))
}

fn approve(g: &mut Grant, d: &Dataset, a: Approval, now: DateTime<Utc>) -> Result<(), ServiceError> {
    if !a.fields.is_empty() {
        let mut seen = HashSet::new();
        for (i, f) in a.fields.iter().enumerate() {
            if g.field(f).is_none() {
                return Err(ServiceError::invalid(format!("approve.fields[{i}]"), format!("`{f}` was not requested")));
            }
            if !seen.insert(f) {
                return Err(ServiceError::invalid(format!("approve.fields[{i}]"), format!("`{f}` is listed twice")));
            }
        }
        g.fields.retain(|gf| a.fields.contains(&gf.name));
        g.dimensions.retain(|f| a.fields.contains(f));
        g.measures.retain(|f| a.fields.contains(f));
    }
    if g.usage == GrantUse::Tables {
        if g.dimensions.is_empty() {
            return Err(ServiceError::invalid("approve.fields", "a TABLES grant keeps at least one dimension"));
        }
        if !a.masks.is_empty() {
            return Err(ServiceError::invalid("approve.masks", "a TABLES grant releases no row: masks do not apply"));
        }
        if a.row_filter.is_some() {
            return Err(ServiceError::invalid(
                "approve.row_filter",
                "a TABLES grant releases no row: a table's categories are chosen by its filters",
            ));
        }
    }
    for (name, mask) in &a.masks {
        let field = d
            .field(name)
            .ok_or_else(|| ServiceError::invalid(format!("approve.masks[{name}]"), "not a field of the dataset"))?;
        let granted = g
            .fields
            .iter_mut()
            .find(|gf| &gf.name == name)
            .ok_or_else(|| ServiceError::invalid(format!("approve.masks[{name}]"), "the field is not granted"))?;
        mask.check_stricter_than(&field.default_mask, field.ty)
            .map_err(|e| ServiceError::invalid(format!("approve.masks[{name}]"), e))?;
        granted.mask = Some(*mask);
    }
    if let Some(filter) = &a.row_filter {
        if d.field(&filter.field).is_none() {
            return Err(ServiceError::invalid(
                "approve.row_filter.field",
                format!("`{}` is not a field of the dataset", filter.field),
            ));
        }
        if filter.values.is_empty() || filter.values.len() > MAX_FILTER_VALUES {
            return Err(ServiceError::invalid("approve.row_filter.values", format!("1 to {MAX_FILTER_VALUES} values")));
        }
        for (i, v) in filter.values.iter().enumerate() {
            check_text(&format!("approve.row_filter.values[{i}]"), v, false)?;
        }
    }
    let expires = a.expires_at.or(g.requested_expiry);
    if let Some(e) = expires {
        if e <= now {
            return Err(ServiceError::invalid("approve.expires_at", "must be in the future"));
        }
        if g.requested_expiry.is_some_and(|r| e > r) {
            return Err(ServiceError::invalid("approve.expires_at", "may not be later than the requested expiry"));
        }
    }
    g.expires_at = expires;
    g.row_filter = a.row_filter;
    g.status = GrantStatus::Approved;
    Ok(())
}

/// The owner or the consumer revokes a pending or approved grant.
///
/// # Errors
/// `PermissionDenied` for anyone else; `FailedPrecondition` for a refused or revoked grant.
pub async fn revoke(
    gw: &Gateway,
    caller: &Caller,
    grant_id: &str,
    reason: &str,
) -> Result<(Grant, Option<Receipt>), ServiceError> {
    check_text("reason", reason, false)?;
    let mut g = grant(gw, grant_id).await?;
    let d = dataset(gw, &g.dataset).await?;
    let me = &caller.participant.id;
    if &d.owner != me && &g.consumer != me {
        return Err(ServiceError::PermissionDenied(format!("only the owner or the consumer revokes grant {}", g.id)));
    }
    let before = g.status;
    if !matches!(before, GrantStatus::Pending | GrantStatus::Approved) {
        return Err(ServiceError::FailedPrecondition(format!("grant {} is {before}", g.id)));
    }
    g.status = GrantStatus::Revoked;
    g.reason = reason.to_owned();
    g.decided_at = Some(gw.clock.now());
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::GrantRevoked(GrantRecord::from(&g)));
    let seq = gw.store.update_grant(&g, before, &rec).await?;
    gw.chunk_cache.forget(&g.dataset, &g.consumer);
    tracing::info!(grant = %g.id, "grant revoked");
    Ok((g, super::audit::receipt_if_integrated(gw, seq).await))
}

/// Grants the caller is party to (as consumer or owner).
pub async fn list(gw: &Gateway, caller: &Caller, dataset: Option<&DatasetId>) -> Result<Vec<Grant>, ServiceError> {
    Ok(gw.store.grants_visible_to(&caller.participant.id, dataset).await?)
}
