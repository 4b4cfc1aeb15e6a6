//! The interval audit (docs/tables.md §4 step 4): how far an attacker can narrow each suppressed
//! cell from the published ones, by linear programming (`good_lp` with the pure-Rust `microlp`).
//!
//! Variables are the inner cells the published cells leave undetermined (the elimination's
//! unknowns); every other inner cell is known. Each published relation restricted to the
//! unknowns is one equality. The constraint graph splits into independent components, and each
//! target's interval is solved only over the components it touches.
//!
//! Before any linear programme, [`certify`] tries an exact certificate from the elimination's
//! kernel basis (integer vectors `y` orthogonal to every published cell): moving the true inner
//! values `x*` to `x* + t·y` keeps every published value, and keeps `x ≥ 0` while
//! `|t| ≤ min(x*_i over y's support) / max|y_i|`. So a target `p` with `p·y ≠ 0` can take every
//! value within `|p·y| · min x*_i / max|y_i|` of its own — an interval the true one contains.
//! When that already protects the cell, the programmes would only confirm it; when it does not,
//! they decide.

use std::collections::HashMap;

use super::gauss::SparseVec;
use good_lp::{microlp, variable, Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable};

/// What an attacker can know of a cell: `lower ≤ value ≤ upper` (`upper` `None`: unbounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The least value consistent with the published cells.
    pub lower: f64,
    /// The greatest, `None` when unbounded.
    pub upper: Option<f64>,
}

/// The solver failed (an infeasible model means the published values contradict the inner
/// values: a bug or a numeric failure; either way the table is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interval audit: {0}")]
pub struct AuditError(pub String);

/// The intervals of `targets` (inner-cell sets) given the published `relations` (inner-cell
/// sets, forced cells included) in the additive model with `values` per inner cell.
///
/// `unknown` (sorted) lists the inner cells the relations do not determine; `nonnegative`
/// lets the attacker assume `x ≥ 0` (true when no contribution is negative).
///
/// # Errors
/// [`AuditError`] when the solver fails or finds the true values infeasible.
pub fn intervals(
    values: &[f64],
    nonnegative: bool,
    unknown: &[u32],
    relations: &[Vec<u32>],
    targets: &[Vec<u32>],
) -> Result<Vec<Interval>, AuditError> {
    let var_of: HashMap<u32, usize> = unknown.iter().enumerate().map(|(v, &i)| (i, v)).collect();
    // Equalities over unknowns, deduplicated.
    let mut rows: HashMap<Vec<usize>, f64> = HashMap::new();
    for rel in relations {
        let vars: Vec<usize> = rel.iter().filter_map(|i| var_of.get(i).copied()).collect();
        if vars.is_empty() {
            continue;
        }
        let rhs: f64 = rel.iter().filter(|i| var_of.contains_key(i)).map(|&i| values[i as usize]).sum();
        rows.entry(vars).or_insert(rhs);
    }
    let mut rows: Vec<(Vec<usize>, f64)> = rows.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    // Components of the constraint graph.
    let mut parent: Vec<usize> = (0..unknown.len()).collect();
    for (vars, _) in &rows {
        for w in vars.windows(2) {
            union(&mut parent, w[0], w[1]);
        }
    }
    let roots: Vec<usize> = (0..unknown.len()).map(|v| find(&mut parent, v)).collect();
    let mut rows_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (r, (vars, _)) in rows.iter().enumerate() {
        rows_of.entry(roots[vars[0]]).or_default().push(r);
    }
    let mut vars_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (v, &root) in roots.iter().enumerate() {
        vars_of.entry(root).or_default().push(v);
    }
    targets
        .iter()
        .map(|target| {
            let known: f64 = target.iter().filter(|i| !var_of.contains_key(i)).map(|&i| values[i as usize]).sum();
            let mine: Vec<usize> = target.iter().filter_map(|i| var_of.get(i).copied()).collect();
            if mine.is_empty() {
                return Ok(Interval { lower: known, upper: Some(known) });
            }
            let mut comps: Vec<usize> = mine.iter().map(|&v| roots[v]).collect();
            comps.sort_unstable();
            comps.dedup();
            let vars: Vec<usize> = comps.iter().flat_map(|c| vars_of[c].iter().copied()).collect();
            let constraints: Vec<&(Vec<usize>, f64)> =
                comps.iter().flat_map(|c| rows_of.get(c).into_iter().flatten().map(|&r| &rows[r])).collect();
            let lower = solve(&vars, &constraints, &mine, nonnegative, Direction::Min)?;
            let upper = solve(&vars, &constraints, &mine, nonnegative, Direction::Max)?;
            Ok(Interval { lower: known + lower.unwrap_or(f64::NEG_INFINITY), upper: upper.map(|u| known + u) })
        })
        .collect()
}

/// Per target (inner-cell sets), an interval the true interval contains, certified exactly from
/// `kernel` (a basis of the vectors orthogonal to every published cell, over the inner cells;
/// see the module documentation), or `None` when no kernel vector certifies one.
///
/// Without `nonnegative`, a target with `p·y ≠ 0` for some kernel vector is unbounded both ways
/// (the exact interval, as a programme would find it). With it, kernel vectors that touch an
/// inner cell of value 0 certify nothing: pass a kernel pinned at those cells
/// ([`crate::sdc::gauss::pin`]) to get certificates from the rest, and say so with `pinned`:
/// unpinned, a target orthogonal to every kernel vector lies in the span of the published cells
/// and its interval is exactly its value (a point); pinned, that proves nothing (`None`).
pub fn certify(
    kernel: &[SparseVec],
    values: &[f64],
    nonnegative: bool,
    pinned: bool,
    targets: &[Vec<u32>],
) -> Vec<Option<Interval>> {
    // How far the values can move along each kernel vector (per unit of p·y).
    let reach: Vec<f64> = kernel
        .iter()
        .map(|y| {
            if !nonnegative {
                return f64::INFINITY;
            }
            let least = y.iter().map(|&(i, _)| values[i as usize]).fold(f64::INFINITY, f64::min);
            let largest = y.iter().map(|&(_, a)| a.unsigned_abs()).max().unwrap_or(0);
            if least > 0.0 && largest > 0 {
                least / largest as f64
            } else {
                0.0
            }
        })
        .collect();
    let mut by_row: HashMap<u32, Vec<(usize, i64)>> = HashMap::new();
    for (k, y) in kernel.iter().enumerate() {
        for &(i, a) in y {
            by_row.entry(i).or_default().push((k, a));
        }
    }
    let mut dots: HashMap<usize, i128> = HashMap::new();
    targets
        .iter()
        .map(|target| {
            dots.clear();
            for i in target {
                for &(k, a) in by_row.get(i).into_iter().flatten() {
                    *dots.entry(k).or_default() += i128::from(a);
                }
            }
            let value: f64 = target.iter().map(|&i| values[i as usize]).sum();
            if !pinned && dots.values().all(|&d| d == 0) {
                return Some(Interval { lower: value, upper: Some(value) });
            }
            let half = dots
                .iter()
                .filter(|&(_, &d)| d != 0)
                .map(|(&k, &d)| d.unsigned_abs() as f64 * reach[k])
                .fold(0.0, f64::max);
            if half == f64::INFINITY {
                return Some(Interval { lower: f64::NEG_INFINITY, upper: None });
            }
            // A hair less than the certified reach absorbs the rounding of the division.
            let half = half * (1.0 - 1e-12);
            (half > 0.0).then_some(Interval { lower: value - half, upper: Some(value + half) })
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Direction {
    Min,
    Max,
}

/// The optimum of `Σ objective` over `vars` under `constraints`; `None` when unbounded.
fn solve(
    vars: &[usize],
    constraints: &[&(Vec<usize>, f64)],
    objective: &[usize],
    nonnegative: bool,
    direction: Direction,
) -> Result<Option<f64>, AuditError> {
    let mut problem = ProblemVariables::new();
    let mut x: HashMap<usize, Variable> = HashMap::new();
    for &v in vars {
        let def = if nonnegative { variable().min(0.0) } else { variable() };
        x.insert(v, problem.add(def));
    }
    let goal: Expression = objective.iter().map(|v| x[v]).sum();
    let unsolved = match direction {
        Direction::Min => problem.minimise(goal.clone()),
        Direction::Max => problem.maximise(goal.clone()),
    };
    // The solver's tolerances are absolute: with magnitudes of 10^8 (a turnover total) its
    // rounding exceeds them and it calls a system the true values satisfy infeasible. Solved in
    // units of a power of two near the largest right-hand side (dividing by it is exact in
    // floating point), the system is of order 1; the optimum is scaled back.
    let largest = constraints.iter().map(|(_, rhs)| rhs.abs()).fold(1.0_f64, f64::max);
    let scale = 2f64.powi(largest.log2().ceil() as i32);
    let mut model = unsolved.using(microlp);
    for (row, rhs) in constraints {
        let lhs: Expression = row.iter().map(|v| x[v]).sum();
        model.add_constraint(lhs.eq(*rhs / scale));
    }
    match model.solve() {
        Ok(solution) => Ok(Some(solution.eval(&goal) * scale)),
        Err(ResolutionError::Unbounded) => Ok(None),
        Err(e) => Err(AuditError(e.to_string())),
    }
}

/// A published relation the widening programme may break: its inner cells and what breaking it
/// costs (suppressing a published cell costs more than keeping one suppressed).
pub struct Relaxable<'a> {
    /// Its inner cells.
    pub inner: &'a [u32],
    /// The cost per unit of its change.
    pub weight: f64,
}

/// The relations a direction breaks: for a primary cell `target` (inner cells) short of its
/// protection, the cheapest attacker's move `y` of the inner values (`x* + y ≥ 0` when
/// `nonnegative`) that changes the target by exactly `amount` while keeping every `fixed`
/// relation (cells that must stay published) and changing the `relaxable` ones as little as
/// their weights allow (an L1 programme: few relations, small changes). Suppressing every
/// relaxable relation the move changes makes the move consistent with everything still
/// published, so the target's interval then reaches `amount` in that direction — suppression
/// only removes constraints, so nothing suppressed later takes it back.
///
/// Returns the indices into `relaxable` the move changes; `None` when no move exists (the fixed
/// relations, or `x ≥ 0`, pin the target on that side).
///
/// # Errors
/// [`AuditError`] when the solver fails.
pub fn widening(
    values: &[f64],
    nonnegative: bool,
    relaxable: &[Relaxable<'_>],
    fixed: &[&[u32]],
    target: &[u32],
    amount: f64,
) -> Result<Option<Vec<usize>>, AuditError> {
    // Solved in units of a power of two near the amount (see `solve`).
    let scale = 2f64.powi(amount.abs().max(f64::MIN_POSITIVE).log2().ceil() as i32);
    let mut problem = ProblemVariables::new();
    let y: Vec<Variable> = values
        .iter()
        .map(|&v| problem.add(if nonnegative { variable().min(-v.max(0.0) / scale) } else { variable() }))
        .collect();
    // The change of relation r is split as up_r − down_r, both ≥ 0: one equality per relation.
    let up: Vec<Variable> = relaxable.iter().map(|_| problem.add(variable().min(0.0))).collect();
    let down: Vec<Variable> = relaxable.iter().map(|_| problem.add(variable().min(0.0))).collect();
    let cost: Expression = relaxable.iter().zip(up.iter().zip(&down)).map(|(r, (&u, &d))| r.weight * (u + d)).sum();
    let mut model = problem.minimise(cost).using(microlp);
    let change = |inner: &[u32]| -> Expression { inner.iter().map(|&i| y[i as usize]).sum() };
    for (r, (&u, &d)) in relaxable.iter().zip(up.iter().zip(&down)) {
        model.add_constraint((change(r.inner) - u + d).eq(0.0));
    }
    for f in fixed {
        model.add_constraint(change(f).eq(0.0));
    }
    model.add_constraint(change(target).eq(amount / scale));
    let solution = match model.solve() {
        Ok(solution) => solution,
        Err(ResolutionError::Infeasible) => return Ok(None),
        Err(e) => return Err(AuditError(e.to_string())),
    };
    let moved: Vec<f64> = y.iter().map(|&v| solution.value(v)).collect();
    // A relation counts as changed beyond the solver's rounding: 1e-9 of the amount.
    let tolerance = 1e-9;
    Ok(Some(
        relaxable
            .iter()
            .enumerate()
            .filter(|(_, r)| r.inner.iter().map(|&i| moved[i as usize]).sum::<f64>().abs() > tolerance)
            .map(|(k, _)| k)
            .collect(),
    ))
}

fn find(parent: &mut [usize], mut v: usize) -> usize {
    while parent[v] != v {
        parent[v] = parent[parent[v]];
        v = parent[v];
    }
    v
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// Whether an interval protects a primary cell of `value` needing `protection` (the upper and
/// lower protection level; 0 for frequency-type rules, which need an interval that is not a
/// single point). A relative tolerance of 1e-7 absorbs the solver's floating-point rounding; an
/// interval must be wider than it.
pub fn protects(interval: &Interval, value: f64, protection: f64) -> bool {
    let tolerance = 1e-7 * value.abs().max(protection).max(1.0);
    let upper_ok = interval.upper.is_none_or(|u| u >= value + protection - tolerance);
    let lower_ok = interval.lower <= value - protection + tolerance;
    let width_ok = interval.upper.is_none_or(|u| u - interval.lower > tolerance);
    upper_ok && lower_ok && width_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2×2 inner cells a b / c d with values 1 5 / 4 8.
    const VALUES: [f64; 4] = [1.0, 5.0, 4.0, 8.0];

    fn margins() -> Vec<Vec<u32>> {
        vec![vec![0, 1, 2, 3], vec![0, 1], vec![2, 3], vec![0, 2], vec![1, 3]]
    }

    #[test]
    fn a_fully_suppressed_2x2_interior_gives_the_cycle_interval() {
        let got = intervals(&VALUES, true, &[0, 1, 2, 3], &margins(), &[vec![0], vec![3]]).unwrap();
        // a + b = 6, a + c = 5, c + d = 12, b + d = 13: a ∈ [0, 5], d ∈ [7, 12].
        assert!((got[0].lower - 0.0).abs() < 1e-9 && (got[0].upper.unwrap() - 5.0).abs() < 1e-9, "{got:?}");
        assert!((got[1].lower - 7.0).abs() < 1e-9 && (got[1].upper.unwrap() - 12.0).abs() < 1e-9, "{got:?}");
        assert!(protects(&got[0], 1.0, 0.0));
        assert!(protects(&got[0], 1.0, 1.0));
        assert!(!protects(&got[0], 1.0, 1.5), "the lower bound 0 is not 1.5 below 1");
    }

    #[test]
    fn magnitudes_of_a_turnover_total_give_the_same_interval_scaled() {
        // The 2×2 cycle with values of order 10^8 and odd units: a ∈ [0, 5u], d ∈ [7u, 12u].
        let unit = 123_456_789.0;
        let values: Vec<f64> = VALUES.iter().map(|v| v * unit).collect();
        let got = intervals(&values, true, &[0, 1, 2, 3], &margins(), &[vec![0], vec![3]]).unwrap();
        let close = |x: f64, want: f64| (x - want).abs() <= 1e-6 * want.abs().max(1.0);
        assert!(close(got[0].lower, 0.0) && close(got[0].upper.unwrap(), 5.0 * unit), "{got:?}");
        assert!(close(got[1].lower, 7.0 * unit) && close(got[1].upper.unwrap(), 12.0 * unit), "{got:?}");
    }

    #[test]
    fn a_known_cell_is_a_point_and_unpublished_totals_leave_it_open() {
        let got = intervals(&VALUES, true, &[], &margins(), &[vec![0, 1]]).unwrap();
        assert_eq!(got[0], Interval { lower: 6.0, upper: Some(6.0) });
        assert!(!protects(&got[0], 6.0, 0.0));
        // Only the row a + b published: a ∈ [0, 6]; without x ≥ 0, unbounded both ways.
        let open = intervals(&VALUES, true, &[0, 1], &[vec![0, 1]], &[vec![0]]).unwrap();
        assert!((open[0].upper.unwrap() - 6.0).abs() < 1e-9);
        let free = intervals(&VALUES, false, &[0, 1], &[vec![0, 1]], &[vec![0]]).unwrap();
        assert_eq!(free[0].upper, None);
        assert_eq!(free[0].lower, f64::NEG_INFINITY);
    }

    #[test]
    fn a_kernel_vector_certifies_an_interval_inside_the_programmes_one() {
        // The fully suppressed 2×2 interior: kernel (1, −1, −1, 1); a = 1 can move by
        // min(1, 5, 4, 8) / 1 = 1 each way: [0, 2] inside the exact [0, 5].
        let kernel = vec![vec![(0, 1), (1, -1), (2, -1), (3, 1)]];
        let got = certify(&kernel, &VALUES, true, false, &[vec![0], vec![0, 1]]);
        assert_eq!(got[0], Some(Interval { lower: 1.0 - (1.0 - 1e-12), upper: Some(1.0 + (1.0 - 1e-12)) }));
        assert_eq!(got[1], Some(Interval { lower: 6.0, upper: Some(6.0) }), "a + b is published: a point");
        assert_eq!(certify(&kernel, &VALUES, true, true, &[vec![0, 1]])[0], None, "pinned: no proof either way");
        // Without x ≥ 0: unbounded both ways.
        assert_eq!(
            certify(&kernel, &VALUES, false, false, &[vec![0]])[0],
            Some(Interval { lower: f64::NEG_INFINITY, upper: None })
        );
        // A zero in the support certifies nothing.
        assert_eq!(certify(&kernel, &[0.0, 5.0, 4.0, 8.0], true, false, &[vec![0]])[0], None);
    }

    #[test]
    fn zeros_pinned_by_non_negativity_are_points() {
        // a = 0 and b = 0 suppressed in a row published as 0: both pinned at 0.
        let got = intervals(&[0.0, 0.0], true, &[0, 1], &[vec![0, 1]], &[vec![0]]).unwrap();
        assert!(!protects(&got[0], 0.0, 0.0), "{got:?}");
    }

    #[test]
    fn the_widening_programme_breaks_the_relations_a_move_needs() {
        // The 2×2 interior with every margin published: a rectangle moves a and keeps every
        // margin, so nothing needs breaking.
        let m = margins();
        let relaxable: Vec<Relaxable<'_>> = m.iter().map(|r| Relaxable { inner: r, weight: 1.0 }).collect();
        assert_eq!(widening(&VALUES, true, &relaxable, &[], &[0], 1.0).unwrap(), Some(vec![]));
        // With b, c and d published as well, some of them or of the margins must go; with the
        // row a + b and the column a + c fixed, b and c must.
        let mut published = m.clone();
        published.extend([vec![1], vec![2], vec![3]]);
        let relaxable: Vec<Relaxable<'_>> = published.iter().map(|r| Relaxable { inner: r, weight: 1.0 }).collect();
        assert!(!widening(&VALUES, true, &relaxable, &[], &[0], 1.0).unwrap().unwrap().is_empty());
        let (row, col) = ([0u32, 1], [0u32, 2]);
        let fixed: Vec<&[u32]> = vec![&row, &col];
        let broken = widening(&VALUES, true, &relaxable, &fixed, &[0], 1.0).unwrap().unwrap();
        let named: Vec<&[u32]> = broken.iter().map(|&k| relaxable[k].inner).collect();
        assert!(named.contains(&&[1u32][..]) && named.contains(&&[2u32][..]), "{named:?}");
        // Down by more than a holds: impossible with x ≥ 0, possible without.
        assert_eq!(widening(&VALUES, true, &relaxable, &[], &[0], -2.0).unwrap(), None);
        assert!(widening(&VALUES, false, &relaxable, &[], &[0], -2.0).unwrap().is_some());
    }
}
