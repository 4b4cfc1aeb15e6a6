//! Standing reports (docs/reports.md): a table defined once, produced for each recipient on a
//! schedule from the latest released version — assessed, protected against that recipient's
//! release ledger and logged exactly like a `Tabulate` — and kept for the recipient to fetch.
//!
//! A due period is claimed in one transaction with its runs (one replica claims it; none twice);
//! a run left `PENDING` by a stopped claimer is claimed again after [`LEASE`]; a missed run is
//! caught up once, the periods skipped counted in its record.

use chrono::{DateTime, Duration, Utc};

use super::tables::{self, Mode, TableRequest};
use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::ids::ParticipantId;
use crate::domain::participant::{ParticipantStatus, Role};
use crate::domain::record::bodies::{ReportDefined, ReportFetched, ReportRecipientRecord, ReportRun};
use crate::domain::record::{NewRecord, RecordBody};
use crate::domain::schedule::{self, Period, Schedule};
use crate::log::sequencer::Receipt;
use crate::sdc::Status;
use crate::store::{StoreError, StoredReport, StoredRun};

/// Most recipients one report may name.
pub const MAX_RECIPIENTS: usize = 100;
/// Most categories one recipient's slice may keep.
pub const MAX_SLICE_VALUES: usize = 100;
/// How long a claimed run may stay `PENDING` before another replica claims it again.
pub const LEASE: Duration = Duration::minutes(10);

/// What an officer or a dataset's owner asks for.
#[derive(Debug, Clone)]
pub struct ReportDefinition {
    /// The table (its dataset is the report's; no pinned version, no grant: each recipient's).
    pub table: TableRequest,
    /// When it runs.
    pub schedule: Schedule,
    /// Who gets it, and which slice.
    pub recipients: Vec<ReportRecipientRecord>,
}

/// A stored report, parsed.
#[derive(Debug, Clone)]
pub struct Report {
    /// `r-…`.
    pub id: String,
    /// Who defined it.
    pub definer: ParticipantId,
    /// What it produces.
    pub definition: ReportDefinition,
    /// When it was defined.
    pub defined_at: DateTime<Utc>,
    /// On-release: the latest released version when defined (only later ones are due).
    pub latest_at_definition: Option<u64>,
    /// The last period claimed.
    pub last_period: Option<Period>,
}

impl TryFrom<StoredReport> for Report {
    type Error = ServiceError;

    fn try_from(r: StoredReport) -> Result<Report, ServiceError> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| ServiceError::DataLoss(format!("report {}: {what}: {e}", r.id));
        Ok(Report {
            definition: ReportDefinition {
                table: serde_json::from_str(&r.request).map_err(|e| corrupt("table", &e))?,
                schedule: r.schedule.parse().map_err(|e| corrupt("schedule", &e))?,
                recipients: serde_json::from_str(&r.recipients).map_err(|e| corrupt("recipients", &e))?,
            },
            last_period: r.last_period.as_deref().map(str::parse).transpose().map_err(|e| corrupt("period", &e))?,
            id: r.id,
            definer: r.definer,
            defined_at: r.defined_at,
            latest_at_definition: r.latest_at_definition,
        })
    }
}

/// Defines a standing report on `def.table.dataset`: by an officer, or by the dataset's owner.
/// Each recipient must be an active consumer (it tabulates under its own TABLES grant when the
/// report runs), named once; a slice keeps 1 to [`MAX_SLICE_VALUES`] categories of one of the
/// table's dimensions.
///
/// # Errors
/// `PermissionDenied` for anyone else; `InvalidArgument` naming the member at fault; `NotFound`
/// for an unknown dataset.
pub async fn define(
    gw: &Gateway,
    caller: &Caller,
    def: ReportDefinition,
) -> Result<(String, Option<Receipt>), ServiceError> {
    let me = &caller.participant;
    let dataset = &def.table.dataset;
    let d = gw.store.dataset(dataset).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset}")))?;
    let owner = me.has_role(Role::Publisher) && d.owner == me.id;
    if !(me.has_role(Role::Officer) || owner) {
        return Err(ServiceError::PermissionDenied(format!(
            "standing reports on dataset {dataset} are defined by an officer or by its owner {}",
            d.owner
        )));
    }
    if def.table.version.is_some() {
        return Err(ServiceError::invalid("table.version", "a report always uses the latest released version"));
    }
    if def.table.grant.is_some() {
        return Err(ServiceError::invalid("table.grant_id", "each recipient tabulates under its own grant"));
    }
    if def.recipients.is_empty() || def.recipients.len() > MAX_RECIPIENTS {
        return Err(ServiceError::invalid("recipients", format!("1 to {MAX_RECIPIENTS} recipients")));
    }
    for (i, r) in def.recipients.iter().enumerate() {
        let field = format!("recipients[{i}]");
        if def.recipients[..i].iter().any(|o| o.participant == r.participant) {
            return Err(ServiceError::invalid(
                format!("{field}.participant"),
                format!("{} is named twice", r.participant),
            ));
        }
        let p = gw.store.participant(&r.participant).await?;
        match p {
            None => {
                return Err(ServiceError::invalid(
                    format!("{field}.participant"),
                    format!("no participant {}", r.participant),
                ))
            }
            Some(p) if p.status != ParticipantStatus::Active || !p.has_role(Role::Consumer) => {
                return Err(ServiceError::invalid(
                    format!("{field}.participant"),
                    format!("{} is not an active consumer", r.participant),
                ))
            }
            Some(_) => {}
        }
        if let Some(slice) = &r.slice {
            if !def.table.dimensions.iter().any(|d| d.field == slice.dimension) {
                return Err(ServiceError::invalid(
                    format!("{field}.slice.dimension"),
                    format!("`{}` is not a dimension of the table", slice.dimension),
                ));
            }
            if slice.values.is_empty() || slice.values.len() > MAX_SLICE_VALUES {
                return Err(ServiceError::invalid(
                    format!("{field}.slice.values"),
                    format!("1 to {MAX_SLICE_VALUES} categories"),
                ));
            }
        }
    }
    let latest_at_definition = match def.schedule {
        Schedule::OnRelease => gw.store.version(dataset, None).await?.map(|v| v.version),
        _ => None,
    };
    let id = new_id("r-");
    let now = gw.clock.now();
    let body = ReportDefined {
        report: id.clone(),
        dataset: dataset.clone(),
        schedule: def.schedule.to_string(),
        table: tables::definition(&def.table),
        recipients: def.recipients.clone(),
    };
    let stored = StoredReport {
        id: id.clone(),
        dataset: dataset.clone(),
        definer: me.id.clone(),
        schedule: def.schedule.to_string(),
        request: to_json(&def.table)?,
        recipients: to_json(&def.recipients)?,
        defined_at: now,
        latest_at_definition,
        last_period: None,
    };
    let rec = NewRecord::new(caller.actor(), now, RecordBody::ReportDefined(body));
    let seq = gw.store.insert_report(&stored, &rec).await?;
    gw.log.kick();
    tracing::info!(report = %id, dataset = %dataset, schedule = %def.schedule, recipients = def.recipients.len(), "standing report defined");
    Ok((id, super::audit::receipt_if_integrated(gw, seq).await))
}

/// A stored report's member as JSON.
fn to_json(v: &impl serde::Serialize) -> Result<String, ServiceError> {
    serde_json::to_string(v).map_err(|e| ServiceError::Internal(e.into()))
}

/// What one pass of the runner did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ran {
    /// Periods this replica claimed.
    pub claimed: u32,
    /// Runs it produced.
    pub produced: u32,
    /// Runs it recorded as not produced.
    pub not_produced: u32,
    /// Runs left pending (a transient failure: retried after the lease).
    pub pending: u32,
}

/// The period of `report` due now, if any, and how many were skipped before it.
async fn due(gw: &Gateway, report: &Report, now: DateTime<Utc>) -> Result<Option<schedule::Due>, ServiceError> {
    let last = report.last_period.as_ref();
    let def = &report.definition;
    let due = match def.schedule {
        Schedule::OnRelease => {
            let latest = gw.store.version(&def.table.dataset, None).await?.map(|v| v.version);
            schedule::due_on_release(last, report.latest_at_definition, latest)
        }
        _ => schedule::due(&def.schedule, last, now, report.defined_at),
    };
    due.map_err(|e| ServiceError::DataLoss(format!("report {}: {e}", report.id)))
}

/// Claims every due period of every report and produces its runs, then produces runs whose
/// claimer stopped: one pass of the runner (the maintenance loop calls it; so may tests).
///
/// # Errors
/// A store failure; a report's own failure is its runs' `NOT_PRODUCED`.
pub async fn run_due(gw: &Gateway) -> Result<Ran, ServiceError> {
    let mut ran = Ran::default();
    let now = gw.clock.now();
    let reports = gw.store.reports().await?;
    for stored in &reports {
        // One report's failure is logged and does not stop the others.
        if let Err(e) = run_report(gw, stored, now, &mut ran).await {
            tracing::warn!(report = %stored.id, error = %e, "standing report not run now");
        }
    }
    for stale in gw.store.stale_runs(now - LEASE).await? {
        let Some(stored) = reports.iter().find(|r| r.id == stale.report) else { continue };
        let outcome = match Report::try_from(stored.clone()) {
            Ok(report) => produce(gw, &report, stale, &mut ran).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(report = %stored.id, error = %e, "stale report run not produced now");
        }
    }
    Ok(ran)
}

/// Claims `stored`'s due period, if any, and produces its runs.
async fn run_report(
    gw: &Gateway,
    stored: &StoredReport,
    now: DateTime<Utc>,
    ran: &mut Ran,
) -> Result<(), ServiceError> {
    let report = Report::try_from(stored.clone())?;
    let Some(due) = due(gw, &report, now).await? else { return Ok(()) };
    let runs: Vec<StoredRun> = report
        .definition
        .recipients
        .iter()
        .map(|r| StoredRun {
            report: report.id.clone(),
            period: due.period.to_string(),
            recipient: r.participant.clone(),
            status: "PENDING".into(),
            claimed_at: now,
            missed: due.missed,
            reason: String::new(),
            table_id: None,
            version: None,
            cells: None,
            sha256: None,
            record_seq: None,
        })
        .collect();
    let last = report.last_period.as_ref().map(ToString::to_string);
    if !gw.store.claim_period(&report.id, last.as_deref(), &due.period.to_string(), &runs).await? {
        return Ok(()); // Another replica claimed it.
    }
    ran.claimed += 1;
    tracing::info!(report = %report.id, period = %due.period, missed = due.missed, "standing report due");
    for run in runs {
        if let Err(e) = produce(gw, &report, run, ran).await {
            tracing::warn!(report = %report.id, error = %e, "report run not produced now; retried after the lease");
        }
    }
    Ok(())
}

/// Produces one claimed run: the recipient's table, as a `Tabulate` of it would be (assessed,
/// protected against its release ledger, logged), kept rather than streamed.
async fn produce(gw: &Gateway, report: &Report, mut run: StoredRun, ran: &mut Ran) -> Result<(), ServiceError> {
    let Some(recipient) = report.definition.recipients.iter().find(|r| r.participant == run.recipient) else {
        return Ok(());
    };
    // The lease is taken again right before the work: a run is produced by whoever holds it now,
    // and another replica takes it over only once this one has not touched it for the lease.
    let renewed = gw.clock.now();
    if !gw.store.reclaim_run(&run, renewed).await? {
        return Ok(());
    }
    run.claimed_at = renewed;
    let mut req = report.definition.table.clone();
    if let Ok(Some(v)) = run.period.parse::<Period>().map(|p| p.as_version()) {
        req.version = Some(v); // On release: exactly the version released.
    }
    if let Some(slice) = &recipient.slice {
        for d in req.dimensions.iter_mut().filter(|d| d.field == slice.dimension) {
            d.filter = slice.values.clone();
        }
    }
    let outcome = match gw.store.participant(&run.recipient).await? {
        None => Err(ServiceError::NotFound(format!("participant {}", run.recipient))),
        Some(p) if p.status != ParticipantStatus::Active => {
            Err(ServiceError::PermissionDenied(format!("participant {} is suspended", run.recipient)))
        }
        Some(p) => {
            let caller = Caller { participant: p, cert_sha256: String::new() };
            tables::tabulate(gw, &caller, &req, Mode::Release).await
        }
    };
    let plan = match outcome {
        // Transient: left pending, claimed again after the lease.
        Err(e @ (ServiceError::ResourceExhausted(_) | ServiceError::Unavailable(_) | ServiceError::Unwitnessed(_))) => {
            tracing::warn!(report = %report.id, period = %run.period, recipient = %run.recipient, error = %e, "report run postponed");
            ran.pending += 1;
            return Ok(());
        }
        Err(e) => {
            run.status = "NOT_PRODUCED".into();
            run.reason = e.to_string();
            None
        }
        Ok(plan) => {
            let kept = format!("KEPT: standing report {} period {}", report.id, run.period);
            tables::keep(gw, &plan, kept).await?;
            let cells: Vec<KeptCell> = plan.cells.iter().map(KeptCell::from).collect();
            run.status = "PRODUCED".into();
            run.table_id = Some(plan.table_id.clone());
            run.version = Some(plan.version.version);
            run.cells = Some(serde_json::to_string(&cells).map_err(|e| ServiceError::Internal(e.into()))?);
            run.sha256 = Some(hex::encode(plan.sha256));
            Some(plan)
        }
    };
    let body = ReportRun {
        report: report.id.clone(),
        period: run.period.clone(),
        recipient: run.recipient.clone(),
        outcome: run.status.clone(),
        reason: run.reason.clone(),
        table: run.table_id.clone(),
        version: run.version,
        sha256: run.sha256.clone(),
        missed: run.missed,
    };
    let rec = NewRecord::new("local:reports", gw.clock.now(), RecordBody::ReportRun(body));
    match gw.store.finish_run(&run, &rec).await {
        Ok(_) => {}
        // Claimed again by another replica after the lease: its run stands.
        Err(StoreError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    drop(plan);
    gw.log.kick();
    if run.status == "PRODUCED" {
        ran.produced += 1;
    } else {
        ran.not_produced += 1;
    }
    tracing::info!(report = %report.id, period = %run.period, recipient = %run.recipient, status = %run.status, "report run");
    Ok(())
}

/// A kept cell: the table's wire cell, as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptCell {
    /// One code per dimension.
    pub codes: Vec<String>,
    /// `PUBLISHED`, `PRIMARY` or `SECONDARY`.
    pub status: String,
    /// Published only.
    pub value: Option<f64>,
    /// Published only.
    pub contributors: Option<u64>,
}

impl From<&tables::Cell> for KeptCell {
    fn from(c: &tables::Cell) -> KeptCell {
        KeptCell {
            codes: c.codes.clone(),
            status: match c.status {
                Status::Published => "PUBLISHED",
                Status::Primary => "PRIMARY",
                Status::Secondary => "SECONDARY",
            }
            .into(),
            value: c.value,
            contributors: c.contributors,
        }
    }
}

/// The runs the caller may see, newest period first: its own as a recipient; every run of the
/// reports it defined; all of them for officers and auditors. `report` narrows to one report.
///
/// # Errors
/// A store failure.
pub async fn runs(gw: &Gateway, caller: &Caller, report: Option<&str>) -> Result<Vec<StoredRun>, ServiceError> {
    let me = &caller.participant;
    let overseer = me.has_role(Role::Officer) || me.has_role(Role::Auditor);
    let defined: Vec<String> =
        gw.store.reports().await?.into_iter().filter(|r| r.definer == me.id).map(|r| r.id).collect();
    // A plain recipient's runs are selected by the store, not filtered from everyone's.
    let sees_all_of = |id: &str| overseer || defined.iter().any(|d| d == id);
    let mine_only = match report {
        Some(id) => !sees_all_of(id),
        None => !overseer && defined.is_empty(),
    };
    let recipient = mine_only.then_some(&me.id);
    Ok(gw
        .store
        .runs(report, recipient)
        .await?
        .into_iter()
        .filter(|r| r.recipient == me.id || sees_all_of(&r.report))
        .collect())
}

/// One run, for its recipient (or an officer, an auditor, the report's definer), after its
/// `report.fetched` record is logged; with that record's receipt.
///
/// # Errors
/// `NotFound` for a run the caller may not see or that does not exist; `FailedPrecondition`
/// while it is still pending.
pub async fn run(
    gw: &Gateway,
    caller: &Caller,
    report: &str,
    period: &str,
    recipient: Option<&ParticipantId>,
) -> Result<(StoredRun, Option<Receipt>), ServiceError> {
    let me = &caller.participant.id;
    let who = recipient.unwrap_or(me);
    let found = runs(gw, caller, Some(report))
        .await?
        .into_iter()
        .find(|r| r.period == period && &r.recipient == who)
        .ok_or_else(|| ServiceError::NotFound(format!("run {period} of report {report} for {who}")))?;
    if found.record_seq.is_none() {
        return Err(ServiceError::FailedPrecondition(format!(
            "run {period} of report {report} is still being produced"
        )));
    }
    // Who read which kept table is logged before its cells are returned.
    let body = ReportFetched {
        report: found.report.clone(),
        period: found.period.clone(),
        recipient: found.recipient.clone(),
        table: found.table_id.clone(),
        sha256: found.sha256.clone(),
    };
    let receipt =
        gw.log.append(NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::ReportFetched(body))).await?;
    Ok((found, Some(receipt)))
}
