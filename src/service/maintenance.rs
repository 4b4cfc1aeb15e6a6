//! Maintenance: what the gateway does by itself, at start and then periodically — transfers
//! cut by a crash get their completion record (`INTERRUPTED`), staged uploads of publishes that
//! never finished are purged, and refused pull attempts are recorded.
//!
//! Refused attempts (no grant, a field not granted, an unknown dataset, no consumer role) are
//! how probing looks to an officer, so they are logged — but a flood of them must not fill the
//! log: they are counted in memory per (participant, dataset, reason) and written as one
//! `access.refused` record per key and flush (about a minute), with the number of attempts and
//! the first and last time. At most [`MAX_REFUSAL_KEYS_PER_PARTICIPANT`] keys per participant and
//! [`MAX_REFUSAL_KEYS`] in all are kept between flushes; further distinct keys are counted
//! together, per participant and then for everyone (with no participant named).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::ids::DatasetId;
use crate::domain::record::bodies::{AccessRefused, TableInterrupted, TransferInterrupted};
use crate::domain::record::{NewRecord, RecordBody, RecordKind, TransferAction, TransferFacets};
use crate::store::TransferFilter;

/// Distinct (participant, dataset, reason) keys kept between two flushes.
pub const MAX_REFUSAL_KEYS: usize = 10_000;

/// Distinct keys of one participant between two flushes; its further refusals are counted
/// together under one key of its own.
pub const MAX_REFUSAL_KEYS_PER_PARTICIPANT: usize = 50;

/// Refusal records appended at once.
const FLUSH_AT_ONCE: usize = 64;

/// Longest reason kept (characters).
const MAX_REASON: usize = 200;

/// How long a transfer without completion on a store shared with other gateway processes may
/// still be streaming from one of them before it counts as cut.
pub const SHARED_STREAM_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Decisions reconciled per query.
const PAGE: u32 = 500;

/// What maintenance does and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between two rounds.
    pub every: Duration,
    /// Uploads staged longer ago than this are purged.
    pub stale_upload: Duration,
}

#[derive(Debug, Clone)]
struct Refused {
    key: RefusalKey,
    region: String,
    attempts: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// (participant, dataset, reason); empty strings in the overflow keys.
type RefusalKey = (String, String, String);

/// Refused attempts counted since the last flush.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<Counted>);

#[derive(Debug, Default)]
struct Counted {
    by_key: HashMap<RefusalKey, Refused>,
    keys_of: HashMap<String, usize>,
}

impl Refusals {
    /// Counts a refused pull attempt at `now` when `e` is a refusal worth an officer's eye.
    pub fn note(&self, caller: &Caller, dataset: Option<&DatasetId>, e: &ServiceError, now: DateTime<Utc>) {
        if !matches!(e, ServiceError::PermissionDenied(_) | ServiceError::NotFound(_)) {
            return;
        }
        let participant = caller.participant.id.to_string();
        let mut region = caller.participant.region.to_string();
        let reason: String = e.to_string().chars().take(MAX_REASON).collect();
        let mut key = (participant.clone(), dataset.map(|d| d.to_string()).unwrap_or_default(), reason);
        let mut counted = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !counted.by_key.contains_key(&key) {
            let mine = counted.keys_of.get(&participant).copied().unwrap_or(0);
            if counted.by_key.len() >= MAX_REFUSAL_KEYS {
                key = (String::new(), String::new(), "other refusals (too many distinct)".into());
                region = String::new();
            } else if mine >= MAX_REFUSAL_KEYS_PER_PARTICIPANT {
                key = (
                    participant.clone(),
                    String::new(),
                    "other refusals of this participant (too many distinct)".into(),
                );
            }
            if !counted.by_key.contains_key(&key) && !key.0.is_empty() {
                *counted.keys_of.entry(participant).or_insert(0) += 1;
            }
        }
        let entry = counted.by_key.entry(key.clone()).or_insert_with(|| Refused {
            key,
            region,
            attempts: 0,
            first: now,
            last: now,
        });
        entry.attempts += 1;
        entry.last = entry.last.max(now);
    }

    fn take(&self) -> Vec<Refused> {
        let mut counted = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *counted);
        let mut out: Vec<Refused> = taken.by_key.into_values().collect();
        out.sort_by_key(|r| r.first);
        out
    }

    fn put_back(&self, refused: Vec<Refused>) {
        let mut counted = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for r in refused {
            if !counted.by_key.contains_key(&r.key) && !r.key.0.is_empty() {
                *counted.keys_of.entry(r.key.0.clone()).or_insert(0) += 1;
            }
            counted
                .by_key
                .entry(r.key.clone())
                .and_modify(|e| {
                    e.attempts += r.attempts;
                    e.first = e.first.min(r.first);
                    e.last = e.last.max(r.last);
                })
                .or_insert(r);
        }
    }
}

/// The record of one counted key.
fn refusal_record(gw: &Gateway, r: &Refused) -> NewRecord {
    let (participant, dataset, reason) = &r.key;
    let actor = if participant.is_empty() { "local:maintenance" } else { participant.as_str() };
    let mut rec = NewRecord::new(
        actor,
        gw.clock.now(),
        RecordBody::AccessRefused(AccessRefused {
            participant: participant.clone(),
            dataset: dataset.clone(),
            reason: reason.clone(),
            attempts: r.attempts,
            first_at: r.first,
            last_at: r.last,
        }),
    );
    rec.facets = Some(TransferFacets {
        transfer: new_id("r-"),
        dataset: dataset.clone(),
        recipient: participant.clone(),
        exporter: String::new(),
        region: r.region.clone(),
        export: false,
        mechanism: None,
        action: TransferAction::Denied,
    });
    rec
}

/// Writes one `access.refused` record per counted key, many at a time (the log batches them);
/// returns how many. Keys whose record could not be written are kept for the next flush.
///
/// # Errors
/// `Unavailable` when the log cannot be written.
pub async fn flush_refusals(gw: &Gateway) -> Result<usize, ServiceError> {
    let refused = gw.refusals.take();
    let outcomes: Vec<(Refused, Result<(), crate::log::sequencer::LogError>)> =
        futures::stream::iter(refused.into_iter().map(|r| async move {
            let written = gw.log.append(refusal_record(gw, &r)).await.map(|_| ());
            (r, written)
        }))
        .buffer_unordered(FLUSH_AT_ONCE)
        .collect()
        .await;
    let mut failed = Vec::new();
    let mut error = None;
    let mut written = 0;
    for (r, outcome) in outcomes {
        match outcome {
            Ok(()) => written += 1,
            Err(e) => {
                failed.push(r);
                error.get_or_insert(e);
            }
        }
    }
    match error {
        None => Ok(written),
        Some(e) => {
            gw.refusals.put_back(failed);
            Err(e.into())
        }
    }
}

/// Gives every authorised transfer that has no completion record and is not streaming any more
/// its completion, `INTERRUPTED`: on a store this process alone uses, every one not streaming
/// here; on a shared store, those decided more than [`SHARED_STREAM_GRACE`] ago. With `since`,
/// only decisions from then on (the periodic rounds; the round at start looks at all). Returns
/// how many.
///
/// A pull's transfer is marked streaming before its decision is stored and unmarked only after
/// its completion is stored, so a decision found without completion whose transfer is not
/// streaming is checked once more for a completion before it is given one: a pull that ended
/// between the two reads keeps its own.
///
/// # Errors
/// `Unavailable` when the store cannot be read or the log written.
pub async fn reconcile_interrupted(gw: &Gateway, since: Option<DateTime<Utc>>) -> Result<u64, ServiceError> {
    let mut done = 0;
    for kind in [RecordKind::TransferDecision, RecordKind::TableDecision] {
        done += reconcile_kind(gw, since, kind).await?;
    }
    Ok(done)
}

/// [`reconcile_interrupted`] for the decisions of one kind (pulls, tables).
async fn reconcile_kind(gw: &Gateway, since: Option<DateTime<Utc>>, kind: RecordKind) -> Result<u64, ServiceError> {
    let now = gw.clock.now();
    let to = if gw.store.shared() { now - SHARED_STREAM_GRACE } else { now + chrono::TimeDelta::seconds(1) };
    let mut filter = TransferFilter {
        from: since,
        to: Some(to),
        kind: Some(kind),
        action: Some(TransferAction::Pass),
        unfinished: true,
        ..TransferFilter::default()
    };
    let mut done = 0;
    loop {
        let page = gw.store.transfers(&filter, PAGE).await?;
        let Some(last) = page.last() else { return Ok(done) };
        filter.before = Some((last.at, last.seq));
        for decision in page.iter().filter(|d| !gw.pulls.is_streaming(&d.facets.transfer)) {
            let body = match serde_json::from_str::<serde_json::Value>(&decision.json) {
                Ok(body) => Some(body),
                Err(e) => {
                    tracing::error!(seq = decision.seq, error = %e, "a decision record does not parse");
                    None
                }
            };
            // A table's preview passes and sends nothing: it has no completion to wait for.
            if body.as_ref().is_some_and(|b| b["preview"] == serde_json::Value::Bool(true)) {
                continue;
            }
            let still = TransferFilter {
                transfer: Some(decision.facets.transfer.clone()),
                kind: Some(kind),
                unfinished: true,
                ..TransferFilter::default()
            };
            if gw.store.transfers(&still, 1).await?.is_empty() {
                continue;
            }
            let version = body.as_ref().and_then(|b| b["version"].as_u64());
            let (transfer, dataset, recipient) =
                (decision.facets.transfer.clone(), decision.facets.dataset.clone(), decision.facets.recipient.clone());
            let body = if kind == RecordKind::TableDecision {
                RecordBody::TableInterrupted(TableInterrupted {
                    table: transfer,
                    dataset,
                    version,
                    recipient,
                    decision_index: decision.leaf_index,
                    outcome: TableInterrupted::OUTCOME.into(),
                })
            } else {
                RecordBody::TransferInterrupted(TransferInterrupted {
                    transfer,
                    dataset,
                    version,
                    recipient,
                    decision_index: decision.leaf_index,
                    outcome: TransferInterrupted::OUTCOME.into(),
                })
            };
            let mut rec = NewRecord::new("local:maintenance", now, body);
            rec.facets = Some(TransferFacets { action: TransferAction::Interrupted, ..decision.facets.clone() });
            gw.log.append(rec).await?;
            tracing::warn!(transfer = %decision.facets.transfer, "transfer cut by a stop: recorded INTERRUPTED");
            done += 1;
        }
    }
}

/// One round: reconcile cut transfers, purge stale uploads, run the standing reports due, and
/// (`flush`) record the refused attempts counted since the last one. Each part runs even when another fails; failures are
/// logged.
pub async fn round(gw: &Gateway, settings: &Settings, since: Option<DateTime<Utc>>, flush: bool) {
    match reconcile_interrupted(gw, since).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(transfers = n, "reconciled transfers cut by a stop"),
        Err(e) => tracing::warn!(error = %e, "cannot reconcile cut transfers now"),
    }
    // Never an upload still in progress here, however long it takes (another replica's, on a
    // shared store, is only protected by the age).
    let stale = chrono::TimeDelta::from_std(settings.stale_upload)
        .ok()
        .and_then(|age| Utc::now().checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let before = gw.uploads.oldest().map_or(stale, |oldest| stale.min(oldest));
    match gw.store.purge_abandoned_uploads(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(uploads = n, "purged stale uploads"),
        Err(e) => tracing::warn!(error = %e, "cannot purge stale uploads now"),
    }
    // Standing reports due (docs/reports.md): one replica claims each period.
    match super::reports::run_due(gw).await {
        Ok(ran) if ran == super::reports::Ran::default() => {}
        Ok(ran) => tracing::info!(?ran, "standing reports run"),
        Err(e) => tracing::warn!(error = %e, "cannot run standing reports now"),
    }
    if !flush {
        return;
    }
    match flush_refusals(gw).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "recorded refused pull attempts"),
        Err(e) => tracing::warn!(error = %e, "cannot record refused pull attempts now"),
    }
}

/// Runs a round now (over every decision; nothing is counted yet to flush) and then every
/// `settings.every` (over the last hours) until `stop`, and a last flush of refused attempts at
/// `stop`.
pub async fn run(gw: Gateway, settings: Settings, stop: CancellationToken) {
    let mut since = None;
    loop {
        let started = gw.clock.now();
        round(&gw, &settings, since, since.is_some()).await;
        // Later rounds look back an hour before the last one started (pulls whose completion
        // could not be written, mostly); older cuts are found by the round at the next start.
        let grace = if gw.store.shared() { SHARED_STREAM_GRACE } else { chrono::TimeDelta::zero() };
        since = Some(started - grace - chrono::TimeDelta::hours(1));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(settings.every) => {}
        }
    }
    if let Err(e) = flush_refusals(&gw).await {
        tracing::warn!(error = %e, "refused pull attempts not recorded at stop");
    }
}
