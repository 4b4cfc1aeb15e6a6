//! Datasets: a classified schema of typed fields, owned by a publisher, published in versions.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::classification::{named_enum, Classification, ClassificationError, Level};
use super::ids::{DatasetId, ParticipantId};
use super::mask::{Mask, MaskError};

/// Upper bound on fields per dataset.
pub const MAX_FIELDS: usize = 512;
/// Upper bound on the length of titles, descriptions and other free text, in bytes.
pub const MAX_TEXT: usize = 4096;

named_enum! {
    /// The type of a field's values.
    FieldType, "field type" {
        /// UTF-8 text.
        String = "STRING",
        /// Signed 64-bit integer.
        Int64 = "INT64",
        /// Finite IEEE-754 double.
        Float64 = "FLOAT64",
        /// Boolean.
        Bool = "BOOL",
        /// Calendar date `YYYY-MM-DD`.
        Date = "DATE",
        /// RFC 3339 date-time with offset.
        Timestamp = "TIMESTAMP",
        /// Decimal number text, at most 38 digits.
        Decimal = "DECIMAL",
    }
}

impl FieldType {
    /// The encoded bytes of one value, as the chunk size is planned from a dataset's schema:
    /// exact for fixed-width types, a typical length for text.
    pub fn planned_width(self) -> u64 {
        match self {
            FieldType::Bool => 2,
            FieldType::Int64 | FieldType::Float64 => 10,
            FieldType::Date | FieldType::Decimal => 14,
            FieldType::Timestamp => 28,
            FieldType::String => 32,
        }
    }

    /// Values travel as text (`Column.strings`).
    pub fn is_text(self) -> bool {
        matches!(self, FieldType::String | FieldType::Date | FieldType::Timestamp | FieldType::Decimal)
    }
}

/// A field name: 1–64 characters of `a-z 0-9 _`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldName(String);

impl FieldName {
    /// Parses a field name.
    pub fn parse(s: &str) -> Result<FieldName, DatasetError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(FieldName(s.to_owned()))
        } else {
            Err(DatasetError::BadFieldName(s.chars().take(80).collect()))
        }
    }

    /// The name's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FieldName {
    type Error = DatasetError;
    fn try_from(s: String) -> Result<Self, DatasetError> {
        FieldName::parse(&s)
    }
}

impl From<FieldName> for String {
    fn from(n: FieldName) -> String {
        n.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One classified field of a dataset's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Unique within the dataset.
    pub name: FieldName,
    /// The values' type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Level and flags.
    pub class: Classification,
    /// Applied when a grant does not set a stricter mask.
    pub default_mask: Mask,
    /// Free text, at most [`MAX_TEXT`] bytes.
    pub description: String,
    /// Whether values may be null.
    pub nullable: bool,
}

/// A dataset's catalog entry.
///
/// Invariants (checked by [`Dataset::validate`]): 1..=[`MAX_FIELDS`] fields with unique names;
/// every field admissible (docs/rules.md §1 invariants, no level `X`); every default mask fits its
/// field's type; the person-key and contributor-key fields, when set, name fields of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Chosen by the owner.
    pub id: DatasetId,
    /// The publisher that registered it: the exporter in the export rules.
    pub owner: ParticipantId,
    /// Short name.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Government data (政务数据): rules X6 and E4.
    pub government_data: bool,
    /// The schema, in column order.
    pub fields: Vec<FieldDef>,
    /// Identifies a natural person (distinct-person counting).
    pub person_key_field: Option<FieldName>,
    /// Identifies a respondent (statistical disclosure control).
    pub contributor_key_field: Option<FieldName>,
    /// Names a respondent's holding: contributions of one holding are added together before any
    /// disclosure rule. Needs a contributor key.
    #[serde(default)]
    pub holding_key_field: Option<FieldName>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

/// Why a dataset definition is refused. Each variant names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A field name does not follow the syntax.
    #[error("field name `{0}` must be 1-64 characters of a-z, 0-9, '_', starting with a letter")]
    BadFieldName(String),
    /// Two fields share a name.
    #[error("field `{0}` is defined twice")]
    DuplicateField(FieldName),
    /// No fields, or too many.
    #[error("a dataset has 1 to {MAX_FIELDS} fields, got {0}")]
    FieldCount(usize),
    /// A field's classification breaks an invariant.
    #[error("field `{field}`: {source}")]
    Classification {
        /// The field.
        field: FieldName,
        /// The broken invariant.
        source: ClassificationError,
    },
    /// A field's default mask does not fit its type.
    #[error("field `{field}`: default mask: {source}")]
    Mask {
        /// The field.
        field: FieldName,
        /// Why the mask does not fit.
        source: MaskError,
    },
    /// A key field names no field of the schema.
    #[error("{role} `{name}` is not a field of the dataset")]
    UnknownKeyField {
        /// `person_key_field`, `contributor_key_field` or `holding_key_field`.
        role: &'static str,
        /// The name given.
        name: FieldName,
    },
    /// A holding key without a contributor key: holdings group contributors.
    #[error("holding_key_field needs a contributor_key_field: a holding groups contributors")]
    HoldingWithoutContributor,
    /// Free text too long or with a control character.
    #[error("{0}: {1}")]
    Text(&'static str, super::TextError),
}

fn check_text(what: &'static str, text: &str) -> Result<(), DatasetError> {
    super::check_free_text(text, MAX_TEXT).map_err(|e| DatasetError::Text(what, e))
}

impl Dataset {
    /// Checks the invariants listed on [`Dataset`].
    pub fn validate(&self) -> Result<(), DatasetError> {
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            return Err(DatasetError::FieldCount(self.fields.len()));
        }
        check_text("title", &self.title)?;
        check_text("description", &self.description)?;
        let mut seen = HashSet::new();
        for f in &self.fields {
            if !seen.insert(&f.name) {
                return Err(DatasetError::DuplicateField(f.name.clone()));
            }
            f.class.admissible().map_err(|source| DatasetError::Classification { field: f.name.clone(), source })?;
            f.default_mask.check_fits(f.ty).map_err(|source| DatasetError::Mask { field: f.name.clone(), source })?;
            check_text("field description", &f.description)?;
        }
        for (role, key) in [
            ("person_key_field", &self.person_key_field),
            ("contributor_key_field", &self.contributor_key_field),
            ("holding_key_field", &self.holding_key_field),
        ] {
            if let Some(name) = key {
                if self.field(name).is_none() {
                    return Err(DatasetError::UnknownKeyField { role, name: name.clone() });
                }
            }
        }
        if self.holding_key_field.is_some() && self.contributor_key_field.is_none() {
            return Err(DatasetError::HoldingWithoutContributor);
        }
        Ok(())
    }

    /// The field named `name`, if any.
    pub fn field(&self, name: &FieldName) -> Option<&FieldDef> {
        self.fields.iter().find(|f| &f.name == name)
    }

    /// The position of the field named `name` in the schema.
    pub fn field_index(&self, name: &FieldName) -> Option<usize> {
        self.fields.iter().position(|f| &f.name == name)
    }

    /// The highest level among its fields.
    pub fn max_level(&self) -> Level {
        self.fields.iter().map(|f| f.class.level).max().unwrap_or(Level::G1)
    }
}

/// A published, immutable version of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The dataset.
    pub dataset: DatasetId,
    /// 1, 2, 3, … in publication order.
    pub version: u64,
    /// Rows in the version.
    pub rows: u64,
    /// Stored chunks (one delivered batch each).
    pub chunks: u64,
    /// SHA-256 over the SHA-256 digests of its stored chunks, concatenated in order: one pass
    /// over the data verifies a chunk and yields its part of the version's digest.
    pub sha256: [u8; 32],
    /// Who published it.
    pub publisher: ParticipantId,
    /// When it became visible.
    pub published_at: DateTime<Utc>,
    /// The publisher's idempotency key.
    pub idempotency_key: String,
    /// Released (visible to consumers), in review, or returned.
    pub status: crate::domain::review::VersionStatus,
    /// The review it is under (`None`: published without a review policy).
    pub review: Option<crate::domain::review::VersionReview>,
}

impl VersionInfo {
    /// `<dataset>@<version>`: how records and decisions name a version.
    pub fn version_id(&self) -> String {
        format!("{}@{}", self.dataset, self.version)
    }
}
