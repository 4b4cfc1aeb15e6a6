//! Masks applied to columns before they leave the gateway (pure functions of their inputs).

use chrono::DateTime;
use ring::hmac;

use crate::domain::dataset::FieldType;
use crate::domain::mask::{DateGranularity, Mask};
use crate::domain::record::shanghai;
use crate::domain::values::text_values;
use crate::pb::Column;

/// The type the values have after `mask`: `HASH`, `PARTIAL`, `GENERALIZE_DATE` and `BUCKET`
/// deliver text.
pub fn delivered_type(mask: &Mask, ty: FieldType) -> FieldType {
    match mask {
        Mask::None | Mask::Redact | Mask::Drop => ty,
        Mask::Partial { .. } | Mask::Hash | Mask::GeneralizeDate { .. } | Mask::Bucket { .. } => FieldType::String,
    }
}

/// The mask actually applied: the field's level above the recipient's clearance never leaves
/// in clear (`NONE` becomes `REDACT`).
pub fn effective_mask(mask: Mask, above_clearance: bool) -> Mask {
    if above_clearance && mask == Mask::None {
        Mask::Redact
    } else {
        mask
    }
}

/// Applies `mask` to a column of `row_count` rows of type `ty`. `hash_key` is the recipient's
/// key for `HASH`. `DROP` is the caller's business (the column is not delivered); here it
/// behaves like `REDACT`.
///
/// Precondition: the column passed [`crate::domain::values::check_column`] for `ty`.
pub fn apply(mask: &Mask, ty: FieldType, column: &Column, row_count: u32, hash_key: &hmac::Key) -> Column {
    match mask {
        Mask::None => column.clone(),
        Mask::Redact | Mask::Drop => Column { nulls: (0..row_count).collect(), ..Default::default() },
        Mask::Hash => map_text(column, ty, row_count, |v| hex::encode(hmac::sign(hash_key, v.as_bytes()))),
        Mask::Partial { keep_first, keep_last } => {
            map_text(column, ty, row_count, |v| partial(&v, *keep_first as usize, *keep_last as usize))
        }
        Mask::GeneralizeDate { granularity } => {
            map_text(column, ty, row_count, |v| generalize_date(&v, ty, *granularity))
        }
        Mask::Bucket { width } => map_text(column, ty, row_count, |v| bucket(&v, ty, *width)),
    }
}

/// Maps every non-null value's text form through `f` into a text column, keeping nulls.
fn map_text(column: &Column, ty: FieldType, row_count: u32, mut f: impl FnMut(String) -> String) -> Column {
    let strings = text_values(column, ty, row_count).into_iter().flatten().map(&mut f).collect();
    Column { strings, nulls: column.nulls.clone(), ..Default::default() }
}

/// Keeps the first and last characters; a value too short to keep both ends and hide
/// something is hidden entirely.
fn partial(v: &str, first: usize, last: usize) -> String {
    let n = v.chars().count();
    if first + last >= n {
        return "*".repeat(n);
    }
    let head: String = v.chars().take(first).collect();
    let tail: String = v.chars().skip(n - last).collect();
    format!("{head}{}{tail}", "*".repeat(n - first - last))
}

/// The year or month of a date, or of a timestamp in Asia/Shanghai.
fn generalize_date(v: &str, ty: FieldType, g: DateGranularity) -> String {
    let date = match ty {
        FieldType::Timestamp => match DateTime::parse_from_rfc3339(v) {
            Ok(t) => t.with_timezone(&shanghai()).format("%Y-%m-%d").to_string(),
            Err(_) => return String::new(),
        },
        _ => v.to_owned(),
    };
    let keep = match g {
        DateGranularity::Year => 4,
        DateGranularity::Month => 7,
    };
    date.chars().take(keep).collect()
}

/// `[lo,hi)` with `lo = floor(v / width) · width`, computed exactly for integers and decimals.
fn bucket(v: &str, ty: FieldType, width: u64) -> String {
    let w = i128::from(width);
    let floor = match ty {
        FieldType::Float64 => {
            let x: f64 = v.parse().unwrap_or(0.0);
            let k = (x / width as f64).floor();
            // Doubles beyond i128 are clamped; a bucket that wide reveals nothing anyway.
            k.clamp(i128::MIN as f64, i128::MAX as f64) as i128
        }
        _ => {
            let (neg, body) = match v.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, v),
            };
            let (int, frac) = body.split_once('.').unwrap_or((body, ""));
            let int: i128 = int.parse().unwrap_or(0);
            let has_frac = frac.bytes().any(|b| b != b'0');
            let x = if neg { -int } else { int };
            let k = x.div_euclid(w);
            // A negative value with a fractional part lies below its integer part.
            if neg && has_frac && x.rem_euclid(w) == 0 {
                k - 1
            } else {
                k
            }
        }
    };
    let lo = floor.saturating_mul(w);
    format!("[{lo},{})", lo.saturating_add(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, r.as_bytes())
    }

    fn strings(v: &[&str]) -> Column {
        Column { strings: v.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn partial_keeps_ends_and_hides_short_values() {
        assert_eq!(partial("13812345678", 3, 4), "138****5678");
        assert_eq!(partial("张三丰", 1, 0), "张**");
        assert_eq!(partial("ab", 1, 1), "**");
    }

    #[test]
    fn hash_is_stable_per_recipient_and_differs_across_recipients() {
        let c = strings(&["110101199001011234"]);
        let a1 = apply(&Mask::Hash, FieldType::String, &c, 1, &key("a"));
        let a2 = apply(&Mask::Hash, FieldType::String, &c, 1, &key("a"));
        let b = apply(&Mask::Hash, FieldType::String, &c, 1, &key("b"));
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_eq!(a1.strings[0].len(), 64);
        assert!(!a1.strings[0].contains("1101"));
    }

    #[test]
    fn dates_generalize_to_year_or_month() {
        let c = strings(&["2025-06-30"]);
        let y = apply(&Mask::GeneralizeDate { granularity: DateGranularity::Year }, FieldType::Date, &c, 1, &key("k"));
        assert_eq!(y.strings, vec!["2025"]);
        let t = strings(&["2025-06-30T20:00:00Z"]);
        let m = apply(
            &Mask::GeneralizeDate { granularity: DateGranularity::Month },
            FieldType::Timestamp,
            &t,
            1,
            &key("k"),
        );
        assert_eq!(m.strings, vec!["2025-07"], "20:00 UTC on 30 June is 1 July in Shanghai");
    }

    #[test]
    fn buckets_floor_exactly() {
        assert_eq!(bucket("250", FieldType::Int64, 100), "[200,300)");
        assert_eq!(bucket("-1", FieldType::Int64, 100), "[-100,0)");
        assert_eq!(bucket("-200", FieldType::Decimal, 100), "[-200,-100)");
        assert_eq!(bucket("-200.5", FieldType::Decimal, 100), "[-300,-200)");
        assert_eq!(bucket("199.99", FieldType::Decimal, 100), "[100,200)");
        assert_eq!(bucket("-0.5", FieldType::Float64, 1), "[-1,0)");
    }

    #[test]
    fn redact_nulls_every_row_and_keeps_nothing() {
        let c = Column { ints: vec![1, 2, 3], ..Default::default() };
        let r = apply(&Mask::Redact, FieldType::Int64, &c, 3, &key("k"));
        assert_eq!(r, Column { nulls: vec![0, 1, 2], ..Default::default() });
    }

    #[test]
    fn a_field_above_clearance_never_leaves_in_clear() {
        assert_eq!(effective_mask(Mask::None, true), Mask::Redact);
        assert_eq!(effective_mask(Mask::Hash, true), Mask::Hash);
        assert_eq!(effective_mask(Mask::None, false), Mask::None);
    }

    #[test]
    fn nulls_survive_masks() {
        let c = Column { strings: vec!["abcdef".into()], nulls: vec![0], ..Default::default() };
        let m = apply(&Mask::Partial { keep_first: 1, keep_last: 1 }, FieldType::String, &c, 2, &key("k"));
        assert_eq!(m, Column { strings: vec!["a****f".into()], nulls: vec![0], ..Default::default() });
    }
}
