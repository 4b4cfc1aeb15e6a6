//! Extracts: what one recipient receives of a version — its granted fields, masked, filtered by
//! its grant's rows — built chunk by chunk, and prepared ahead of the pull.
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
//! [`ChunkCache`]: crate::store::cache::ChunkCache

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use ring::{digest, hmac};

use super::{Gateway, ServiceError};
use crate::domain::dataset::{Dataset, FieldName, FieldType, VersionInfo};
use crate::domain::grant::Grant;
use crate::domain::ids::DatasetId;
use crate::domain::mask::Mask;
use crate::domain::participant::Participant;
use crate::domain::values::{ops, text_values};
use crate::masking;
use crate::pb::Column;
use crate::store::cache::Extract;
use crate::store::StoredChunk;
use crate::wire::RowBatch;

use super::exchange::DeliveredField;

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
}

impl Shape {
    /// The shape of `grant` for `recipient`, limited to `wanted` fields (empty = all granted;
    /// the caller checked that they are granted).
    pub fn of(dataset: &Dataset, grant: &Grant, recipient: &Participant, wanted: &HashSet<&FieldName>) -> Shape {
        let mut fields = Vec::new();
        let mut dropped = Vec::new();
        for (index, def) in dataset.fields.iter().enumerate() {
            let Some(granted) = grant.field(&def.name) else { continue };
            if !wanted.is_empty() && !wanted.contains(&def.name) {
                continue;
            }
            let mask = masking::mask_for(granted.mask, def.default_mask, def.class.level, recipient.clearance);
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
        let row_filter = grant.row_filter.as_ref().map(|f| {
            let column = dataset.field_index(&f.field).unwrap_or(usize::MAX);
            let ty = dataset.fields.get(column).map_or(FieldType::String, |d| d.ty);
            RowFilter { column, ty, accepted: f.values.iter().cloned().collect() }
        });
        let passthrough =
            row_filter.is_none() && fields.len() == dataset.fields.len() && fields.iter().all(|f| f.mask == Mask::None);
        Shape { fields, dropped, row_filter, passthrough }
    }

    /// The cache entry holding this shape's chunks for `recipient`: the stored chunks for a
    /// passthrough shape, otherwise the recipient's extract named by a digest of everything that
    /// determines its bytes besides the version and the recipient's key.
    pub fn extract(&self, recipient: &Participant) -> Extract {
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
        Extract::Masked { recipient: recipient.id.clone(), shape: d.finish().as_ref().try_into().expect("32 bytes") }
    }
}

/// Turns one stored chunk of `version` into the chunk a recipient with `shape` receives,
/// checking it against its digest unless it comes `verified` from the cache. The result's
/// `sha256` is the digest of its `data`.
///
/// # Errors
/// `DataLoss` for a chunk that does not match its digest or cannot be read.
pub fn mask_chunk(
    shape: &Shape,
    dataset: &Dataset,
    version: &VersionInfo,
    chunk: &StoredChunk,
    hash_key: &hmac::Key,
    verified: bool,
) -> Result<StoredChunk, ServiceError> {
    let corrupt =
        || ServiceError::DataLoss(format!("dataset {} version {} chunk {}", dataset.id, version.version, chunk.seq));
    if !verified && digest::digest(&digest::SHA256, &chunk.data).as_ref() != chunk.sha256 {
        return Err(corrupt());
    }
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

/// Masks chunks for one recipient and shape on blocking threads.
#[derive(Debug)]
pub struct Masker {
    /// The delivered shape.
    pub shape: Shape,
    /// The dataset (its fields name the stored columns).
    pub dataset: Dataset,
    /// The version the chunks belong to.
    pub version: VersionInfo,
    /// The recipient's `HASH` key.
    pub hash_key: hmac::Key,
}

impl Masker {
    /// [`mask_chunk`] on a blocking thread.
    ///
    /// # Errors
    /// As [`mask_chunk`].
    pub async fn mask(self: &Arc<Self>, chunk: StoredChunk, verified: bool) -> Result<StoredChunk, ServiceError> {
        let m = self.clone();
        tokio::task::spawn_blocking(move || mask_chunk(&m.shape, &m.dataset, &m.version, &chunk, &m.hash_key, verified))
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?
    }
}

/// Stored chunks, each with whether it was verified against its digest already.
pub type StoredChunks<'a> = BoxStream<'a, Result<(StoredChunk, bool), ServiceError>>;

/// The stored chunks of a version from `from`: from the cached whole version when there is one
/// (`true`, every chunk verified), else from the store.
pub fn stored_chunks<'a>(gw: &'a Gateway, dataset: &DatasetId, version: u64, from: u64) -> (bool, StoredChunks<'a>) {
    match gw.chunk_cache.get(dataset, version, &Extract::Stored) {
        Some(all) => {
            let chunks: Vec<_> = all.iter().skip(from as usize).cloned().map(|c| Ok((c, true))).collect();
            (true, futures::stream::iter(chunks).boxed())
        }
        None => (false, gw.store.chunks(dataset, version, from).map(|c| Ok((c?, false))).boxed()),
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
    let extract = shape.extract(&recipient);
    if extract == Extract::Stored || gw.chunk_cache.get(&dataset.id, latest.version, &extract).is_some() {
        return Ok(());
    }
    // Read before anything is masked: a revocation from now on keeps this extract out.
    let mut fill = gw.chunk_cache.fill(&dataset.id, latest.version, extract);
    let (cached, mut source) = stored_chunks(gw, &dataset.id, latest.version, 0);
    let mut stored = (!cached).then(|| gw.chunk_cache.fill(&dataset.id, latest.version, Extract::Stored));
    let chunks = latest.chunks;
    let masker =
        Arc::new(Masker { hash_key: gw.recipient_hash_key(recipient.id.as_str()), shape, dataset, version: latest });
    while let Some(item) = source.next().await {
        let (chunk, verified) = item?;
        if let Some(stored) = &mut stored {
            stored.keep(chunk.clone());
        }
        fill.keep(masker.mask(chunk, verified).await?);
    }
    if let Some(stored) = stored {
        stored.finish(chunks);
    }
    fill.finish(chunks);
    tracing::debug!(grant = %grant.id, version = masker.version.version, "extract prepared");
    Ok(())
}
