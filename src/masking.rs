//! Masks applied to columns before they leave the gateway (pure functions of their inputs).
//!
//! A value's text form is the one of [`crate::domain::values::text_values`].

use chrono::DateTime;
use ring::hmac;

use crate::domain::classification::Level;
use crate::domain::dataset::FieldType;
use crate::domain::mask::{DateGranularity, Mask};
use crate::domain::SHANGHAI;
use crate::pb::Column;

/// The type the values have after `mask`: `HASH`, `PARTIAL`, `GENERALIZE_DATE` and `BUCKET`
/// deliver text.
pub fn delivered_type(mask: &Mask, ty: FieldType) -> FieldType {
    match mask {
        Mask::None | Mask::Redact | Mask::Drop => ty,
        Mask::Partial { .. } | Mask::Hash | Mask::GeneralizeDate { .. } | Mask::Bucket { .. } => FieldType::String,
    }
}

/// The mask a field goes out with to one recipient: the grant's override when it sets one, else
/// the field's default; a field whose `level` is above the recipient's `clearance` never leaves
/// in clear (`NONE` becomes `REDACT`). A grant's override was checked at least as strict as the
/// default when the grant was approved ([`Mask::check_stricter_than`]).
pub fn mask_for(granted: Option<Mask>, default: Mask, level: Level, clearance: Level) -> Mask {
    effective_mask(granted.unwrap_or(default), level > clearance)
}

/// The mask actually applied: the field's level above the recipient's clearance never leaves
/// in clear (`NONE` becomes `REDACT`).
fn effective_mask(mask: Mask, above_clearance: bool) -> Mask {
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
        Mask::Hash => map_text(column, |v| hex::encode(hmac::sign(hash_key, v.as_bytes()))),
        Mask::Partial { keep_first, keep_last } => {
            map_text(column, |v| partial(v, *keep_first as usize, *keep_last as usize))
        }
        Mask::GeneralizeDate { granularity } => map_text(column, |v| generalize_date(v, ty, *granularity)),
        Mask::Bucket { width } => map_text(column, |v| bucket(v, ty, *width)),
    }
}

/// Maps every non-null value's text form (see [`text_values`]) through `f` into a text column,
/// keeping nulls. Values are dense (one per non-null row), so rows need no walking.
fn map_text(column: &Column, mut f: impl FnMut(&str) -> String) -> Column {
    let strings = if !column.strings.is_empty() {
        column.strings.iter().map(|v| f(v)).collect()
    } else if !column.ints.is_empty() {
        column.ints.iter().map(|v| f(&v.to_string())).collect()
    } else if !column.doubles.is_empty() {
        column.doubles.iter().map(|v| f(&v.to_string())).collect()
    } else {
        column.bools.iter().map(|v| f(if *v { "true" } else { "false" })).collect()
    };
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
            Ok(t) => t.with_timezone(&SHANGHAI).format("%Y-%m-%d").to_string(),
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
    fn the_grant_overrides_the_default_and_a_level_above_clearance_is_never_clear() {
        let p = Mask::Partial { keep_first: 1, keep_last: 1 };
        #[rustfmt::skip]
        let cases = [
            // granted,          default,     level,     clearance, applied
            (None,               Mask::None,  Level::G2, Level::G2, Mask::None),
            (None,               Mask::None,  Level::G1, Level::G4, Mask::None),
            (None,               Mask::None,  Level::G3, Level::G2, Mask::Redact),
            (None,               Mask::None,  Level::I,  Level::G4, Mask::Redact),
            (None,               Mask::Hash,  Level::G3, Level::G2, Mask::Hash),
            (None,               Mask::Drop,  Level::C,  Level::G4, Mask::Drop),
            (Some(Mask::Hash),   Mask::None,  Level::G2, Level::G4, Mask::Hash),
            (Some(p),            Mask::None,  Level::G4, Level::G2, p),
            (Some(Mask::Drop),   Mask::Hash,  Level::G1, Level::G1, Mask::Drop),
            (Some(Mask::Redact), Mask::Hash,  Level::G1, Level::G3, Mask::Redact),
            (Some(Mask::None),   Mask::None,  Level::G4, Level::G3, Mask::Redact),
        ];
        for (granted, default, level, clearance, applied) in cases {
            assert_eq!(
                mask_for(granted, default, level, clearance),
                applied,
                "{granted:?} over {default:?}, level {level} for clearance {clearance}"
            );
        }
    }

    mod property {
        use proptest::prelude::*;

        use super::super::*;
        use crate::domain::values::text_values;

        fn mask() -> impl Strategy<Value = Mask> {
            prop_oneof![
                Just(Mask::None),
                Just(Mask::Redact),
                Just(Mask::Drop),
                Just(Mask::Hash),
                (0u32..6, 0u32..6).prop_map(|(keep_first, keep_last)| Mask::Partial { keep_first, keep_last }),
                Just(Mask::GeneralizeDate { granularity: DateGranularity::Year }),
                Just(Mask::GeneralizeDate { granularity: DateGranularity::Month }),
                (1u64..5000).prop_map(|width| Mask::Bucket { width }),
            ]
        }

        fn level() -> impl Strategy<Value = Level> {
            proptest::sample::select(Level::ALL.to_vec())
        }

        /// A type and the text forms of a column of its values (`None` = null). Texts never
        /// contain `*`, so a value `PARTIAL` hides differs from its clear text.
        fn typed_values() -> impl Strategy<Value = (FieldType, Vec<Option<String>>)> {
            let of = |ty: FieldType, text: BoxedStrategy<String>| {
                proptest::collection::vec(proptest::option::weighted(0.9, text), 1..12).prop_map(move |v| (ty, v))
            };
            prop_oneof![
                of(FieldType::String, "[a-z0-9张三丰-]{1,12}".boxed()),
                of(FieldType::Int64, any::<i64>().prop_map(|i| i.to_string()).boxed()),
                of(
                    FieldType::Float64,
                    any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()).boxed()
                ),
                of(FieldType::Decimal, "-?[0-9]{1,7}(\\.[0-9]{1,3})?".boxed()),
                of(FieldType::Date, "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])".boxed()),
                of(
                    FieldType::Timestamp,
                    "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T[01][0-9]:[0-5][0-9]:[0-5][0-9]Z".boxed()
                ),
            ]
        }

        fn column(ty: FieldType, values: &[Option<String>]) -> Column {
            let mut c = Column::default();
            for (row, v) in values.iter().enumerate() {
                match v {
                    None => c.nulls.push(row as u32),
                    Some(v) => match ty {
                        FieldType::Int64 => c.ints.push(v.parse().expect("an integer")),
                        FieldType::Float64 => c.doubles.push(v.parse().expect("a double")),
                        _ => c.strings.push(v.clone()),
                    },
                }
            }
            c
        }

        proptest! {
            #[test]
            fn masking_never_returns_a_clear_value_above_clearance(
                granted in proptest::option::of(mask()),
                default in mask(),
                level in level(),
                clearance in level(),
                (ty, values) in typed_values(),
            ) {
                prop_assume!(level > clearance);
                prop_assume!(default.check_fits(ty).is_ok() && granted.is_none_or(|g| g.check_fits(ty).is_ok()));
                let mask = mask_for(granted, default, level, clearance);
                prop_assert_ne!(mask, Mask::None);
                let (clear, rows) = (column(ty, &values), values.len() as u32);
                let key = hmac::Key::new(hmac::HMAC_SHA256, b"recipient");
                let mut sent = vec![apply(&mask, ty, &clear, rows, &key)];
                let encoded = encoded::apply(&mask, ty, &prost::Message::encode_to_vec(&clear), &key);
                sent.extend(encoded.map(|e| <Column as prost::Message>::decode(e.as_slice()).expect("a column")));
                for sent in sent {
                    let sent = text_values(&sent, delivered_type(&mask, ty), rows);
                    for (row, (clear, sent)) in values.iter().zip(&sent).enumerate() {
                        if let (Some(clear), Some(sent)) = (clear, sent) {
                            prop_assert_ne!(clear, sent, "row {} with {:?}", row, mask);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nulls_survive_masks() {
        let c = Column { strings: vec!["abcdef".into()], nulls: vec![0], ..Default::default() };
        let m = apply(&Mask::Partial { keep_first: 1, keep_last: 1 }, FieldType::String, &c, 2, &key("k"));
        assert_eq!(m, Column { strings: vec!["a****f".into()], nulls: vec![0], ..Default::default() });
    }
}

/// Masks on encoded columns, without materialising a `String` per value: the hot path of masked
/// pulls. Each function returns the encoded masked `Column`, or `None` when the column's shape
/// has no fast path (the caller decodes and uses [`apply`]); results equal [`apply`]'s.
pub mod encoded {
    use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, skip_field, DecodeContext, WireType};
    use ring::hmac;

    use super::{bucket, generalize_date};
    use crate::domain::dataset::FieldType;
    use crate::domain::mask::Mask;

    /// The parts of an encoded `Column` the fast path reads.
    #[derive(Default)]
    struct View<'a> {
        strings: Vec<&'a [u8]>,
        ints: Vec<i64>,
        /// Encoded `nulls` fields (key and payload), copied as they are.
        nulls: Vec<&'a [u8]>,
    }

    fn zigzag(n: u64) -> i64 {
        ((n >> 1) as i64) ^ -((n & 1) as i64)
    }

    fn view(column: &[u8]) -> Option<View<'_>> {
        let mut v = View::default();
        let mut buf = column;
        while !buf.is_empty() {
            let start = column.len() - buf.len();
            let (tag, wire_type) = decode_key(&mut buf).ok()?;
            match (tag, wire_type) {
                (1, WireType::LengthDelimited) => {
                    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                    let s = buf.get(..len)?;
                    v.strings.push(s);
                    buf = &buf[len..];
                }
                (2, WireType::LengthDelimited) => {
                    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                    let mut packed = buf.get(..len)?;
                    while !packed.is_empty() {
                        v.ints.push(zigzag(decode_varint(&mut packed).ok()?));
                    }
                    buf = &buf[len..];
                }
                (2, WireType::Varint) => v.ints.push(zigzag(decode_varint(&mut buf).ok()?)),
                (5, _) => {
                    skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?;
                    v.nulls.push(&column[start..column.len() - buf.len()]);
                }
                // Doubles, booleans, unknown fields: no fast path.
                _ => return None,
            }
        }
        Some(v)
    }

    fn put(out: &mut Vec<u8>, s: &[u8]) {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s);
    }

    const HEX: &[u8; 16] = b"0123456789abcdef";

    /// Appends one `HASH` value: the hex HMAC of `v`.
    fn put_hash(out: &mut Vec<u8>, key: &hmac::Key, v: &[u8]) {
        let tag = hmac::sign(key, v);
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(64, out);
        for b in tag.as_ref() {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
    }

    /// Appends one `PARTIAL` value without building it first: the same text as
    /// [`super::partial`].
    fn put_partial(out: &mut Vec<u8>, v: &str, first: usize, last: usize) {
        let star_run = |out: &mut Vec<u8>, n: usize| out.resize(out.len() + n, b'*');
        let chars = if v.is_ascii() { v.len() } else { v.chars().count() };
        encode_key(1, WireType::LengthDelimited, out);
        if first + last >= chars {
            encode_varint(chars as u64, out);
            star_run(out, chars);
            return;
        }
        let (head, tail) = if v.is_ascii() {
            (first, chars - last)
        } else {
            let at = |k: usize| v.char_indices().nth(k).map_or(v.len(), |(i, _)| i);
            (at(first), at(chars - last))
        };
        let hidden = chars - first - last;
        encode_varint((head + hidden + v.len() - tail) as u64, out);
        out.extend_from_slice(&v.as_bytes()[..head]);
        star_run(out, hidden);
        out.extend_from_slice(&v.as_bytes()[tail..]);
    }

    /// Appends one integer `BUCKET` value, `[lo,hi)`.
    fn put_int_bucket(out: &mut Vec<u8>, v: i64, width: u64) {
        let w = i128::from(width);
        let lo = i128::from(v).div_euclid(w) * w;
        let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (lo, hi) = (a.format(lo).as_bytes(), b.format(lo + w).as_bytes());
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint((lo.len() + hi.len() + 3) as u64, out);
        out.push(b'[');
        out.extend_from_slice(lo);
        out.push(b',');
        out.extend_from_slice(hi);
        out.push(b')');
    }

    /// Applies `mask` to an encoded column of type `ty`.
    pub fn apply(mask: &Mask, ty: FieldType, column: &[u8], hash_key: &hmac::Key) -> Option<Vec<u8>> {
        let v = view(column)?;
        if !v.strings.is_empty() && !v.ints.is_empty() {
            return None;
        }
        let values = v.strings.len() + v.ints.len();
        let per_value = match mask {
            Mask::Hash => 66,
            Mask::Bucket { .. } => 44,
            _ => 0,
        };
        let mut out = Vec::with_capacity(column.len() + per_value * values);
        let mut text = itoa::Buffer::new();
        match (mask, v.ints.is_empty()) {
            (Mask::Hash, true) => v.strings.iter().for_each(|s| put_hash(&mut out, hash_key, s)),
            (Mask::Hash, false) => v.ints.iter().for_each(|i| put_hash(&mut out, hash_key, text.format(*i).as_bytes())),
            (Mask::Partial { keep_first, keep_last }, true) => {
                for s in &v.strings {
                    put_partial(&mut out, std::str::from_utf8(s).ok()?, *keep_first as usize, *keep_last as usize);
                }
            }
            (Mask::Bucket { width }, false) => v.ints.iter().for_each(|i| put_int_bucket(&mut out, *i, *width)),
            (Mask::Bucket { width }, true) if ty == FieldType::Decimal => {
                for s in &v.strings {
                    put(&mut out, bucket(std::str::from_utf8(s).ok()?, ty, *width).as_bytes());
                }
            }
            (Mask::GeneralizeDate { granularity }, true) => {
                for s in &v.strings {
                    put(&mut out, generalize_date(std::str::from_utf8(s).ok()?, ty, *granularity).as_bytes());
                }
            }
            _ => return None,
        }
        for n in &v.nulls {
            out.extend_from_slice(n);
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::domain::mask::DateGranularity;
        use crate::pb::Column;
        use prost::Message;

        #[test]
        fn the_fast_path_equals_the_decoded_path() {
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
            let strings = Column {
                strings: vec!["张三丰".into(), "13812345678".into(), "ab".into(), String::new(), "a张b三c".into()],
                nulls: vec![1],
                ..Default::default()
            };
            let ints = Column { ints: vec![-1, 250, 9_999], nulls: vec![0, 4], ..Default::default() };
            let dates = Column { strings: vec!["2025-06-30".into()], ..Default::default() };
            let extremes = Column { ints: vec![i64::MIN, i64::MAX], ..Default::default() };
            let cases: Vec<(Mask, FieldType, &Column, u32)> = vec![
                (Mask::Hash, FieldType::String, &strings, 6),
                (Mask::Hash, FieldType::Int64, &ints, 5),
                (Mask::Partial { keep_first: 1, keep_last: 2 }, FieldType::String, &strings, 6),
                (Mask::Partial { keep_first: 0, keep_last: 1 }, FieldType::String, &strings, 6),
                (Mask::Partial { keep_first: 2, keep_last: 0 }, FieldType::String, &strings, 6),
                (Mask::Bucket { width: 100 }, FieldType::Int64, &ints, 5),
                (Mask::Bucket { width: 7 }, FieldType::Int64, &extremes, 2),
                (Mask::Hash, FieldType::Int64, &extremes, 2),
                (Mask::GeneralizeDate { granularity: DateGranularity::Month }, FieldType::Date, &dates, 1),
            ];
            for (mask, ty, column, rows) in cases {
                let fast = apply(&mask, ty, &column.encode_to_vec(), &key).expect("a fast path");
                let slow = super::super::apply(&mask, ty, column, rows, &key);
                assert_eq!(Column::decode(fast.as_slice()).unwrap(), slow, "{mask:?}");
            }
        }

        #[test]
        fn shapes_without_a_fast_path_fall_back() {
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
            let doubles = Column { doubles: vec![1.5], ..Default::default() };
            assert!(apply(&Mask::Hash, FieldType::Float64, &doubles.encode_to_vec(), &key).is_none());
        }
    }
}
