//! Thresholds, windows and validity periods of the rules (docs/rules.md: "configuration with the values below as defaults").

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};

use super::calendar;

/// The numbers of the rules; the rule *structure* is code (`engine`).
///
/// Deserialised from the gateway's configuration file; every key is optional and unknown keys
/// are refused. No invariant is enforced between the values (a configuration with
/// `scc_nonsensitive > security_assessment_nonsensitive` simply makes C2 unreachable).
///
/// # Defaults
/// The values of docs/rules.md: 100 000 / 1 000 000 non-sensitive and 10 000 sensitive persons
/// (CN2024), 100 000 / 10 000 (CN2022), windows starting 1 January of the transfer's year
/// (CN2024) and of the previous year (CN2022), `CAC_SA` valid 3 years when issued on or after
/// 2024-03-22 and 2 years before.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// C2/V1 boundary: non-sensitive persons from which a standard contract is needed (inclusive).
    pub scc_nonsensitive: u64,
    /// A4/C2 boundary: non-sensitive persons from which a security assessment is needed (inclusive).
    pub security_assessment_nonsensitive: u64,
    /// A3/C1 boundary: sensitive persons from which a security assessment is needed (inclusive).
    pub security_assessment_sensitive: u64,
    /// A3' non-sensitive boundary of `CN2022` (inclusive).
    pub cn2022_security_assessment_nonsensitive: u64,
    /// A3' sensitive boundary of `CN2022` (inclusive).
    pub cn2022_security_assessment_sensitive: u64,
    /// `CN2024` counts since 1 January of the transfer's year minus this many years.
    pub cn2024_window_years_back: u32,
    /// `CN2022` counts since 1 January of the transfer's year minus this many years.
    pub cn2022_window_years_back: u32,
    /// Validity in years of a `CAC_SA` without `expires` issued on or after the cutoff.
    pub security_assessment_years: u32,
    /// Validity in years of a `CAC_SA` without `expires` issued before the cutoff.
    pub security_assessment_years_before_cutoff: u32,
    /// The day from which `security_assessment_years` applies (CAC Order 16 took effect).
    #[serde(deserialize_with = "deserialize_day")]
    pub security_assessment_cutoff: NaiveDate,
    /// Statistical tables (`[policy.tables]`): primary-rule parameters per direction and the
    /// largest table a request may ask for.
    pub tables: TablePolicy,
    /// Maker-checker: approvals of these types apply only once a second officer (not the one
    /// who recorded them) has confirmed them, each confirmation its own log record. Empty by
    /// default (one officer records); `["CAC_SA", "COMPETENT_AUTHORITY"]` is the usual choice.
    pub confirmed_approvals: Vec<super::ApprovalType>,
}

/// The primary-rule parameters of one direction (docs/tables.md §3), percentages as integers.
/// Confidential: never returned to a client (the log carries their HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableRules {
    /// Unsafe iff `0 < N < min_frequency`.
    pub min_frequency: u32,
    /// Cells without contributors are unsafe.
    pub zeros_unsafe: bool,
    /// The p % rule (SUM, MEAN); absent: off.
    pub p_percent: Option<u32>,
    /// The (n,k) dominance rule (SUM, MEAN): `[n, k]`; absent: off.
    pub dominance: Option<[u32; 2]>,
}

impl TableRules {
    /// The engine's rules.
    pub fn rules(&self) -> crate::sdc::Rules {
        crate::sdc::Rules {
            min_frequency: self.min_frequency,
            zeros_unsafe: self.zeros_unsafe,
            p_percent: self.p_percent.map(f64::from),
            dominance: self.dominance.map(|[n, k]| crate::sdc::Dominance { n, k: f64::from(k) }),
        }
    }
}

/// `[policy.tables]`.
///
/// # Defaults
/// docs/tables.md §3: domestic `n = 3`, zeros safe, p = 10, no dominance; export `n = 10`, zeros
/// unsafe, p = 10, (2, 90); at most 20 000 cells per requested table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TablePolicy {
    /// Domestic transfers.
    pub domestic: TableRules,
    /// Exports (stricter).
    pub export: TableRules,
    /// Cells a requested table may have (every combination of codes, margins included); more is
    /// `INVALID_ARGUMENT`. Secondary suppression grows faster than linearly with the cells.
    pub max_cells: u64,
}

impl Default for TablePolicy {
    fn default() -> Self {
        TablePolicy {
            domestic: TableRules { min_frequency: 3, zeros_unsafe: false, p_percent: Some(10), dominance: None },
            export: TableRules { min_frequency: 10, zeros_unsafe: true, p_percent: Some(10), dominance: Some([2, 90]) },
            max_cells: 20_000,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            scc_nonsensitive: 100_000,
            security_assessment_nonsensitive: 1_000_000,
            security_assessment_sensitive: 10_000,
            cn2022_security_assessment_nonsensitive: 100_000,
            cn2022_security_assessment_sensitive: 10_000,
            cn2024_window_years_back: 0,
            cn2022_window_years_back: 1,
            security_assessment_years: 3,
            security_assessment_years_before_cutoff: 2,
            security_assessment_cutoff: NaiveDate::from_ymd_opt(2024, 3, 22).unwrap_or(NaiveDate::MIN),
            tables: TablePolicy::default(),
            confirmed_approvals: Vec::new(),
        }
    }
}

/// Reads a `YYYY-MM-DD` day (chrono's serde support is not compiled in).
fn deserialize_day<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
    let text = String::deserialize(deserializer)?;
    calendar::parse_day(&text).map_err(|e| serde::de::Error::custom(format!("invalid date `{text}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_has_the_spec_values() {
        let config: PolicyConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, PolicyConfig::default());
        assert_eq!(config.scc_nonsensitive, 100_000);
        assert_eq!(config.security_assessment_nonsensitive, 1_000_000);
        assert_eq!(config.security_assessment_sensitive, 10_000);
        assert_eq!(config.security_assessment_cutoff.to_string(), "2024-03-22");
    }

    #[test]
    fn keys_override_and_unknown_keys_are_refused() {
        let config: PolicyConfig =
            serde_json::from_str(r#"{"scc_nonsensitive": 5, "security_assessment_cutoff": "2024-01-01"}"#).unwrap();
        assert_eq!(config.scc_nonsensitive, 5);
        assert_eq!(config.security_assessment_cutoff.to_string(), "2024-01-01");
        let err = serde_json::from_str::<PolicyConfig>(r#"{"threshold": 1}"#).unwrap_err();
        assert!(err.to_string().contains("threshold"), "{err}");
        let err = serde_json::from_str::<PolicyConfig>(r#"{"security_assessment_cutoff": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid date"), "{err}");
    }
}
