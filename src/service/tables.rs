//! Tables: a statistical table of a version computed inside the gateway from rows the recipient
//! never sees, assessed as aggregate data, protected by disclosure control against the cells
//! already released to the recipient (the release ledger), recorded, then streamed.
//!
//! # How a request becomes an engine table
//!
//! The recipient asks for cells; the gateway protects a possibly larger table, of which the
//! requested cells are a part, and releases only the requested cells it publishes. Releasing a
//! subset of a safe pattern is safe (less is known: every interval only widens), so the larger
//! table costs suppression, never protection. It is larger in three ways, so that every cell of
//! the ledger and of the request lands on the same inner cells (docs/tables.md §5):
//!
//! - a filtered dimension keeps every category; the filter is a group (the request's `Total`);
//! - a date dimension's leaves are months; years and quarters are groups of months;
//! - a field that cells already released were restricted by, and that the request does not
//!   use, is an extra dimension at `Total`.
//!
//! The ledger stores each published cell as `{field: [categories…]}` (months for dates) per
//! quantity (`COUNT`, `SUM:<measure>`), so "region minus its published districts", "zone A∪B
//! minus zone B" and "all ages minus the young" are all sums of the same inner cells.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use ring::{digest, hmac};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::assessment::{self, Counting, RowSelection};
use super::exchange::{unless_withdrawn, watch_authorisation, PullSlot, Standing};
use super::extract::{masked_chunks, ChunkPlan, Pace, Reader};
use super::{new_id, Caller, Gateway, ServiceError};
use crate::domain::classification::{Classification, Pi};
use crate::domain::dataset::{Dataset, FieldName, FieldType, VersionInfo};
use crate::domain::grant::{Grant, GrantUse};
use crate::domain::ids::DatasetId;
use crate::domain::participant::{Participant, Role};
use crate::domain::record::bodies::{self, TableDecision, TableDefinition, TableDimensionRecord};
use crate::domain::record::{NewRecord, RecordBody, TransferAction, TransferFacets};
use crate::log::sequencer::Receipt;
use crate::pb;
use crate::policy::{self, Action, Decision, DecisionJson, TableRules};
use crate::sdc::{self, Contribution, Dimension, Rules, Statistic, Status, Table, TOTAL};
use crate::store::{ReleasedCell, StoreError, TableRelease};
use crate::wire::RowBatch;

/// The label of the category of rows whose dimension value is null.
pub const MISSING: &str = "(missing)";

/// The engine's name of the group a filter selects (the request's `Total` of that dimension).
const FILTER_GROUP: &str = "Total (filtered)";

/// How often a table is protected again when another table of the same scope was released
/// while it was being protected.
const RELEASE_ATTEMPTS: usize = 3;

/// How a date dimension is generalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Period {
    /// `2024`.
    Year,
    /// `2024-Q1`.
    Quarter,
    /// `2024-01`.
    Month,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Year => "YEAR",
            Period::Quarter => "QUARTER",
            Period::Month => "MONTH",
        }
    }

    /// The label of the period holding month `m` (`YYYY-MM`).
    fn of_month(self, m: &str) -> String {
        match self {
            Period::Month => m.to_owned(),
            Period::Year => m[..4].to_owned(),
            Period::Quarter => {
                let month: u32 = m[5..7].parse().unwrap_or(1);
                format!("{}-Q{}", &m[..4], (month - 1) / 3 + 1)
            }
        }
    }

    /// The months (`YYYY-MM`) of a period label, `None` when the label is not one of this
    /// period's.
    fn months(self, label: &str) -> Option<Vec<String>> {
        let year = |y: &str| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit());
        match self {
            Period::Year if year(label) => Some((1..=12).map(|m| format!("{label}-{m:02}")).collect()),
            Period::Quarter => {
                let (y, q) = label.split_once("-Q")?;
                let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
                year(y).then(|| (3 * q - 2..=3 * q).map(|m| format!("{y}-{m:02}")).collect())
            }
            Period::Month => {
                let (y, m) = label.split_once('-')?;
                let ok = year(y) && m.len() == 2 && m.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m));
                ok.then(|| vec![label.to_owned()])
            }
            Period::Year => None,
        }
    }
}

/// One dimension of a requested table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DimensionSpec {
    /// A dimension field of the grant.
    pub field: FieldName,
    /// DATE fields: how they are generalised (required for them, refused for others).
    pub period: Option<Period>,
    /// Hierarchy groups: name → children (categories or other groups).
    pub groups: Vec<(String, Vec<String>)>,
    /// Administrative-code prefix lengths, increasing.
    pub prefixes: Vec<usize>,
    /// Only these categories; empty: all.
    pub filter: Vec<String>,
}

/// What each cell publishes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StatisticSpec {
    /// Distinct contributors.
    Count,
    /// The sum of a measure.
    Sum(FieldName),
    /// SUM / COUNT.
    Mean(FieldName),
}

impl StatisticSpec {
    fn name(&self) -> &'static str {
        match self {
            StatisticSpec::Count => "COUNT",
            StatisticSpec::Sum(_) => "SUM",
            StatisticSpec::Mean(_) => "MEAN",
        }
    }

    fn measure(&self) -> Option<&FieldName> {
        match self {
            StatisticSpec::Count => None,
            StatisticSpec::Sum(m) | StatisticSpec::Mean(m) => Some(m),
        }
    }

    fn engine(&self) -> Statistic {
        match self {
            StatisticSpec::Count => Statistic::Count,
            StatisticSpec::Sum(_) => Statistic::Sum,
            StatisticSpec::Mean(_) => Statistic::Mean,
        }
    }

    /// The quantity the table protects, as the ledger names it.
    fn quantity(&self) -> String {
        match self.measure() {
            None => "COUNT".into(),
            Some(m) => format!("SUM:{m}"),
        }
    }
}

/// A requested table (stored as JSON by standing reports).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TableRequest {
    /// The dataset.
    pub dataset: DatasetId,
    /// A pinned version; `None` = latest.
    pub version: Option<u64>,
    /// 1 to 4.
    pub dimensions: Vec<DimensionSpec>,
    /// The statistic.
    pub statistic: StatisticSpec,
    /// The TABLES grant to use; `None` = the caller's usable one.
    pub grant: Option<String>,
    /// Accessed from outside mainland China.
    pub access_from_outside_mainland: bool,
}

/// One cell sent to the recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// One code per requested dimension.
    pub codes: Vec<String>,
    /// Published or why not.
    pub status: Status,
    /// Published only.
    pub value: Option<f64>,
    /// Published only.
    pub contributors: Option<u64>,
}

impl Cell {
    /// The wire form.
    pub fn to_pb(&self) -> pb::TableCell {
        pb::TableCell {
            codes: self.codes.clone(),
            status: match self.status {
                Status::Published => pb::CellStatus::Published,
                Status::Primary => pb::CellStatus::Primary,
                Status::Secondary => pb::CellStatus::Secondary,
            } as i32,
            value: self.value,
            contributors: self.contributors,
        }
    }
}

/// A table decided, protected and recorded: what the header, the cells and the trailer carry.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// `tb-…`.
    pub table_id: String,
    /// The dataset.
    pub dataset: Dataset,
    /// The version.
    pub version: VersionInfo,
    /// The requested dimensions' names.
    pub dimensions: Vec<String>,
    /// The rules' verdict.
    pub decision: Decision,
    /// Every requested cell, in order (last dimension fastest).
    pub cells: Vec<Cell>,
    /// SHA-256 of the published cells ([`published_digest`]).
    pub sha256: [u8; 32],
    /// The decision record's receipt (`None` for a preview).
    pub receipt: Option<Receipt>,
    /// The refusal a preview would answer with, if any.
    pub refused: Option<String>,
    recipient: Participant,
    exporter: Participant,
    /// The TABLES grant used (re-checked while the cells stream).
    grant: String,
    /// The caller's place among its streaming transfers, given back when the plan is dropped.
    slot: Option<Arc<PullSlot>>,
}

impl TablePlan {
    /// Cells with `status`.
    pub fn count(&self, status: Status) -> u64 {
        self.cells.iter().filter(|c| c.status == status).count() as u64
    }
}

/// SHA-256 over the published cells' protobuf encodings, in order, each prefixed by its length
/// as 8 bytes big-endian: what the recipient recomputes from the cells it received.
pub fn published_digest(cells: &[Cell]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for c in cells.iter().filter(|c| c.status == Status::Published) {
        let bytes = prost::Message::encode_to_vec(&c.to_pb());
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

/// The HMAC (hex) of the primary-rule parameters: an auditor holding them recomputes it.
/// The text is `bth-sdc-rules-v1;n=<n>;zeros=<bool>;p=<p|none>;dominance=<n,k|none>`.
pub fn parameters_hmac(key: &hmac::Key, rules: &Rules) -> String {
    let p = rules.p_percent.map_or("none".to_owned(), |p| p.to_string());
    let d = rules.dominance.map_or("none".to_owned(), |d| format!("{},{}", d.n, d.k));
    let text = format!("bth-sdc-rules-v1;n={};zeros={};p={p};dominance={d}", rules.min_frequency, rules.zeros_unsafe);
    hex::encode(hmac::sign(key, text.as_bytes()).as_ref())
}

// --- reading and shaping the request ---------------------------------------------------------------

/// A requested dimension resolved against the data: its engine dimension and the request's
/// codes as engine code indexes.
struct Resolved {
    /// Canonical leaves (months for dates), sorted: the engine dimension's leaves when the
    /// table is refined.
    leaves: Vec<String>,
    /// Engine groups when refined.
    groups: Vec<(String, Vec<String>)>,
    /// The request's leaves (period labels for dates) in the filter, sorted: the engine
    /// dimension's leaves when the table is exact.
    exact_leaves: Vec<String>,
    /// Engine groups when exact: the request's groups and prefix groups.
    exact_groups: Vec<(String, Vec<String>)>,
    /// Each request leaf (all, not only the filter's) and the canonical leaves it covers.
    request_leaves: BTreeMap<String, BTreeSet<String>>,
    /// The filter leaves out some categories.
    filtered: bool,
    /// The request's codes: label shown, engine code label, the canonical leaves covered
    /// (`None`: every leaf, no condition in the ledger).
    codes: Vec<RequestCode>,
}

struct RequestCode {
    label: String,
    engine: String,
    /// The engine label when the table is exact.
    exact: String,
    leaves: Option<BTreeSet<String>>,
}

/// The canonical category of one value: months for dates, [`MISSING`] for null.
fn canonical(ty: FieldType, value: Option<&str>) -> String {
    match value {
        None => MISSING.to_owned(),
        Some(v) if ty == FieldType::Date && v.len() >= 7 => v[..7].to_owned(),
        Some(v) => v.to_owned(),
    }
}

/// The rows' canonical categories of `fields` and their contributors and measure values.
struct Rows {
    /// Per field (in `fields` order), per row: the index of its category in `dictionary`.
    categories: Vec<Vec<u32>>,
    /// Per field, its distinct canonical categories (first seen first).
    dictionary: Vec<Vec<String>>,
    /// Per row: the contributor's dense id.
    contributors: Vec<u32>,
    /// Per row: the contributor's holding's dense id, if the dataset names holdings and the row
    /// one.
    holdings: Vec<Option<u32>>,
    /// Per row: the measure (None: null, the row is not in a SUM or MEAN table).
    values: Vec<Option<f64>>,
}

/// A map keyed by values read from rows: a fast hasher, randomly seeded per map.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One value of a column, borrowed from it.
#[derive(Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// Calls `f` with every row's value of column `c` (carrying `ty`), `None` for null.
fn each_value<'a>(c: &'a pb::Column, ty: FieldType, n: u32, mut f: impl FnMut(Option<Value<'a>>)) {
    // The carrying array is chosen once per column, not once per row.
    let value: fn(&'a pb::Column, usize) -> Option<Value<'a>> = match crate::domain::values::carrier(ty) {
        "strings" => |c, k| c.strings.get(k).map(|s| Value::Text(s)),
        "ints" => |c, k| c.ints.get(k).map(|&i| Value::Int(i)),
        "doubles" => |c, k| c.doubles.get(k).map(|&d| Value::Double(d)),
        _ => |c, k| c.bools.get(k).map(|&b| Value::Bool(b)),
    };
    let mut nulls = c.nulls.iter().peekable();
    let mut k = 0usize;
    for row in 0..n {
        if nulls.peek() == Some(&&row) {
            nulls.next();
            f(None);
            continue;
        }
        let v = value(c, k);
        k += 1;
        f(v);
    }
}

/// Dense codes for one column's values, allocating only for a value seen the first time.
/// With `canonical`, values are coded by their canonical category (dates by month, null as
/// [`MISSING`]); without, by their exact text, and a null has no code.
struct Coder {
    ty: FieldType,
    canonical: bool,
    texts: FastMap<String, u32>,
    ints: FastMap<i64, u32>,
    doubles: FastMap<u64, u32>,
    /// Canonical text → code (two raw values may share a category: dates of one month).
    categories: FastMap<String, u32>,
    dictionary: Vec<String>,
}

impl Coder {
    fn new(ty: FieldType, canonical: bool) -> Coder {
        Coder {
            ty,
            canonical,
            texts: FastMap::default(),
            ints: FastMap::default(),
            doubles: FastMap::default(),
            categories: FastMap::default(),
            dictionary: Vec::new(),
        }
    }

    fn category(&mut self, text: String) -> u32 {
        let next = self.dictionary.len() as u32;
        *self.categories.entry(text).or_insert_with_key(|t| {
            self.dictionary.push(t.clone());
            next
        })
    }

    /// The code of a value (`None` for null when not canonical).
    fn code(&mut self, v: Option<Value<'_>>) -> Option<u32> {
        Some(match v {
            None if self.canonical => self.category(MISSING.to_owned()),
            None => return None,
            Some(Value::Text(t)) => match self.texts.get(t) {
                Some(&c) => c,
                None => {
                    let text = if self.canonical { canonical(self.ty, Some(t)) } else { t.to_owned() };
                    let c = self.category(text);
                    self.texts.insert(t.to_owned(), c);
                    c
                }
            },
            Some(Value::Int(i)) => match self.ints.get(&i) {
                Some(&c) => c,
                None => {
                    let c = self.category(i.to_string());
                    self.ints.insert(i, c);
                    c
                }
            },
            Some(Value::Double(d)) => match self.doubles.get(&d.to_bits()) {
                Some(&c) => c,
                None => {
                    let c = self.category(d.to_string());
                    self.doubles.insert(d.to_bits(), c);
                    c
                }
            },
            Some(Value::Bool(b)) => self.category(b.to_string()),
        })
    }
}

async fn read_rows(
    gw: &Gateway,
    dataset: &Dataset,
    version: &VersionInfo,
    fields: &[FieldName],
    measure: Option<&FieldName>,
) -> Result<Rows, ServiceError> {
    let index = |f: &FieldName| {
        dataset.field_index(f).ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("field {f} vanished")))
    };
    let field_idx: Vec<usize> = fields.iter().map(index).collect::<Result<_, _>>()?;
    let measure_idx = measure.map(index).transpose()?;
    let key_idx = dataset.contributor_key_field.as_ref().and_then(|f| dataset.field_index(f));
    let holding_idx = dataset.holding_key_field.as_ref().and_then(|f| dataset.field_index(f));
    let corrupt = || ServiceError::DataLoss(format!("dataset {} version {}", dataset.id, version.version));
    let mut rows = Rows {
        categories: vec![Vec::new(); fields.len()],
        dictionary: Vec::new(),
        contributors: Vec::new(),
        holdings: Vec::new(),
        values: Vec::new(),
    };
    let mut coders: Vec<Coder> = field_idx.iter().map(|&i| Coder::new(dataset.fields[i].ty, true)).collect();
    let mut keys = key_idx.map(|i| Coder::new(dataset.fields[i].ty, false));
    let mut holding_codes = holding_idx.map(|i| Coder::new(dataset.fields[i].ty, false));
    // Per contributor, its holding (the engine's precondition: one at most).
    let mut holding_of: Vec<Option<u32>> = Vec::new();
    // Rows without a contributor key (or with a null one) are their own contributors, numbered
    // after the keyed ones once every row is read.
    let mut keyless: Vec<usize> = Vec::new();
    let plan = ChunkPlan { dataset: dataset.clone(), version: version.clone(), from: 0, reader: Reader::Gateway };
    let mut chunks = masked_chunks(gw, plan, Pace::Pull);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let (n, columns) = RowBatch::from_encoded(chunk.data).split().map_err(|_| corrupt())?;
        let column = |i: usize| -> Result<pb::Column, ServiceError> {
            prost::Message::decode(columns.get(i).cloned().ok_or_else(corrupt)?).map_err(|_| corrupt())
        };
        for (k, &i) in field_idx.iter().enumerate() {
            let c = column(i)?;
            let (coder, out) = (&mut coders[k], &mut rows.categories[k]);
            out.reserve(n as usize);
            each_value(&c, dataset.fields[i].ty, n, |v| out.push(coder.code(v).unwrap_or(0)));
        }
        let first = rows.contributors.len();
        match (key_idx, keys.as_mut()) {
            (Some(i), Some(coder)) => {
                let c = column(i)?;
                each_value(&c, dataset.fields[i].ty, n, |v| {
                    let id = coder.code(v);
                    if id.is_none() {
                        keyless.push(rows.contributors.len());
                    }
                    rows.contributors.push(id.unwrap_or(u32::MAX));
                });
            }
            _ => {
                keyless.extend(first..first + n as usize);
                rows.contributors.extend(std::iter::repeat_n(u32::MAX, n as usize));
            }
        }
        match (holding_idx, holding_codes.as_mut()) {
            (Some(i), Some(coder)) => {
                let c = column(i)?;
                each_value(&c, dataset.fields[i].ty, n, |v| rows.holdings.push(coder.code(v)));
            }
            _ => rows.holdings.extend(std::iter::repeat_n(None, n as usize)),
        }
        for row in first..rows.contributors.len() {
            let (id, holding) = (rows.contributors[row], rows.holdings[row]);
            if id == u32::MAX {
                continue;
            }
            let id = id as usize;
            if id >= holding_of.len() {
                holding_of.resize(id + 1, None);
                holding_of[id] = holding;
            } else if holding_of[id] != holding {
                return Err(ServiceError::FailedPrecondition(format!(
                    "dataset {} version {} gives a contributor two holdings: no table of it can be protected",
                    dataset.id, version.version
                )));
            }
        }
        match measure_idx {
            Some(i) => {
                let c = column(i)?;
                let mut bad = false;
                each_value(&c, dataset.fields[i].ty, n, |v| {
                    let x = match v {
                        None => None,
                        Some(Value::Int(i)) => Some(i as f64),
                        Some(Value::Double(d)) => Some(d),
                        Some(Value::Text(t)) => t.parse::<f64>().map_err(|_| bad = true).ok(),
                        Some(Value::Bool(_)) => {
                            bad = true;
                            None
                        }
                    };
                    rows.values.push(x.filter(|x| x.is_finite()));
                });
                if bad {
                    return Err(corrupt());
                }
            }
            None => rows.values.extend(std::iter::repeat_n(Some(1.0), n as usize)),
        }
    }
    // Keyless rows: one contributor each, after the keyed ones.
    let keyed = keys.as_ref().map_or(0, |k| k.dictionary.len() as u32);
    for (id, row) in (keyed..).zip(keyless) {
        rows.contributors[row] = id;
    }
    rows.dictionary = coders.into_iter().map(|c| c.dictionary).collect();
    Ok(rows)
}

/// Resolves a requested dimension: its categories (the data's, those the request names, those
/// the ledger names), its groups, its codes. `at` is `dimensions[i]`.
fn resolve(
    at: &str,
    spec: &DimensionSpec,
    ty: FieldType,
    data: &BTreeSet<String>,
    ledger: &BTreeSet<String>,
) -> Result<Resolved, ServiceError> {
    let mut leaves: BTreeSet<String> = data.iter().chain(ledger).cloned().collect();
    let group_names: HashSet<&str> = spec.groups.iter().map(|(g, _)| g.as_str()).collect();
    // The request's leaf labels and the canonical leaves each covers.
    let label_of = |leaf: &str| match spec.period {
        Some(p) if leaf != MISSING => p.of_month(leaf),
        _ => leaf.to_owned(),
    };
    // A category the request names that is not in the data is a zero cell.
    let mut named: Vec<(String, String)> = Vec::new();
    for (j, (_, children)) in spec.groups.iter().enumerate() {
        for (k, c) in children.iter().enumerate() {
            if !group_names.contains(c.as_str()) {
                named.push((format!("{at}.groups[{j}].children[{k}]"), c.clone()));
            }
        }
    }
    for (k, c) in spec.filter.iter().enumerate() {
        named.push((format!("{at}.filter[{k}]"), c.clone()));
    }
    for (where_, label) in &named {
        match spec.period {
            Some(p) if label != MISSING => {
                let months = p.months(label).ok_or_else(|| {
                    ServiceError::invalid(
                        where_,
                        format!("`{label}` is not a {} of the form the period uses", p.name()),
                    )
                })?;
                leaves.extend(months);
            }
            _ => {
                if label == TOTAL || label.trim().is_empty() {
                    return Err(ServiceError::invalid(where_, "not a category"));
                }
                leaves.insert(label.clone());
            }
        }
    }
    if ty == FieldType::Date && spec.period.is_none() {
        return Err(ServiceError::invalid(format!("{at}.period"), "a DATE dimension needs YEAR, QUARTER or MONTH"));
    }
    if ty != FieldType::Date && spec.period.is_some() {
        return Err(ServiceError::invalid(format!("{at}.period"), "only a DATE dimension has a period"));
    }
    let mut request_leaves: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &leaves {
        request_leaves.entry(label_of(l)).or_default().insert(l.clone());
    }
    // The filter selects request leaves.
    let selected: BTreeSet<String> = if spec.filter.is_empty() {
        request_leaves.keys().cloned().collect()
    } else {
        let mut s = BTreeSet::new();
        for (k, f) in spec.filter.iter().enumerate() {
            if !s.insert(f.clone()) {
                return Err(ServiceError::invalid(format!("{at}.filter[{k}]"), format!("`{f}` is listed twice")));
            }
        }
        s
    };
    let mut engine_groups: Vec<(String, Vec<String>)> = Vec::new();
    if spec.period.is_some_and(|p| p != Period::Month) {
        for (label, months) in &request_leaves {
            if label != MISSING {
                engine_groups.push((label.clone(), months.iter().cloned().collect()));
            }
        }
    }
    // The hierarchy: every group resolved to request leaves; the top-level groups partition
    // the selected leaves.
    let mut resolved: HashMap<&str, BTreeSet<String>> = HashMap::new();
    let mut seen_groups = HashSet::new();
    for (j, (g, children)) in spec.groups.iter().enumerate() {
        let gat = format!("{at}.groups[{j}]");
        if g.trim().is_empty() || g == TOTAL || request_leaves.contains_key(g) || g == FILTER_GROUP {
            return Err(ServiceError::invalid(format!("{gat}.name"), "a group needs a name that is not a category"));
        }
        if !seen_groups.insert(g.as_str()) {
            return Err(ServiceError::invalid(format!("{gat}.name"), format!("group `{g}` is defined twice")));
        }
        if children.is_empty() {
            return Err(ServiceError::invalid(format!("{gat}.children"), "a group needs at least one child"));
        }
        let mut set = BTreeSet::new();
        for (k, c) in children.iter().enumerate() {
            if let Some(sub) = resolved.get(c.as_str()) {
                set.extend(sub.iter().cloned());
            } else if group_names.contains(c.as_str()) {
                return Err(ServiceError::invalid(
                    format!("{gat}.children[{k}]"),
                    format!("group `{c}` must be defined before the groups that contain it"),
                ));
            } else if !selected.contains(c) {
                return Err(ServiceError::invalid(
                    format!("{gat}.children[{k}]"),
                    format!("`{c}` is not a category of the table (outside its filter)"),
                ));
            } else {
                set.insert(c.clone());
            }
        }
        resolved.insert(g.as_str(), set);
    }
    if !spec.groups.is_empty() {
        let children: HashSet<&str> = spec.groups.iter().flat_map(|(_, c)| c.iter().map(String::as_str)).collect();
        let mut covered: HashMap<&str, &str> = HashMap::new();
        for (g, _) in spec.groups.iter().filter(|(g, _)| !children.contains(g.as_str())) {
            for leaf in &resolved[g.as_str()] {
                if let Some(other) = covered.insert(leaf.as_str(), g.as_str()) {
                    return Err(ServiceError::invalid(
                        format!("{at}.groups"),
                        format!("groups `{other}` and `{g}` overlap (both hold `{leaf}`)"),
                    ));
                }
            }
        }
        if let Some(missed) = selected.iter().find(|l| !covered.contains_key(l.as_str())) {
            return Err(ServiceError::invalid(
                format!("{at}.groups"),
                format!("no top-level group holds category `{missed}`"),
            ));
        }
    }
    engine_groups.extend(spec.groups.iter().cloned());
    // Prefix groups over the selected leaves.
    let mut prefix_groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut previous = 0;
    for (k, &len) in spec.prefixes.iter().enumerate() {
        let pat = format!("{at}.prefixes[{k}]");
        if spec.period.is_some() {
            return Err(ServiceError::invalid(pat, "a DATE dimension has no code prefixes"));
        }
        if len == 0 || len <= previous {
            return Err(ServiceError::invalid(pat, "prefix lengths must be positive and increasing"));
        }
        previous = len;
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in &selected {
            if l.chars().count() <= len {
                return Err(ServiceError::invalid(pat, format!("category `{l}` is not longer than {len} characters")));
            }
            by.entry(l.chars().take(len).collect()).or_default().push(l.clone());
        }
        prefix_groups.extend(by);
    }
    engine_groups.extend(prefix_groups.iter().cloned());
    let exact_groups: Vec<(String, Vec<String>)> = spec.groups.iter().chain(&prefix_groups).cloned().collect();
    let filtered = !spec.filter.is_empty() && selected.len() < request_leaves.len();
    if filtered {
        engine_groups.push((FILTER_GROUP.to_owned(), selected.iter().cloned().collect()));
    }
    let canonical_of = |labels: &BTreeSet<String>| -> BTreeSet<String> {
        labels.iter().flat_map(|l| request_leaves.get(l).into_iter().flatten().cloned()).collect()
    };
    let code = |label: &str, covers: &BTreeSet<String>| RequestCode {
        label: label.to_owned(),
        engine: label.to_owned(),
        exact: label.to_owned(),
        leaves: Some(canonical_of(covers)),
    };
    let mut codes = vec![RequestCode {
        label: TOTAL.to_owned(),
        engine: if filtered { FILTER_GROUP.to_owned() } else { TOTAL.to_owned() },
        exact: TOTAL.to_owned(),
        leaves: filtered.then(|| canonical_of(&selected)),
    }];
    for (g, _) in &spec.groups {
        codes.push(code(g, &resolved[g.as_str()]));
    }
    for (g, members) in &prefix_groups {
        codes.push(code(g, &members.iter().cloned().collect()));
    }
    for l in &selected {
        codes.push(code(l, &BTreeSet::from([l.clone()])));
    }
    // A date leaf at MONTH is the engine leaf itself; at YEAR or QUARTER, the engine group.
    Ok(Resolved {
        leaves: leaves.into_iter().collect(),
        groups: engine_groups,
        exact_leaves: selected.iter().cloned().collect(),
        exact_groups,
        request_leaves,
        filtered,
        codes,
    })
}

/// Whether a ledger cell is a sum of the requested table's own inner cells: it restricts only
/// requested fields; an unrestricted field is not filtered; a restricted one is a union of
/// categories inside the filter.
fn expressible(cell: &LedgerCell, requested: &[FieldName], resolved: &[Resolved]) -> bool {
    if !cell.keys().all(|f| requested.iter().any(|r| r.as_str() == f)) {
        return false;
    }
    requested.iter().zip(resolved).all(|(f, r)| match cell.get(f.as_str()) {
        None => !r.filtered,
        Some(cats) => {
            let inside: BTreeSet<&String> =
                r.exact_leaves.iter().filter_map(|l| r.request_leaves.get(l)).flatten().collect();
            cats.iter().all(|c| inside.contains(c))
                && r.exact_leaves
                    .iter()
                    .filter_map(|l| r.request_leaves.get(l))
                    .all(|canon| canon.is_subset(cats) || canon.is_disjoint(cats))
        }
    })
}

/// The inner cells whose leaf in each dimension is among `allowed[dimension]`, sorted.
fn inner_cells(table: &Table, allowed: &[Vec<u32>]) -> Vec<u32> {
    let mut inner = Vec::new();
    if allowed.iter().any(Vec::is_empty) {
        return inner;
    }
    let mut digits = vec![0usize; allowed.len()];
    'all: loop {
        let leaves: Vec<u32> = digits.iter().zip(allowed).map(|(&d, a)| a[d]).collect();
        inner.push(table.inner_of_leaves(&leaves));
        for k in (0..allowed.len()).rev() {
            digits[k] += 1;
            if digits[k] < allowed[k].len() {
                continue 'all;
            }
            digits[k] = 0;
        }
        break;
    }
    inner.sort_unstable();
    inner.dedup();
    inner
}

/// A ledger cell parsed: field → categories.
type LedgerCell = BTreeMap<String, BTreeSet<String>>;

fn parse_ledger(cells: &[ReleasedCell]) -> Result<Vec<(String, LedgerCell, f64)>, ServiceError> {
    cells
        .iter()
        .map(|c| {
            let cell: LedgerCell = serde_json::from_str(&c.cell)
                .map_err(|e| ServiceError::DataLoss(format!("a release-ledger cell ({e})")))?;
            Ok((c.quantity.clone(), cell, c.value))
        })
        .collect()
}

/// Everything computed for a table before anything is recorded.
struct Computed {
    cells: Vec<Cell>,
    /// Ledger rows this table adds.
    released: Vec<ReleasedCell>,
    /// `(published, primary, secondary)` over the requested cells.
    counts: (u64, u64, u64),
    /// Ledger rows of the version checked against.
    checked: u64,
    /// Why the table cannot be protected (client message), if so.
    refused: Option<(String, String)>,
    /// The officers' report (JSON).
    report: String,
}

/// Builds, protects and shapes the table; `Err` only for bad input or failures.
async fn compute(
    gw: &Gateway,
    req: &TableRequest,
    dataset: &Dataset,
    version: &VersionInfo,
    rules: &Rules,
    ledger_rows: &[ReleasedCell],
) -> Result<Computed, ServiceError> {
    let (fields, _) = engine_fields(req, dataset, ledger_rows)?;
    let started = std::time::Instant::now();
    let rows = read_rows(gw, dataset, version, &fields, req.statistic.measure()).await?;
    tracing::debug!(
        rows = rows.contributors.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "table rows read"
    );
    // Building and protecting a table is CPU work of up to seconds: off the async workers.
    let (req, dataset, rules, ledger_rows) = (req.clone(), dataset.clone(), *rules, ledger_rows.to_vec());
    let max_cells = gw.policy.tables.max_cells;
    tokio::task::spawn_blocking(move || protect_request(&req, &dataset, &rules, max_cells, &ledger_rows, rows))
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("the table's protection stopped: {e}")))?
}

/// The fields the engine table needs (the requested dimensions, then the fields that forced
/// ledger cells restrict and the request does not use) and the categories the ledger names per
/// field.
fn engine_fields(
    req: &TableRequest,
    dataset: &Dataset,
    ledger_rows: &[ReleasedCell],
) -> Result<(Vec<FieldName>, LedgerCell), ServiceError> {
    let ledger = parse_ledger(ledger_rows)?;
    let quantity = req.statistic.quantity();
    let mut fields: Vec<FieldName> = req.dimensions.iter().map(|d| d.field.clone()).collect();
    let mut ledger_named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, cell, _) in ledger.iter().filter(|(q, _, _)| *q == quantity) {
        for (f, cats) in cell {
            ledger_named.entry(f.clone()).or_default().extend(cats.iter().cloned());
        }
    }
    for f in ledger_named.keys() {
        let name = FieldName::parse(f).map_err(|_| ServiceError::DataLoss("a release-ledger cell's field".into()))?;
        if dataset.field(&name).is_none() {
            return Err(ServiceError::DataLoss(format!("a release-ledger cell names no field `{f}`")));
        }
        if !fields.contains(&name) {
            fields.push(name);
        }
    }
    Ok((fields, ledger_named))
}

/// Builds the engine table from the rows, forces the ledger's cells, protects it and shapes the
/// requested cells and the ledger rows they add.
fn protect_request(
    req: &TableRequest,
    dataset: &Dataset,
    rules: &Rules,
    max_cells: u64,
    ledger_rows: &[ReleasedCell],
    rows: Rows,
) -> Result<Computed, ServiceError> {
    let ledger = parse_ledger(ledger_rows)?;
    let quantity = req.statistic.quantity();
    let forced_cells: Vec<&LedgerCell> = ledger.iter().filter(|(q, _, _)| *q == quantity).map(|(_, c, _)| c).collect();
    let (fields, ledger_named) = engine_fields(req, dataset, ledger_rows)?;
    let data_categories: Vec<BTreeSet<String>> = rows.dictionary.iter().map(|d| d.iter().cloned().collect()).collect();
    let empty = BTreeSet::new();
    let mut resolved: Vec<Resolved> = Vec::new();
    for (i, spec) in req.dimensions.iter().enumerate() {
        let ty = dataset.field(&spec.field).map(|f| f.ty).unwrap_or(FieldType::String);
        let named = ledger_named.get(spec.field.as_str()).unwrap_or(&empty);
        resolved.push(resolve(&format!("dimensions[{i}]"), spec, ty, &data_categories[i], named)?);
    }
    let requested: u64 = resolved.iter().map(|r| r.codes.len() as u64).product();
    if requested > max_cells {
        return Err(ServiceError::invalid(
            "dimensions",
            format!("the table would have {requested} cells; at most {max_cells} (policy.tables.max_cells)"),
        ));
    }
    // Exact when every forced cell is a sum of the requested table's own inner cells (then the
    // engine protects exactly the requested table); otherwise refined (module docs).
    let exact = forced_cells.iter().all(|cell| expressible(cell, &fields[..req.dimensions.len()], &resolved));
    if !exact {
        for (k, f) in fields.iter().enumerate().skip(req.dimensions.len()) {
            let mut leaves: BTreeSet<String> = data_categories[k].clone();
            leaves.extend(ledger_named.get(f.as_str()).into_iter().flatten().cloned());
            resolved.push(Resolved {
                leaves: leaves.into_iter().collect(),
                groups: Vec::new(),
                exact_leaves: Vec::new(),
                exact_groups: Vec::new(),
                request_leaves: BTreeMap::new(),
                filtered: false,
                codes: vec![RequestCode {
                    label: TOTAL.into(),
                    engine: TOTAL.into(),
                    exact: TOTAL.into(),
                    leaves: None,
                }],
            });
        }
    }
    let engine_fields = &fields[..resolved.len()];
    let mut dims: Vec<Dimension> = Vec::new();
    for (k, (f, r)) in engine_fields.iter().zip(&resolved).enumerate() {
        let (leaves, groups) =
            if exact { (r.exact_leaves.clone(), r.exact_groups.clone()) } else { (r.leaves.clone(), r.groups.clone()) };
        let d = Dimension::new(f.as_str(), leaves, groups, &[])
            .map_err(|e| ServiceError::invalid(format!("dimensions[{k}]"), e))?;
        dims.push(d);
    }
    let statistic = req.statistic.engine();
    let keep_top = rules.keep_top();
    let probe = Table::build(dims.clone(), statistic, &[], keep_top).map_err(|e| match e {
        sdc::TableError::TooLarge(_) => ServiceError::ResourceExhausted(format!(
            "the table with the cells released before would be too large to protect ({e})"
        )),
        e => ServiceError::invalid("dimensions", e),
    })?;
    // Canonical category → engine leaf (a category outside an exact table's filter has none).
    let leaf_index: Vec<HashMap<&str, u32>> = resolved
        .iter()
        .map(|r| {
            if exact {
                let position: HashMap<&str, u32> =
                    r.exact_leaves.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
                r.request_leaves
                    .iter()
                    .filter_map(|(label, canon)| position.get(label.as_str()).map(|&i| (canon, i)))
                    .flat_map(|(canon, i)| canon.iter().map(move |c| (c.as_str(), i)))
                    .collect()
            } else {
                r.leaves.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect()
            }
        })
        .collect();
    // Per field, the engine leaf of each category code (`None`: outside an exact table's filter).
    let leaf_of_code: Vec<Vec<Option<u32>>> = rows
        .dictionary
        .iter()
        .take(resolved.len())
        .zip(&leaf_index)
        .map(|(dict, index)| dict.iter().map(|c| index.get(c.as_str()).copied()).collect())
        .collect();
    let mut contributions = Vec::with_capacity(rows.contributors.len());
    let mut leaves_of_row = vec![0u32; resolved.len()];
    'rows: for row in 0..rows.contributors.len() {
        let Some(value) = rows.values[row] else { continue };
        for (k, cats) in rows.categories.iter().take(resolved.len()).enumerate() {
            match leaf_of_code[k][cats[row] as usize] {
                Some(leaf) => leaves_of_row[k] = leaf,
                None => continue 'rows,
            }
        }
        contributions.push(Contribution {
            inner: probe.inner_of_leaves(&leaves_of_row),
            contributor: rows.contributors[row],
            holding: rows.holdings[row],
            value,
        });
    }
    let started = std::time::Instant::now();
    let table =
        Table::build(dims, statistic, &contributions, keep_top).map_err(|e| ServiceError::invalid("dimensions", e))?;
    tracing::debug!(cells = table.output_count(), elapsed_ms = started.elapsed().as_millis() as u64, "table built");
    // The ledger's cells over this table's inner cells.
    let mut forced: Vec<sdc::Forced> = Vec::new();
    let mut forced_labels: Vec<String> = Vec::new();
    for cell in &forced_cells {
        let allowed: Vec<Vec<u32>> = engine_fields
            .iter()
            .enumerate()
            .map(|(k, f)| match cell.get(f.as_str()) {
                None => (0..table.dimensions()[k].leaves.len() as u32).collect(),
                Some(cats) if exact => resolved[k]
                    .exact_leaves
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| {
                        resolved[k].request_leaves.get(*l).is_some_and(|c| !c.is_empty() && c.is_subset(cats))
                    })
                    .map(|(i, _)| i as u32)
                    .collect(),
                Some(cats) => cats.iter().filter_map(|c| leaf_index[k].get(c.as_str()).copied()).collect(),
            })
            .collect();
        let inner = inner_cells(&table, &allowed);
        if !inner.is_empty() {
            forced.push(sdc::Forced { inner });
            forced_labels.push(serde_json::to_string(cell).unwrap_or_default());
        }
    }
    // Every requested cell as engine code indexes.
    let engine_codes: Vec<Vec<usize>> = resolved
        .iter()
        .zip(table.dimensions())
        .map(|(r, d)| r.codes.iter().map(|c| d.code(if exact { &c.exact } else { &c.engine }).unwrap_or(0)).collect())
        .collect();
    let checked = ledger_rows.len() as u64;
    // How long each phase took (no value, no cell): what an operator needs to see why a table
    // is slow.
    let started = std::time::Instant::now();
    let mut trace = |phase: sdc::Phase| {
        tracing::debug!(?phase, elapsed_ms = started.elapsed().as_millis() as u64, "table protection")
    };
    let protection = match sdc::protect_traced(&table, rules, &forced, &mut trace) {
        Ok(p) => p,
        Err(refusal) => {
            // The recipient learns which of the cells it received conflicts, not which cell of
            // the table would be revealed: that cell may lie outside what it asked for, and
            // naming it would say that it fails a rule.
            let detail = match &refusal {
                sdc::Refusal::ForcedReveals { forced, .. } => format!(
                    "the cells released to you before, with {}, would reveal a protected cell",
                    forced_labels.get(*forced).map_or("them".to_owned(), |l| format!("the cell {l}"))
                ),
                sdc::Refusal::Unprotectable { .. } => {
                    "a protected cell cannot be protected by further suppression".to_owned()
                }
                other => other.to_string(),
            };
            let cells = request_cells(req.dimensions.len(), &resolved, &engine_codes, &table, None);
            return Ok(Computed {
                cells,
                released: Vec::new(),
                counts: (0, 0, 0),
                checked,
                refused: Some((format!("the table cannot be protected: {detail}"), refusal.to_string())),
                report: String::new(),
            });
        }
    };
    let cells = request_cells(req.dimensions.len(), &resolved, &engine_codes, &table, Some(&protection));
    let mut released = Vec::new();
    let mut counts = (0, 0, 0);
    let mut index = vec![0usize; resolved.len()];
    for cell in &cells {
        match cell.status {
            Status::Published => counts.0 += 1,
            Status::Primary => counts.1 += 1,
            Status::Secondary => counts.2 += 1,
        }
        if cell.status == Status::Published {
            let mut key: LedgerCell = BTreeMap::new();
            for (k, &c) in index.iter().enumerate() {
                if let Some(leaves) = &resolved[k].codes[c].leaves {
                    key.insert(fields[k].to_string(), leaves.clone());
                }
            }
            let key = serde_json::to_string(&key).map_err(|e| ServiceError::Internal(e.into()))?;
            let contributors = cell.contributors.unwrap_or(0) as f64;
            released.push(ReleasedCell { quantity: "COUNT".into(), cell: key.clone(), value: contributors });
            if let Some(m) = req.statistic.measure() {
                let engine = engine_cell(&engine_codes, &index, &table);
                released.push(ReleasedCell { quantity: format!("SUM:{m}"), cell: key, value: table.stats(engine).sum });
            }
        }
        advance(&mut index, &resolved);
    }
    let report = report(&table, &protection);
    Ok(Computed { cells, released, counts, checked, refused: None, report })
}

fn advance(index: &mut [usize], resolved: &[Resolved]) {
    for k in (0..index.len()).rev() {
        index[k] += 1;
        if index[k] < resolved[k].codes.len() {
            return;
        }
        index[k] = 0;
    }
}

fn engine_cell(engine_codes: &[Vec<usize>], index: &[usize], table: &Table) -> usize {
    let codes: Vec<usize> = engine_codes.iter().zip(index).map(|(codes, &i)| codes[i]).collect();
    table.cell_of_codes(&codes)
}

/// The requested cells in order, with their status and (published only) value; without a
/// protection (a refused table) every cell is suppressed as SECONDARY and carries nothing.
fn request_cells(
    requested_dims: usize,
    resolved: &[Resolved],
    engine_codes: &[Vec<usize>],
    table: &Table,
    protection: Option<&sdc::Protection>,
) -> Vec<Cell> {
    let requested: usize = resolved.iter().map(|r| r.codes.len()).product();
    let mut index = vec![0usize; resolved.len()];
    let mut out = Vec::with_capacity(requested);
    for _ in 0..requested {
        let engine = engine_cell(engine_codes, &index, table);
        let status = protection.map_or(Status::Secondary, |p| p.status[engine]);
        let published = status == Status::Published;
        out.push(Cell {
            codes: index.iter().zip(resolved).take(requested_dims).map(|(&i, r)| r.codes[i].label.clone()).collect(),
            status,
            value: if published { table.value(engine) } else { None },
            contributors: if published { Some(u64::from(table.stats(engine).contributors)) } else { None },
        });
        advance(&mut index, resolved);
    }
    out
}

/// The officers' suppression report: every primary cell of the protected table, its
/// coordinates and the rules it fails. No parameter, no value.
fn report(table: &Table, p: &sdc::Protection) -> String {
    let cells: Vec<serde_json::Value> = p
        .primary
        .iter()
        .enumerate()
        .filter_map(|(c, prim)| prim.as_ref().map(|prim| (c, prim)))
        .map(|(c, prim)| {
            let coords: BTreeMap<&str, &str> = table.labels(c).into_iter().collect();
            serde_json::json!({"cell": coords, "rules": prim.reasons})
        })
        .collect();
    serde_json::json!({
        "primary": cells,
        "secondary": p.count(Status::Secondary),
        "published": p.count(Status::Published),
    })
    .to_string()
}

// --- the use case ------------------------------------------------------------------------------------

/// Whether a table is sent or only previewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Recorded with its ledger rows, then streamed.
    Release,
    /// Decision and counts only: no value, no ledger row, no hold; recorded in the log.
    Preview,
}

/// Checks the request against the grant; bad input is `InvalidArgument` naming the field.
fn check_request(req: &TableRequest, dataset: &Dataset, grant: &Grant) -> Result<(), ServiceError> {
    if req.dimensions.is_empty() || req.dimensions.len() > 4 {
        return Err(ServiceError::invalid(
            "dimensions",
            format!("a table has 1 to 4 dimensions, not {}", req.dimensions.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, d) in req.dimensions.iter().enumerate() {
        let at = format!("dimensions[{i}].field");
        if dataset.field(&d.field).is_none() {
            return Err(ServiceError::invalid(at, format!("`{}` is not a field of dataset {}", d.field, dataset.id)));
        }
        if !grant.dimensions.contains(&d.field) {
            return Err(ServiceError::PermissionDenied(format!(
                "`{}` is not a dimension of grant {} ({at})",
                d.field, grant.id
            )));
        }
        if !seen.insert(&d.field) {
            return Err(ServiceError::invalid(at, format!("`{}` is a dimension twice", d.field)));
        }
    }
    if let Some(m) = req.statistic.measure() {
        let def = dataset.field(m).ok_or_else(|| {
            ServiceError::invalid("measure", format!("`{m}` is not a field of dataset {}", dataset.id))
        })?;
        if !matches!(def.ty, FieldType::Int64 | FieldType::Float64 | FieldType::Decimal) {
            return Err(ServiceError::invalid("measure", format!("`{m}` is {}, not numeric", def.ty)));
        }
        if !grant.measures.contains(m) {
            return Err(ServiceError::PermissionDenied(format!(
                "`{m}` is not a measure of grant {} (measure)",
                grant.id
            )));
        }
    }
    Ok(())
}

/// The fields a table uses, read by the rules as aggregate data (docs/tables.md §6): `pi`
/// NONE, not `stat_micro`, the level kept.
fn aggregate_fields(req: &TableRequest, dataset: &Dataset) -> Vec<(FieldName, &'static str, Classification)> {
    req.dimensions
        .iter()
        .map(|d| (d.field.clone(), "dimension"))
        .chain(req.statistic.measure().map(|m| (m.clone(), "measure")))
        .filter_map(|(f, role)| dataset.field(&f).map(|def| (f, role, def.class)))
        .collect()
}

struct Context {
    table_id: String,
    dataset: Dataset,
    version: VersionInfo,
    grant: Grant,
    exporter: Participant,
    recipient: Participant,
    transfer: policy::Transfer,
    decision: Decision,
    facts: Vec<bodies::FactCited>,
    rules: Rules,
    scope: String,
    at: DateTime<Utc>,
}

async fn prepare(gw: &Gateway, caller: &Caller, req: &TableRequest) -> Result<Context, ServiceError> {
    caller.require(Role::Consumer)?;
    let dataset = gw
        .store
        .dataset(&req.dataset)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("dataset {}", req.dataset)))?;
    let now = gw.clock.now();
    let grant =
        super::exchange::choose_grant_for(gw, caller, &dataset, req.grant.as_deref(), now, GrantUse::Tables).await?;
    check_request(req, &dataset, &grant)?;
    let version = gw.store.version(&dataset.id, req.version).await?.filter(super::review::is_released).ok_or_else(
        || match req.version {
            // A version in review or returned is, to a consumer, not there at all.
            Some(v) => ServiceError::NotFound(format!("version {v} of dataset {}", dataset.id)),
            None => ServiceError::NotFound(format!("a published version of dataset {}", dataset.id)),
        },
    )?;
    let recipient = caller.participant.clone();
    // Assessed as aggregate data (docs/tables.md §6): no personal information, no microdata.
    let fields = aggregate_fields(req, &dataset)
        .into_iter()
        .map(|(f, _, class)| policy::Field {
            name: f.to_string(),
            classification: Classification { pi: Pi::None, stat_micro: false, ..class },
        })
        .collect();
    let (exporter, transfer) =
        super::exchange::transfer_of(gw, &dataset, &grant, &recipient, now, req.access_from_outside_mainland, fields)
            .await?;
    // No personal information: nothing is counted, whatever the mode.
    let parties = assessment::Parties { exporter: &exporter, recipient: &recipient, dataset: &dataset, grant: &grant };
    let assessed =
        assessment::assess(gw, &transfer, parties, &version, &RowSelection { filter: None }, Counting::DryRun).await?;
    let rules = rules_for(gw, &dataset, assessed.decision.is_export()).await?;
    let scope = gw.store.ledger_scope(&recipient.id).await?.unwrap_or_else(|| recipient.id.to_string());
    Ok(Context {
        table_id: new_id("tb-"),
        dataset,
        version,
        grant,
        exporter,
        recipient,
        transfer,
        decision: assessed.decision,
        facts: assessed.facts,
        rules,
        scope,
        at: now,
    })
}

/// The parameters a table of `dataset` is protected with: the gateway's for the direction, made
/// stricter by the owner's when it set some (parameter by parameter, so a gateway configuration
/// tightened since the owner set them still applies).
async fn rules_for(gw: &Gateway, dataset: &Dataset, export: bool) -> Result<Rules, ServiceError> {
    let gateway = if export { gw.policy.tables.export } else { gw.policy.tables.domestic }.rules();
    let Some((domestic, exported)) = gw.store.dataset_table_rules(&dataset.id).await? else { return Ok(gateway) };
    let own: TableRules = serde_json::from_str(if export { &exported } else { &domestic })
        .map_err(|_| ServiceError::DataLoss(format!("the table parameters of dataset {}", dataset.id)))?;
    Ok(strictest(&own.rules(), &gateway))
}

/// Parameter by parameter the stricter of `a` and `b`: at least as strict as both.
pub fn strictest(a: &Rules, b: &Rules) -> Rules {
    Rules {
        min_frequency: a.min_frequency.max(b.min_frequency),
        zeros_unsafe: a.zeros_unsafe || b.zeros_unsafe,
        p_percent: match (a.p_percent, b.p_percent) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
        dominance: match (a.dominance, b.dominance) {
            (Some(x), Some(y)) => Some(sdc::Dominance { n: x.n.max(y.n), k: x.k.min(y.k) }),
            (x, y) => x.or(y),
        },
    }
}

/// A dataset's owner sets its table parameters, each direction at least as strict as the
/// gateway's. Recorded as their HMACs; never returned.
///
/// # Errors
/// `PermissionDenied` unless the caller owns the dataset; `NotFound` for an unknown dataset;
/// `InvalidArgument` naming the first parameter out of range or weaker than the gateway's (never
/// the gateway's value).
pub async fn set_table_rules(
    gw: &Gateway,
    caller: &Caller,
    dataset: &DatasetId,
    domestic: TableRules,
    export: TableRules,
) -> Result<Option<Receipt>, ServiceError> {
    caller.require(Role::Publisher)?;
    let d = gw.store.dataset(dataset).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {dataset}")))?;
    if d.owner != caller.participant.id {
        return Err(ServiceError::PermissionDenied(format!(
            "only the owner of dataset {dataset} sets its table rules"
        )));
    }
    for (name, own, floor) in
        [("domestic", &domestic, gw.policy.tables.domestic), ("export", &export, gw.policy.tables.export)]
    {
        let rules = own.rules();
        rules.validate().map_err(|e| ServiceError::invalid(format!("{name}.{}", e.key), e.reason))?;
        rules
            .at_least_as_strict_as(&floor.rules())
            .map_err(|e| ServiceError::invalid(format!("{name}.{}", e.key), e.reason))?;
    }
    let key = gw.parameters_key();
    let body = bodies::TableRulesSet {
        dataset: dataset.clone(),
        domestic_hmac: parameters_hmac(&key, &domestic.rules()),
        export_hmac: parameters_hmac(&key, &export.rules()),
    };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::TableRulesSet(body));
    let json = |r: &TableRules| serde_json::to_string(r).map_err(|e| ServiceError::Internal(e.into()));
    let seq = gw.store.set_dataset_table_rules(dataset, &json(&domestic)?, &json(&export)?, &rec).await?;
    tracing::info!(%dataset, "table rules set by the owner");
    Ok(super::audit::receipt_if_integrated(gw, seq).await)
}

fn facets(ctx: &Context, action: TransferAction) -> TransferFacets {
    TransferFacets {
        transfer: ctx.table_id.clone(),
        dataset: ctx.dataset.id.to_string(),
        recipient: ctx.recipient.id.to_string(),
        exporter: ctx.exporter.id.to_string(),
        region: ctx.recipient.region.to_string(),
        export: ctx.decision.is_export(),
        mechanism: Some(ctx.decision.mechanism),
        action,
    }
}

pub(crate) fn definition(req: &TableRequest) -> TableDefinition {
    TableDefinition {
        statistic: req.statistic.name().into(),
        measure: req.statistic.measure().cloned(),
        dimensions: req
            .dimensions
            .iter()
            .map(|d| TableDimensionRecord {
                field: d.field.clone(),
                period: d.period.map(|p| p.name().to_owned()),
                groups: d.groups.clone(),
                prefixes: d.prefixes.iter().map(|&p| p as u64).collect(),
                filter: d.filter.clone(),
            })
            .collect(),
    }
}

fn decision_record(
    gw: &Gateway,
    caller: &Caller,
    ctx: &Context,
    req: &TableRequest,
    mode: Mode,
    computed: Option<&Computed>,
    added: u64,
    sha256: Option<[u8; 32]>,
    outcome: String,
    action: TransferAction,
) -> NewRecord {
    let body = TableDecision {
        table: ctx.table_id.clone(),
        preview: mode == Mode::Preview,
        caller: bodies::DecisionCaller { id: caller.participant.id.clone(), cert_sha256: caller.cert_sha256.clone() },
        exporter: bodies::DecisionExporter::from(&ctx.exporter),
        recipient: bodies::DecisionRecipient::new(&ctx.recipient, req.access_from_outside_mainland),
        dataset: ctx.dataset.id.clone(),
        version: ctx.version.version,
        version_sha256: ctx.version.sha256,
        government_data: ctx.dataset.government_data,
        grant: ctx.grant.id.clone(),
        purpose: ctx.grant.purpose.clone(),
        legal_basis: ctx.grant.legal_basis.clone(),
        definition: definition(req),
        fields: aggregate_fields(req, &ctx.dataset)
            .into_iter()
            .map(|(name, role, class)| bodies::TableField {
                name,
                role: role.into(),
                level: class.level,
                pi: class.pi,
                stat_micro: class.stat_micro,
            })
            .collect(),
        parameters_hmac: parameters_hmac(&gw.parameters_key(), &ctx.rules),
        cells: computed.filter(|c| c.refused.is_none()).map(|c| bodies::TableCells {
            total: c.cells.len() as u64,
            published: c.counts.0,
            primary: c.counts.1,
            secondary: c.counts.2,
        }),
        ledger: bodies::TableLedger { scope: ctx.scope.clone(), checked: computed.map_or(0, |c| c.checked), added },
        sha256: sha256.map(hex::encode),
        ruleset: ctx.decision.ruleset,
        facts: ctx.facts.clone(),
        decision: DecisionJson::from(&ctx.decision),
        outcome,
    };
    let mut rec = NewRecord::new(caller.actor(), ctx.at, RecordBody::TableDecision(Box::new(body)));
    rec.facets = Some(facets(ctx, action));
    rec
}

/// Why the rules do not let the table go, if they do not (a HOLD joins the review queue,
/// except for a preview).
async fn rules_refusal(
    gw: &Gateway,
    caller: &Caller,
    ctx: &Context,
    mode: Mode,
    protectable: bool,
) -> Result<Option<ServiceError>, ServiceError> {
    let d = &ctx.decision;
    let rules: Vec<String> = d.rules.iter().map(|r| r.to_string()).collect();
    Ok(match d.action {
        // A preview changes nothing: it neither closes nor consults the review queue. A table
        // that cannot be protected is refused next, and releases no hold either.
        Action::Pass if mode == Mode::Preview || !protectable => None,
        Action::Pass => {
            match assessment::release_holds(gw, caller, &ctx.grant, &ctx.table_id, &ctx.transfer, d).await {
                Ok(()) => None,
                Err(e @ ServiceError::PermissionDenied(_)) => Some(e),
                Err(e) => return Err(e),
            }
        }
        Action::Block => Some(ServiceError::Blocked { message: format!("{} for this table", d.mechanism), rules }),
        Action::Hold => {
            let needed: Vec<&str> =
                d.hold.as_ref().map_or(Vec::new(), |h| h.satisfied_by.iter().map(|t| t.as_str()).collect());
            let hold = match mode {
                Mode::Release => {
                    match assessment::queue_hold(gw, caller, &ctx.grant, &ctx.dataset, &ctx.table_id, &ctx.transfer, d)
                        .await
                    {
                        Ok(hold) => hold,
                        Err(e @ ServiceError::PermissionDenied(_)) => return Ok(Some(e)),
                        Err(e) => return Err(e),
                    }
                }
                Mode::Preview => "none (a preview queues nothing)".to_owned(),
            };
            Some(ServiceError::Held {
                hold,
                mechanism: d.mechanism.to_string(),
                message: format!("no applicable approval ({}) is recorded", needed.join(" or ")),
                rules,
            })
        }
    })
}

/// Assesses, protects and records a table (`Release`: with its ledger rows, in one
/// transaction), or previews it (`Preview`: its decision record only).
///
/// The decision record does not go through the sequencer's `append`: it is stored by
/// [`crate::store::TableStore::record_table`] in the transaction that writes the ledger rows
/// (both or neither, serialised per ledger scope and checked against the ledger size the table
/// was protected against), then integrated by the sequencer like every state change's record;
/// the header's receipt waits for that integration. A crash between the two leaves a stored,
/// not yet integrated record that the sequencer integrates on start.
///
/// # Errors
/// `InvalidArgument` for bad input (nothing recorded, the ledger unchanged); `PermissionDenied`
/// without the consumer role or a TABLES grant, or for a BLOCK; `Held` for a HOLD;
/// `FailedPrecondition` when the table cannot be protected given the cells released before
/// (recorded, no value); `Unavailable` when nothing can be recorded (nothing sent).
pub async fn tabulate(
    gw: &Gateway,
    caller: &Caller,
    req: &TableRequest,
    mode: Mode,
) -> Result<TablePlan, ServiceError> {
    // No table leaves while the log goes unwitnessed beyond the policy (docs/witness.md).
    if mode == Mode::Release {
        gw.witnessed().await?;
    }
    // A table costs seconds of CPU: it takes one of the caller's places among its streaming
    // transfers, like a pull, while it is computed and (released) streamed.
    let slot = gw.pulls.take(&caller.participant.id, gw.limits.max_pulls_per_participant).inspect_err(|e| {
        if caller.called_itself() {
            gw.refusals.note(caller, Some(&req.dataset), e, gw.clock.now());
        }
    })?;
    match decide(gw, caller, req, mode, &slot).await {
        Ok(mut plan) => {
            plan.slot = Some(Arc::new(slot));
            Ok(plan)
        }
        Err(e) => {
            // Probing (no grant, an unknown dataset, a field not granted) is counted for the
            // officers, as refused pulls are.
            if caller.called_itself() {
                gw.refusals.note(caller, Some(&req.dataset), &e, gw.clock.now());
            }
            Err(e)
        }
    }
}

/// [`tabulate`] once the caller has its place.
async fn decide(
    gw: &Gateway,
    caller: &Caller,
    req: &TableRequest,
    mode: Mode,
    slot: &PullSlot,
) -> Result<TablePlan, ServiceError> {
    for attempt in 1..=RELEASE_ATTEMPTS {
        let ctx = prepare(gw, caller, req).await?;
        let ledger = gw.store.released(&ctx.scope, &ctx.dataset.id, ctx.version.version).await?;
        // Bad input shows while the table is built: before anything is recorded.
        let computed = compute(gw, req, &ctx.dataset, &ctx.version, &ctx.rules, &ledger).await?;
        let refused = rules_refusal(gw, caller, &ctx, mode, computed.refused.is_none()).await?;
        if let Some(e) = refused {
            // A transfer the rules passed but the gateway refused (an officer's standing refusal)
            // is filed as REFUSED, as a pull is.
            let action = if ctx.decision.action == Action::Pass {
                crate::domain::record::TransferAction::Refused
            } else {
                ctx.decision.action.into()
            };
            let outcome = if mode == Mode::Preview { format!("PREVIEW: {e}") } else { e.to_string() };
            let rec = decision_record(gw, caller, &ctx, req, mode, None, 0, None, outcome, action);
            let receipt = gw.log.append(rec).await?;
            tracing::info!(
                table = %ctx.table_id,
                dataset = %ctx.dataset.id,
                action = %ctx.decision.action,
                "table refused by the rules"
            );
            // A preview answers the decision, as PreviewPull does, rather than an error.
            if mode == Mode::Preview {
                return Ok(plan(req, ctx, computed, Some(receipt), Some(e.to_string())));
            }
            return Err(e);
        }

        if let Some((message, recorded)) = computed.refused.clone() {
            let outcome = if mode == Mode::Preview {
                format!("PREVIEW: REFUSED: {recorded}")
            } else {
                format!("REFUSED: {recorded}")
            };
            let rec = decision_record(
                gw,
                caller,
                &ctx,
                req,
                mode,
                Some(&computed),
                0,
                None,
                outcome,
                TransferAction::Refused,
            );
            let receipt = gw.log.append(rec).await?;
            tracing::info!(
                table = %ctx.table_id,
                dataset = %ctx.dataset.id,
                ledger = computed.checked,
                "table cannot be protected"
            );
            if mode == Mode::Preview {
                return Ok(plan(req, ctx, computed, Some(receipt), Some(message)));
            }
            return Err(ServiceError::FailedPrecondition(format!(
                "{message}; nothing was released (docs/tables.md: why a table is refused)"
            )));
        }
        let sha256 = published_digest(&computed.cells);
        match mode {
            Mode::Preview => {
                let rec = decision_record(
                    gw,
                    caller,
                    &ctx,
                    req,
                    mode,
                    Some(&computed),
                    0,
                    None,
                    "PREVIEW".into(),
                    ctx.decision.action.into(),
                );
                let receipt = gw.log.append(rec).await?;
                return Ok(plan(req, ctx, computed, Some(receipt), None));
            }
            Mode::Release => {
                let rec = decision_record(
                    gw,
                    caller,
                    &ctx,
                    req,
                    mode,
                    Some(&computed),
                    computed.released.len() as u64,
                    Some(sha256),
                    "AUTHORISED".into(),
                    TransferAction::Pass,
                );
                let release = TableRelease {
                    table: &ctx.table_id,
                    scope: &ctx.scope,
                    recipient: ctx.recipient.id.as_str(),
                    dataset: &ctx.dataset.id,
                    version: ctx.version.version,
                    checked: computed.checked,
                    cells: &computed.released,
                    report: Some(&computed.report),
                    at: ctx.at,
                };
                // Before its decision is stored: maintenance never takes a streaming table for
                // one cut by a stop.
                slot.streams(&ctx.table_id);
                match gw.store.record_table(&release, &rec).await {
                    Ok(seq) => {
                        gw.log.kick();
                        let receipt = crate::log::proofs::receipt(&gw.log, gw.store.as_ref(), seq).await?;
                        tracing::info!(
                            table = %ctx.table_id,
                            dataset = %ctx.dataset.id,
                            version = ctx.version.version,
                            recipient = %ctx.recipient.id,
                            published = computed.counts.0,
                            suppressed = computed.counts.1 + computed.counts.2,
                            "table released"
                        );
                        return Ok(plan(req, ctx, computed, Some(receipt), None));
                    }
                    Err(StoreError::Conflict(_)) if attempt < RELEASE_ATTEMPTS => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(ServiceError::FailedPrecondition("other tables were released meanwhile; retry".into()))
}

fn plan(
    req: &TableRequest,
    ctx: Context,
    computed: Computed,
    receipt: Option<Receipt>,
    refused: Option<String>,
) -> TablePlan {
    let sha256 = published_digest(&computed.cells);
    TablePlan {
        table_id: ctx.table_id,
        dimensions: req.dimensions.iter().map(|d| d.field.to_string()).collect(),
        dataset: ctx.dataset,
        version: ctx.version,
        decision: ctx.decision,
        cells: computed.cells,
        sha256,
        receipt,
        refused,
        recipient: ctx.recipient,
        exporter: ctx.exporter,
        grant: ctx.grant.id.clone(),
        slot: None,
    }
}

/// One message of a table's stream after the header.
#[derive(Debug, Clone)]
pub enum TableDelivery {
    /// Cells.
    Cells(Vec<Cell>),
    /// The end.
    Trailer {
        /// Cells sent.
        cells: u64,
        /// Published cells.
        published: u64,
        /// Their digest.
        sha256: [u8; 32],
        /// The completion record's receipt.
        receipt: Receipt,
    },
}

/// The `table.completed` record of `plan` after `sent` cells, with its facets.
fn completion(
    actor: &str,
    at: DateTime<Utc>,
    plan: &TablePlan,
    sent: u64,
    outcome: String,
    action: TransferAction,
) -> NewRecord {
    let published = plan.cells.iter().filter(|c| c.status == Status::Published).count() as u64;
    let mut rec = NewRecord::new(
        actor,
        at,
        RecordBody::TableCompleted(bodies::TableCompleted {
            table: plan.table_id.clone(),
            dataset: plan.dataset.id.clone(),
            version: plan.version.version,
            recipient: plan.recipient.id.clone(),
            cells: sent,
            published,
            sha256: hex::encode(plan.sha256),
            outcome,
        }),
    );
    rec.facets = Some(TransferFacets {
        transfer: plan.table_id.clone(),
        dataset: plan.dataset.id.to_string(),
        recipient: plan.recipient.id.to_string(),
        exporter: plan.exporter.id.to_string(),
        region: plan.recipient.region.to_string(),
        export: plan.decision.is_export(),
        mechanism: Some(plan.decision.mechanism),
        action,
    });
    rec
}

/// Completes a released table that is kept for its recipient instead of streamed (a standing
/// report): its `table.completed` record says `outcome` with every cell "sent" into keeping.
///
/// # Errors
/// `Unavailable` when the record cannot be logged.
pub async fn keep(gw: &Gateway, plan: &TablePlan, outcome: String) -> Result<Receipt, ServiceError> {
    let rec = completion(
        plan.recipient.id.as_str(),
        gw.clock.now(),
        plan,
        plan.cells.len() as u64,
        outcome,
        TransferAction::Completed,
    );
    Ok(gw.log.append(rec).await?)
}

/// Cells per stream message.
const CELLS_PER_MESSAGE: usize = 1024;

/// Streams a recorded table's cells, then records its completion and sends the trailer. Room for
/// each message is reserved before it is made; while the cells stream, the table is re-checked
/// every [`RECHECK`](super::exchange::RECHECK) as a pull is: once its recipient is suspended, its
/// grant revoked or expired, or an approval its decision used revoked, no further cell is sent,
/// the receiver gets `PermissionDenied` and the completion says `REVOKED` with what was sent.
pub fn deliver(gw: &Gateway, caller: &Caller, plan: TablePlan) -> mpsc::Receiver<Result<TableDelivery, ServiceError>> {
    let (tx, rx) = mpsc::channel(1);
    let gw = gw.clone();
    let actor = caller.actor();
    tokio::spawn(async move {
        let done = CancellationToken::new();
        // Also when this task ends abnormally: the watcher ends.
        let _stop_watching = done.clone().drop_guard();
        let standing = Standing::of(&plan.table_id, &plan.recipient.id, &plan.grant, &plan.decision);
        let watcher = tokio::spawn(watch_authorisation(gw.clone(), standing, done.clone()));
        let mut watcher = std::pin::pin!(async move {
            watcher.await.ok().flatten().unwrap_or_else(|| "its authorisation cannot be re-checked".into())
        });
        let mut sent = 0u64;
        let mut cut = false;
        let mut revoked: Option<String> = None;
        for chunk in plan.cells.chunks(CELLS_PER_MESSAGE) {
            match unless_withdrawn(watcher.as_mut(), tx.reserve()).await {
                Err(why) => {
                    revoked = Some(why);
                    break;
                }
                Ok(Err(_)) => {
                    cut = true;
                    break;
                }
                Ok(Ok(permit)) => {
                    permit.send(Ok(TableDelivery::Cells(chunk.to_vec())));
                    sent += chunk.len() as u64;
                }
            }
        }
        done.cancel();
        let published = plan.cells.iter().filter(|c| c.status == Status::Published).count() as u64;
        let (outcome, action) = match (&revoked, cut) {
            (Some(why), _) => (format!("REVOKED: {why}"), TransferAction::Revoked),
            (None, true) => ("CUT: the recipient went away".to_owned(), TransferAction::Cut),
            (None, false) => ("COMPLETED".to_owned(), TransferAction::Completed),
        };
        let rec = completion(&actor, gw.clock.now(), &plan, sent, outcome, action);
        let stored = gw.log.append(rec).await;
        tracing::info!(table = %plan.table_id, cells = sent, %action, "table stream ended");
        if let Some(why) = revoked {
            let stop = ServiceError::PermissionDenied(format!(
                "the table was stopped after {sent} of {} cells: {why}",
                plan.cells.len()
            ));
            // A receiver that no longer reads does not keep this task alive.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), tx.send(Err(stop))).await;
            return;
        }
        if cut {
            return;
        }
        let msg = match stored {
            Ok(receipt) => Ok(TableDelivery::Trailer { cells: sent, published, sha256: plan.sha256, receipt }),
            Err(e) => Err(ServiceError::from(e)),
        };
        let _ = tx.send(msg).await;
    });
    rx
}

/// The officers' suppression report of a table: which rules made each primary cell.
///
/// # Errors
/// `PermissionDenied` without the officer role, or for the table's recipient or its dataset's
/// owner (separation of duties); `NotFound` for a table without a report.
pub async fn suppression_report(
    gw: &Gateway,
    caller: &Caller,
    table: &str,
) -> Result<crate::store::TableReport, ServiceError> {
    caller.require(Role::Officer)?;
    let report = gw.store.table_report(table).await?.ok_or_else(|| ServiceError::NotFound(format!("table {table}")))?;
    let me = caller.participant.id.as_str();
    let owner = match DatasetId::parse(&report.dataset) {
        Ok(id) => gw.store.dataset(&id).await?.map(|d| d.owner.to_string()),
        Err(_) => None,
    };
    if report.recipient == me || owner.as_deref() == Some(me) {
        return Err(ServiceError::PermissionDenied(format!(
            "officer {me} received table {table} or owns its dataset: another officer reads its report"
        )));
    }
    Ok(report)
}

/// Widens `participant`'s release ledger to `scope` (or resets it: `scope` = the participant's
/// id). Later tables to any member of a scope are protected against every cell released to it.
/// Cells released before to the participant's own scope stay there.
///
/// # Errors
/// `PermissionDenied` without the officer role or for the participant itself;
/// `InvalidArgument` for a malformed scope or blank reason; `NotFound` for an unknown
/// participant.
pub async fn set_ledger_scope(
    gw: &Gateway,
    caller: &Caller,
    participant: &crate::domain::ids::ParticipantId,
    scope: &str,
    reason: &str,
) -> Result<Option<Receipt>, ServiceError> {
    caller.require(Role::Officer)?;
    if &caller.participant.id == participant {
        return Err(ServiceError::PermissionDenied("an officer does not set its own ledger scope".into()));
    }
    let ok = !scope.is_empty()
        && scope.len() <= 64
        && scope.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-:_".contains(&b));
    if !ok {
        return Err(ServiceError::invalid("scope", "1-64 characters of a-z, 0-9, '-', ':', '_'"));
    }
    super::check_text("reason", reason, true, 1024)?;
    gw.store
        .participant(participant)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("participant {participant}")))?;
    let body =
        bodies::LedgerScopeSet { participant: participant.clone(), scope: scope.to_owned(), reason: reason.to_owned() };
    let rec = NewRecord::new(caller.actor(), gw.clock.now(), RecordBody::LedgerScopeSet(body));
    let seq = gw.store.set_ledger_scope(participant, scope, &rec).await?;
    tracing::info!(%participant, scope, "release-ledger scope set");
    Ok(super::audit::receipt_if_integrated(gw, seq).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_name_their_months() {
        assert_eq!(Period::Quarter.of_month("2024-05"), "2024-Q2");
        assert_eq!(Period::Year.of_month("2024-05"), "2024");
        assert_eq!(Period::Quarter.months("2024-Q2").unwrap(), vec!["2024-04", "2024-05", "2024-06"]);
        assert_eq!(Period::Year.months("2024").unwrap().len(), 12);
        assert!(Period::Month.months("2024-13").is_none());
        assert!(Period::Quarter.months("2024").is_none());
    }

    #[test]
    fn the_parameters_hmac_depends_on_every_parameter_and_the_key() {
        let k1 = hmac::Key::new(hmac::HMAC_SHA256, b"one");
        let k2 = hmac::Key::new(hmac::HMAC_SHA256, b"two");
        let d = parameters_hmac(&k1, &Rules::domestic());
        assert_ne!(d, parameters_hmac(&k1, &Rules::export()));
        assert_ne!(d, parameters_hmac(&k2, &Rules::domestic()));
        assert_ne!(d, parameters_hmac(&k1, &Rules { min_frequency: 4, ..Rules::domestic() }));
        assert_eq!(d.len(), 64);
    }

    #[test]
    fn the_strictest_rules_are_at_least_as_strict_as_both() {
        let owner = Rules {
            min_frequency: 5,
            zeros_unsafe: false,
            p_percent: None,
            dominance: Some(sdc::Dominance { n: 1, k: 95.0 }),
        };
        for gateway in [Rules::domestic(), Rules::export()] {
            let s = strictest(&owner, &gateway);
            s.at_least_as_strict_as(&owner).unwrap();
            s.at_least_as_strict_as(&gateway).unwrap();
        }
        assert_eq!(strictest(&owner, &Rules::export()).dominance, Some(sdc::Dominance { n: 2, k: 90.0 }));
    }

    #[test]
    fn a_date_is_its_month() {
        assert_eq!(canonical(FieldType::Date, Some("2024-05-17")), "2024-05");
        assert_eq!(canonical(FieldType::String, None), MISSING);
    }
}
