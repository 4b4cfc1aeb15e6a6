//! Maintenance: what the gateway does by itself, at start and then periodically — transfers
//! cut by a crash get their completion record (`INTERRUPTED`), staged uploads of publishes that
//! never finished are purged, and refused pull attempts are recorded.
//!
//! Refused attempts (no grant, a field not granted, an unknown dataset, no consumer role) are
//! how probing looks to an officer, so they are logged — but a flood of them must not fill the
//! log: they are counted in memory per (participant, dataset, reason) and written as one
//! `access.refused` record per key and flush (about a minute), with the number of attempts and
//! the first and last time. At most [`MAX_REFUSAL_KEYS`] keys are kept between flushes; further
//! distinct keys are counted together under the reason `other refusals (too many distinct)`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::ids::DatasetId;
use crate::domain::record::{NewRecord, RecordKind, TransferFacets};
use crate::store::TransferFilter;

/// Distinct (participant, dataset, reason) keys kept between two flushes.
pub const MAX_REFUSAL_KEYS: usize = 10_000;

/// Longest reason kept (characters).
const MAX_REASON: usize = 200;

/// How long a transfer without completion on a store shared with other gateway processes may
/// still be streaming from one of them before it counts as cut.
pub const SHARED_STREAM_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Decisions reconciled per query.
const PAGE: u32 = 500;

/// The `action` facet of a refused-attempts record.
pub const DENIED: &str = "DENIED";

/// The `action` facet of the completion of a transfer cut by a crash.
pub const INTERRUPTED: &str = "INTERRUPTED";

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
    participant: String,
    region: String,
    dataset: String,
    reason: String,
    attempts: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// Refused attempts counted since the last flush.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashMap<(String, String, String), Refused>>);

impl Refusals {
    /// Counts a refused pull attempt when `e` is a refusal worth an officer's eye.
    pub fn note(&self, caller: &Caller, dataset: Option<&DatasetId>, e: &ServiceError) {
        if !matches!(e, ServiceError::PermissionDenied(_) | ServiceError::NotFound(_)) {
            return;
        }
        let now = Utc::now();
        let mut reason: String = e.to_string().chars().take(MAX_REASON).collect();
        let participant = caller.participant.id.to_string();
        let mut dataset = dataset.map(|d| d.to_string()).unwrap_or_default();
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (participant.clone(), dataset.clone(), reason.clone());
        if !counts.contains_key(&key) && counts.len() >= MAX_REFUSAL_KEYS {
            reason = "other refusals (too many distinct)".into();
            dataset = String::new();
            key = (String::new(), String::new(), reason.clone());
        }
        let entry = counts.entry(key).or_insert_with(|| Refused {
            participant,
            region: caller.participant.region.to_string(),
            dataset,
            reason,
            attempts: 0,
            first: now,
            last: now,
        });
        entry.attempts += 1;
        entry.last = now;
    }

    fn take(&self) -> Vec<Refused> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Refused> = std::mem::take(&mut *counts).into_values().collect();
        out.sort_by_key(|r| r.first);
        out
    }

    fn put_back(&self, refused: Vec<Refused>) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for r in refused {
            let key = (r.participant.clone(), r.dataset.clone(), r.reason.clone());
            counts
                .entry(key)
                .and_modify(|e| {
                    e.attempts += r.attempts;
                    e.first = e.first.min(r.first);
                })
                .or_insert(r);
        }
    }
}

/// Writes one `access.refused` record per counted key; returns how many. Keys whose record
/// could not be written are kept for the next flush.
///
/// # Errors
/// `Unavailable` when the log cannot be written.
pub async fn flush_refusals(gw: &Gateway) -> Result<usize, ServiceError> {
    let refused = gw.refusals.take();
    let mut written = 0;
    let mut rest = refused.into_iter();
    for r in rest.by_ref() {
        let mut rec = NewRecord::new(
            RecordKind::AccessRefused,
            r.participant.clone(),
            json!({
                "participant": r.participant,
                "dataset": r.dataset,
                "reason": r.reason,
                "attempts": r.attempts,
                "first_at": r.first.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "last_at": r.last.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            }),
        );
        rec.at = gw.clock.now();
        rec.facets = Some(TransferFacets {
            transfer: new_id("r-"),
            dataset: r.dataset.clone(),
            recipient: r.participant.clone(),
            exporter: String::new(),
            region: r.region.clone(),
            export: false,
            mechanism: "NONE".into(),
            action: DENIED.into(),
        });
        if let Err(e) = gw.log.append(rec).await {
            gw.refusals.put_back(std::iter::once(r).chain(rest).collect());
            return Err(e.into());
        }
        written += 1;
    }
    Ok(written)
}

/// Gives every authorised transfer that has no completion record and is not streaming any more
/// its completion, `INTERRUPTED`: on a store this process alone uses, every one not streaming
/// here; on a shared store, those decided more than [`SHARED_STREAM_GRACE`] ago. Returns how many.
///
/// # Errors
/// `Unavailable` when the store cannot be read or the log written.
pub async fn reconcile_interrupted(gw: &Gateway) -> Result<u64, ServiceError> {
    let now = gw.clock.now();
    let to = if gw.store.shared() { now - SHARED_STREAM_GRACE } else { now + chrono::TimeDelta::seconds(1) };
    let mut filter = TransferFilter {
        to: Some(to),
        kind: Some(RecordKind::TransferDecision),
        action: Some("PASS".into()),
        unfinished: true,
        ..TransferFilter::default()
    };
    let mut done = 0;
    loop {
        let page = gw.store.transfers(&filter, PAGE).await?;
        let Some(last) = page.last() else { return Ok(done) };
        filter.before = Some((last.at, last.seq));
        for decision in page.iter().filter(|d| !gw.pulls.is_streaming(&d.facets.transfer)) {
            let body: serde_json::Value = serde_json::from_str(&decision.json)
                .map_err(|e| ServiceError::Internal(anyhow::anyhow!("decision record {}: {e}", decision.seq)))?;
            let mut rec = NewRecord::new(
                RecordKind::TransferCompleted,
                "local:maintenance",
                json!({
                    "transfer": decision.facets.transfer,
                    "dataset": decision.facets.dataset,
                    "version": body["version"],
                    "recipient": decision.facets.recipient,
                    "decision_index": decision.leaf_index,
                    "outcome": "INTERRUPTED: the gateway stopped while the pull was streaming; \
                                what was sent before is not known",
                }),
            );
            rec.at = now;
            rec.facets = Some(TransferFacets { action: INTERRUPTED.into(), ..decision.facets.clone() });
            gw.log.append(rec).await?;
            tracing::warn!(transfer = %decision.facets.transfer, "transfer cut by a stop: recorded INTERRUPTED");
            done += 1;
        }
    }
}

/// One round: reconcile cut transfers, purge stale uploads, flush refused attempts. Each part
/// runs even when another fails; failures are logged.
pub async fn round(gw: &Gateway, settings: &Settings) {
    match reconcile_interrupted(gw).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(transfers = n, "reconciled transfers cut by a stop"),
        Err(e) => tracing::warn!(error = %e, "cannot reconcile cut transfers now"),
    }
    let before = Utc::now() - chrono::TimeDelta::from_std(settings.stale_upload).unwrap_or(chrono::TimeDelta::MAX);
    match gw.store.purge_abandoned_uploads(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(uploads = n, "purged stale uploads"),
        Err(e) => tracing::warn!(error = %e, "cannot purge stale uploads now"),
    }
    match flush_refusals(gw).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "recorded refused pull attempts"),
        Err(e) => tracing::warn!(error = %e, "cannot record refused pull attempts now"),
    }
}

/// Runs a round now and then every `settings.every` until `stop`, and a last flush of refused
/// attempts at `stop`.
pub async fn run(gw: Gateway, settings: Settings, stop: CancellationToken) {
    loop {
        round(&gw, &settings).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(settings.every) => {}
        }
    }
    if let Err(e) = flush_refusals(&gw).await {
        tracing::warn!(error = %e, "refused pull attempts not recorded at stop");
    }
}
