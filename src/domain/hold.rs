//! Holds: transfers the rules held until an approval exists — the officers' review queue.

use chrono::{DateTime, Utc};

use super::classification::named_enum;
use super::ids::{DatasetId, ParticipantId};

named_enum! {
    /// Where a hold is in its life.
    HoldStatus, "hold status" {
        /// Waiting for an officer.
        Open = "OPEN",
        /// An officer linked the approval that releases it; the consumer retries.
        Released = "RELEASED",
        /// An officer refused it, with a reason.
        Refused = "REFUSED",
    }
}

/// A held transfer and what an approval must cover to release it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// `h-` and 32 hex digits.
    pub id: String,
    /// Lifecycle state.
    pub status: HoldStatus,
    /// The grant the consumer pulled under.
    pub grant_id: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// Who pulled.
    pub consumer: ParticipantId,
    /// The dataset's owner (the exporter).
    pub exporter: ParticipantId,
    /// The mechanism an approval must satisfy.
    pub mechanism: String,
    /// The transfer that was held and what an approval must cover (JSON, no data values).
    pub body: serde_json::Value,
    /// When the transfer was first held.
    pub created_at: DateTime<Utc>,
    /// The officer who resolved it.
    pub resolved_by: Option<ParticipantId>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why it was refused (or a note on the release).
    pub reason: String,
    /// The approval that released it.
    pub approval_id: Option<String>,
}
