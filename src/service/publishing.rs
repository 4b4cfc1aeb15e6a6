//! Publishing: a stream of checked row batches becomes an immutable version atomically.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ring::digest;

use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::dataset::{Dataset, VersionInfo};
use crate::domain::ids::DatasetId;
use crate::domain::participant::Role;
use crate::domain::record::bodies::VersionPublished;
use crate::domain::record::{NewRecord, RecordBody};
use crate::domain::values::{check_column, ops, ValueError};
use crate::pb::Column;
use crate::store::{Committed, NewVersion, StoredChunk};
use crate::wire::{DecodedBatch, RowBatch};

/// An upload in progress. Nothing it stages is visible until [`Upload::finish`] succeeds; a
/// dropped or aborted upload leaves nothing visible (staged chunks are deleted by
/// [`Upload::abort`], or at the next start after a crash).
pub struct Upload {
    gw: Gateway,
    actor: String,
    dataset: Dataset,
    key: String,
    /// `None` when the idempotency key already names a version: the stream is checked and
    /// digested but not stored.
    upload_id: Option<String>,
    existing: Option<VersionInfo>,
    rows: u64,
    batches: u64,
    chunks: u64,
    pending: Vec<Column>,
    pending_rows: u32,
    digest: digest::Context,
    /// Marks the upload live in this process until it ends (maintenance never purges it).
    _live: Option<LiveUpload>,
}

/// Uploads in progress in this process and when each started (no later than the store's
/// `started_at` of it).
#[derive(Debug, Default)]
pub struct LiveUploads(std::sync::Mutex<HashMap<String, DateTime<Utc>>>);

impl LiveUploads {
    /// When the oldest upload in progress here started, if any.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).values().min().copied()
    }

    fn start(self: &Arc<Self>, id: &str) -> LiveUpload {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), Utc::now());
        LiveUpload { uploads: self.clone(), id: id.to_owned() }
    }
}

/// One upload in progress; it ends when this is dropped.
#[derive(Debug)]
struct LiveUpload {
    uploads: Arc<LiveUploads>,
    id: String,
}

impl Drop for LiveUpload {
    fn drop(&mut self) {
        self.uploads.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("dataset", &self.dataset.id)
            .field("upload_id", &self.upload_id)
            .field("rows", &self.rows)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

/// Checks an idempotency key: 1–128 printable ASCII characters.
fn check_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::invalid("header.idempotency_key", "must be 1-128 printable ASCII characters"));
    }
    Ok(())
}

/// Starts an upload to a dataset the caller owns.
///
/// # Errors
/// `PermissionDenied` unless the caller is a publisher and the owner; `NotFound` for an unknown
/// dataset; `InvalidArgument` for a bad idempotency key.
pub async fn start(gw: &Gateway, caller: &Caller, dataset: &DatasetId, key: &str) -> Result<Upload, ServiceError> {
    caller.require(Role::Publisher)?;
    check_key(key)?;
    let dataset =
        gw.store.dataset(dataset).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset}")))?;
    if dataset.owner != caller.participant.id {
        return Err(ServiceError::PermissionDenied(format!("only the owner publishes dataset {}", dataset.id)));
    }
    let existing = gw.store.version_by_key(&dataset.id, key).await?;
    let (upload_id, live) = if existing.is_none() {
        let id = new_id("u-");
        let live = gw.uploads.start(&id);
        gw.store.begin_upload(&dataset.id, &id).await?;
        (Some(id), Some(live))
    } else {
        (None, None)
    };
    Ok(Upload {
        gw: gw.clone(),
        actor: caller.actor(),
        pending: vec![Column::default(); dataset.fields.len()],
        dataset,
        key: key.to_owned(),
        upload_id,
        existing,
        rows: 0,
        batches: 0,
        chunks: 0,
        pending_rows: 0,
        _live: live,
        digest: digest::Context::new(&digest::SHA256),
    })
}

/// Rows per stored chunk of `dataset`: `chunk_rows`, fewer when the schema's planned row width
/// ([`FieldType::planned_width`]) would make a chunk larger than `chunk_bytes`. A function of the
/// schema and the settings only — never of how a publisher cut its batches — so that a retried
/// publish with the same rows gives the same chunks and digest.
///
/// [`FieldType::planned_width`]: crate::domain::dataset::FieldType::planned_width
pub fn chunk_rows(dataset: &Dataset, limits: &super::Limits) -> u32 {
    let width: u64 = dataset.fields.iter().map(|f| f.ty.planned_width()).sum::<u64>().max(1);
    let by_bytes = (limits.chunk_bytes as u64 / width).clamp(1, u64::from(u32::MAX)) as u32;
    limits.chunk_rows.min(by_bytes).max(1)
}

impl Upload {
    /// Checks one batch (columns in the dataset's field order) and stages it.
    ///
    /// # Errors
    /// `InvalidArgument` naming the batch, row (counted from the first row of the upload) and
    /// field of the first bad value; `ResourceExhausted` beyond the row limits.
    pub async fn add(&mut self, batch: DecodedBatch) -> Result<(), ServiceError> {
        let n = self.batches;
        self.batches += 1;
        let limits = self.gw.limits;
        if batch.row_count > limits.max_batch_rows {
            return Err(ServiceError::ResourceExhausted(format!(
                "batch {n}: {} rows, at most {} per batch",
                batch.row_count, limits.max_batch_rows
            )));
        }
        if self.rows + u64::from(batch.row_count) > limits.max_version_rows {
            return Err(ServiceError::ResourceExhausted(format!(
                "a version holds at most {} rows",
                limits.max_version_rows
            )));
        }
        if batch.columns.len() != self.dataset.fields.len() {
            return Err(ServiceError::invalid(
                format!("batch[{n}].columns"),
                format!("{} columns, the dataset has {} fields", batch.columns.len(), self.dataset.fields.len()),
            ));
        }
        for (i, (field, column)) in self.dataset.fields.iter().zip(&batch.columns).enumerate() {
            check_column(field, batch.row_count, column).map_err(|e| {
                let at = format!("batch[{n}].columns[{i}]");
                match e {
                    ValueError::BadValue { row, reason } => {
                        ServiceError::invalid(at, format!("row {}, field `{}`: {reason}", self.rows + row, field.name))
                    }
                    ValueError::Shape(reason) => ServiceError::invalid(at, format!("field `{}`: {reason}", field.name)),
                }
            })?;
        }
        for (pending, column) in self.pending.iter_mut().zip(batch.columns) {
            ops::append(pending, self.pending_rows, column);
        }
        self.pending_rows += batch.row_count;
        self.rows += u64::from(batch.row_count);
        let chunk_rows = chunk_rows(&self.dataset, &limits);
        while self.pending_rows >= chunk_rows {
            let columns = self.pending.iter_mut().map(|c| ops::split_front(c, chunk_rows)).collect();
            self.pending_rows -= chunk_rows;
            self.stage(chunk_rows, columns).await?;
        }
        Ok(())
    }

    async fn stage(&mut self, rows: u32, columns: Vec<Column>) -> Result<(), ServiceError> {
        let data = RowBatch::from_columns(rows, columns).encoded().clone();
        let sha256: [u8; 32] = digest::digest(&digest::SHA256, &data).as_ref().try_into().expect("32 bytes");
        // The version's digest covers its chunks' digests, in order (see `VersionInfo::sha256`).
        self.digest.update(&sha256);
        let chunk = StoredChunk { seq: self.chunks, rows, sha256, data };
        self.chunks += 1;
        if let Some(upload) = &self.upload_id {
            self.gw.store.put_chunk(upload, &chunk).await?;
        }
        Ok(())
    }

    /// Makes the version visible, or returns the version an earlier upload with the same
    /// idempotency key created (`created == false`).
    ///
    /// # Errors
    /// `InvalidArgument` naming `batch` when the stream carried no batch, or no row: a version
    /// needs at least one (nothing is written); `AlreadyExists` when the key names a version with
    /// different content.
    pub async fn finish(mut self) -> Result<(VersionInfo, bool), ServiceError> {
        if self.rows == 0 {
            let why = if self.batches == 0 {
                "a version needs at least one batch; the stream had only a header"
            } else {
                "a version needs at least one batch with rows; every batch was empty"
            };
            self.abort().await;
            return Err(ServiceError::invalid("batch", why));
        }
        // The publisher may have been suspended while it streamed: its version is not made
        // visible (the staged chunks are discarded).
        let publisher = crate::domain::ids::ParticipantId::parse(&self.actor)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("publisher id: {e}")))?;
        let active = self.gw.store.participant(&publisher).await?;
        if active.is_none_or(|p| p.status != crate::domain::participant::ParticipantStatus::Active) {
            self.abort().await;
            return Err(ServiceError::PermissionDenied(format!(
                "participant {publisher} was suspended during the upload; nothing was published"
            )));
        }
        if self.pending_rows > 0 {
            let rows = self.pending_rows;
            let columns = std::mem::take(&mut self.pending);
            self.pending_rows = 0;
            self.stage(rows, columns).await?;
        }
        let sha256: [u8; 32] = self.digest.clone().finish().as_ref().try_into().expect("32 bytes");
        let same = |v: &VersionInfo| v.sha256 == sha256 && v.rows == self.rows;
        if let Some(v) = &self.existing {
            return if same(v) {
                Ok((v.clone(), false))
            } else {
                Err(ServiceError::AlreadyExists(format!(
                    "idempotency key `{}` names version {} with different content",
                    self.key, v.version
                )))
            };
        }
        let Some(upload) = self.upload_id.clone() else {
            return Err(ServiceError::Internal(anyhow::anyhow!("an upload without a staging area")));
        };
        let new = NewVersion {
            dataset: self.dataset.id.clone(),
            rows: self.rows,
            chunks: self.chunks,
            sha256,
            publisher: self.dataset.owner.clone(),
            idempotency_key: self.key.clone(),
            published_at: self.gw.clock.now(),
        };
        let rec = NewRecord::new(
            self.actor.clone(),
            self.gw.clock.now(),
            RecordBody::VersionPublished(VersionPublished {
                dataset: self.dataset.id.clone(),
                rows: self.rows,
                chunks: self.chunks,
                sha256,
                idempotency_key: self.key.clone(),
            }),
        );
        let committed = self.gw.store.commit_upload(&upload, &new, &rec).await;
        if committed.is_ok() {
            self.gw.log.kick();
            // Committed (or discarded as a duplicate) in the store: nothing left to clean up.
            self.upload_id = None;
        }
        match committed {
            Ok(Committed::Created(v)) => {
                tracing::info!(dataset = %v.dataset, version = v.version, rows = v.rows, "published version");
                super::extract::prepare_version_in_background(&self.gw, v.dataset.clone(), v.version);
                Ok((v, true))
            }
            Ok(Committed::Existing(v)) if same(&v) => Ok((v, false)),
            Ok(Committed::Existing(v)) => Err(ServiceError::AlreadyExists(format!(
                "idempotency key `{}` names version {} with different content",
                self.key, v.version
            ))),
            // `Drop` discards the staged chunks.
            Err(e) => Err(e.into()),
        }
    }

    /// Discards everything staged. Called when the stream fails.
    pub async fn abort(mut self) {
        if let Some(upload) = self.upload_id.take() {
            discard(&self.gw, &upload).await;
        }
    }
}

async fn discard(gw: &Gateway, upload: &str) {
    if let Err(e) = gw.store.abort_upload(upload).await {
        // Left for `purge_abandoned_uploads` at the next start; invisible meanwhile.
        tracing::warn!(error = %e, upload, "could not discard a failed upload");
    }
}

impl Drop for Upload {
    /// A cut stream drops the handler (and this upload) without running its error path: the
    /// staged chunks are discarded in the background.
    fn drop(&mut self) {
        if let Some(upload) = self.upload_id.take() {
            let gw = self.gw.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { discard(&gw, &upload).await });
            }
        }
    }
}
