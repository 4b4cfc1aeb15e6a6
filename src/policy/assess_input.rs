//! The JSON format of `bth-gateway assess FILE` (docs/assess.md): parse the input, run the engine, render the decision.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use super::approvals::{Approval, ApprovalCheck, Scope};
use super::calendar;
use super::config::PolicyConfig;
use super::counting::{HistoryEntry, Persons, WindowTotals};
use super::decision::{Action, Decision, Mechanism, RuleId};
use super::engine;
use super::transfer::{Exemption, ExemptionClaim, Exporter, Field, Recipient, Transfer};
use crate::domain::classification::{Classification, Level, Pi, Share};
use crate::domain::participant::{ParticipantKind, RecipientType, Region};

/// Why an input was refused. Every message is one line and names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssessError {
    /// Not JSON, or JSON of the wrong shape: a syntax error, a missing required key, an unknown
    /// key, or a value of the wrong JSON type. The message is serde_json's, prefixed with the key
    /// when serde_json does not name it.
    #[error("{0}")]
    Malformed(String),
    /// A value of the right JSON type that is not valid for its key: an unknown enum name, a bad
    /// date or region, or an `already_counted_*` above its bucket.
    #[error("{key}: {reason}")]
    InvalidValue {
        /// The key's path, e.g. `fields[2].level` or `at`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The input document, exactly as docs/assess.md describes it: required keys are required,
/// the others take the documented defaults, unknown keys are refused. Enum names, dates and
/// regions are read as text and parsed by [`Assessment::try_from`], which names the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssessInput {
    #[serde(default)]
    ruleset: Option<String>,
    at: String,
    exporter: ExporterInput,
    recipient: RecipientInput,
    #[serde(default)]
    access_from_outside_mainland: bool,
    #[serde(default)]
    government_data: bool,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    legal_basis: String,
    #[serde(default)]
    statistical_purpose: bool,
    #[serde(default)]
    exemption: Option<String>,
    #[serde(default)]
    exemption_attested_by: Option<String>,
    fields: Vec<FieldInput>,
    #[serde(default)]
    persons: PersonsInput,
    #[serde(default)]
    history: Vec<HistoryInput>,
    #[serde(default)]
    approvals: Vec<ApprovalInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExporterInput {
    id: String,
    kind: String,
    #[serde(default)]
    in_tianjin_ftz: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientInput {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    region: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldInput {
    name: String,
    level: String,
    #[serde(default)]
    pi: Option<String>,
    #[serde(default)]
    stat_micro: bool,
    #[serde(default)]
    share: Option<String>,
    #[serde(default)]
    ftz_negative_list: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PersonsInput {
    nonsensitive: u64,
    sensitive: u64,
    already_counted_nonsensitive: u64,
    already_counted_sensitive: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryInput {
    at: String,
    #[serde(default)]
    nonsensitive: u64,
    #[serde(default)]
    sensitive: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalInput {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    exporter: String,
    #[serde(default)]
    reference: String,
    issued: String,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    scope: ScopeInput,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ScopeInput {
    recipients: Vec<String>,
    destinations: Vec<String>,
    purposes: Vec<String>,
    max_persons_nonsensitive: Option<u64>,
    max_persons_sensitive: Option<u64>,
}

/// A parsed input: what the engine needs, with the ledger given as history entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The transfer.
    pub transfer: Transfer,
    /// The exporter's earlier authorised exports (the engine sums those inside the window).
    pub history: Vec<HistoryEntry>,
    /// The recorded approvals.
    pub approvals: Vec<Approval>,
}

impl Assessment {
    /// Parses an input document.
    ///
    /// # Errors
    /// [`AssessError`] naming the first offending key.
    pub fn from_json(input: &str) -> Result<Assessment, AssessError> {
        let raw: AssessInput = serde_json::from_str(input).map_err(|e| malformed(input, &e))?;
        Assessment::try_from(raw)
    }

    /// Runs the engine with the window sums of `history`.
    pub fn decide(&self, config: &PolicyConfig) -> Decision {
        let window = self.transfer.window(config);
        let totals = WindowTotals::sum(&self.history, &window);
        engine::assess(&self.transfer, totals, &self.approvals, config)
    }
}

impl TryFrom<AssessInput> for Assessment {
    type Error = AssessError;

    fn try_from(raw: AssessInput) -> Result<Assessment, AssessError> {
        let persons = Persons {
            nonsensitive: raw.persons.nonsensitive,
            sensitive: raw.persons.sensitive,
            already_counted_nonsensitive: raw.persons.already_counted_nonsensitive,
            already_counted_sensitive: raw.persons.already_counted_sensitive,
        };
        for (key, counted, total) in [
            ("nonsensitive", persons.already_counted_nonsensitive, persons.nonsensitive),
            ("sensitive", persons.already_counted_sensitive, persons.sensitive),
        ] {
            if counted > total {
                return Err(invalid(
                    format!("persons.already_counted_{key}"),
                    format!("{counted} exceeds persons.{key} ({total})"),
                ));
            }
        }
        let fields = raw
            .fields
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let key = |name: &str| format!("fields[{i}].{name}");
                let pi = opt_name(f.pi.as_deref(), || key("pi"))?.unwrap_or(Pi::None);
                let classification = Classification::new(
                    name::<Level>(&f.level, || key("level"))?,
                    pi,
                    f.stat_micro,
                    opt_name(f.share.as_deref(), || key("share"))?.unwrap_or(Share::Conditional),
                    f.ftz_negative_list,
                );
                Ok(Field { name: f.name, classification })
            })
            .collect::<Result<Vec<_>, AssessError>>()?;
        let transfer = Transfer {
            ruleset: opt_name(raw.ruleset.as_deref(), || "ruleset".into())?.unwrap_or_default(),
            at: instant(&raw.at, || "at".into())?,
            exporter: Exporter {
                id: raw.exporter.id,
                kind: name::<ParticipantKind>(&raw.exporter.kind, || "exporter.kind".into())?,
                in_tianjin_ftz: raw.exporter.in_tianjin_ftz,
            },
            recipient: Recipient {
                id: raw.recipient.id,
                kind: name::<RecipientType>(&raw.recipient.kind, || "recipient.type".into())?,
                region: name::<Region>(&raw.recipient.region, || "recipient.region".into())?,
            },
            access_from_outside_mainland: raw.access_from_outside_mainland,
            government_data: raw.government_data,
            purpose: raw.purpose,
            legal_basis: non_blank(raw.legal_basis),
            statistical_purpose: raw.statistical_purpose,
            exemption: ExemptionClaim {
                exemption: opt_name::<Exemption>(raw.exemption.as_deref(), || "exemption".into())?.unwrap_or_default(),
                attested_by: raw.exemption_attested_by.and_then(non_blank),
            },
            fields,
            persons,
        };
        let history = raw
            .history
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                Ok(HistoryEntry {
                    at: instant(&h.at, || format!("history[{i}].at"))?,
                    nonsensitive: h.nonsensitive,
                    sensitive: h.sensitive,
                })
            })
            .collect::<Result<Vec<_>, AssessError>>()?;
        let approvals = raw
            .approvals
            .into_iter()
            .enumerate()
            .map(|(i, a)| approval(i, a))
            .collect::<Result<Vec<_>, AssessError>>()?;
        Ok(Assessment { transfer, history, approvals })
    }
}

fn approval(i: usize, a: ApprovalInput) -> Result<Approval, AssessError> {
    let key = |name: &str| format!("approvals[{i}].{name}");
    let destinations = a
        .scope
        .destinations
        .iter()
        .enumerate()
        .map(|(j, d)| name::<Region>(d, || key(&format!("scope.destinations[{j}]"))))
        .collect::<Result<Vec<_>, AssessError>>()?;
    Ok(Approval {
        kind: name(&a.kind, || key("type"))?,
        issued: day(&a.issued, || key("issued"))?,
        expires: a.expires.as_deref().map(|e| day(e, || key("expires"))).transpose()?,
        id: a.id,
        exporter: a.exporter,
        reference: a.reference,
        revoked: a.revoked,
        scope: Scope {
            recipients: a.scope.recipients,
            destinations,
            purposes: a.scope.purposes,
            max_persons_nonsensitive: a.scope.max_persons_nonsensitive,
            max_persons_sensitive: a.scope.max_persons_sensitive,
        },
    })
}

fn invalid(key: String, reason: String) -> AssessError {
    AssessError::InvalidValue { key, reason }
}

fn name<T>(text: &str, key: impl FnOnce() -> String) -> Result<T, AssessError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| invalid(key(), e.to_string()))
}

fn opt_name<T>(text: Option<&str>, key: impl FnOnce() -> String) -> Result<Option<T>, AssessError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.map(|t| name(t, key)).transpose()
}

fn instant(text: &str, key: impl FnOnce() -> String) -> Result<DateTime<FixedOffset>, AssessError> {
    DateTime::parse_from_rfc3339(text)
        .map_err(|e| invalid(key(), format!("invalid date-time `{text}` (RFC 3339 expected): {e}")))
}

fn day(text: &str, key: impl FnOnce() -> String) -> Result<NaiveDate, AssessError> {
    calendar::parse_day(text).map_err(|e| invalid(key(), format!("invalid date `{text}` (YYYY-MM-DD expected): {e}")))
}

fn non_blank(text: String) -> Option<String> {
    (!text.trim().is_empty()).then_some(text)
}

/// serde_json's error, prefixed with the key it concerns when its message does not name one
/// (a wrong JSON type, a negative count): the nearest `"key":` before the error position.
fn malformed(input: &str, error: &serde_json::Error) -> AssessError {
    let message = error.to_string();
    let names_a_key = message.contains("field `");
    if error.classify() != serde_json::error::Category::Data || names_a_key {
        return AssessError::Malformed(message);
    }
    match key_before(input, error.line(), error.column()) {
        Some(key) => AssessError::Malformed(format!("{key}: {message}")),
        None => AssessError::Malformed(message),
    }
}

/// The last object key written before `line`:`column` (1-based, as serde_json reports).
fn key_before(input: &str, line: usize, column: usize) -> Option<&str> {
    let line_start: usize = input.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let end = (line_start + column).min(input.len());
    let head = input.get(..end)?;
    let mut rest = head;
    while let Some(colon) = rest.rfind(':') {
        let before = rest[..colon].trim_end();
        if let Some(quoted) = before.strip_suffix('"') {
            if let Some(open) = quoted.rfind('"') {
                let key = &quoted[open + 1..];
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Some(key);
                }
            }
        }
        rest = &rest[..colon];
    }
    None
}

/// The decision in the output format of docs/assess.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionJson {
    /// The transfer is an export.
    pub export: bool,
    /// The most severe mechanism that fired.
    pub mechanism: Mechanism,
    /// `PASS`, `HOLD` or `BLOCK`.
    pub action: Action,
    /// Every row that fired, in table order.
    pub rules: Vec<RuleId>,
    /// The approval used or the closest candidate; `null` when none.
    pub approval: Option<ApprovalJson>,
    /// Window and counts.
    pub counts: CountsJson,
}

/// `{id, check}` of the reported approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalJson {
    /// The approval's id.
    pub id: String,
    /// `valid`, `expired`, `revoked` or `out_of_scope`.
    pub check: ApprovalCheck,
}

/// The counts of a decision, the window start as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountsJson {
    /// First day of the window (Asia/Shanghai).
    pub window_start: String,
    /// Non-sensitive persons in the window before the transfer.
    pub nonsensitive_before: u64,
    /// Non-sensitive persons after it.
    pub nonsensitive_after: u64,
    /// Sensitive persons before.
    pub sensitive_before: u64,
    /// Sensitive persons after.
    pub sensitive_after: u64,
}

impl From<&Decision> for DecisionJson {
    fn from(d: &Decision) -> DecisionJson {
        DecisionJson {
            export: d.is_export(),
            mechanism: d.mechanism,
            action: d.action,
            rules: d.rules.iter().collect(),
            approval: d.approval.as_ref().map(|a| ApprovalJson { id: a.id.clone(), check: a.check }),
            counts: CountsJson {
                window_start: d.counts.window_start.format("%Y-%m-%d").to_string(),
                nonsensitive_before: d.counts.nonsensitive_before,
                nonsensitive_after: d.counts.nonsensitive_after,
                sensitive_before: d.counts.sensitive_before,
                sensitive_after: d.counts.sensitive_after,
            },
        }
    }
}

/// Assesses one input document with the default configuration and returns the output document.
///
/// # Errors
/// [`AssessError`] naming the offending key when the input is malformed.
pub fn assess_json(input: &str) -> Result<serde_json::Value, AssessError> {
    assess_json_with(input, &PolicyConfig::default())
}

/// [`assess_json`] with a given configuration.
///
/// # Errors
/// As [`assess_json`].
pub fn assess_json_with(input: &str, config: &PolicyConfig) -> Result<serde_json::Value, AssessError> {
    let decision = Assessment::from_json(input)?.decide(config);
    serde_json::to_value(DecisionJson::from(&decision))
        .map_err(|e| AssessError::Malformed(format!("rendering the decision: {e}")))
}

/// What `assess` made of a document: the decision and, for a case file, the expected keys it
/// does not match.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    /// The decision, as [`assess_json`] renders it.
    pub decision: serde_json::Value,
    /// For a case file, one line per key of `expect` the decision does not match
    /// (`mechanism: expected "ALLOW", got "DENY"`), in `expect`'s order; empty for a bare input.
    pub mismatches: Vec<String>,
}

/// Assesses a document that is either a bare input (docs/assess.md) or a case file
/// `{"name": …, "input": {…}, "expect": {…}}` (`name` and `expect` optional), whose `input` is
/// assessed and whose `expect` is compared key by key with the decision.
///
/// # Errors
/// As [`assess_json`], naming `input.` keys for a case file; an unknown key of a case file, or an
/// `expect` that is not an object.
pub fn assess_document(text: &str, config: &PolicyConfig) -> Result<Assessed, AssessError> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| AssessError::Malformed(format!("not JSON: {e}")))?;
    let Some(case) = doc.as_object().filter(|o| o.contains_key("input")) else {
        return Ok(Assessed { decision: assess_json_with(text, config)?, mismatches: Vec::new() });
    };
    if let Some(key) = case.keys().find(|k| !matches!(k.as_str(), "name" | "input" | "expect")) {
        return Err(AssessError::Malformed(format!(
            "{key}: unknown key of a case file (expected name, input, expect; or give the input alone)"
        )));
    }
    let decision = assess_json_with(&case["input"].to_string(), config).map_err(|e| match e {
        AssessError::Malformed(m) => AssessError::Malformed(format!("input.{m}")),
        other => other,
    })?;
    let expect = match case.get("expect") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => return Err(AssessError::Malformed("expect: must be an object of decision keys".into())),
    };
    let mismatches = expect
        .iter()
        .filter(|(key, want)| decision.get(key.as_str()) != Some(want))
        .map(|(key, want)| {
            let got = decision.get(key.as_str()).map_or_else(|| "nothing".to_owned(), |v| v.to_string());
            format!("{key}: expected {want}, got {got}")
        })
        .collect();
    Ok(Assessed { decision, mismatches })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_case_file_is_assessed_and_compared_with_its_expectation() {
        let case =
            format!(r#"{{"name": "sg", "input": {MINIMAL}, "expect": {{"mechanism": "ALLOW", "action": "HOLD"}}}}"#);
        let out = assess_document(&case, &PolicyConfig::default()).unwrap();
        assert_eq!(out.decision, assess_json(MINIMAL).unwrap());
        assert_eq!(out.mismatches, vec![r#"action: expected "HOLD", got "PASS""#.to_owned()]);
        let bare = assess_document(MINIMAL, &PolicyConfig::default()).unwrap();
        assert!(bare.mismatches.is_empty());
        let unknown = assess_document(r#"{"input": {}, "expct": {}}"#, &PolicyConfig::default()).unwrap_err();
        assert!(unknown.to_string().contains("expct"), "{unknown}");
        let inner = assess_document(r#"{"input": {"colour": 1}}"#, &PolicyConfig::default()).unwrap_err();
        assert!(inner.to_string().contains("input."), "{inner}");
    }

    const MINIMAL: &str = r#"{"at": "2025-06-01T10:00:00+08:00",
        "exporter": {"id": "e", "kind": "OTHER"},
        "recipient": {"id": "r", "type": "ENTERPRISE", "region": "SG"},
        "fields": [{"name": "n", "level": "G3", "pi": "PI"}]}"#;

    fn error_of(input: &str) -> String {
        assess_json(input).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_input_takes_the_defaults() {
        let out = assess_json(MINIMAL).unwrap();
        assert_eq!(
            out,
            json!({"export": true, "mechanism": "ALLOW", "action": "PASS", "rules": ["V1"],
                   "approval": null,
                   "counts": {"window_start": "2025-01-01", "nonsensitive_before": 0,
                              "nonsensitive_after": 0, "sensitive_before": 0, "sensitive_after": 0}})
        );
    }

    #[test]
    fn malformed_inputs_name_the_key() {
        let with = |from: &str, to: &str| MINIMAL.replacen(from, to, 1);
        let cases = [
            (with("2025-06-01T10:00:00+08:00", "2025-06-01"), "at: invalid date-time"),
            (with("\"OTHER\"", "\"PERSON\""), "exporter.kind: unknown kind `PERSON`"),
            (with("\"ENTERPRISE\"", "\"COMPANY\""), "recipient.type: unknown recipient type"),
            (with("\"SG\"", "\"sg\""), "recipient.region: unknown region `sg`"),
            (with("\"G3\"", "\"G5\""), "fields[0].level: unknown level `G5`"),
            (with("\"PI\"", "\"YES\""), "fields[0].pi: unknown pi `YES`"),
            (with("\"at\"", "\"when\""), "unknown field `when`"),
            (with("\"fields\"", "\"columns\""), "unknown field `columns`"),
            (with("{\"at\"", "{\"ruleset\": \"CN2030\", \"at\""), "ruleset: unknown ruleset `CN2030`"),
            (with("{\"at\"", "{\"exemption\": \"MAYBE\", \"at\""), "exemption: unknown exemption"),
            (with("{\"at\"", "{\"persons\": {\"nonsensitive\": -1}, \"at\""), "nonsensitive: invalid value"),
            (with("{\"at\"", "{\"government_data\": \"yes\", \"at\""), "government_data: invalid type"),
            (with("{\"at\"", "{\"persons\": {\"nonsensitive\": 1, \"already_counted_nonsensitive\": 2}, \"at\""),
                "persons.already_counted_nonsensitive: 2 exceeds persons.nonsensitive (1)"),
            (with("{\"at\"", "{\"history\": [{\"at\": \"yesterday\"}], \"at\""), "history[0].at: invalid date-time"),
            (with("{\"at\"", "{\"approvals\": [{\"id\": \"a\", \"type\": \"CAC_SA\", \"exporter\": \"e\", \"issued\": \"2025-13-01\"}], \"at\""),
                "approvals[0].issued: invalid date"),
            (with("{\"at\"", "{\"approvals\": [{\"id\": \"a\", \"type\": \"SA\", \"exporter\": \"e\", \"issued\": \"2025-01-01\"}], \"at\""),
                "approvals[0].type: unknown approval type `SA`"),
            (with("{\"at\"", "{\"approvals\": [{\"id\": \"a\", \"type\": \"CAC_SA\", \"exporter\": \"e\", \"issued\": \"2025-01-01\", \"scope\": {\"destinations\": [\"XYZ\"]}}], \"at\""),
                "approvals[0].scope.destinations[0]: unknown region `XYZ`"),
        ];
        for (input, expected) in &cases {
            let message = error_of(input);
            assert!(message.starts_with(expected) || message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains('\n'), "{message:?}");
        }
        assert!(error_of(r#"{"exporter": {"id": "e", "kind": "OTHER"}}"#).contains("missing field"));
        assert!(error_of("{").contains("EOF"));
    }

    fn run_case_folder(dir: &str) -> usize {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        let mut failures = Vec::new();
        for path in &paths {
            let text = std::fs::read_to_string(path).unwrap();
            let case: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let input = case["input"].to_string();
            let output = match assess_json(&input) {
                Ok(output) => output,
                Err(e) => {
                    failures.push(format!("{}: refused: {e}", path.display()));
                    continue;
                }
            };
            let expect = case["expect"].as_object().unwrap_or_else(|| panic!("{}: no expect", path.display()));
            for (key, want) in expect {
                if output.get(key) != Some(want) {
                    failures.push(format!("{}: {key}: want {want}, got {}", path.display(), output[key]));
                }
            }
        }
        assert!(failures.is_empty(), "{} failing:\n{}", failures.len(), failures.join("\n"));
        paths.len()
    }

    #[test]
    fn every_spec_case_holds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/spec");
        assert!(run_case_folder(dir) >= 12);
    }

    #[test]
    fn every_gateway_case_holds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/assess");
        assert!(run_case_folder(dir) >= 30);
    }
}
