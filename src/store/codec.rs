//! Encodings both SQL backends share: times as microseconds, approval scopes as JSON, the
//! placement check of an integration, chunk-by-chunk reads.

use chrono::{DateTime, Utc};

use futures::stream::{BoxStream, StreamExt};

use super::{StoreError, StoredChunk};
use crate::domain::classification::UnknownName;
use crate::domain::participant::Region;
use crate::policy::{Mechanism, Scope};

/// An approval scope as stored (JSON).
pub(super) fn scope_to_json(s: &Scope) -> String {
    serde_json::json!({
        "recipients": s.recipients,
        "destinations": s.destinations.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "purposes": s.purposes,
        "max_persons_nonsensitive": s.max_persons_nonsensitive,
        "max_persons_sensitive": s.max_persons_sensitive,
    })
    .to_string()
}

/// An approval scope from its stored JSON.
pub(super) fn scope_from_json(text: &str) -> Result<Scope, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    Ok(Scope {
        recipients: strings("recipients"),
        destinations: strings("destinations")
            .iter()
            .map(|r| Region::parse(r))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
        purposes: strings("purposes"),
        max_persons_nonsensitive: v["max_persons_nonsensitive"].as_u64(),
        max_persons_sensitive: v["max_persons_sensitive"].as_u64(),
    })
}

/// Microseconds since the Unix epoch.
pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A time from microseconds since the Unix epoch.
pub(super) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A transfer record's mechanism as stored: its name, or the empty string when no rules assessed
/// it (`access.refused`).
pub(super) fn mechanism_column(mechanism: Option<Mechanism>) -> &'static str {
    mechanism.map_or("", Mechanism::as_str)
}

/// A transfer record's mechanism from its column: `None` for the empty string (or `NULL`).
pub(super) fn mechanism_from_column(text: Option<String>) -> Result<Option<Mechanism>, String> {
    text.filter(|m| !m.is_empty()).map(|m| m.parse().map_err(|e: UnknownName| e.to_string())).transpose()
}

/// Checks that an integration placed the records stored with their leaf indexes
/// (`queued[earlier..]`, from `first_new` on) exactly there, and names every earlier one.
pub(super) fn check_placement(
    leaves: &[(u64, u64)],
    queued: &[super::QueuedRecord],
    earlier: usize,
    first_new: Option<u64>,
) -> Result<(), super::StoreError> {
    let placed = leaves.len() == queued.len()
        && leaves.iter().zip(queued).all(|((seq, _), q)| *seq == q.seq)
        && leaves[earlier..]
            .iter()
            .enumerate()
            .all(|(i, (_, index))| first_new.is_some_and(|first| *index == first + i as u64));
    if placed {
        Ok(())
    } else {
        Err(super::StoreError::Corrupt("the integration placed the queued records elsewhere than stored".into()))
    }
}

/// The chunks of a version from `from` on, read one query per chunk (`read(seq)`; `None` ends
/// the version): a reader holds a database connection only while one chunk is read, never
/// while its consumer is slow. Each read runs as a task of its own, so it finishes and gives
/// its connection back even when the stream, having started it (a read-ahead), is not polled
/// again for a long time.
pub(super) fn chunk_by_chunk<'a, F, Fut>(from: u64, read: F) -> BoxStream<'a, Result<StoredChunk, StoreError>>
where
    F: Fn(u64) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<Option<StoredChunk>, StoreError>> + Send + 'static,
{
    futures::stream::try_unfold((from, read), |(seq, read)| async move {
        let chunk =
            tokio::spawn(read(seq)).await.map_err(|_| StoreError::Unavailable(sqlx::Error::WorkerCrashed))??;
        Ok(chunk.map(|chunk| (chunk, (seq + 1, read))))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mechanism_reads_back_as_stored_and_no_mechanism_is_the_empty_string() {
        for m in Mechanism::ALL {
            assert_eq!(mechanism_from_column(Some(mechanism_column(Some(*m)).to_owned())), Ok(Some(*m)));
        }
        assert_eq!(mechanism_column(None), "");
        assert_eq!(mechanism_from_column(Some(String::new())), Ok(None));
        assert_eq!(mechanism_from_column(None), Ok(None));
        assert!(mechanism_from_column(Some("CAC_SA".into())).is_err());
    }
}
