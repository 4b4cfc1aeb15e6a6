//! Values in columns: checking a column against its field's type, and values' text forms.

use chrono::{DateTime, NaiveDate};

use super::dataset::{FieldDef, FieldType};
use crate::pb::Column;

/// Upper bound on one text value, in bytes.
pub const MAX_VALUE_BYTES: usize = 65_536;

/// Why a column does not match its field. Rows are 0-based within the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A value does not parse as the field's type.
    #[error("row {row}: {reason}")]
    BadValue {
        /// The row.
        row: u64,
        /// What is wrong.
        reason: String,
    },
    /// The column's shape does not match (values in the wrong array, wrong count, bad nulls).
    #[error("{0}")]
    Shape(String),
}

/// Which `Column` array carries values of a type.
pub fn carrier(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String | FieldType::Date | FieldType::Timestamp | FieldType::Decimal => "strings",
        FieldType::Int64 => "ints",
        FieldType::Float64 => "doubles",
        FieldType::Bool => "bools",
    }
}

/// The number of values in the array that carries `ty`, and whether any other array is non-empty.
fn counts(c: &Column, ty: FieldType) -> (usize, bool) {
    let lens = [c.strings.len(), c.ints.len(), c.doubles.len(), c.bools.len()];
    let own = match carrier(ty) {
        "strings" => 0,
        "ints" => 1,
        "doubles" => 2,
        _ => 3,
    };
    let others = lens.iter().enumerate().any(|(i, n)| i != own && *n > 0);
    (lens[own], others)
}

/// The row of the `k`-th non-null value, given the sorted null rows.
fn row_of_value(nulls: &[u32], k: usize) -> u64 {
    let mut row = k as u64;
    for &n in nulls {
        if u64::from(n) <= row {
            row += 1;
        } else {
            break;
        }
    }
    row
}

/// Checks a decimal's text: optional `-`, digits, optional `.` and digits, at most 38 digits.
pub fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits_ok = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits_ok(int) && frac.is_none_or(digits_ok) && int.len() + frac.map_or(0, str::len) <= 38
}

/// Checks one column of `row_count` rows against `field`.
///
/// # Errors
/// [`ValueError::Shape`] when values are in an array other than the type's, when the number of
/// values is not `row_count − nulls`, or when `nulls` is not strictly ascending below
/// `row_count` (or non-empty for a non-nullable field); [`ValueError::BadValue`] naming the
/// first bad value's row.
pub fn check_column(field: &FieldDef, row_count: u32, c: &Column) -> Result<(), ValueError> {
    if !c.nulls.is_empty() {
        if !field.nullable {
            return Err(ValueError::BadValue {
                row: u64::from(c.nulls[0]),
                reason: "null in a field that is not nullable".into(),
            });
        }
        if c.nulls.windows(2).any(|w| w[0] >= w[1]) || c.nulls.last().is_some_and(|&n| n >= row_count) {
            return Err(ValueError::Shape("nulls must be strictly ascending row numbers below row_count".into()));
        }
    }
    let (n, others) = counts(c, field.ty);
    if others {
        return Err(ValueError::Shape(format!(
            "a {} field carries its values in `{}` only",
            field.ty,
            carrier(field.ty)
        )));
    }
    let expected = row_count as usize - c.nulls.len();
    if n != expected {
        return Err(ValueError::Shape(format!("{n} values for {expected} non-null rows")));
    }
    let bad = |k: usize, reason: String| ValueError::BadValue { row: row_of_value(&c.nulls, k), reason };
    match field.ty {
        FieldType::Int64 | FieldType::Bool => {}
        FieldType::Float64 => {
            if let Some(k) = c.doubles.iter().position(|d| !d.is_finite()) {
                return Err(bad(k, "FLOAT64 must be finite".into()));
            }
        }
        FieldType::String => {
            if let Some(k) = c.strings.iter().position(|s| s.len() > MAX_VALUE_BYTES) {
                return Err(bad(k, format!("text longer than {MAX_VALUE_BYTES} bytes")));
            }
        }
        FieldType::Date => {
            if let Some(k) =
                c.strings.iter().position(|s| s.len() != 10 || NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err())
            {
                return Err(bad(k, "DATE must be a calendar date YYYY-MM-DD".into()));
            }
        }
        FieldType::Timestamp => {
            if let Some(k) = c.strings.iter().position(|s| DateTime::parse_from_rfc3339(s).is_err()) {
                return Err(bad(k, "TIMESTAMP must be an RFC 3339 date-time with offset".into()));
            }
        }
        FieldType::Decimal => {
            if let Some(k) = c.strings.iter().position(|s| !is_decimal(s)) {
                return Err(bad(k, "DECIMAL must be digits with an optional sign and point, at most 38 digits".into()));
            }
        }
    }
    Ok(())
}

/// The text form of each row's value (`None` for null): what `HASH` keys and row filters
/// compare. Integers in decimal, doubles in Rust's shortest round-trip form, booleans
/// `true`/`false`, text as is.
pub fn text_values(c: &Column, ty: FieldType, row_count: u32) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(row_count as usize);
    let mut nulls = c.nulls.iter().peekable();
    let mut k = 0usize;
    for row in 0..row_count {
        if nulls.peek() == Some(&&row) {
            nulls.next();
            out.push(None);
            continue;
        }
        let v = match carrier(ty) {
            "strings" => c.strings.get(k).cloned(),
            "ints" => c.ints.get(k).map(i64::to_string),
            "doubles" => c.doubles.get(k).map(f64::to_string),
            _ => c.bools.get(k).map(bool::to_string),
        };
        k += 1;
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::classification::{Classification, Level, Pi, Share};
    use crate::domain::dataset::FieldName;
    use crate::domain::mask::Mask;

    fn field(ty: FieldType, nullable: bool) -> FieldDef {
        FieldDef {
            name: FieldName::parse("f").unwrap(),
            ty,
            class: Classification::new(Level::G2, Pi::None, false, Share::Conditional, None),
            default_mask: Mask::None,
            description: String::new(),
            nullable,
        }
    }

    #[test]
    fn a_bad_value_names_its_row_counting_nulls() {
        let c =
            Column { strings: vec!["2025-01-01".into(), "2025-02-30".into()], nulls: vec![0], ..Default::default() };
        let err = check_column(&field(FieldType::Date, true), 3, &c).unwrap_err();
        assert_eq!(err, ValueError::BadValue { row: 2, reason: "DATE must be a calendar date YYYY-MM-DD".into() });
    }

    #[test]
    fn values_in_the_wrong_array_are_refused() {
        let c = Column { strings: vec!["1".into()], ..Default::default() };
        assert!(matches!(check_column(&field(FieldType::Int64, false), 1, &c), Err(ValueError::Shape(_))));
    }

    #[test]
    fn nulls_in_a_non_nullable_field_are_refused() {
        let c = Column { nulls: vec![0], ..Default::default() };
        assert!(check_column(&field(FieldType::Int64, false), 1, &c).is_err());
        assert!(check_column(&field(FieldType::Int64, true), 1, &c).is_ok());
    }

    #[test]
    fn decimals_are_checked() {
        for ok in ["0", "-1.5", "12345678901234567890.123456789012345678"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", "-", "1.", ".5", "1e5", "+1", "1,5", &"9".repeat(39)] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn text_values_follow_rows() {
        let c = Column { ints: vec![7, -2], nulls: vec![1], ..Default::default() };
        assert_eq!(text_values(&c, FieldType::Int64, 3), vec![Some("7".into()), None, Some("-2".into())]);
    }
}

/// Column surgery used when re-chunking uploads and filtering rows. Each function keeps the
/// invariant of a checked column: one value per non-null row, in the array of its type.
pub mod ops {
    use crate::pb::Column;

    /// Appends `src` (of `src_rows` rows) after the `dst_rows` rows of `dst`.
    pub fn append(dst: &mut Column, dst_rows: u32, src: Column) {
        dst.strings.extend(src.strings);
        dst.ints.extend(src.ints);
        dst.doubles.extend(src.doubles);
        dst.bools.extend(src.bools);
        dst.nulls.extend(src.nulls.into_iter().map(|n| n + dst_rows));
    }

    /// Removes the first `k` rows of `c` and returns them as a column; `c` keeps the rest,
    /// renumbered from 0.
    pub fn split_front(c: &mut Column, k: u32) -> Column {
        let nulls_in_head = c.nulls.partition_point(|&n| n < k);
        let values = k as usize - nulls_in_head;
        fn front<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
            let n = n.min(v.len());
            let tail = v.split_off(n);
            std::mem::replace(v, tail)
        }
        let head_nulls = front(&mut c.nulls, nulls_in_head);
        for n in &mut c.nulls {
            *n -= k;
        }
        Column {
            strings: front(&mut c.strings, values),
            ints: front(&mut c.ints, values),
            doubles: front(&mut c.doubles, values),
            bools: front(&mut c.bools, values),
            nulls: head_nulls,
        }
    }

    /// The rows `keep` (ascending) of a column of `rows` rows.
    pub fn select(c: &Column, rows: u32, keep: &[u32]) -> Column {
        let mut out = Column::default();
        let mut nulls = c.nulls.iter().peekable();
        let mut k = 0usize; // value index of the current row
        let mut want = keep.iter().peekable();
        let mut out_row = 0u32;
        for row in 0..rows {
            let is_null = nulls.peek() == Some(&&row);
            if is_null {
                nulls.next();
            }
            if want.peek() == Some(&&row) {
                want.next();
                if is_null {
                    out.nulls.push(out_row);
                } else {
                    if let Some(v) = c.strings.get(k) {
                        out.strings.push(v.clone());
                    }
                    if let Some(v) = c.ints.get(k) {
                        out.ints.push(*v);
                    }
                    if let Some(v) = c.doubles.get(k) {
                        out.doubles.push(*v);
                    }
                    if let Some(v) = c.bools.get(k) {
                        out.bools.push(*v);
                    }
                }
                out_row += 1;
            }
            if !is_null {
                k += 1;
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn split_front_keeps_rows_and_nulls_aligned() {
            // rows: 0:a 1:null 2:b 3:c 4:null
            let mut c =
                Column { strings: vec!["a".into(), "b".into(), "c".into()], nulls: vec![1, 4], ..Default::default() };
            let head = split_front(&mut c, 3);
            assert_eq!(head, Column { strings: vec!["a".into(), "b".into()], nulls: vec![1], ..Default::default() });
            assert_eq!(c, Column { strings: vec!["c".into()], nulls: vec![1], ..Default::default() });
        }

        #[test]
        fn append_renumbers_nulls() {
            let mut a = Column { ints: vec![1], nulls: vec![1], ..Default::default() };
            append(&mut a, 2, Column { ints: vec![2], nulls: vec![0], ..Default::default() });
            assert_eq!(a, Column { ints: vec![1, 2], nulls: vec![1, 2], ..Default::default() });
        }

        #[test]
        fn select_takes_rows_in_order() {
            let c = Column { ints: vec![10, 30], nulls: vec![1], ..Default::default() };
            assert_eq!(select(&c, 3, &[1, 2]), Column { ints: vec![30], nulls: vec![0], ..Default::default() });
            assert_eq!(select(&c, 3, &[0, 2]), Column { ints: vec![10, 30], ..Default::default() });
        }
    }
}
