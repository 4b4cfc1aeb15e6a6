//! Masks: how a field's values are transformed before they leave the gateway.

use serde::{Deserialize, Serialize};

use super::classification::named_enum;
use super::dataset::FieldType;

named_enum! {
    /// What `GENERALIZE_DATE` keeps.
    DateGranularity, "date granularity" {
        /// `YYYY`.
        Year = "YEAR",
        /// `YYYY-MM`.
        Month = "MONTH",
    }
}

/// A mask (architecture.md "Masks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mask {
    /// The value in clear.
    None,
    /// Null.
    Redact,
    /// The column is omitted.
    Drop,
    /// The first `keep_first` and last `keep_last` characters, `*` in between.
    Partial {
        /// Characters kept at the start.
        keep_first: u32,
        /// Characters kept at the end.
        keep_last: u32,
    },
    /// HMAC-SHA-256 keyed per recipient: stable for one recipient, unlinkable across recipients.
    Hash,
    /// The year or month of a date.
    GeneralizeDate {
        /// What is kept.
        granularity: DateGranularity,
    },
    /// The range `[k·width, (k+1)·width)` holding the value.
    Bucket {
        /// Range width, positive.
        width: u64,
    },
}

/// Why a mask does not fit a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    /// The mask's kind does not apply to the field's type.
    #[error("{mask} does not apply to a {ty} field")]
    WrongType {
        /// The mask kind.
        mask: &'static str,
        /// The field's type.
        ty: FieldType,
    },
    /// `BUCKET` width 0.
    #[error("BUCKET width must be positive")]
    ZeroWidth,
    /// A grant's mask would reveal more than the field's default.
    #[error("{requested} is less strict than the field's default {default}")]
    LessStrict {
        /// The mask asked for.
        requested: &'static str,
        /// The field's default.
        default: &'static str,
    },
}

impl Mask {
    /// The kind's wire name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Mask::None => "NONE",
            Mask::Redact => "REDACT",
            Mask::Drop => "DROP",
            Mask::Partial { .. } => "PARTIAL",
            Mask::Hash => "HASH",
            Mask::GeneralizeDate { .. } => "GENERALIZE_DATE",
            Mask::Bucket { .. } => "BUCKET",
        }
    }

    /// How much the mask hides: `NONE` 0; `PARTIAL`, `GENERALIZE_DATE`, `BUCKET` 1 (they reveal
    /// part of the value); `HASH` 2 (reveals only equality); `REDACT` 3; `DROP` 4.
    pub fn strictness(&self) -> u8 {
        match self {
            Mask::None => 0,
            Mask::Partial { .. } | Mask::GeneralizeDate { .. } | Mask::Bucket { .. } => 1,
            Mask::Hash => 2,
            Mask::Redact => 3,
            Mask::Drop => 4,
        }
    }

    /// A field delivered with this mask is not part of the transfer (docs/rules.md §1).
    pub fn removes_field(&self) -> bool {
        matches!(self, Mask::Redact | Mask::Drop)
    }

    /// Checks that the mask applies to a field of type `ty`.
    pub fn check_fits(&self, ty: FieldType) -> Result<(), MaskError> {
        let fits = match self {
            Mask::None | Mask::Redact | Mask::Drop | Mask::Hash => true,
            Mask::Partial { .. } => matches!(ty, FieldType::String | FieldType::Decimal),
            Mask::GeneralizeDate { .. } => matches!(ty, FieldType::Date | FieldType::Timestamp),
            Mask::Bucket { width } => {
                if *width == 0 {
                    return Err(MaskError::ZeroWidth);
                }
                matches!(ty, FieldType::Int64 | FieldType::Float64 | FieldType::Decimal)
            }
        };
        if fits {
            Ok(())
        } else {
            Err(MaskError::WrongType { mask: self.kind_name(), ty })
        }
    }

    /// Checks that `self`, set by a grant, is at least as strict as `default` and fits `ty`.
    /// Same strictness with different parameters is allowed only for the same kind with
    /// parameters revealing no more (`PARTIAL` keeping fewer characters, a wider `BUCKET`,
    /// `YEAR` instead of `MONTH`).
    pub fn check_stricter_than(&self, default: &Mask, ty: FieldType) -> Result<(), MaskError> {
        self.check_fits(ty)?;
        let less = || MaskError::LessStrict { requested: self.kind_name(), default: default.kind_name() };
        match self.strictness().cmp(&default.strictness()) {
            std::cmp::Ordering::Less => Err(less()),
            std::cmp::Ordering::Greater => Ok(()),
            std::cmp::Ordering::Equal => {
                let ok = match (self, default) {
                    (a, b) if a == b => true,
                    (
                        Mask::Partial { keep_first: a1, keep_last: a2 },
                        Mask::Partial { keep_first: b1, keep_last: b2 },
                    ) => a1 <= b1 && a2 <= b2,
                    (Mask::Bucket { width: a }, Mask::Bucket { width: b }) => a >= b && a % b == 0,
                    (Mask::GeneralizeDate { granularity: DateGranularity::Year }, Mask::GeneralizeDate { .. }) => true,
                    _ => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(less())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_fit_only_their_types() {
        assert!(Mask::Partial { keep_first: 1, keep_last: 1 }.check_fits(FieldType::Int64).is_err());
        assert!(Mask::GeneralizeDate { granularity: DateGranularity::Year }.check_fits(FieldType::Date).is_ok());
        assert_eq!(Mask::Bucket { width: 0 }.check_fits(FieldType::Int64), Err(MaskError::ZeroWidth));
        assert!(Mask::Hash.check_fits(FieldType::Bool).is_ok());
    }

    #[test]
    fn a_grant_cannot_loosen_a_default_mask() {
        let ty = FieldType::String;
        assert!(Mask::None.check_stricter_than(&Mask::Hash, ty).is_err());
        assert!(Mask::Redact.check_stricter_than(&Mask::Hash, ty).is_ok());
        let p = |a, b| Mask::Partial { keep_first: a, keep_last: b };
        assert!(p(1, 1).check_stricter_than(&p(2, 2), ty).is_ok());
        assert!(p(3, 1).check_stricter_than(&p(2, 2), ty).is_err());
        let b = |w| Mask::Bucket { width: w };
        assert!(b(200).check_stricter_than(&b(100), FieldType::Int64).is_ok());
        assert!(b(150).check_stricter_than(&b(100), FieldType::Int64).is_err());
    }
}
