//! Monitoring of statistical operations (运行监测分析): per dataset its declared release cadence,
//! its last release, whether the next one is late, and its review backlog per level; per region,
//! how many of its datasets are late. Aggregate counts, never a value of the data.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::{Caller, Gateway, ServiceError};
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::ids::DatasetId;
use crate::domain::participant::{Region, Role};
use crate::domain::record::bodies::CadenceSet;
use crate::domain::record::{NewRecord, RecordBody};
use crate::domain::review::{ReviewOutcome, VersionStatus};
use crate::domain::schedule::{next_run, Schedule};
use crate::log::sequencer::Receipt;

/// When a dataset releasing on `cadence` next owes a release: the scheduled instant after the
/// one its last release met (the first at or after it); without a release, the first after the
/// cadence was declared. `None` for a schedule that is not time-based.
pub fn next_due(
    cadence: &Schedule,
    last_release: Option<DateTime<Utc>>,
    declared_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match last_release {
        Some(at) => next_run(cadence, next_run(cadence, at - Duration::microseconds(1))?),
        None => next_run(cadence, declared_at),
    }
}

/// When a released version was released: its last review step, or its publication.
pub fn released_at(v: &VersionInfo) -> DateTime<Utc> {
    v.review
        .as_ref()
        .and_then(|r| r.steps.iter().rev().find(|s| s.outcome == ReviewOutcome::Approved))
        .map_or(v.published_at, |s| s.at)
}

/// `dataset`'s owner declares (or, with `None`, withdraws) how often it releases a version:
/// `monthly:DAY` or `quarterly:DAY` (docs/reports.md, "Schedules").
///
/// # Errors
/// `PermissionDenied` unless the caller owns the dataset; `InvalidArgument` for a schedule that
/// does not parse or is not time-based; `NotFound` for an unknown dataset.
pub async fn set_cadence(
    gw: &Gateway,
    caller: &Caller,
    dataset: &DatasetId,
    cadence: Option<&str>,
) -> Result<Option<Receipt>, ServiceError> {
    caller.require(Role::Publisher)?;
    let d = gw.store.dataset(dataset).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset}")))?;
    if d.owner != caller.participant.id {
        return Err(ServiceError::PermissionDenied(format!(
            "only {}, the owner of dataset {dataset}, declares its cadence",
            d.owner
        )));
    }
    let schedule =
        cadence.map(|c| c.parse::<Schedule>().map_err(|e| ServiceError::invalid("cadence", e))).transpose()?;
    if schedule == Some(Schedule::OnRelease) {
        return Err(ServiceError::invalid("cadence", "a release cadence is monthly:DAY or quarterly:DAY"));
    }
    let text = schedule.map(|s| s.to_string());
    let now = gw.clock.now();
    let body = CadenceSet { dataset: d.id.clone(), cadence: text.clone() };
    let rec = NewRecord::new(caller.actor(), now, RecordBody::CadenceSet(body));
    let seq = gw.store.set_cadence(&d.id, text.as_deref(), now, &rec).await?;
    gw.log.kick();
    Ok(super::audit::receipt_if_integrated(gw, seq).await)
}

/// One review level's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelBacklog {
    /// The level (0 = the first).
    pub level: u32,
    /// Its jurisdiction.
    pub jurisdiction: Region,
    /// Versions awaiting it.
    pub versions: u32,
    /// Of those, past the level's deadline.
    pub overdue: u32,
}

/// How one dataset is doing.
#[derive(Debug, Clone)]
pub struct DatasetHealth {
    /// The dataset.
    pub dataset: Dataset,
    /// Where its owner is registered.
    pub owner_region: Option<Region>,
    /// Its declared cadence, if any.
    pub cadence: Option<Schedule>,
    /// Its latest released version and when it was released.
    pub last_release: Option<(u64, DateTime<Utc>)>,
    /// When the next release is owed (with a cadence).
    pub next_due: Option<DateTime<Utc>>,
    /// The next release is owed and not there.
    pub late: bool,
    /// Versions awaiting review, per level.
    pub backlog: Vec<LevelBacklog>,
    /// Versions returned by a reviewer.
    pub returned: u32,
}

/// The health of every dataset the caller may oversee (all of them for officers and auditors,
/// its own for an owner), by id; `late_only` keeps the late ones.
///
/// # Errors
/// `PermissionDenied` without the officer, auditor or publisher role.
pub async fn status(
    gw: &Gateway,
    caller: &Caller,
    dataset: Option<&DatasetId>,
    late_only: bool,
) -> Result<Vec<DatasetHealth>, ServiceError> {
    let me = &caller.participant;
    let overseer = me.has_role(Role::Officer) || me.has_role(Role::Auditor);
    if !overseer && !me.has_role(Role::Publisher) {
        return Err(ServiceError::PermissionDenied(format!(
            "{} holds none of the roles that see monitoring (officer, auditor, publisher)",
            me.id
        )));
    }
    let cadences: BTreeMap<DatasetId, (String, DateTime<Utc>)> =
        gw.store.cadences().await?.into_iter().map(|(d, c, at)| (d, (c, at))).collect();
    let now = gw.clock.now();
    let mut datasets = Vec::new();
    if let Some(id) = dataset {
        datasets.extend(gw.store.dataset(id).await?);
    } else {
        let mut after = None;
        loop {
            let page = gw.store.datasets(after.as_ref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            datasets.extend(page);
        }
    }
    let mut out = Vec::new();
    for d in datasets {
        if !overseer && d.owner != me.id {
            continue;
        }
        let versions = gw.store.versions(&d.id).await?;
        let last_release =
            versions.iter().find(|v| v.status == VersionStatus::Released).map(|v| (v.version, released_at(v)));
        let cadence = cadences.get(&d.id).and_then(|(c, _)| c.parse::<Schedule>().ok());
        let next_due = cadence
            .as_ref()
            .zip(cadences.get(&d.id))
            .and_then(|(c, (_, declared))| next_due(c, last_release.map(|(_, at)| at), *declared));
        let late = next_due.is_some_and(|due| due <= now);
        let mut backlog: Vec<LevelBacklog> = Vec::new();
        for v in versions.iter().filter(|v| v.status == VersionStatus::InReview) {
            let Some(review) = &v.review else { continue };
            let level = review.level();
            let Some(current) = review.policy.levels.get(level as usize) else { continue };
            let jurisdiction = current.jurisdiction.clone();
            let overdue = review.due().is_some_and(|due| due <= now);
            match backlog.iter_mut().find(|b| b.level == level && b.jurisdiction == jurisdiction) {
                Some(b) => {
                    b.versions += 1;
                    b.overdue += u32::from(overdue);
                }
                None => backlog.push(LevelBacklog { level, jurisdiction, versions: 1, overdue: u32::from(overdue) }),
            }
        }
        backlog.sort_by(|a, b| (a.level, &a.jurisdiction).cmp(&(b.level, &b.jurisdiction)));
        let returned = versions.iter().filter(|v| v.status == VersionStatus::Returned).count() as u32;
        if late_only && !late {
            continue;
        }
        let owner_region = gw.store.participant(&d.owner).await?.map(|p| p.region);
        out.push(DatasetHealth { dataset: d, owner_region, cadence, last_release, next_due, late, backlog, returned });
    }
    Ok(out)
}

/// Late datasets per owner region (the districts whose submissions are late), by region.
pub fn late_regions(health: &[DatasetHealth]) -> Vec<(Region, u32)> {
    let mut per: BTreeMap<Region, u32> = BTreeMap::new();
    for h in health.iter().filter(|h| h.late) {
        if let Some(r) = &h.owner_region {
            *per.entry(r.clone()).or_default() += 1;
        }
    }
    per.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_next_release_is_owed_one_scheduled_instant_after_the_one_the_last_release_met() {
        let monthly: Schedule = "monthly:5".parse().unwrap();
        // Released on 3 March (Shanghai): it met 5 March; the next is owed by 5 April 00:00 +08:00.
        let due = next_due(&monthly, Some(at("2026-03-03T10:00:00+08:00")), at("2026-01-01T00:00:00Z"));
        assert_eq!(due, Some(at("2026-04-05T00:00:00+08:00")));
        // Released exactly at the instant: it met that one.
        let due = next_due(&monthly, Some(at("2026-03-05T00:00:00+08:00")), at("2026-01-01T00:00:00Z"));
        assert_eq!(due, Some(at("2026-04-05T00:00:00+08:00")));
        // Released just after: it met April's.
        let due = next_due(&monthly, Some(at("2026-03-05T00:00:01+08:00")), at("2026-01-01T00:00:00Z"));
        assert_eq!(due, Some(at("2026-05-05T00:00:00+08:00")));
        // Never released: the first instant after the cadence was declared.
        let due = next_due(&monthly, None, at("2026-03-10T00:00:00+08:00"));
        assert_eq!(due, Some(at("2026-04-05T00:00:00+08:00")));
        assert_eq!(next_due(&Schedule::OnRelease, None, at("2026-03-10T00:00:00Z")), None);
    }
}
