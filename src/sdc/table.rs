//! Tables built from contributions: dimensions with hierarchies, inner and output cells, per-cell statistics.
//!
//! A table has *inner cells* (one per combination of leaf categories, zero cells included) and
//! *output cells* (one per combination of codes — `Total`, groups, leaves — of every dimension).
//! An output cell is the sum of the inner cells it covers; its contributions are those of its
//! inner cells, aggregated per contributor and per respondent before any rule sees them.

use std::collections::{HashMap, HashSet};

/// The label of the code that covers every leaf of a dimension.
pub const TOTAL: &str = "Total";

/// One code of a dimension: `Total`, a group, or a leaf category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The label shown in a cell's coordinates.
    pub label: String,
    /// The leaves it covers, sorted, never empty.
    pub leaves: Vec<u32>,
}

/// A dimension: its leaf categories and every code of it, `Total` first, then groups in the
/// order given (explicit groups, then prefix groups by length), then the leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    /// The dimension's name (a field name).
    pub name: String,
    /// The leaf categories, in the order given.
    pub leaves: Vec<String>,
    /// Every code, `Total` at index 0.
    pub codes: Vec<Code>,
    /// `member[code]` has bit `leaf` set when the code covers the leaf (fast membership).
    member: Vec<Vec<bool>>,
}

/// Why a dimension cannot be built. `at` is the key inside the dimension's description
/// (`categories[2]`, `hierarchy.EU[0]`, `prefixes[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct DimensionError {
    /// Where, relative to the dimension.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

fn dim_err(at: impl Into<String>, reason: impl Into<String>) -> DimensionError {
    DimensionError { at: at.into(), reason: reason.into() }
}

impl Dimension {
    /// Builds a dimension from its leaves, explicit groups (name → children, each child a leaf or
    /// another group; groups may overlap) and administrative-code prefix lengths (a prefix length
    /// `L` groups the leaves by their first `L` characters, the group named by the prefix).
    ///
    /// # Errors
    /// No leaves; a blank, duplicate or reserved (`Total`) name; a group with no children, an
    /// unknown or repeated child, or a cycle; a prefix length of 0, not increasing, or not
    /// shorter than every leaf; a prefix group named like a leaf or another group.
    pub fn new(
        name: &str,
        leaves: Vec<String>,
        groups: Vec<(String, Vec<String>)>,
        prefixes: &[usize],
    ) -> Result<Dimension, DimensionError> {
        if leaves.is_empty() {
            return Err(dim_err("categories", "at least one category expected"));
        }
        let mut names: HashSet<String> = HashSet::new();
        for (i, leaf) in leaves.iter().enumerate() {
            if leaf.trim().is_empty() {
                return Err(dim_err(format!("categories[{i}]"), "blank category"));
            }
            if leaf == TOTAL {
                return Err(dim_err(format!("categories[{i}]"), "`Total` is reserved for the margin"));
            }
            if !names.insert(leaf.clone()) {
                return Err(dim_err(format!("categories[{i}]"), format!("`{leaf}` listed twice")));
            }
        }
        let leaf_index: HashMap<&str, u32> = leaves.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
        let group_index: HashMap<&str, usize> = groups.iter().enumerate().map(|(i, (g, _))| (g.as_str(), i)).collect();
        for (g, children) in &groups {
            let at = format!("hierarchy.{g}");
            if g.trim().is_empty() || g == TOTAL || leaf_index.contains_key(g.as_str()) {
                return Err(dim_err(at, "a group needs a name that is not `Total` nor a category"));
            }
            if !names.insert(g.clone()) {
                return Err(dim_err(at, "group defined twice"));
            }
            if children.is_empty() {
                return Err(dim_err(at, "a group needs at least one child"));
            }
            let mut seen = HashSet::new();
            for (j, child) in children.iter().enumerate() {
                if !leaf_index.contains_key(child.as_str()) && !group_index.contains_key(child.as_str()) {
                    return Err(dim_err(format!("{at}[{j}]"), format!("unknown category or group `{child}`")));
                }
                if !seen.insert(child) {
                    return Err(dim_err(format!("{at}[{j}]"), format!("`{child}` listed twice")));
                }
            }
        }
        // Resolve groups to leaf sets, refusing cycles (depth-first, three colours).
        let mut resolved: Vec<Option<Vec<u32>>> = vec![None; groups.len()];
        for start in 0..groups.len() {
            resolve(start, &groups, &leaf_index, &group_index, &mut resolved, &mut vec![false; groups.len()])?;
        }
        let mut codes = vec![Code { label: TOTAL.to_owned(), leaves: (0..leaves.len() as u32).collect() }];
        for ((g, _), set) in groups.iter().zip(resolved) {
            codes.push(Code { label: g.clone(), leaves: set.unwrap_or_default() });
        }
        let mut previous = 0;
        for (j, &len) in prefixes.iter().enumerate() {
            let at = format!("prefixes[{j}]");
            if len == 0 || len <= previous {
                return Err(dim_err(at, "prefix lengths must be positive and increasing"));
            }
            previous = len;
            let mut order: Vec<String> = Vec::new();
            let mut members: HashMap<String, Vec<u32>> = HashMap::new();
            for (i, leaf) in leaves.iter().enumerate() {
                if leaf.chars().count() <= len {
                    return Err(dim_err(at, format!("category `{leaf}` is not longer than {len} characters")));
                }
                let prefix: String = leaf.chars().take(len).collect();
                if !members.contains_key(&prefix) {
                    order.push(prefix.clone());
                }
                members.entry(prefix).or_default().push(i as u32);
            }
            for prefix in order {
                if !names.insert(prefix.clone()) {
                    return Err(dim_err(at, format!("prefix group `{prefix}` is named like a category or group")));
                }
                let set = members.remove(&prefix).unwrap_or_default();
                codes.push(Code { label: prefix, leaves: set });
            }
        }
        for (i, leaf) in leaves.iter().enumerate() {
            codes.push(Code { label: leaf.clone(), leaves: vec![i as u32] });
        }
        let member = codes
            .iter()
            .map(|c| {
                let mut row = vec![false; leaves.len()];
                for &l in &c.leaves {
                    row[l as usize] = true;
                }
                row
            })
            .collect();
        Ok(Dimension { name: name.to_owned(), leaves, codes, member })
    }

    /// The code index of a label, if any.
    pub fn code(&self, label: &str) -> Option<usize> {
        self.codes.iter().position(|c| c.label == label)
    }

    /// The code index of leaf `leaf`.
    pub fn leaf_code(&self, leaf: u32) -> usize {
        self.codes.len() - self.leaves.len() + leaf as usize
    }

    /// Whether `code` covers `leaf`.
    pub fn covers(&self, code: usize, leaf: u32) -> bool {
        self.member[code][leaf as usize]
    }
}

fn resolve(
    g: usize,
    groups: &[(String, Vec<String>)],
    leaf_index: &HashMap<&str, u32>,
    group_index: &HashMap<&str, usize>,
    resolved: &mut Vec<Option<Vec<u32>>>,
    on_path: &mut Vec<bool>,
) -> Result<(), DimensionError> {
    if resolved[g].is_some() {
        return Ok(());
    }
    if on_path[g] {
        return Err(dim_err(format!("hierarchy.{}", groups[g].0), "the hierarchy has a cycle through this group"));
    }
    on_path[g] = true;
    let mut set = Vec::new();
    for child in &groups[g].1 {
        if let Some(&l) = leaf_index.get(child.as_str()) {
            set.push(l);
        } else if let Some(&c) = group_index.get(child.as_str()) {
            resolve(c, groups, leaf_index, group_index, resolved, on_path)?;
            set.extend(resolved[c].iter().flatten().copied());
        }
    }
    set.sort_unstable();
    set.dedup();
    on_path[g] = false;
    resolved[g] = Some(set);
    Ok(())
}

/// What a table publishes in each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// The number of distinct contributors.
    Count,
    /// The sum of a measure.
    Sum,
    /// SUM / COUNT, protected as the SUM table (whose rules include the frequency rule).
    Mean,
}

impl Statistic {
    /// Whether the magnitude rules (p %, dominance) apply.
    pub fn is_magnitude(self) -> bool {
        !matches!(self, Statistic::Count)
    }
}

/// One microdata row's contribution to one inner cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    /// The inner cell (see [`Table::inner_of_leaves`]).
    pub inner: u32,
    /// The contributor (respondent) id, dense from 0.
    pub contributor: u32,
    /// The contributor's holding, if it belongs to one: contributions of one holding are added
    /// together before any rule. A contributor belongs to at most one holding (the caller's
    /// precondition: [`crate::sdc::input`] checks it).
    pub holding: Option<u32>,
    /// The measure (ignored for COUNT).
    pub value: f64,
}

/// The statistics of one output cell, with contributions aggregated per contributor and per
/// respondent (a holding, or a contributor without one).
#[derive(Debug, Clone, PartialEq)]
pub struct CellStats {
    /// Distinct contributors.
    pub contributors: u32,
    /// Distinct respondents (holdings count once).
    pub respondents: u32,
    /// The signed sum of the measure (SUM, MEAN); 0 for COUNT.
    pub sum: f64,
    /// The sum of the absolute contributions, `X` of the magnitude rules.
    pub abs_total: f64,
    /// The largest absolute respondent totals, descending (`x1, x2, …`), at most `keep_top`.
    pub top: Vec<f64>,
    /// Every contributor belongs to the same holding (unsafe whatever the counts).
    pub one_holding: bool,
    /// The cell's value in the additive model that suppression protects: the sum over its inner
    /// cells of their values (COUNT: inner distinct contributors; SUM, MEAN: the sum).
    pub additive: f64,
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// Not 1–4 dimensions.
    #[error("a table has 1 to 4 dimensions, not {0}")]
    Dimensions(usize),
    /// Two dimensions with the same name.
    #[error("dimension `{0}` appears twice")]
    DuplicateDimension(String),
    /// More inner or output cells than the engine handles.
    #[error("the table would have {0} output cells (at most {MAX_OUTPUT_CELLS})")]
    TooLarge(u64),
    /// A contribution names an inner cell outside the table.
    #[error("contribution {0} names no inner cell of the table")]
    BadInner(usize),
}

/// The largest table the engine builds (output cells).
pub const MAX_OUTPUT_CELLS: u64 = 1 << 22;

/// A table: dimensions, statistic, the statistics of every output cell.
#[derive(Debug, Clone)]
pub struct Table {
    dimensions: Vec<Dimension>,
    statistic: Statistic,
    /// Leaf counts per dimension (the inner cells' radices, last dimension fastest).
    leaf_radix: Vec<usize>,
    /// Code counts per dimension (the output cells' radices, last dimension fastest).
    code_radix: Vec<usize>,
    inner_count: usize,
    cells: Vec<CellStats>,
    /// Respondents per inner cell (singleton handling).
    inner_respondents: Vec<u32>,
    /// Every contribution is ≥ 0 (the audit may then assume `x ≥ 0`).
    nonnegative: bool,
}

impl Table {
    /// Builds the table and the statistics of every output cell.
    ///
    /// `keep_top` is how many of the largest respondent totals each cell keeps (the rules need
    /// `max(2, dominance n)`: [`crate::sdc::Rules::keep_top`]).
    ///
    /// # Errors
    /// [`TableError`].
    pub fn build(
        dimensions: Vec<Dimension>,
        statistic: Statistic,
        contributions: &[Contribution],
        keep_top: usize,
    ) -> Result<Table, TableError> {
        if dimensions.is_empty() || dimensions.len() > 4 {
            return Err(TableError::Dimensions(dimensions.len()));
        }
        let mut seen = HashSet::new();
        for d in &dimensions {
            if !seen.insert(d.name.as_str()) {
                return Err(TableError::DuplicateDimension(d.name.clone()));
            }
        }
        let leaf_radix: Vec<usize> = dimensions.iter().map(|d| d.leaves.len()).collect();
        let code_radix: Vec<usize> = dimensions.iter().map(|d| d.codes.len()).collect();
        let output: u64 =
            code_radix.iter().map(|&r| r as u64).try_fold(1u64, |a, r| a.checked_mul(r)).unwrap_or(u64::MAX);
        if output > MAX_OUTPUT_CELLS {
            return Err(TableError::TooLarge(output));
        }
        let inner_count: usize = leaf_radix.iter().product();
        // Per inner cell: contributions aggregated per contributor.
        let mut per_inner: Vec<Vec<Contribution>> = vec![Vec::new(); inner_count];
        let mut nonnegative = true;
        for (i, c) in contributions.iter().enumerate() {
            let slot = per_inner.get_mut(c.inner as usize).ok_or(TableError::BadInner(i))?;
            nonnegative &= c.value >= 0.0;
            slot.push(*c);
        }
        // Within an inner cell, a fixed order (by contributor, then value), so that sums do not
        // depend on the order rows arrived in; a margin sums its inner cells in index order.
        for cs in &mut per_inner {
            cs.sort_unstable_by(|a, b| a.contributor.cmp(&b.contributor).then(a.value.total_cmp(&b.value)));
        }
        let mut table = Table {
            dimensions,
            statistic,
            leaf_radix,
            code_radix,
            inner_count,
            cells: Vec::new(),
            inner_respondents: Vec::new(),
            nonnegative,
        };
        let mut aggregator = Aggregator::new(contributions);
        let inner_values: Vec<(u32, f64)> = per_inner
            .iter()
            .map(|cs| {
                let stats = aggregator.cell(cs.iter(), 0);
                let value = if statistic.is_magnitude() { stats.sum } else { f64::from(stats.contributors) };
                (stats.respondents, value)
            })
            .collect();
        table.inner_respondents = inner_values.iter().map(|&(r, _)| r).collect();
        let mut cells = Vec::with_capacity(output as usize);
        for cell in 0..output as usize {
            let inner = table.inner_of(cell);
            let mut stats = aggregator.cell(inner.iter().flat_map(|&i| per_inner[i as usize].iter()), keep_top);
            stats.additive = inner.iter().map(|&i| inner_values[i as usize].1).sum();
            cells.push(stats);
        }
        table.cells = cells;
        Ok(table)
    }

    /// The dimensions.
    pub fn dimensions(&self) -> &[Dimension] {
        &self.dimensions
    }

    /// The statistic.
    pub fn statistic(&self) -> Statistic {
        self.statistic
    }

    /// Inner cells (the finest cross-classification).
    pub fn inner_count(&self) -> usize {
        self.inner_count
    }

    /// Output cells (every combination of codes).
    pub fn output_count(&self) -> usize {
        self.cells.len()
    }

    /// The statistics of output cell `cell`.
    pub fn stats(&self, cell: usize) -> &CellStats {
        &self.cells[cell]
    }

    /// Every contribution is non-negative.
    pub fn is_nonnegative(&self) -> bool {
        self.nonnegative
    }

    /// Respondents of inner cell `inner`.
    pub fn inner_respondents(&self, inner: u32) -> u32 {
        self.inner_respondents[inner as usize]
    }

    /// The code index per dimension of output cell `cell`.
    pub fn codes_of(&self, cell: usize) -> Vec<usize> {
        unrank(cell, &self.code_radix)
    }

    /// The output cell with the given code per dimension.
    pub fn cell_of_codes(&self, codes: &[usize]) -> usize {
        rank(codes, &self.code_radix)
    }

    /// The inner cell of the given leaf per dimension.
    pub fn inner_of_leaves(&self, leaves: &[u32]) -> u32 {
        let leaves: Vec<usize> = leaves.iter().map(|&l| l as usize).collect();
        rank(&leaves, &self.leaf_radix) as u32
    }

    /// The leaf per dimension of inner cell `inner`.
    pub fn leaves_of_inner(&self, inner: u32) -> Vec<u32> {
        unrank(inner as usize, &self.leaf_radix).into_iter().map(|l| l as u32).collect()
    }

    /// The output cell that is inner cell `inner` (leaf codes in every dimension).
    pub fn output_of_inner(&self, inner: u32) -> usize {
        let leaves = unrank(inner as usize, &self.leaf_radix);
        let codes: Vec<usize> = leaves.iter().zip(&self.dimensions).map(|(&l, d)| d.leaf_code(l as u32)).collect();
        self.cell_of_codes(&codes)
    }

    /// The inner cells output cell `cell` covers, sorted.
    pub fn inner_of(&self, cell: usize) -> Vec<u32> {
        let codes = self.codes_of(cell);
        let sets: Vec<&[u32]> =
            codes.iter().zip(&self.dimensions).map(|(&c, d)| d.codes[c].leaves.as_slice()).collect();
        let mut out = Vec::with_capacity(sets.iter().map(|s| s.len()).product());
        let mut pick = vec![0usize; sets.len()];
        loop {
            let leaves: Vec<usize> = pick.iter().zip(&sets).map(|(&p, s)| s[p] as usize).collect();
            out.push(rank(&leaves, &self.leaf_radix) as u32);
            // Odometer over the sets, last dimension fastest: ranks come out sorted.
            let mut d = sets.len();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                pick[d] += 1;
                if pick[d] < sets[d].len() {
                    break;
                }
                pick[d] = 0;
            }
        }
    }

    /// Whether output cell `cell` covers inner cell `inner`.
    pub fn covers(&self, cell: usize, inner: u32) -> bool {
        let codes = self.codes_of(cell);
        let leaves = unrank(inner as usize, &self.leaf_radix);
        codes.iter().zip(&leaves).zip(&self.dimensions).all(|((&c, &l), d)| d.covers(c, l as u32))
    }

    /// `dimension → label` of output cell `cell`, in dimension order.
    pub fn labels(&self, cell: usize) -> Vec<(&str, &str)> {
        self.codes_of(cell)
            .into_iter()
            .zip(&self.dimensions)
            .map(|(c, d)| (d.name.as_str(), d.codes[c].label.as_str()))
            .collect()
    }

    /// The published value of a cell: COUNT the distinct contributors, SUM the sum, MEAN the
    /// sum over the contributors (`None` for a cell without contributors).
    pub fn value(&self, cell: usize) -> Option<f64> {
        let s = &self.cells[cell];
        match self.statistic {
            Statistic::Count => Some(f64::from(s.contributors)),
            Statistic::Sum => Some(s.sum),
            Statistic::Mean => (s.contributors > 0).then(|| s.sum / f64::from(s.contributors)),
        }
    }
}

fn rank(digits: &[usize], radix: &[usize]) -> usize {
    digits.iter().zip(radix).fold(0, |acc, (&d, &r)| acc * r + d)
}

fn unrank(mut n: usize, radix: &[usize]) -> Vec<usize> {
    let mut out = vec![0; radix.len()];
    for (slot, &r) in out.iter_mut().zip(radix).rev() {
        *slot = n % r;
        n /= r;
    }
    out
}

/// Aggregates contributions into [`CellStats`] in time linear in their number: a stamp per
/// contributor and per respondent marks the ones a cell has seen, instead of sorting every
/// cell's contributions.
struct Aggregator {
    /// The cell being aggregated (stamps start at 1; 0 is "never seen").
    stamp: u32,
    /// Per contributor, the last cell that counted it.
    contributor_seen: Vec<u32>,
    /// Per contributor without a holding and per holding: (stamp, index into `totals`).
    contributor_slot: Vec<(u32, u32)>,
    holding_slot: Vec<(u32, u32)>,
    /// The cell's respondent totals of absolute values.
    totals: Vec<f64>,
}

impl Aggregator {
    fn new(contributions: &[Contribution]) -> Aggregator {
        let contributors = contributions.iter().map(|c| c.contributor as usize + 1).max().unwrap_or(0);
        let holdings = contributions.iter().filter_map(|c| c.holding).map(|h| h as usize + 1).max().unwrap_or(0);
        Aggregator {
            stamp: 0,
            contributor_seen: vec![0; contributors],
            contributor_slot: vec![(0, 0); contributors],
            holding_slot: vec![(0, 0); holdings],
            totals: Vec::new(),
        }
    }

    /// The statistics of the contributions of one cell (summed in the order given), keeping
    /// the `keep_top` largest respondent totals.
    fn cell<'a>(&mut self, contributions: impl Iterator<Item = &'a Contribution>, keep_top: usize) -> CellStats {
        self.stamp += 1;
        let stamp = self.stamp;
        self.totals.clear();
        let (mut sum, mut abs_total, mut contributors) = (0.0, 0.0, 0u32);
        // None: no contribution yet; Some(None): contributions of different (or no) holdings.
        let mut holding: Option<Option<u32>> = None;
        for c in contributions {
            sum += c.value;
            abs_total += c.value.abs();
            let seen = &mut self.contributor_seen[c.contributor as usize];
            if *seen != stamp {
                *seen = stamp;
                contributors += 1;
            }
            let slot = match c.holding {
                Some(h) => &mut self.holding_slot[h as usize],
                None => &mut self.contributor_slot[c.contributor as usize],
            };
            if slot.0 == stamp {
                self.totals[slot.1 as usize] += c.value.abs();
            } else {
                *slot = (stamp, self.totals.len() as u32);
                self.totals.push(c.value.abs());
            }
            holding = match holding {
                None => Some(c.holding),
                Some(h) if h == c.holding => Some(h),
                Some(_) => Some(None),
            };
        }
        let respondents = self.totals.len() as u32;
        let descending = |a: &f64, b: &f64| b.total_cmp(a);
        let mut top: Vec<f64> = if keep_top == 0 {
            Vec::new()
        } else if self.totals.len() > keep_top {
            self.totals.select_nth_unstable_by(keep_top - 1, descending);
            self.totals[..keep_top].to_vec()
        } else {
            self.totals.clone()
        };
        top.sort_by(descending);
        let one_holding = matches!(holding, Some(Some(_)));
        CellStats { contributors, respondents, sum, abs_total, top, one_holding, additive: 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn geo() -> Dimension {
        Dimension::new(
            "geo",
            strings(&["Spain", "Iceland", "Portugal"]),
            vec![("EU".into(), strings(&["Spain", "Portugal"])), ("nonEU".into(), strings(&["Iceland"]))],
            &[],
        )
        .unwrap()
    }

    #[test]
    fn a_dimension_lists_total_then_groups_then_leaves() {
        let d = geo();
        let labels: Vec<&str> = d.codes.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["Total", "EU", "nonEU", "Spain", "Iceland", "Portugal"]);
        assert_eq!(d.codes[1].leaves, [0, 2]);
        assert!(d.covers(0, 1) && !d.covers(1, 1));
    }

    #[test]
    fn nested_groups_and_prefixes_resolve_to_leaves() {
        let d = Dimension::new(
            "district",
            strings(&["120101", "120102", "120201", "130101"]),
            vec![("north".into(), strings(&["tj", "130101"])), ("tj".into(), strings(&["120101", "120102", "120201"]))],
            &[2, 4],
        )
        .unwrap();
        let find = |l: &str| d.codes[d.code(l).unwrap()].leaves.clone();
        assert_eq!(find("north"), [0, 1, 2, 3]);
        assert_eq!(find("12"), [0, 1, 2]);
        assert_eq!(find("1201"), [0, 1]);
        assert_eq!(find("1301"), [3]);
    }

    #[test]
    fn bad_dimensions_name_the_key() {
        let err = |leaves: &[&str], groups: Vec<(&str, Vec<&str>)>, prefixes: &[usize]| {
            let groups = groups.into_iter().map(|(g, c)| (g.to_owned(), strings(&c))).collect();
            Dimension::new("d", strings(leaves), groups, prefixes).unwrap_err().to_string()
        };
        assert_eq!(err(&[], vec![], &[]), "categories: at least one category expected");
        assert_eq!(err(&["a", "a"], vec![], &[]), "categories[1]: `a` listed twice");
        assert_eq!(err(&["Total"], vec![], &[]), "categories[0]: `Total` is reserved for the margin");
        assert_eq!(err(&["a"], vec![("g", vec!["b"])], &[]), "hierarchy.g[0]: unknown category or group `b`");
        assert_eq!(err(&["a"], vec![("g", vec![])], &[]), "hierarchy.g: a group needs at least one child");
        assert_eq!(
            err(&["a"], vec![("g", vec!["h"]), ("h", vec!["g"])], &[]),
            "hierarchy.g: the hierarchy has a cycle through this group"
        );
        assert_eq!(err(&["ab", "c"], vec![], &[1]), "prefixes[0]: category `c` is not longer than 1 characters");
        assert_eq!(err(&["abc"], vec![], &[2, 2]), "prefixes[1]: prefix lengths must be positive and increasing");
        assert_eq!(
            err(&["ab1", "ab2", "x12"], vec![("ab", vec!["ab1"])], &[2]),
            "prefixes[0]: prefix group `ab` is named like a category or group"
        );
    }

    #[test]
    fn output_cells_cover_their_inner_cells_and_aggregate_per_contributor() {
        let age = Dimension::new("age", strings(&["young", "old"]), vec![], &[]).unwrap();
        let dims = vec![age, geo()];
        let probe = Table::build(dims.clone(), Statistic::Sum, &[], 2).unwrap();
        let at = |a: u32, g: u32| probe.inner_of_leaves(&[a, g]);
        let contributions = [
            Contribution { inner: at(0, 0), contributor: 0, holding: None, value: 5.0 },
            Contribution { inner: at(1, 0), contributor: 0, holding: None, value: 7.0 },
            Contribution { inner: at(0, 2), contributor: 1, holding: None, value: 3.0 },
            Contribution { inner: at(0, 2), contributor: 2, holding: None, value: -1.0 },
        ];
        let t = Table::build(dims, Statistic::Sum, &contributions, 2).unwrap();
        assert_eq!((t.inner_count(), t.output_count()), (6, 18));
        let total = t.cell_of_codes(&[0, 0]);
        assert_eq!(t.inner_of(total), [0, 1, 2, 3, 4, 5]);
        let s = t.stats(total);
        assert_eq!((s.contributors, s.respondents, s.sum, s.abs_total), (3, 3, 14.0, 16.0));
        assert_eq!(s.top, [12.0, 3.0], "contributor 0 is one respondent of the total");
        let spain = t.cell_of_codes(&[0, 3]);
        assert_eq!(t.stats(spain).top, [12.0]);
        let eu_young = t.cell_of_codes(&[1, 1]);
        assert_eq!(t.inner_of(eu_young), [at(0, 0), at(0, 2)]);
        assert!(t.covers(eu_young, at(0, 2)) && !t.covers(eu_young, at(0, 1)));
        assert_eq!(t.stats(eu_young).additive, 7.0);
        assert!(!t.is_nonnegative());
        assert_eq!(t.labels(eu_young), [("age", "young"), ("geo", "EU")]);
        assert_eq!(t.output_of_inner(at(1, 2)), t.cell_of_codes(&[2, 5]));
    }

    #[test]
    fn holdings_are_one_respondent_and_counts_stay_per_contributor() {
        let d = Dimension::new("d", strings(&["a", "b"]), vec![], &[]).unwrap();
        let c = |inner, contributor, holding, value| Contribution { inner, contributor, holding, value };
        let t = Table::build(
            vec![d],
            Statistic::Count,
            &[c(0, 0, Some(0), 4.0), c(1, 1, Some(0), 6.0), c(1, 2, None, 1.0)],
            3,
        )
        .unwrap();
        let total = t.stats(0);
        assert_eq!((total.contributors, total.respondents), (3, 2));
        assert_eq!(total.top, [10.0, 1.0]);
        assert!(!total.one_holding);
        assert!(t.stats(1).one_holding, "inner a: one contributor of holding 0");
        assert_eq!(total.additive, 3.0, "COUNT's additive value sums inner distinct contributors");
        assert_eq!(t.value(0), Some(3.0));
    }

    #[test]
    fn the_aggregator_agrees_with_sorting_every_cell() {
        // Pseudo-random contributions: 40 contributors, some in holdings, repeated values.
        let mut x = 7u64;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u32
        };
        let contributions: Vec<Contribution> = (0..400)
            .map(|_| {
                let contributor = next() % 40;
                let holding = (contributor % 3 == 0).then_some(contributor % 4);
                Contribution { inner: 0, contributor, holding, value: f64::from(next() % 50) - 10.0 }
            })
            .collect();
        let mut aggregator = Aggregator::new(&contributions);
        for (from, to) in [(0, 400), (0, 1), (10, 20), (100, 400), (5, 5)] {
            let cell = &contributions[from..to];
            let got = aggregator.cell(cell.iter(), 3);
            let contributors: HashSet<u32> = cell.iter().map(|c| c.contributor).collect();
            let mut totals: HashMap<(bool, u32), f64> = HashMap::new();
            for c in cell {
                let key = c.holding.map_or((false, c.contributor), |h| (true, h));
                *totals.entry(key).or_default() += c.value.abs();
            }
            let mut top: Vec<f64> = totals.values().copied().collect();
            top.sort_by(|a, b| b.total_cmp(a));
            top.truncate(3);
            let holdings: HashSet<Option<u32>> = cell.iter().map(|c| c.holding).collect();
            assert_eq!(got.contributors as usize, contributors.len());
            assert_eq!(got.respondents as usize, totals.len());
            assert_eq!(got.top, top);
            assert_eq!(got.sum, cell.iter().map(|c| c.value).sum::<f64>());
            assert_eq!(got.abs_total, cell.iter().map(|c| c.value.abs()).sum::<f64>());
            assert_eq!(got.one_holding, holdings.len() == 1 && !holdings.contains(&None));
        }
    }
}
