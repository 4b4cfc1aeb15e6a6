//! RFC 8785 JSON Canonicalization Scheme (JCS) serialization of `serde_json::Value`.

use serde_json::{Number, Value};

/// Largest integer magnitude accepted for JSON integers: 2^53 − 1 (ECMAScript `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no RFC 8785 canonical form (as implemented here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// Returned for an integer whose magnitude exceeds 2^53 − 1. Such integers are
    /// not exactly representable as IEEE-754 doubles, which RFC 8785 requires;
    /// this crate's records only use small integers, so they are rejected rather
    /// than silently rounded. Also returned for a double from 2^53 up to 1e21, whose
    /// canonical text is such an integer. The field is the integer's decimal text.
    #[error("integer {0} is outside the exactly representable range ±(2^53 − 1)")]
    IntegerOutOfRange(String),
    /// Returned for NaN or ±Infinity (not representable in JSON). `serde_json`
    /// normally cannot hold these; the check is defensive.
    #[error("non-finite number {0} has no JSON representation")]
    NonFiniteNumber(String),
}

/// Serializes `value` to its RFC 8785 canonical JSON text.
///
/// - Object members are sorted by the UTF-16 code units of their keys; no whitespace.
/// - Strings escape only `"`, `\`, and U+0000–U+001F (as `\b \t \n \f \r` or
///   `\u00xx` with lowercase hex); everything else is emitted as literal UTF-8.
/// - Integers (`i64`/`u64`) with magnitude ≤ 2^53 − 1 are printed plainly; floats use
///   the ECMAScript Number-to-String form (`-0` → `0`, exponent form `1e+21` / `1e-7`
///   for magnitudes ≥ 1e21 or < 1e-6).
///
/// Note: this canonicalizes the `f64` held by the `Value`. `serde_json` without its
/// `float_roundtrip` feature may parse some decimal texts to a neighbouring double
/// (e.g. `333333333.33333329`); enable that feature if floats come from JSON text.
///
/// # Errors
/// [`CanonicalError::IntegerOutOfRange`] for integers beyond ±(2^53 − 1);
/// [`CanonicalError::NonFiniteNumber`] for NaN/Infinity.
pub fn to_canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::IntegerOutOfRange(u.to_string()));
        }
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::IntegerOutOfRange(i.to_string()));
        }
        out.push_str(&i.to_string());
    } else {
        match n.as_f64() {
            Some(f) => {
                let text = es_number_to_string(f)?;
                // From 2^53 up to 1e21 a double prints as an integer, which would read back as
                // an integer out of range: refuse it as one, so that canonical text stays
                // canonical when read back.
                if f.abs() > MAX_SAFE_INTEGER as f64 && !text.contains(['.', 'e']) {
                    return Err(CanonicalError::IntegerOutOfRange(text));
                }
                out.push_str(&text);
            }
            None => return Err(CanonicalError::NonFiniteNumber(n.to_string())),
        }
    }
    Ok(())
}

/// ECMAScript `Number::toString(x)` (ECMA-262 §6.1.6.1.20) for finite `x`,
/// using Rust's shortest round-trip digits.
fn es_number_to_string(x: f64) -> Result<String, CanonicalError> {
    if !x.is_finite() {
        return Err(CanonicalError::NonFiniteNumber(x.to_string()));
    }
    if x == 0.0 {
        return Ok("0".to_owned()); // covers -0
    }
    if x < 0.0 {
        return Ok(format!("-{}", es_number_to_string(-x)?));
    }
    // `{:e}` yields the shortest round-trip digit count k as "d[.ddd]e<exp>", but on
    // an exact tie between two k-digit candidates it may not pick the even one as
    // ECMAScript requires. Re-round the exact value to k digits (Rust's precision
    // formatting is exact, ties-to-even) and keep that if it still round-trips.
    let shortest = format!("{x:e}");
    let k = shortest.split_once('e').map_or(0, |(m, _)| m.len() - usize::from(m.contains('.')));
    let closest = format!("{:.*e}", k.saturating_sub(1), x);
    let sci = if closest.parse::<f64>() == Ok(x) { closest } else { shortest };
    let (mantissa, exp) = sci.split_once('e').expect("{:e} output contains 'e'");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let k = digits.len() as i32;
    let n = exp + 1; // value = 0.d1d2…dk × 10^n
    let s = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n - 1 < 0 { '-' } else { '+' };
        let e = (n - 1).abs();
        if k == 1 {
            format!("{digits}e{sign}{e}")
        } else {
            format!("{}.{}e{sign}{e}", &digits[..1], &digits[1..])
        }
    };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        to_canonical_json(&serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        // The numbers are built from Rust float literals: serde_json's default
        // (non-`float_roundtrip`) parser may round 333333333.33333329 to the
        // neighbouring double, which is a parsing issue, not a canonicalization one.
        let mut input: Value = serde_json::from_str(
            r#"{
            "numbers": [],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#,
        )
        .unwrap();
        input["numbers"] = json!([
            "333333333.33333329".parse::<f64>().unwrap(),
            1E30f64,
            4.50f64,
            2e-3f64,
            0.000000000000000000000000001f64
        ]);
        assert_eq!(
            to_canonical_json(&input).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn a_double_printed_as_an_integer_out_of_range_is_refused_like_that_integer() {
        for f in [9007199254740992.0f64, -3.470445034107706e17, 1e20] {
            let text = es_number_to_string(f).unwrap();
            assert!(!text.contains(['.', 'e']), "{text}");
            assert_eq!(to_canonical_json(&json!(f)), Err(CanonicalError::IntegerOutOfRange(text)));
        }
        assert_eq!(to_canonical_json(&json!(9007199254740991.0f64)).unwrap(), "9007199254740991");
        assert_eq!(to_canonical_json(&json!(1e21f64)).unwrap(), "1e+21");
    }

    #[test]
    fn rfc8785_key_sorting_utf16() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        assert_eq!(
            canon(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn utf16_order_differs_from_code_point_order() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16 but after it by code point.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2});
        assert_eq!(to_canonical_json(&v).unwrap(), "{\"\u{1f600}\":2,\"\u{fb33}\":1}");
        // Nested objects are sorted too; arrays keep their order.
        let v = json!({"b": [3, {"z": 1, "a": 2}], "a": {}});
        assert_eq!(to_canonical_json(&v).unwrap(), r#"{"a":{},"b":[3,{"a":2,"z":1}]}"#);
    }

    #[test]
    fn string_escapes() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        assert_eq!(
            to_canonical_json(&json!(all_controls)).unwrap(),
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
             \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        assert_eq!(
            to_canonical_json(&json!("q\"b\\s/\u{7f}\u{80}\u{2028}\u{2029}é😀<>&'")).unwrap(),
            "\"q\\\"b\\\\s/\u{7f}\u{80}\u{2028}\u{2029}é😀<>&'\""
        );
        assert_eq!(to_canonical_json(&json!("")).unwrap(), "\"\"");
    }

    #[test]
    fn literals_and_whitespace() {
        assert_eq!(canon(" [ null , true , false , [ ] , { } ] "), "[null,true,false,[],{}]");
        assert_eq!(canon("\"x\""), "\"x\"");
    }

    #[test]
    fn integers() {
        assert_eq!(to_canonical_json(&json!(0)).unwrap(), "0");
        assert_eq!(to_canonical_json(&json!(-17)).unwrap(), "-17");
        assert_eq!(canon("-0"), "0");
        assert_eq!(to_canonical_json(&json!(9007199254740991u64)).unwrap(), "9007199254740991");
        assert_eq!(to_canonical_json(&json!(-9007199254740991i64)).unwrap(), "-9007199254740991");
        assert_eq!(
            to_canonical_json(&json!(9007199254740992u64)),
            Err(CanonicalError::IntegerOutOfRange("9007199254740992".into()))
        );
        assert_eq!(
            to_canonical_json(&json!({"a": [-9007199254740992i64]})),
            Err(CanonicalError::IntegerOutOfRange("-9007199254740992".into()))
        );
        assert_eq!(to_canonical_json(&json!(u64::MAX)), Err(CanonicalError::IntegerOutOfRange(u64::MAX.to_string())));
        assert!(to_canonical_json(&json!(i64::MIN)).is_err());
    }

    #[test]
    fn brief_number_examples() {
        let cases: [(f64, &str); 7] = [
            // Parsed from text: the literal itself has more digits than an f64 holds.
            ("333333333.33333329".parse().unwrap(), "333333333.3333333"),
            (1e30, "1e+30"),
            (4.5, "4.5"),
            (0.002, "0.002"),
            (1e-7, "1e-7"),
            (-0.0, "0"),
            (1.0, "1"),
        ];
        for (f, want) in cases {
            assert_eq!(to_canonical_json(&json!(f)).unwrap(), want, "{f:e}");
        }
    }

    /// RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: [(u64, &str); 24] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in cases {
            let f = f64::from_bits(bits);
            assert_eq!(es_number_to_string(f).unwrap(), want, "{bits:016x}");
            let v = Value::Number(Number::from_f64(f).unwrap());
            if f.abs() > MAX_SAFE_INTEGER as f64 && !want.contains(['.', 'e']) {
                // Printed as an integer beyond ±(2^53 − 1): refused like that integer.
                assert_eq!(to_canonical_json(&v), Err(CanonicalError::IntegerOutOfRange(want.into())), "{bits:016x}");
            } else {
                assert_eq!(to_canonical_json(&v).unwrap(), want, "{bits:016x}");
            }
        }
    }

    #[test]
    fn es_boundaries() {
        let cases: [(f64, &str); 10] = [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123e18, "123000000000000000000"),
            (1.5e21, "1.5e+21"),
            (0.000001, "0.000001"),
            (0.0000015, "0.0000015"),
            (1.5e-7, "1.5e-7"),
            (0.1, "0.1"),
            (-123.456, "-123.456"),
            (1e-27, "1e-27"),
        ];
        for (f, want) in cases {
            assert_eq!(es_number_to_string(f).unwrap(), want, "{f:e}");
        }
    }

    #[test]
    fn pseudo_random_doubles_round_trip() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let x = f64::from_bits(state);
            if !x.is_finite() {
                continue;
            }
            let s = es_number_to_string(x).unwrap();
            assert_eq!(s.parse::<f64>().unwrap(), x, "{s}");
            let digits = |t: &str| {
                let m = t.split('e').next().unwrap();
                m.trim_start_matches('-').replace('.', "").trim_start_matches('0').trim_end_matches('0').len()
            };
            assert_eq!(digits(&s), digits(&format!("{x:e}")), "{s} vs {x:e}");
        }
    }

    #[test]
    fn non_finite_rejected() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(es_number_to_string(f), Err(CanonicalError::NonFiniteNumber(_))));
            // serde_json refuses to build such numbers in the first place.
            assert!(Number::from_f64(f).is_none());
        }
    }

    #[test]
    fn canonical_output_is_idempotent() {
        let input = r#"{"z":[1.5e300,-0.0,{"é":"\u0001","e":null}],"a":"x\ty"}"#;
        let once = canon(input);
        assert_eq!(canon(&once), once);
        assert_eq!(once, r#"{"a":"x\ty","z":[1.5e+300,0,{"e":null,"é":"\u0001"}]}"#);
    }
}
