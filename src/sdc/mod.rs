//! Statistical disclosure control (docs/tables.md): tables from contributions, primary rules, secondary suppression, the interval audit (pure).
//!
//! [`protect`] is the whole engine: it classifies every output cell of a [`Table`] by the
//! [`Rules`], then suppresses further by exact Gaussian elimination ([`gauss`]) with forced
//! cells published first, adds the singleton relations (a contributor knows its own value),
//! audits every primary cell's interval by linear programming ([`audit`]) and suppresses more
//! until every primary cell is protected, or refuses the table ([`Refusal`]). It never reads a
//! clock, a file or a network.

pub mod audit;
pub mod gauss;
pub mod hypercube;
pub mod input;
pub mod rules;
pub mod table;

use std::collections::{BTreeSet, HashSet};

pub use audit::Interval;
pub use rules::{Dominance, Primary, Reason, Rules, RulesError};
pub use table::{CellStats, Code, Contribution, Dimension, DimensionError, Statistic, Table, TableError, TOTAL};

use gauss::{indicator, GaussError, SparseVec};

/// What happens to one output cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Released with its value and contributor count.
    Published,
    /// Suppressed: fails a primary rule.
    Primary,
    /// Suppressed to protect another cell.
    Secondary,
}

/// A cell that must be published whatever the pattern: a cell released earlier to the same
/// recipient (the release ledger), as its set of inner cells of this table. Its value is the
/// table's own (same dataset version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forced {
    /// The inner cells it sums, sorted, not empty.
    pub inner: Vec<u32>,
}

/// Why a table cannot be protected. Names cells (output cell indices) and forced cells (their
/// index in the input), never a value or a parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Forced cell `forced`, with the forced cells before it, reveals primary cell `cell` (or,
    /// when `cell` is `None`, a sum of single-contributor cells that must stay hidden).
    #[error("released cells reveal a protected cell")]
    ForcedReveals {
        /// Index into the forced cells.
        forced: usize,
        /// The primary cell revealed.
        cell: Option<usize>,
    },
    /// Primary cell `cell` cannot reach its protection interval however much is suppressed.
    #[error("a primary cell cannot be protected")]
    Unprotectable {
        /// The cell.
        cell: usize,
    },
    /// Exact arithmetic overflowed (a table far beyond the sizes the engine is built for).
    #[error("exact arithmetic overflowed")]
    Overflow,
    /// The interval audit's solver failed.
    #[error("{0}")]
    Audit(String),
}

impl Refusal {
    /// A one-line reason naming the cells by their labels (for officers; a client gets less).
    pub fn describe(&self, table: &Table, forced_labels: impl Fn(usize) -> String) -> String {
        let cell = |c: usize| {
            let labels: Vec<String> = table.labels(c).into_iter().map(|(d, l)| format!("{d}={l}")).collect();
            format!("{{{}}}", labels.join(", "))
        };
        match self {
            Refusal::ForcedReveals { forced, cell: Some(c) } => {
                format!("released cell {} reveals primary cell {}", forced_labels(*forced), cell(*c))
            }
            Refusal::ForcedReveals { forced, cell: None } => {
                format!("released cell {} reveals a sum of single-contributor cells", forced_labels(*forced))
            }
            Refusal::Unprotectable { cell: c } => {
                format!("primary cell {} cannot be protected by further suppression", cell(*c))
            }
            Refusal::Overflow | Refusal::Audit(_) => self.to_string(),
        }
    }
}

/// A protected table: the status of every output cell and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Protection {
    /// Per output cell.
    pub status: Vec<Status>,
    /// Per output cell, the primary rules it fails (`None`: safe).
    pub primary: Vec<Option<Primary>>,
    /// The audited interval of every primary cell `(cell, interval)`: what an attacker cannot
    /// narrow it below. For a cell the linear programmes audited, the exact interval; for a cell
    /// the exact certificate settled (docs/tables.md, "Secondary suppression" step 4), an
    /// interval around its value that the exact one contains, already wide enough.
    pub intervals: Vec<(usize, Interval)>,
}

impl Protection {
    /// How many cells have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.status.iter().filter(|&&s| s == status).count()
    }
}

/// Where a target of the elimination comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A primary cell.
    Primary(usize),
    /// A sum of single-contributor cells in one relation.
    Singleton,
    /// A cell suppressed to widen a primary cell's interval.
    Widening(usize),
}

/// The end of one phase of [`protect_traced`], reported as it happens (the engine reads no
/// clock: a caller that wants the time of each phase timestamps these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// The primary rules classified every output cell.
    Classified,
    /// One elimination walk over the candidates ended.
    Eliminated,
    /// The singleton pass ended, adding `fresh` targets.
    Singletons {
        /// New targets (0: the audit comes next).
        fresh: usize,
    },
    /// One interval audit ended: `exact` cells settled by the exact certificate, `by_lp` cells
    /// audited by linear programming (two programmes each), `failing` cells short of their
    /// protection.
    Audited {
        /// Primary cells the exact certificate settled.
        exact: usize,
        /// Primary cells audited by linear programming.
        by_lp: usize,
        /// Primary cells found short.
        failing: usize,
    },
    /// Further cells were chosen to widen the failing cells' intervals.
    Widened {
        /// Cells chosen.
        cells: usize,
    },
}

/// Classifies, suppresses and audits `table` with `forced` cells published first.
///
/// # Errors
/// [`Refusal`] when no pattern protects every primary cell (given the forced cells).
pub fn protect(table: &Table, rules: &Rules, forced: &[Forced]) -> Result<Protection, Refusal> {
    protect_traced(table, rules, forced, &mut |_| {})
}

/// [`protect`], reporting the end of every phase to `trace` (for profiling).
///
/// # Errors
/// [`Refusal`] when no pattern protects every primary cell (given the forced cells).
pub fn protect_traced(
    table: &Table,
    rules: &Rules,
    forced: &[Forced],
    trace: &mut dyn FnMut(Phase),
) -> Result<Protection, Refusal> {
    let magnitude = table.statistic().is_magnitude();
    let cells = table.output_count();
    let primary: Vec<Option<Primary>> = (0..cells).map(|c| rules.classify(table.stats(c), magnitude)).collect();
    // Nothing to protect: every cell is published (no elimination: large safe tables are the
    // common case, and no singleton relation exists without a suppressed cell).
    if primary.iter().all(Option::is_none) {
        trace(Phase::Classified);
        return Ok(Protection { status: vec![Status::Published; cells], primary, intervals: Vec::new() });
    }
    let inner_of: Vec<Vec<u32>> = (0..cells).map(|c| table.inner_of(c)).collect();
    let forced_sets: HashSet<&[u32]> = forced.iter().map(|f| f.inner.as_slice()).collect();
    let forced_vectors: Vec<SparseVec> = forced.iter().map(|f| indicator(&f.inner)).collect();
    let inner_values: Vec<f64> =
        (0..table.inner_count() as u32).map(|i| table.stats(table.output_of_inner(i)).additive).collect();
    trace(Phase::Classified);
    let order = priority(table);

    let mut singletons: Vec<SparseVec> = Vec::new();
    let mut widening: BTreeSet<usize> = BTreeSet::new();
    let mut exhausted: HashSet<usize> = HashSet::new();
    for _round in 0..cells + 16 {
        let mut targets: Vec<SparseVec> = Vec::new();
        let mut kinds: Vec<Target> = Vec::new();
        for (c, p) in primary.iter().enumerate() {
            if p.is_some() {
                targets.push(indicator(&inner_of[c]));
                kinds.push(Target::Primary(c));
            }
        }
        for s in &singletons {
            targets.push(s.clone());
            kinds.push(Target::Singleton);
        }
        for &c in &widening {
            targets.push(indicator(&inner_of[c]));
            kinds.push(Target::Widening(c));
        }
        let candidates: Vec<usize> =
            order.iter().copied().filter(|&c| primary[c].is_none() && !widening.contains(&c)).collect();
        let vectors: Vec<SparseVec> = candidates.iter().map(|&c| indicator(&inner_of[c])).collect();
        let outcome = match gauss::eliminate(table.inner_count(), &forced_vectors, &targets, &vectors) {
            Ok(outcome) => outcome,
            Err(GaussError::Overflow(_)) => return Err(Refusal::Overflow),
            Err(GaussError::ForcedReveals { forced, target }) => match kinds[target] {
                Target::Widening(c) => {
                    widening.remove(&c);
                    exhausted.insert(c);
                    continue;
                }
                Target::Primary(c) => return Err(Refusal::ForcedReveals { forced, cell: Some(c) }),
                Target::Singleton => return Err(Refusal::ForcedReveals { forced, cell: None }),
            },
        };
        trace(Phase::Eliminated);
        let mut status: Vec<Status> =
            primary.iter().map(|p| if p.is_some() { Status::Primary } else { Status::Secondary }).collect();
        for (&c, &published) in candidates.iter().zip(&outcome.published) {
            if published {
                status[c] = Status::Published;
            }
        }

        // Singletons: a relation that a single contributor can undo.
        let mut relations: Vec<&[u32]> =
            (0..cells).filter(|&c| status[c] == Status::Published).map(|c| inner_of[c].as_slice()).collect();
        relations.extend(forced.iter().map(|f| f.inner.as_slice()));
        let known: HashSet<&SparseVec> = singletons.iter().collect();
        let fresh = singleton_targets(table, &status, &relations, magnitude);
        let fresh: Vec<SparseVec> = fresh.into_iter().filter(|s| !known.contains(s)).collect();
        trace(Phase::Singletons { fresh: fresh.len() });
        if !fresh.is_empty() {
            singletons.extend(fresh);
            continue;
        }

        // The interval audit of every primary cell: the exact certificate first, linear
        // programmes for the cells it leaves open.
        let primaries: Vec<usize> = (0..cells).filter(|&c| primary[c].is_some()).collect();
        let audited =
            audit_cells(table, &primary, &primaries, &inner_of, &inner_values, &relations, &outcome, Method::Fast)?;
        let exact = audited.iter().filter(|a| a.certified).count();
        let failing: Vec<usize> = audited.iter().filter(|a| !a.protected).map(|a| a.cell).collect();
        let found: Vec<Interval> = audited.iter().map(|a| a.interval).collect();
        trace(Phase::Audited { exact, by_lp: audited.len() - exact, failing: failing.len() });
        if failing.is_empty() {
            let intervals = primaries.into_iter().zip(found).collect();
            return Ok(Protection { status, primary, intervals });
        }
        // Widen each failing cell along the cheapest attacker's move that reaches its
        // protection: suppress every cell the move changes (audit::widening).
        let values_of = |c: usize| table.stats(c).additive;
        let relaxable_cells: Vec<usize> = (0..cells)
            .filter(|&c| {
                primary[c].is_none() && !exhausted.contains(&c) && !forced_sets.contains(inner_of[c].as_slice())
            })
            .collect();
        let fixed: Vec<&[u32]> = forced
            .iter()
            .map(|f| f.inner.as_slice())
            .chain(exhausted.iter().map(|&c| inner_of[c].as_slice()))
            .collect();
        let is_fixed = |c: usize| exhausted.contains(&c) || forced_sets.contains(inner_of[c].as_slice());
        // The cells a move of `p` by `amount` changes: a chain of hypercubes, or else the
        // linear programme's cheapest move; `None` when `p` cannot move that way.
        let move_cells = |widening: &BTreeSet<usize>,
                          p: usize,
                          amount: f64,
                          frequency: bool|
         -> Result<Option<Vec<usize>>, Refusal> {
            let cost = |c: usize| -> Option<u32> {
                if is_fixed(c) {
                    None
                } else {
                    Some(u32::from(primary[c].is_none() && status[c] == Status::Published && !widening.contains(&c)))
                }
            };
            let nonnegative = table.is_nonnegative();
            if let Some(cells) = hypercube::widen(table, p, amount, frequency, &inner_values, nonnegative, &cost) {
                return Ok(Some(cells.into_iter().collect()));
            }
            let relaxable: Vec<audit::Relaxable<'_>> = relaxable_cells
                .iter()
                .map(|&c| audit::Relaxable {
                    inner: &inner_of[c],
                    // Keeping a suppressed cell suppressed costs little; suppressing a
                    // published one costs a cell.
                    weight: if status[c] == Status::Published && !widening.contains(&c) { 1.0 } else { 0.01 },
                })
                .collect();
            let broken = audit::widening(&inner_values, nonnegative, &relaxable, &fixed, &inner_of[p], amount)
                .map_err(|e| Refusal::Audit(e.to_string()))?;
            Ok(broken.map(|b| b.into_iter().map(|r| relaxable_cells[r]).collect()))
        };
        let mut chosen = 0;
        for a in audited.iter().filter(|a| !a.protected) {
            let p = a.cell;
            let (value, need) = (values_of(p), primary[p].as_ref().map_or(0.0, |x| x.protection));
            // The moves to find: up and down by the protection (magnitude rules), or any move
            // at all for a frequency rule (up first: it is never pinned by x ≥ 0).
            let amounts: Vec<f64> = if need > 0.0 {
                let reach = need * (1.0 + 1e-6);
                let mut wanted = Vec::new();
                if a.interval.upper.is_some_and(|u| u < value + need) {
                    wanted.push(reach);
                }
                if a.interval.lower > value - need {
                    wanted.push(-reach);
                }
                wanted
            } else {
                vec![value.abs().max(1.0)]
            };
            for (k, &amount) in amounts.iter().enumerate() {
                let mut broken = move_cells(&widening, p, amount, need == 0.0)?;
                if broken.is_none() && need == 0.0 && value > 0.0 && k == 0 {
                    // No upward move: any downward one will do.
                    broken = move_cells(&widening, p, -value / 2.0, true)?;
                }
                let Some(broken) = broken else {
                    return Err(Refusal::Unprotectable { cell: p });
                };
                for c in broken {
                    if primary[c].is_none() && widening.insert(c) {
                        chosen += 1;
                    }
                }
            }
        }
        if chosen == 0 {
            // The moves need no further suppression, yet the audit finds cells short: the
            // solver's rounding disagrees with itself. Fail closed.
            return Err(Refusal::Unprotectable { cell: failing[0] });
        }
        trace(Phase::Widened { cells: chosen });
    }
    Err(Refusal::Unprotectable { cell: primary.iter().position(Option::is_some).unwrap_or(0) })
}

/// How [`audit_pattern`] settles each primary cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The exact certificate first, linear programmes for the cells it leaves open (what
    /// [`protect`] does).
    Fast,
    /// Two linear programmes for every primary cell (the plain audit, for comparison).
    LinearProgramming,
}

/// The audit of one primary cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellAudit {
    /// The output cell.
    pub cell: usize,
    /// Its interval (see [`Protection::intervals`]).
    pub interval: Interval,
    /// Whether the interval gives the cell the protection its rules demand.
    pub protected: bool,
    /// Whether the exact certificate settled it (no linear programme).
    pub certified: bool,
}

/// Audits a given pattern (`status` per output cell, `forced` cells published too): every
/// primary cell's interval and whether it is protected, by `method`. [`protect`] audits its own
/// patterns this way; this entry point lets a caller (or a test) audit any pattern.
///
/// # Errors
/// [`Refusal::Overflow`], [`Refusal::Audit`].
pub fn audit_pattern(
    table: &Table,
    rules: &Rules,
    status: &[Status],
    forced: &[Forced],
    method: Method,
) -> Result<Vec<CellAudit>, Refusal> {
    let magnitude = table.statistic().is_magnitude();
    let cells = table.output_count();
    let primary: Vec<Option<Primary>> = (0..cells).map(|c| rules.classify(table.stats(c), magnitude)).collect();
    let inner_of: Vec<Vec<u32>> = (0..cells).map(|c| table.inner_of(c)).collect();
    let inner_values: Vec<f64> =
        (0..table.inner_count() as u32).map(|i| table.stats(table.output_of_inner(i)).additive).collect();
    let mut relations: Vec<&[u32]> =
        (0..cells).filter(|&c| status[c] == Status::Published).map(|c| inner_of[c].as_slice()).collect();
    relations.extend(forced.iter().map(|f| f.inner.as_slice()));
    let published: Vec<SparseVec> = relations.iter().map(|r| indicator(r)).collect();
    let outcome = gauss::eliminate(table.inner_count(), &published, &[], &[]).map_err(|_| Refusal::Overflow)?;
    let primaries: Vec<usize> = (0..cells).filter(|&c| primary[c].is_some()).collect();
    audit_cells(table, &primary, &primaries, &inner_of, &inner_values, &relations, &outcome, method)
}

/// The audit of `primaries` given the published `relations` and the elimination's `outcome`
/// over them.
#[allow(clippy::too_many_arguments)]
fn audit_cells(
    table: &Table,
    primary: &[Option<Primary>],
    primaries: &[usize],
    inner_of: &[Vec<u32>],
    inner_values: &[f64],
    relations: &[&[u32]],
    outcome: &gauss::Outcome,
    method: Method,
) -> Result<Vec<CellAudit>, Refusal> {
    let targets: Vec<Vec<u32>> = primaries.iter().map(|&c| inner_of[c].clone()).collect();
    let need = |c: usize| primary[c].as_ref().map_or(0.0, |p| p.protection);
    let mut found: Vec<Option<Interval>> = vec![None; primaries.len()];
    if method == Method::Fast {
        if let Some(basis) = certificate_basis(table, inner_values, outcome) {
            let pinned = matches!(basis, std::borrow::Cow::Owned(_));
            let certified = audit::certify(&basis, inner_values, table.is_nonnegative(), pinned, &targets);
            for (slot, interval) in found.iter_mut().zip(certified) {
                // A certified point is exact (the cell is determined): it fails without a programme.
                *slot = interval;
            }
        }
    }
    // A certified interval that falls short proves nothing (the exact one may be wider), unless
    // it is exact: unbounded both ways, or a point from an unpinned kernel.
    for (slot, &c) in found.iter_mut().zip(primaries) {
        let exact = |i: &Interval| i.upper.is_none_or(|u| u == i.lower);
        if slot.is_some_and(|i| !exact(&i) && !audit::protects(&i, table.stats(c).additive, need(c))) {
            *slot = None;
        }
    }
    let certified: Vec<bool> = found.iter().map(Option::is_some).collect();
    let open: Vec<usize> = (0..primaries.len()).filter(|&j| found[j].is_none()).collect();
    if !open.is_empty() {
        let relation_sets: Vec<Vec<u32>> = relations.iter().map(|r| r.to_vec()).collect();
        let open_targets: Vec<Vec<u32>> = open.iter().map(|&j| targets[j].clone()).collect();
        let solved =
            audit::intervals(inner_values, table.is_nonnegative(), &outcome.unknown, &relation_sets, &open_targets)
                .map_err(|e| Refusal::Audit(e.to_string()))?;
        for (&j, interval) in open.iter().zip(solved) {
            found[j] = Some(interval);
        }
    }
    Ok(primaries
        .iter()
        .zip(found)
        .zip(certified)
        .map(|((&cell, interval), certified)| {
            // Every cell has an interval by now; were one missing, a point fails closed.
            let value = table.stats(cell).additive;
            let interval = interval.unwrap_or(Interval { lower: value, upper: Some(value) });
            let protected = audit::protects(&interval, table.stats(cell).additive, need(cell));
            CellAudit { cell, interval, protected, certified }
        })
        .collect())
}

/// The kernel basis the exact certificates come from: the elimination's, pinned at the
/// undetermined inner cells of value 0 when the attacker may assume `x ≥ 0` (the true values
/// cannot move off 0 downwards, so only directions that leave them alone certify). `None` when
/// pinning overflows: then every cell goes to the linear programmes.
fn certificate_basis<'a>(
    table: &Table,
    inner_values: &[f64],
    outcome: &'a gauss::Outcome,
) -> Option<std::borrow::Cow<'a, [SparseVec]>> {
    let zeros: Vec<u32> = if table.is_nonnegative() {
        outcome.unknown.iter().copied().filter(|&i| inner_values[i as usize] <= 0.0).collect()
    } else {
        Vec::new()
    };
    if zeros.is_empty() {
        return Some(std::borrow::Cow::Borrowed(&outcome.kernel));
    }
    gauss::pin(table.inner_count(), &outcome.kernel, &zeros).ok().map(std::borrow::Cow::Owned)
}

/// The candidates' priority order (docs/tables.md §4): cells with contributors before zero
/// cells, more contributors first (totals and large cells), then more inner cells, then the
/// larger value, then the cell's index.
fn priority(table: &Table) -> Vec<usize> {
    let mut order: Vec<usize> = (0..table.output_count()).collect();
    let key = |c: usize| {
        let s = table.stats(c);
        let leaves: usize =
            table.codes_of(c).iter().zip(table.dimensions()).map(|(&code, d)| d.codes[code].leaves.len()).product();
        (s.contributors == 0, std::cmp::Reverse(s.contributors), std::cmp::Reverse(leaves))
    };
    order.sort_by(|&a, &b| {
        key(a).cmp(&key(b)).then(table.stats(b).additive.total_cmp(&table.stats(a).additive)).then(a.cmp(&b))
    });
    order
}

/// The extra targets singletons demand, given a pattern: per published relation, COUNT tables
/// protect the sum of its suppressed single-contributor inner cells (when there are two or
/// more); magnitude tables protect the sum of its suppressed inner cells when there are exactly
/// two and one has a single respondent.
fn singleton_targets(table: &Table, status: &[Status], relations: &[&[u32]], magnitude: bool) -> Vec<SparseVec> {
    let suppressed = |i: u32| status[table.output_of_inner(i)] != Status::Published;
    let single = |i: u32| table.inner_respondents(i) == 1;
    let mut out: Vec<SparseVec> = Vec::new();
    let mut seen: HashSet<Vec<u32>> = HashSet::new();
    for rel in relations {
        if rel.len() < 2 {
            continue;
        }
        let hidden: Vec<u32> = rel.iter().copied().filter(|&i| suppressed(i)).collect();
        let sum: Vec<u32> = if magnitude {
            if hidden.len() == 2 && hidden.iter().any(|&i| single(i)) {
                hidden
            } else {
                continue;
            }
        } else {
            let singles: Vec<u32> = hidden.into_iter().filter(|&i| single(i)).collect();
            if singles.len() >= 2 {
                singles
            } else {
                continue;
            }
        };
        if seen.insert(sum.clone()) {
            out.push(indicator(&sum));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim(name: &str, leaves: &[&str]) -> Dimension {
        Dimension::new(name, leaves.iter().map(|s| (*s).to_owned()).collect(), vec![], &[]).unwrap()
    }

    /// A COUNT table over `rows × cols` with `counts[r][c]` anonymous contributors.
    fn count_table(counts: &[&[u32]]) -> Table {
        let rows: Vec<String> = (0..counts.len()).map(|r| format!("r{r}")).collect();
        let cols: Vec<String> = (0..counts[0].len()).map(|c| format!("c{c}")).collect();
        let dims = vec![
            dim("row", &rows.iter().map(String::as_str).collect::<Vec<_>>()),
            dim("col", &cols.iter().map(String::as_str).collect::<Vec<_>>()),
        ];
        let probe = Table::build(dims.clone(), Statistic::Count, &[], 2).unwrap();
        let mut contributions = Vec::new();
        let mut next = 0;
        for (r, row) in counts.iter().enumerate() {
            for (c, &n) in row.iter().enumerate() {
                for _ in 0..n {
                    let inner = probe.inner_of_leaves(&[r as u32, c as u32]);
                    contributions.push(Contribution { inner, contributor: next, holding: None, value: 1.0 });
                    next += 1;
                }
            }
        }
        Table::build(dims, Statistic::Count, &contributions, 2).unwrap()
    }

    #[test]
    fn a_safe_table_publishes_everything() {
        let t = count_table(&[&[5, 6], &[7, 8]]);
        let p = protect(&t, &Rules::domestic(), &[]).unwrap();
        assert_eq!(p.count(Status::Published), 9);
    }

    #[test]
    fn one_small_cell_costs_a_rectangle() {
        let t = count_table(&[&[1, 6, 9], &[7, 8, 9], &[5, 5, 5]]);
        let p = protect(&t, &Rules::domestic(), &[]).unwrap();
        assert_eq!(p.count(Status::Primary), 1);
        assert_eq!(p.count(Status::Secondary), 3, "{:?}", p.status);
        let (_, interval) = p.intervals[0];
        assert!(interval.upper.unwrap() > interval.lower);
    }

    #[test]
    fn a_forced_cell_that_reveals_a_primary_refuses_the_table() {
        let t = count_table(&[&[1, 6], &[7, 8]]);
        let row0: Vec<u32> = vec![0, 1];
        let forced = [Forced { inner: row0 }, Forced { inner: vec![1] }];
        let err = protect(&t, &Rules::domestic(), &forced).unwrap_err();
        assert_eq!(err, Refusal::ForcedReveals { forced: 1, cell: Some(t.output_of_inner(0)) });
        assert!(err.describe(&t, |i| format!("#{i}")).contains("{row=r0, col=c0}"));
    }

    #[test]
    fn forced_cells_stay_published() {
        let t = count_table(&[&[1, 6, 9], &[7, 8, 9], &[5, 5, 5]]);
        let free = protect(&t, &Rules::domestic(), &[]).unwrap();
        // Force whichever inner cell was secondary in the free pattern: the engine finds another.
        let secondary_inner = (0..9u32).find(|&i| free.status[t.output_of_inner(i)] == Status::Secondary).unwrap();
        let forced = [Forced { inner: vec![secondary_inner] }];
        let p = protect(&t, &Rules::domestic(), &forced).unwrap();
        assert_eq!(p.status[t.output_of_inner(secondary_inner)], Status::Published);
        assert_eq!(p.count(Status::Primary), 1);
    }

    #[test]
    fn a_magnitude_cell_alone_in_its_row_is_protected_by_a_mirror_row() {
        // Row r0 has one non-zero cell, of two contributors (p % primary, and so are its row
        // total and column... margins holding nothing else). Its upward move needs another row
        // to give way: the engine must find it (it once widened one cell per round for ever).
        let rows = ["r0", "r1", "r2", "r3"];
        let cols = ["c0", "c1", "c2"];
        let dims = vec![dim("row", &rows), dim("col", &cols)];
        let probe = Table::build(dims.clone(), Statistic::Sum, &[], 2).unwrap();
        let mut contributions = Vec::new();
        let mut next = 0;
        let mut add = |r: u32, c: u32, value: f64| {
            let inner = probe.inner_of_leaves(&[r, c]);
            contributions.push(Contribution { inner, contributor: next, holding: None, value });
            next += 1;
        };
        add(0, 0, 300.0);
        add(0, 0, 200.0);
        for r in 1..4 {
            for c in 0..3 {
                for k in 0..5 {
                    add(r, c, 40.0 + f64::from(r * 7 + c * 3 + k));
                }
            }
        }
        let t = Table::build(dims, Statistic::Sum, &contributions, 2).unwrap();
        let p = protect(&t, &Rules::domestic(), &[]).unwrap();
        assert!(p.count(Status::Primary) >= 2, "{:?}", p.status);
        let audit = audit_pattern(&t, &Rules::domestic(), &p.status, &[], Method::LinearProgramming).unwrap();
        assert!(audit.iter().all(|a| a.protected), "{audit:?}");
    }
}
