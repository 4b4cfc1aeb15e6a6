//! Grants: a consumer's right to receive chosen fields of a dataset, masked, until an expiry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::classification::named_enum;
use super::dataset::FieldName;
use super::ids::{DatasetId, ParticipantId};
use super::mask::Mask;

/// Upper bound on the values of a row filter.
pub const MAX_FILTER_VALUES: usize = 1000;

named_enum! {
    /// Where a grant is in its life.
    GrantStatus, "grant status" {
        /// Requested, not decided.
        Pending = "PENDING",
        /// Approved by the owner: pulls may use it until it expires.
        Approved = "APPROVED",
        /// Refused by the owner.
        Refused = "REFUSED",
        /// Revoked after the fact.
        Revoked = "REVOKED",
    }
}

named_enum! {
    /// What a grant releases.
    GrantUse, "grant use" {
        /// Rows, masked (a pull).
        Rows = "ROWS",
        /// Statistical tables with disclosure control only; never a row.
        Tables = "TABLES",
    }
}

impl Default for GrantUse {
    /// Grants stored before uses existed release rows.
    fn default() -> GrantUse {
        GrantUse::Rows
    }
}

/// One granted field and the mask the owner set for it (`None`: the field's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedField {
    /// The field.
    pub name: FieldName,
    /// A mask stricter than the field's default, set by the owner.
    pub mask: Option<Mask>,
}

/// Only rows whose `field` value, in its text form, is one of `values` are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFilter {
    /// The filtered field.
    pub field: FieldName,
    /// Accepted values; 1..=[`MAX_FILTER_VALUES`].
    pub values: Vec<String>,
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// `g-` and 32 hex digits.
    pub id: String,
    /// The dataset.
    pub dataset: DatasetId,
    /// Who receives.
    pub consumer: ParticipantId,
    /// The granted fields (narrowed by the owner on approval).
    pub fields: Vec<GrantedField>,
    /// What the consumer will use the data for.
    pub purpose: String,
    /// The statutory duty relied on (rule D6); empty when none.
    pub legal_basis: String,
    /// The purpose is statistical (rule D2).
    pub statistical_purpose: bool,
    /// Lifecycle state.
    pub status: GrantStatus,
    /// The expiry the consumer asked for.
    pub requested_expiry: Option<DateTime<Utc>>,
    /// The expiry the owner set; pulls after it are refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// Row restriction set by the owner.
    pub row_filter: Option<RowFilter>,
    /// Why it was refused or revoked.
    pub reason: String,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When the owner decided (or it was revoked).
    pub decided_at: Option<DateTime<Utc>>,
    /// The consumer's exemption claim (docs/rules.md §3, E2/E3); counts only once attested.
    #[serde(default)]
    pub exemption: crate::policy::Exemption,
    /// The officer who attested the claim.
    #[serde(default)]
    pub exemption_attested_by: Option<ParticipantId>,
    /// What it releases: rows, or tables only. Absent in grants stored before: rows.
    #[serde(default, rename = "use")]
    pub usage: GrantUse,
    /// A TABLES grant's dimension fields (each also in `fields`); empty for ROWS.
    #[serde(default)]
    pub dimensions: Vec<FieldName>,
    /// A TABLES grant's measure fields (each also in `fields`); empty for ROWS.
    #[serde(default)]
    pub measures: Vec<FieldName>,
}

impl Grant {
    /// Approved and not expired at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.status == GrantStatus::Approved && self.expires_at.is_none_or(|e| now < e)
    }

    /// The granted field named `name`.
    pub fn field(&self, name: &FieldName) -> Option<&GrantedField> {
        self.fields.iter().find(|f| &f.name == name)
    }
}
