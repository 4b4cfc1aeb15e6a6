//! The JSON format of `bth-gateway sdc FILE` (docs/tables.md): parse the input, build the table, run the engine, render the cells.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::rules::{Dominance, Rules};
use super::table::{Contribution, Dimension, Statistic, Table};
use super::{protect, Forced, Refusal, Status};

/// Why an input was refused: one line naming the offending key (`records[3].cell.geo`,
/// `rules.p_percent`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InputError {
    /// The key's path.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> InputError {
    InputError { key: key.into(), reason: reason.into() }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdcInput {
    statistic: String,
    dimensions: Vec<DimensionInput>,
    #[serde(default)]
    records: Vec<RecordInput>,
    #[serde(default)]
    rules: RulesInput,
    #[serde(default)]
    released: Vec<ReleasedInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DimensionInput {
    name: String,
    categories: Vec<String>,
    #[serde(default)]
    hierarchy: Groups,
    #[serde(default)]
    prefixes: Vec<usize>,
}

/// A JSON object `group → [children]`, kept in document order (serde_json's map sorts).
#[derive(Debug, Default)]
struct Groups(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Groups, D::Error> {
        struct GroupsVisitor;
        impl<'de> Visitor<'de> for GroupsVisitor {
            type Value = Groups;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping each group to its children")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Groups, A::Error> {
                let mut out: Vec<(String, Vec<String>)> = Vec::new();
                while let Some((group, children)) = map.next_entry::<String, Vec<String>>()? {
                    if out.iter().any(|(g, _)| *g == group) {
                        return Err(de::Error::custom(format!("group `{group}` defined twice")));
                    }
                    out.push((group, children));
                }
                Ok(Groups(out))
            }
        }
        deserializer.deserialize_map(GroupsVisitor)
    }
}

/// A contributor or holding id: a string, or an integer taken as its decimal text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(i64),
}

impl Id {
    fn into_text(self) -> String {
        match self {
            Id::Text(t) => t,
            Id::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    cell: BTreeMap<String, String>,
    #[serde(default)]
    contributor: Option<Id>,
    #[serde(default)]
    holding: Option<Id>,
    #[serde(default)]
    value: Option<f64>,
}

/// Omitted keys take the domestic defaults; `null` turns a rule off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesInput {
    #[serde(default)]
    min_frequency: Option<u32>,
    #[serde(default)]
    zeros_unsafe: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    p_percent: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    dominance: Option<Option<DominanceInput>>,
}

/// `Some(value)` for a key that is present (its value possibly `null`), `None` when omitted.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DominanceInput {
    n: u32,
    k: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleasedInput {
    cell: BTreeMap<String, String>,
    value: f64,
}

/// A parsed input: the table, its rules and the released (forced) cells.
#[derive(Debug, Clone)]
pub struct SdcRequest {
    /// The table with every cell's statistics.
    pub table: Table,
    /// The primary rules.
    pub rules: Rules,
    /// The released cells, as output cells of the table, in input order.
    pub released: Vec<usize>,
}

impl SdcRequest {
    /// Parses and validates an input document and builds the table.
    ///
    /// # Errors
    /// [`InputError`] naming the first offending key.
    pub fn from_json(text: &str) -> Result<SdcRequest, InputError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: SdcInput = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            if path == "." || path == "?" || path.is_empty() {
                invalid("input", message)
            } else {
                invalid(path, message)
            }
        })?;
        SdcRequest::try_from(raw)
    }

    /// Runs the engine and renders the output document.
    pub fn run(&self) -> SdcOutput {
        let forced: Vec<Forced> = self.released.iter().map(|&c| Forced { inner: self.table.inner_of(c) }).collect();
        match protect(&self.table, &self.rules, &forced) {
            Ok(p) => SdcOutput {
                cells: (0..self.table.output_count()).map(|c| self.cell(c, p.status[c])).collect(),
                refused: None,
            },
            Err(refusal) => {
                // Nothing is released from a refused table: primary cells say so, the rest are
                // withheld (secondary) without values.
                let cells = (0..self.table.output_count())
                    .map(|c| {
                        let primary = self.rules.classify(self.table.stats(c), self.table.statistic().is_magnitude());
                        self.cell(c, if primary.is_some() { Status::Primary } else { Status::Secondary })
                    })
                    .collect();
                SdcOutput { cells, refused: Some(self.reason(&refusal)) }
            }
        }
    }

    fn reason(&self, refusal: &Refusal) -> String {
        let released = |i: usize| {
            let cell = self.released[i];
            let labels: Vec<String> = self.table.labels(cell).into_iter().map(|(d, l)| format!("{d}={l}")).collect();
            format!("released[{i}] {{{}}}", labels.join(", "))
        };
        refusal.describe(&self.table, released)
    }

    fn cell(&self, c: usize, status: Status) -> CellOutput {
        let labels = self.table.labels(c).into_iter().map(|(d, l)| (d.to_owned(), l.to_owned())).collect();
        let published = status == Status::Published;
        let value = if published {
            match self.table.statistic() {
                Statistic::Count => Some(serde_json::Value::from(self.table.stats(c).contributors)),
                _ => self.table.value(c).map(serde_json::Value::from),
            }
        } else {
            None
        };
        CellOutput {
            cell: CellLabels(labels),
            status,
            value,
            contributors: published.then(|| self.table.stats(c).contributors),
        }
    }
}

impl TryFrom<SdcInput> for SdcRequest {
    type Error = InputError;

    fn try_from(raw: SdcInput) -> Result<SdcRequest, InputError> {
        let statistic = match raw.statistic.as_str() {
            "COUNT" => Statistic::Count,
            "SUM" => Statistic::Sum,
            "MEAN" => Statistic::Mean,
            other => return Err(invalid("statistic", format!("unknown statistic `{other}` (COUNT, SUM or MEAN)"))),
        };
        if raw.dimensions.is_empty() || raw.dimensions.len() > 4 {
            return Err(invalid("dimensions", format!("1 to 4 dimensions expected, not {}", raw.dimensions.len())));
        }
        let mut dimensions = Vec::with_capacity(raw.dimensions.len());
        for (i, d) in raw.dimensions.into_iter().enumerate() {
            if d.name.trim().is_empty() {
                return Err(invalid(format!("dimensions[{i}].name"), "blank name"));
            }
            if dimensions.iter().any(|x: &Dimension| x.name == d.name) {
                return Err(invalid(format!("dimensions[{i}].name"), format!("dimension `{}` appears twice", d.name)));
            }
            let dim = Dimension::new(&d.name, d.categories, d.hierarchy.0, &d.prefixes)
                .map_err(|e| invalid(format!("dimensions[{i}].{}", e.at), e.reason))?;
            dimensions.push(dim);
        }
        let rules = rules(raw.rules)?;

        let mut contributors: HashMap<String, (u32, Option<u32>, usize)> = HashMap::new();
        let mut holdings: HashMap<String, u32> = HashMap::new();
        let mut next_contributor = 0u32;
        let mut leaves = Vec::with_capacity(raw.records.len());
        let mut contributions = Vec::with_capacity(raw.records.len());
        for (i, r) in raw.records.into_iter().enumerate() {
            let key = |name: &str| format!("records[{i}].{name}");
            let at = coordinates(&dimensions, &r.cell, &key("cell"), Level::Leaf)?;
            leaves.push(at);
            let value = match (statistic, r.value) {
                (Statistic::Count, v) => v.unwrap_or(0.0),
                (_, Some(v)) => v,
                (_, None) => return Err(invalid(key("value"), "required for SUM and MEAN")),
            };
            let holding = r.holding.map(|h| {
                let n = holdings.len() as u32;
                *holdings.entry(h.into_text()).or_insert(n)
            });
            let contributor = match r.contributor {
                None => {
                    next_contributor += 1;
                    next_contributor - 1
                }
                Some(id) => {
                    let id = id.into_text();
                    match contributors.get(&id) {
                        Some(&(c, h, first)) => {
                            if h != holding {
                                return Err(invalid(
                                    key("holding"),
                                    format!("contributor `{id}` has another holding in records[{first}]"),
                                ));
                            }
                            c
                        }
                        None => {
                            contributors.insert(id, (next_contributor, holding, i));
                            next_contributor += 1;
                            next_contributor - 1
                        }
                    }
                }
            };
            contributions.push(Contribution { inner: 0, contributor, holding, value });
        }
        let probe =
            Table::build(dimensions.clone(), statistic, &[], 0).map_err(|e| invalid("dimensions", e.to_string()))?;
        for (c, at) in contributions.iter_mut().zip(&leaves) {
            let leaves: Vec<u32> = at.iter().map(|&l| l as u32).collect();
            c.inner = probe.inner_of_leaves(&leaves);
        }
        let table = Table::build(dimensions, statistic, &contributions, rules.keep_top())
            .map_err(|e| invalid("dimensions", e.to_string()))?;

        let mut released = Vec::with_capacity(raw.released.len());
        for (i, r) in raw.released.into_iter().enumerate() {
            let codes = coordinates(table.dimensions(), &r.cell, &format!("released[{i}].cell"), Level::Any)?;
            let cell = table.cell_of_codes(&codes);
            let ours = match table.statistic() {
                Statistic::Count => Some(f64::from(table.stats(cell).contributors)),
                _ => table.value(cell),
            };
            let same = ours.is_some_and(|v| (v - r.value).abs() <= 1e-9 * v.abs().max(1.0));
            if !same {
                return Err(invalid(
                    format!("released[{i}].value"),
                    "differs from this table's value for the cell (released cells must come from the same data)",
                ));
            }
            released.push(cell);
        }
        Ok(SdcRequest { table, rules, released })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Leaf categories only (a record's cell): leaf indices.
    Leaf,
    /// Any code (a released cell): code indices.
    Any,
}

/// One index per dimension from a `{dimension: label}` object.
fn coordinates(
    dimensions: &[Dimension],
    cell: &BTreeMap<String, String>,
    key: &str,
    level: Level,
) -> Result<Vec<usize>, InputError> {
    if let Some(extra) = cell.keys().find(|k| !dimensions.iter().any(|d| d.name == **k)) {
        return Err(invalid(format!("{key}.{extra}"), "not a dimension of the table"));
    }
    dimensions
        .iter()
        .map(|d| {
            let label = cell.get(&d.name).ok_or_else(|| invalid(key, format!("missing dimension `{}`", d.name)))?;
            let found = match level {
                Level::Leaf => d.leaves.iter().position(|l| l == label),
                Level::Any => d.code(label),
            };
            found.ok_or_else(|| {
                let what = if level == Level::Leaf { "leaf category" } else { "category, group or Total" };
                invalid(format!("{key}.{}", d.name), format!("unknown {what} `{label}`"))
            })
        })
        .collect()
}

fn rules(raw: RulesInput) -> Result<Rules, InputError> {
    let defaults = Rules::domestic();
    let rules = Rules {
        min_frequency: raw.min_frequency.unwrap_or(defaults.min_frequency),
        zeros_unsafe: raw.zeros_unsafe.unwrap_or(defaults.zeros_unsafe),
        p_percent: raw.p_percent.unwrap_or(defaults.p_percent),
        dominance: raw.dominance.map_or(defaults.dominance, |d| d.map(|d| Dominance { n: d.n, k: d.k })),
    };
    rules.validate().map_err(|e| invalid(format!("rules.{}", e.key), e.reason))?;
    Ok(rules)
}

/// The output document: every output cell once, `refused` the one-line reason when the table
/// cannot be protected (then no cell carries a value).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SdcOutput {
    /// Every output cell, dimensions' codes in order (`Total`, groups, leaves), last dimension
    /// fastest.
    pub cells: Vec<CellOutput>,
    /// Why the table is refused; `null` when it is not.
    pub refused: Option<String>,
}

/// One output cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellOutput {
    /// `{dimension: label}` in dimension order.
    pub cell: CellLabels,
    /// `PUBLISHED`, `PRIMARY` or `SECONDARY`.
    pub status: Status,
    /// The value when published, else `null` (never 0 for a suppressed cell).
    pub value: Option<serde_json::Value>,
    /// Distinct contributors when published, else `null`.
    pub contributors: Option<u32>,
}

/// A cell's coordinates, serialised as an object in dimension order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellLabels(pub Vec<(String, String)>);

impl Serialize for CellLabels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (d, l) in &self.0 {
            map.serialize_entry(d, l)?;
        }
        map.end()
    }
}

/// Parses, protects and renders one input document.
///
/// # Errors
/// [`InputError`] naming the offending key.
pub fn sdc_json(text: &str) -> Result<SdcOutput, InputError> {
    Ok(SdcRequest::from_json(text)?.run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MINIMAL: &str = r#"{"statistic": "COUNT",
        "dimensions": [{"name": "age", "categories": ["young", "old"]},
                       {"name": "geo", "categories": ["Spain", "Iceland", "Portugal"],
                        "hierarchy": {"EU": ["Spain", "Portugal"], "nonEU": ["Iceland"]}}],
        "records": [{"cell": {"age": "young", "geo": "Spain"}, "contributor": "r1", "value": 1}]}"#;

    fn error_of(input: &str) -> String {
        sdc_json(input).unwrap_err().to_string()
    }

    #[test]
    fn every_output_cell_appears_once_in_dimension_order() {
        let out = sdc_json(MINIMAL).unwrap();
        assert_eq!(out.cells.len(), 3 * 6);
        let first = serde_json::to_string(&out.cells[0].cell).unwrap();
        assert_eq!(first, r#"{"age":"Total","geo":"Total"}"#);
        assert_eq!(out.refused, None);
        // One contributor under the domestic n = 3: the cells holding it are primary, the
        // zero cells are safe (zeros_unsafe defaults to false).
        let find = |age: &str, geo: &str| {
            out.cells.iter().find(|c| c.cell.0 == [("age".into(), age.into()), ("geo".into(), geo.into())]).unwrap()
        };
        assert_eq!(find("young", "Spain").status, Status::Primary);
        assert_eq!(find("Total", "Total").status, Status::Primary);
        let zero = find("old", "Iceland");
        assert_eq!((zero.status, zero.value.clone(), zero.contributors), (Status::Published, Some(json!(0)), Some(0)));
        let rendered = serde_json::to_value(find("young", "Spain")).unwrap();
        assert_eq!(
            rendered,
            json!({"cell": {"age": "young", "geo": "Spain"}, "status": "PRIMARY", "value": null, "contributors": null})
        );
    }

    #[test]
    fn omitted_rules_take_domestic_defaults_and_null_turns_a_rule_off() {
        let with_rules = |rules: &str| MINIMAL.replacen("\"records\"", &format!("\"rules\": {rules}, \"records\""), 1);
        let r = SdcRequest::from_json(MINIMAL).unwrap().rules;
        assert_eq!(r, Rules::domestic());
        let r = SdcRequest::from_json(&with_rules(r#"{"p_percent": null, "min_frequency": 5}"#)).unwrap().rules;
        assert_eq!((r.p_percent, r.min_frequency, r.zeros_unsafe), (None, 5, false));
        let r = SdcRequest::from_json(&with_rules(r#"{"dominance": {"n": 2, "k": 85}}"#)).unwrap().rules;
        assert_eq!(r.dominance, Some(Dominance { n: 2, k: 85.0 }));
    }

    #[test]
    fn malformed_inputs_name_the_key() {
        let with = |from: &str, to: &str| MINIMAL.replacen(from, to, 1);
        let rules = |r: &str| with("\"records\"", &format!("\"rules\": {r}, \"records\""));
        let cases = [
            (with("\"COUNT\"", "\"MEDIAN\""), "statistic: unknown statistic `MEDIAN`"),
            (
                with("\"Spain\"}, \"contributor\"", "\"Spian\"}, \"contributor\""),
                "records[0].cell.geo: unknown leaf category `Spian`",
            ),
            (
                with("\"Spain\"}, \"contributor\"", "\"EU\"}, \"contributor\""),
                "records[0].cell.geo: unknown leaf category `EU`",
            ),
            (
                with("{\"age\": \"young\", \"geo\": \"Spain\"}", "{\"age\": \"young\"}"),
                "records[0].cell: missing dimension `geo`",
            ),
            (
                with("\"geo\": \"Spain\"}", "\"geo\": \"Spain\", \"sex\": \"f\"}"),
                "records[0].cell.sex: not a dimension",
            ),
            (
                with("[\"Spain\", \"Portugal\"]", "[\"Spain\", \"France\"]"),
                "dimensions[1].hierarchy.EU[1]: unknown category or group `France`",
            ),
            (
                with("\"categories\": [\"young\", \"old\"]", "\"categories\": [\"young\", \"young\"]"),
                "dimensions[0].categories[1]: `young` listed twice",
            ),
            (rules(r#"{"min_frequency": 0}"#), "rules.min_frequency: must be at least 1"),
            (rules(r#"{"p_percent": 150}"#), "rules.p_percent: 150 is not in (0, 100]"),
            (rules(r#"{"dominance": {"n": 1}}"#), "rules.dominance"),
            (rules(r#"{"dominance": {"n": 1, "k": 0}}"#), "rules.dominance.k"),
            (rules(r#"{"zeros_unsafe": "yes"}"#), "rules.zeros_unsafe: invalid type"),
            (rules(r#"{"minimum": 3}"#), "rules.minimum: unknown field `minimum`"),
            (with("\"value\": 1", "\"value\": \"one\""), "records[0].value"),
            (
                with("\"statistic\": \"COUNT\"", "\"statistic\": \"SUM\"").replacen(", \"value\": 1", "", 1),
                "records[0].value: required for SUM and MEAN",
            ),
            (
                with(
                    "\"records\"",
                    "\"released\": [{\"cell\": {\"age\": \"Total\", \"geo\": \"EU\"}, \"value\": 5}], \"records\"",
                ),
                "released[0].value: differs",
            ),
            (
                with(
                    "\"records\"",
                    "\"released\": [{\"cell\": {\"age\": \"Total\", \"geo\": \"Asia\"}, \"value\": 5}], \"records\"",
                ),
                "released[0].cell.geo: unknown category, group or Total `Asia`",
            ),
            (with("\"records\"", "\"records2\": [], \"records\""), "unknown field `records2`"),
            (with("{\"EU\"", "{\"EU\": [\"Spain\"], \"EU\""), "dimensions[1].hierarchy: group `EU` defined twice"),
        ];
        for (input, expected) in &cases {
            let message = error_of(input);
            assert!(message.starts_with(expected) || message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains('\n'), "{message:?}");
        }
        assert!(error_of("{").starts_with("input: EOF"), "{}", error_of("{"));
        assert!(error_of(r#"{"statistic": "COUNT"}"#).contains("missing field `dimensions`"));
    }

    #[test]
    fn a_contributor_in_two_holdings_is_refused() {
        let input = MINIMAL.replacen(
            "\"records\": [",
            r#""records": [{"cell": {"age": "old", "geo": "Spain"}, "contributor": "r1", "holding": "h"},"#,
            1,
        );
        assert_eq!(error_of(&input), "records[1].holding: contributor `r1` has another holding in records[0]");
    }

    #[test]
    fn released_cells_are_forced_and_a_revealing_release_refuses_the_table() {
        // Every inner cell has 3 contributors except young/Iceland with 1.
        let mut records = Vec::new();
        for age in ["young", "old"] {
            for geo in ["Spain", "Iceland", "Portugal"] {
                let n = if (age, geo) == ("young", "Iceland") { 1 } else { 3 };
                for _ in 0..n {
                    records.push(json!({"cell": {"age": age, "geo": geo}}));
                }
            }
        }
        let input = |released: serde_json::Value| {
            json!({"statistic": "COUNT",
                   "dimensions": [{"name": "age", "categories": ["young", "old"]},
                                  {"name": "geo", "categories": ["Spain", "Iceland", "Portugal"]}],
                   "records": records, "released": released})
            .to_string()
        };
        let ok = sdc_json(&input(json!([{"cell": {"age": "young", "geo": "Spain"}, "value": 3}]))).unwrap();
        assert_eq!(ok.refused, None);
        let spain = ok.cells.iter().find(|c| c.cell.0[0].1 == "young" && c.cell.0[1].1 == "Spain").unwrap();
        assert_eq!(spain.status, Status::Published);

        let revealing = json!([{"cell": {"age": "young", "geo": "Total"}, "value": 7},
                               {"cell": {"age": "young", "geo": "Spain"}, "value": 3},
                               {"cell": {"age": "young", "geo": "Portugal"}, "value": 3}]);
        let refused = sdc_json(&input(revealing)).unwrap();
        let reason = refused.refused.unwrap();
        assert_eq!(
            reason,
            "released cell released[2] {age=young, geo=Portugal} reveals primary cell {age=young, geo=Iceland}"
        );
        assert!(refused.cells.iter().all(|c| c.value.is_none() && c.contributors.is_none()));
    }
}
