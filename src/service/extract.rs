//! Extracts: what one recipient receives of a version — its granted fields, masked, filtered by
//! its grant's rows — built chunk by chunk ([`masked_chunks`], the one pipeline a pull, the
//! preparation of an extract and person counting read), and prepared ahead of the pull.
//!
//! A masked pull costs an HMAC-SHA-256 per `HASH` value and a formatting step per other masked
//! value; that work depends only on the version, the recipient's mask key and the delivered
//! [`Shape`]. So the gateway prepares a recipient's extract in the background when a grant is
//! approved and when its dataset gets a new version, and keeps it in the [`ChunkCache`] beside
//! the stored chunks: the pull then sends prepared chunks as they are. Nothing is sent while
//! preparing, and nothing is recorded: a pull is authorised, assessed and logged the same way
//! whether its extract was prepared or not, and a pull whose shape differs (a field subset, a
//! changed clearance) masks on the fly.
//!
//! Which mask applies to a field, and the masks themselves, are [`crate::masking`]'s.
//!
//! [`ChunkCache`]: crate::store::cache::ChunkCache

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use ring::{digest, hmac};

use super::{Gateway, ServiceError};
use crate::domain::classification::Classification;
use crate::domain::dataset::{Dataset, FieldName, FieldType, VersionInfo};
use crate::domain::grant::Grant;
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::mask::Mask;
use crate::domain::participant::Participant;
use crate::domain::values::{ops, text_values};
use crate::masking;
use crate::pb::Column;
use crate::store::cache::{Extract, Fill};
use crate::store::StoredChunk;
use crate::wire::RowBatch;

/// One delivered column.
#[derive(Debug, Clone)]
pub struct DeliveredField {
    /// The field.
    pub name: FieldName,
    /// Its position in the stored chunks.
    pub index: usize,
    /// Its stored type.
    pub ty: FieldType,
    /// The type of the delivered values.
    pub delivered_ty: FieldType,
    /// Its classification.
    pub class: Classification,
    /// The mask applied (never `DROP`: dropped fields are not delivered).
    pub mask: Mask,
}

/// A grant's row filter as it applies to stored chunks: the filter field's column, its type and
/// the accepted text values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    /// The filter field's position in the stored chunks.
    pub column: usize,
    /// Its type (how its values read as text).
    pub ty: FieldType,
    /// The accepted values, as text.
    pub accepted: HashSet<String>,
}

impl RowFilter {
    /// Whether each of the `rows` rows is kept, from the filter field's column.
    pub fn keeps(&self, column: &Column, rows: u32) -> Vec<bool> {
        text_values(column, self.ty, rows).into_iter().map(|v| v.is_some_and(|v| self.accepted.contains(&v))).collect()
    }
}

/// What a recipient receives of every chunk: the delivered columns with their masks, the dropped
/// fields, the row filter.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Delivered columns, in schema order.
    pub fields: Vec<DeliveredField>,
    /// Fields granted but dropped (`DROP`).
    pub dropped: Vec<FieldName>,
    /// Row filter of the grant.
    pub row_filter: Option<RowFilter>,
    /// Stored chunks go out as they are (every field, in order, unmasked, no filter).
    pub passthrough: bool,
    /// Every granted field is delivered (no subset was asked for): the shape extracts are
    /// prepared for, so the one a pull masking on the fly keeps in the cache.
    pub whole_grant: bool,
}

impl Shape {
    /// The shape of `grant` for `recipient`, limited to `wanted` fields (empty = all granted;
    /// the caller checked that they are granted).
    pub fn of(dataset: &Dataset, grant: &Grant, recipient: &Participant, wanted: &HashSet<&FieldName>) -> Shape {
        let row_filter = grant.row_filter.as_ref().map(|f| {
            let column = dataset.field_index(&f.field).unwrap_or(usize::MAX);
            let ty = dataset.fields.get(column).map_or(FieldType::String, |d| d.ty);
            RowFilter { column, ty, accepted: f.values.iter().cloned().collect() }
        });
        let picked = |def: &crate::domain::dataset::FieldDef| {
            let granted = grant.field(&def.name)?;
            (wanted.is_empty() || wanted.contains(&def.name)).then_some(granted.mask)
        };
        Shape::picked(dataset, recipient, picked, row_filter, wanted.is_empty())
    }

    /// Every field of `dataset` with its default mask for `recipient`'s clearance, every row: what
    /// the owner and the reviewers see of a version under review.
    pub fn for_review(dataset: &Dataset, recipient: &Participant) -> Shape {
        Shape::picked(dataset, recipient, |_| Some(None), None, true)
    }

    /// The fields `pick` keeps (with the mask it sets, `None`: the field's default), masked for
    /// `recipient`'s clearance.
    fn picked(
        dataset: &Dataset,
        recipient: &Participant,
        pick: impl Fn(&crate::domain::dataset::FieldDef) -> Option<Option<Mask>>,
        row_filter: Option<RowFilter>,
        whole_grant: bool,
    ) -> Shape {
        let mut fields = Vec::new();
        let mut dropped = Vec::new();
        for (index, def) in dataset.fields.iter().enumerate() {
            let Some(chosen) = pick(def) else { continue };
            let mask = masking::mask_for(chosen, def.default_mask, def.class.level, recipient.clearance);
            if mask == Mask::Drop {
                dropped.push(def.name.clone());
                continue;
            }
            fields.push(DeliveredField {
                name: def.name.clone(),
                index,
                ty: def.ty,
                delivered_ty: masking::delivered_type(&mask, def.ty),
                class: def.class,
                mask,
            });
        }
        let passthrough =
            row_filter.is_none() && fields.len() == dataset.fields.len() && fields.iter().all(|f| f.mask == Mask::None);
        Shape { fields, dropped, row_filter, passthrough, whole_grant }
    }

    /// The cache entry holding this shape's chunks for `recipient`: the stored chunks for a
    /// passthrough shape, otherwise the recipient's extract named by a digest of everything that
    /// determines its bytes besides the version and the recipient's key.
    pub fn extract(&self, recipient: &ParticipantId) -> Extract {
        if self.passthrough {
            return Extract::Stored;
        }
        let mut d = digest::Context::new(&digest::SHA256);
        let mut put = |bytes: &[u8]| {
            d.update(&(bytes.len() as u64).to_le_bytes());
            d.update(bytes);
        };
        put(b"bth-gateway extract v1");
        for f in &self.fields {
            put(&(f.index as u64).to_le_bytes());
            put(f.ty.as_str().as_bytes());
            put(format!("{:?}", f.mask).as_bytes());
        }
        if let Some(RowFilter { column, ty, accepted }) = &self.row_filter {
            put(b"filter");
            put(&(*column as u64).to_le_bytes());
            put(ty.as_str().as_bytes());
            let mut values: Vec<&String> = accepted.iter().collect();
            values.sort();
            values.iter().for_each(|v| put(v.as_bytes()));
        }
        Extract::Masked { recipient: recipient.clone(), shape: d.finish().as_ref().try_into().expect("32 bytes") }
    }
}

/// Checks a stored chunk of `version` against its digest.
///
/// # Errors
/// `DataLoss` when it does not match.
fn check_digest(dataset: &Dataset, version: &VersionInfo, chunk: &StoredChunk) -> Result<(), ServiceError> {
    if digest::digest(&digest::SHA256, &chunk.data).as_ref() == chunk.sha256 {
        Ok(())
    } else {
        Err(corrupt(dataset, version, chunk))
    }
}

fn corrupt(dataset: &Dataset, version: &VersionInfo, chunk: &StoredChunk) -> ServiceError {
    ServiceError::DataLoss(format!("dataset {} version {} chunk {}", dataset.id, version.version, chunk.seq))
}

/// Turns one stored chunk of `version`, already checked against its digest, into the chunk a
/// recipient with `shape` receives. The result's `sha256` is the digest of its `data`.
///
/// # Errors
/// `DataLoss` for a chunk that cannot be read.
pub fn mask_chunk(
    shape: &Shape,
    dataset: &Dataset,
    version: &VersionInfo,
    chunk: &StoredChunk,
    hash_key: &hmac::Key,
) -> Result<StoredChunk, ServiceError> {
    let corrupt = || corrupt(dataset, version, chunk);
    if shape.passthrough {
        return Ok(chunk.clone());
    }
    let (rows, columns) = RowBatch::from_encoded(chunk.data.clone()).split().map_err(|_| corrupt())?;
    if columns.len() != dataset.fields.len() {
        return Err(corrupt());
    }
    let decode = |i: usize| -> Result<Column, ServiceError> {
        <Column as prost::Message>::decode(columns[i].clone()).map_err(|_| corrupt())
    };
    let encode = |c: &Column| Bytes::from(prost::Message::encode_to_vec(c));
    let (kept, out) = match &shape.row_filter {
        None => {
            let mut out = Vec::with_capacity(shape.fields.len());
            for f in &shape.fields {
                out.push(match f.mask {
                    Mask::None => columns[f.index].clone(),
                    mask => match masking::encoded::apply(&mask, f.ty, &columns[f.index], hash_key) {
                        Some(masked) => Bytes::from(masked),
                        None => encode(&masking::apply(&mask, f.ty, &decode(f.index)?, rows, hash_key)),
                    },
                });
            }
            (rows, out)
        }
        Some(filter) => {
            let keep: Vec<u32> = filter
                .keeps(&decode(filter.column)?, rows)
                .into_iter()
                .enumerate()
                .filter(|(_, kept)| *kept)
                .map(|(i, _)| i as u32)
                .collect();
            let kept = keep.len() as u32;
            let mut out = Vec::with_capacity(shape.fields.len());
            for f in &shape.fields {
                let selected = ops::select(&decode(f.index)?, rows, &keep);
                out.push(encode(&masking::apply(&f.mask, f.ty, &selected, kept, hash_key)));
            }
            (kept, out)
        }
    };
    let data = RowBatch::from_parts(kept, &out).encoded().clone();
    let sha256 = digest::digest(&digest::SHA256, &data).as_ref().try_into().expect("32 bytes");
    Ok(StoredChunk { seq: chunk.seq, rows: kept, sha256, data })
}

/// One version as one reader receives it, from one chunk on: what [`masked_chunks`] streams.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    /// The dataset (its fields name the stored columns).
    pub dataset: Dataset,
    /// The version read.
    pub version: VersionInfo,
    /// The first chunk.
    pub from: u64,
    /// Who receives the chunks, and so what is made of them.
    pub reader: Reader,
}

/// Who a [`ChunkPlan`]'s chunks are for.
#[derive(Debug, Clone)]
pub enum Reader {
    /// The gateway itself (person counting): the stored chunks as they are.
    Gateway,
    /// A recipient: every chunk in its shape, masked with its `HASH` key; its extract is the
    /// cache entry the chunks are served from or kept in.
    Recipient {
        /// The recipient.
        id: ParticipantId,
        /// What it receives of every chunk.
        shape: Shape,
    },
}

/// How far a [`masked_chunks`] stream works ahead of its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Two chunks read and masked at a time: a pull, or the counting that authorises it.
    Pull,
    /// One chunk at a time: preparing an extract yields to pulls.
    Background,
}

/// Delivered chunks: `sha256` is the digest of each one's `data`.
pub type MaskedChunks<'a> = BoxStream<'a, Result<StoredChunk, ServiceError>>;

/// How much work a chunk read for a [`masked_chunks`] stream still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Prepared, or verified and sent as stored: goes out as it is.
    Ready,
    /// Checked against its digest already (from the cache): to be masked.
    Verified,
    /// From the store: to be checked against its digest, then masked.
    Unverified,
}

/// The chunks of `plan.version` from `plan.from` as `plan.reader` receives them, each checked
/// against its stored digest once.
///
/// Chunks come from the first of: the reader's extract in the cache (a recipient's prepared
/// extract, or for stored chunks the cached verified version), sent as it is; the cached verified
/// version, masked; the store, read one chunk per task on the bulk pool, checked and masked.
/// Checking and masking run on blocking threads, two chunks at a time or one ([`Pace`]). The
/// stream works only while it is polled: a consumer that waits before asking for the next chunk
/// (a pull waiting for room for its next batch) holds up the reading and masking for it.
///
/// Read to its end, a stream from the first chunk caches what it made: the stored version it
/// read whole from the store, and a recipient's extract of its [`Shape::whole_grant`] that it
/// masked. A stream dropped early (a cut or withdrawn pull) or ended by an error caches nothing;
/// the extract is claimed when the stream is made, so that a revocation from then on keeps it
/// out. The stream ends after its first error.
///
/// # Errors
/// An item is `DataLoss` for a chunk that does not match its digest or cannot be read, and a
/// store failure as [`ServiceError`] has it.
pub fn masked_chunks(gw: &Gateway, plan: ChunkPlan, pace: Pace) -> MaskedChunks<'_> {
    let ChunkPlan { dataset, version, from, reader } = plan;
    let (extract, mask, whole_grant) = match reader {
        Reader::Gateway => (Extract::Stored, None, false),
        Reader::Recipient { id, shape } => {
            let extract = shape.extract(&id);
            let whole_grant = shape.whole_grant;
            let mask = (!shape.passthrough).then(|| (shape, gw.recipient_hash_key(id.as_str())));
            (extract, mask, whole_grant)
        }
    };
    let (id, n) = (dataset.id.clone(), version.version);
    let prepared = gw.chunk_cache.get(&id, n, &extract);
    let mut keep = Keep {
        chunks: version.chunks,
        extract: (from == 0 && prepared.is_none() && whole_grant && extract != Extract::Stored)
            .then(|| gw.chunk_cache.fill(&id, n, extract)),
        stored: None,
    };
    let source: BoxStream<'_, Result<(StoredChunk, Read), ServiceError>> = match prepared {
        Some(all) => cached(&all, from, Read::Ready),
        None => {
            let as_stored = if mask.is_none() { Read::Ready } else { Read::Verified };
            match gw.chunk_cache.get(&id, n, &Extract::Stored) {
                Some(all) => cached(&all, from, as_stored),
                None => {
                    keep.stored = (from == 0).then(|| gw.chunk_cache.fill(&id, n, Extract::Stored));
                    gw.store.chunks(&id, n, from).map(|c| Ok((c?, Read::Unverified))).boxed()
                }
            }
        }
    };
    let step = Arc::new(Step { dataset, version, mask });
    let work = source
        .map(move |item| {
            let step = step.clone();
            async move {
                let (chunk, read) = item?;
                if read == Read::Ready {
                    return Ok::<_, ServiceError>((None, chunk));
                }
                let stored = chunk.clone();
                let out = tokio::task::spawn_blocking(move || step.deliverable(&chunk, read))
                    .await
                    .map_err(|e| ServiceError::Internal(e.into()))??;
                Ok((Some(stored), out))
            }
        })
        .buffered(match pace {
            Pace::Pull => 2,
            Pace::Background => 1,
        });
    futures::stream::unfold(Some((work, keep)), |state| async move {
        let (mut work, mut keep) = state?;
        match work.next().await {
            None => {
                keep.finish();
                None
            }
            Some(Err(e)) => Some((Err(e), None)),
            Some(Ok((stored, out))) => {
                keep.keep(stored, &out);
                Some((Ok(out), Some((work, keep))))
            }
        }
    })
    .boxed()
}

/// The chunks of a cached version or extract from `from`.
fn cached<'a>(all: &[StoredChunk], from: u64, read: Read) -> BoxStream<'a, Result<(StoredChunk, Read), ServiceError>> {
    let chunks: Vec<_> = all.iter().skip(from as usize).cloned().map(|c| Ok((c, read))).collect();
    futures::stream::iter(chunks).boxed()
}

/// What a [`masked_chunks`] stream does to a chunk that is not ready, on a blocking thread.
struct Step {
    dataset: Dataset,
    version: VersionInfo,
    /// The recipient's shape and `HASH` key; `None` when chunks go out as stored.
    mask: Option<(Shape, hmac::Key)>,
}

impl Step {
    fn deliverable(&self, chunk: &StoredChunk, read: Read) -> Result<StoredChunk, ServiceError> {
        if read == Read::Unverified {
            check_digest(&self.dataset, &self.version, chunk)?;
        }
        match &self.mask {
            None => Ok(chunk.clone()),
            Some((shape, key)) => mask_chunk(shape, &self.dataset, &self.version, chunk, key),
        }
    }
}

/// What a [`masked_chunks`] stream keeps for the cache as it goes.
struct Keep {
    /// Chunks of the version: what a whole one is.
    chunks: u64,
    /// The stored chunks read from the store.
    stored: Option<Fill>,
    /// The extract masked.
    extract: Option<Fill>,
}

impl Keep {
    fn keep(&mut self, stored: Option<StoredChunk>, out: &StoredChunk) {
        if let (Some(stored), Some(fill)) = (stored, self.stored.as_mut()) {
            fill.keep(stored);
        }
        if let Some(fill) = self.extract.as_mut() {
            fill.keep(out.clone());
        }
    }

    fn finish(self) {
        for fill in [self.stored, self.extract].into_iter().flatten() {
            fill.finish(self.chunks);
        }
    }
}

/// Prepares, in the background, the extract of the latest version of `grant`'s dataset for its
/// consumer. See [`prepare`].
pub fn prepare_in_background(gw: &Gateway, grant: Grant) {
    if !gw.limits.prepare_extracts {
        return;
    }
    let gw = gw.clone();
    tokio::spawn(async move {
        if let Err(e) = prepare(&gw, &grant, None).await {
            tracing::warn!(grant = %grant.id, error = %e, "extract not prepared");
        }
    });
}

/// Prepares, in the background, the extracts of `version` for every usable grant of `dataset`
/// (a version was just published).
pub fn prepare_version_in_background(gw: &Gateway, dataset: DatasetId, version: u64) {
    if !gw.limits.prepare_extracts {
        return;
    }
    let gw = gw.clone();
    tokio::spawn(async move {
        let owner = match gw.store.dataset(&dataset).await {
            Ok(Some(d)) => d.owner,
            _ => return,
        };
        let grants = match gw.store.grants_visible_to(&owner, Some(&dataset)).await {
            Ok(g) => g,
            Err(e) => return tracing::warn!(dataset = %dataset, error = %e, "extracts not prepared"),
        };
        let now = gw.clock.now();
        for grant in grants.into_iter().filter(|g| g.is_usable(now)) {
            if let Err(e) = prepare(&gw, &grant, Some(version)).await {
                tracing::warn!(grant = %grant.id, error = %e, "extract not prepared");
            }
        }
    });
}

/// Builds the extract of `version` (latest when `None`) for `grant`'s consumer with every
/// granted field, and caches it; the stored chunks read on the way are cached too. Nothing is
/// done for a grant that is no longer usable, a version that is no longer the latest, a shape
/// that sends stored chunks as they are, or an extract already cached; an extract larger than
/// the cache admits is given up. Preparations run one at a time, each chunk on a blocking
/// thread, so that they yield to pulls.
///
/// # Errors
/// A store failure or a chunk that does not match its digest.
pub async fn prepare(gw: &Gateway, grant: &Grant, version: Option<u64>) -> Result<(), ServiceError> {
    let _turn = gw.preparing.acquire().await.map_err(|e| ServiceError::Internal(e.into()))?;
    let fresh = gw.store.grant(&grant.id).await?;
    let (Some(grant), Some(dataset), Some(recipient), Some(latest)) = (
        fresh.filter(|g| g.is_usable(gw.clock.now())),
        gw.store.dataset(&grant.dataset).await?,
        gw.store.participant(&grant.consumer).await?,
        gw.store.version(&grant.dataset, None).await?,
    ) else {
        return Ok(());
    };
    if version.is_some_and(|v| v != latest.version) {
        return Ok(());
    }
    let shape = Shape::of(&dataset, &grant, &recipient, &HashSet::new());
    let extract = shape.extract(&recipient.id);
    if extract == Extract::Stored || gw.chunk_cache.get(&dataset.id, latest.version, &extract).is_some() {
        return Ok(());
    }
    let version = latest.version;
    // Made before anything is masked: a revocation from now on keeps this extract out.
    let plan = ChunkPlan { dataset, version: latest, from: 0, reader: Reader::Recipient { id: recipient.id, shape } };
    let mut chunks = masked_chunks(gw, plan, Pace::Background);
    while let Some(chunk) = chunks.next().await {
        chunk?;
    }
    tracing::debug!(grant = %grant.id, version, "extract prepared");
    Ok(())
}
