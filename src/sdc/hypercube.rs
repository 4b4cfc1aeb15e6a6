//! Widening by hypercubes: which further cells to suppress so that a primary cell the interval
//! audit found short can move by its protection (docs/tables.md §4 step 4, "suppress further").
//!
//! A move of the inner values that keeps every published cell is what an attacker cannot rule
//! out. The simplest such moves are hypercubes (as in Repsilber's GHMITER, which τ-ARGUS uses):
//! pick an inner cell `t` of the target and, in some dimensions `J`, a partner leaf outside the
//! target's code; the 2^|J| corners get `+s` and `−s` alternately (`t` gets `+s` for an upward
//! move). An output cell's sum changes by
//! `s · Π_{j∈J}([t_j ∈ C_j] − [x_j ∈ C_j]) · Π_{j∉J}[t_j ∈ C_j]`, so exactly the cells whose code
//! holds one of `t_j`, `x_j` in every dimension of `J` (and `t_j` elsewhere) change: those must be
//! suppressed, the target among them. In a table of non-negative contributions the corners that
//! go down must stay ≥ 0, which bounds `s` by their smallest value; several hypercubes are
//! chained when one does not reach the protection.
//!
//! The search prefers the hypercube that suppresses the fewest cells still published, then the
//! one that moves furthest. It is a heuristic; whether the pattern then protects every cell is
//! for the audit to say, and the caller falls back to a linear programme when no hypercube
//! exists.

use std::collections::BTreeSet;

use super::table::Table;

/// What breaking an output cell's sum costs: `None` when it must stay published (a forced
/// cell), else the number of cells it adds to the suppressed ones (0 for a cell already
/// suppressed).
pub type Cost<'a> = &'a dyn Fn(usize) -> Option<u32>;

/// How many hypercubes one target may chain before the search gives up.
const MAX_CUBES: usize = 16;

/// Inner cells of the target tried as the `+` corner (largest values first).
const MAX_ORIGINS: usize = 8;

/// Partner leaves tried per dimension (those sharing the most codes with the origin's first).
const MAX_PARTNERS: usize = 12;

/// The output cells (target included) whose sums the chosen hypercubes change, when moves
/// reaching `amount` exist: an upward move when `amount > 0`, downward when `< 0`; with
/// `frequency`, any move at all in that direction (the amount only gives the sign). `values`
/// are the inner cells' values; `nonnegative` keeps every inner cell ≥ 0.
pub fn widen(
    table: &Table,
    target: usize,
    amount: f64,
    frequency: bool,
    values: &[f64],
    nonnegative: bool,
    cost: Cost<'_>,
) -> Option<BTreeSet<usize>> {
    let dims = table.dimensions();
    let codes = table.codes_of(target);
    // Per dimension, per leaf: the codes that cover it.
    let covering: Vec<Vec<Vec<usize>>> = dims
        .iter()
        .map(|d| (0..d.leaves.len() as u32).map(|l| (0..d.codes.len()).filter(|&c| d.covers(c, l)).collect()).collect())
        .collect();
    // Leaves outside the target's code, per dimension: the partners' candidates.
    let outside: Vec<Vec<u32>> = dims
        .iter()
        .zip(&codes)
        .map(|(d, &c)| (0..d.leaves.len() as u32).filter(|&l| !d.covers(c, l)).collect())
        .collect();
    let changeable: Vec<usize> = (0..dims.len()).filter(|&j| !outside[j].is_empty()).collect();
    if changeable.is_empty() {
        return None;
    }
    // Subsets of the changeable dimensions, larger first (fewer cells change).
    let mut subsets: Vec<Vec<usize>> = (1u32..1 << changeable.len())
        .map(|mask| changeable.iter().enumerate().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, &j)| j).collect())
        .collect();
    subsets.sort_by_key(|s: &Vec<usize>| std::cmp::Reverse(s.len()));

    let sign = amount.signum();
    let mut work = values.to_vec();
    let mut remaining = amount.abs();
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    let inner = table.inner_of(target);
    for _ in 0..MAX_CUBES {
        let mut origins = inner.clone();
        origins.sort_by(|&a, &b| work[b as usize].total_cmp(&work[a as usize]).then(a.cmp(&b)));
        origins.truncate(MAX_ORIGINS);
        let mut best: Option<Cube> = None;
        for subset in &subsets {
            for &t in &origins {
                let origin = table.leaves_of_inner(t);
                let partners: Vec<Vec<u32>> = subset
                    .iter()
                    .map(|&j| {
                        let mut p = outside[j].clone();
                        // Partners sharing more codes with the origin change fewer cells.
                        let shared = |l: u32| {
                            covering[j][l as usize]
                                .iter()
                                .filter(|c| covering[j][origin[j] as usize].contains(c))
                                .count()
                        };
                        p.sort_by_key(|&l| (std::cmp::Reverse(shared(l)), l));
                        p.truncate(MAX_PARTNERS);
                        p
                    })
                    .collect();
                let mut pick = vec![0usize; subset.len()];
                'combos: loop {
                    let partner: Vec<u32> = pick.iter().zip(&partners).map(|(&p, ps)| ps[p]).collect();
                    if let Some(cube) =
                        evaluate(table, &covering, &origin, subset, &partner, sign, &work, nonnegative, cost, &chosen)
                    {
                        if best.as_ref().is_none_or(|b| cube.better_than(b, remaining)) {
                            best = Some(cube);
                        }
                    }
                    let mut d = pick.len();
                    loop {
                        if d == 0 {
                            break 'combos;
                        }
                        d -= 1;
                        pick[d] += 1;
                        if pick[d] < partners[d].len() {
                            break;
                        }
                        pick[d] = 0;
                    }
                }
            }
        }
        let cube = best?;
        let step = cube.reach.min(remaining);
        for &(i, s) in &cube.corners {
            work[i as usize] += s * step;
        }
        chosen.extend(cube.changed);
        remaining -= step;
        if frequency || remaining <= amount.abs() * 1e-12 {
            return Some(chosen);
        }
    }
    None
}

/// One hypercube: its corners with their signs, the cells it changes, how many of them are
/// still published, and how far it can move.
struct Cube {
    dims: usize,
    corners: Vec<(u32, f64)>,
    changed: Vec<usize>,
    added: u32,
    reach: f64,
}

impl Cube {
    /// Fewer new suppressions first; then one that reaches what is left; then the one spanning
    /// more dimensions (it changes inner cells rather than margins); then the further.
    fn better_than(&self, other: &Cube, remaining: f64) -> bool {
        let key = |c: &Cube| (c.added, c.reach < remaining, std::cmp::Reverse(c.dims));
        key(self).cmp(&key(other)).then(other.reach.total_cmp(&self.reach)).is_lt()
    }
}

/// The hypercube with `origin` as its `+` corner (`sign` > 0; `−` for a downward move) and
/// `partner[k]` as the other leaf of dimension `subset[k]`; `None` when it would change a cell
/// that must stay published or cannot move at all.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    table: &Table,
    covering: &[Vec<Vec<usize>>],
    origin: &[u32],
    subset: &[usize],
    partner: &[u32],
    sign: f64,
    work: &[f64],
    nonnegative: bool,
    cost: Cost<'_>,
    chosen: &BTreeSet<usize>,
) -> Option<Cube> {
    let mut corners = Vec::with_capacity(1 << subset.len());
    let mut reach = f64::INFINITY;
    for mask in 0u32..1 << subset.len() {
        let mut leaves = origin.to_vec();
        for (b, &j) in subset.iter().enumerate() {
            if mask & (1 << b) != 0 {
                leaves[j] = partner[b];
            }
        }
        let i = table.inner_of_leaves(&leaves);
        let s = if mask.count_ones() % 2 == 0 { sign } else { -sign };
        if s < 0.0 && nonnegative {
            reach = reach.min(work[i as usize]);
        }
        corners.push((i, s));
    }
    if reach <= 0.0 {
        return None;
    }
    // The codes per dimension whose cells change: one of origin/partner in `subset`, the origin
    // elsewhere.
    let per_dim: Vec<Vec<usize>> = (0..origin.len())
        .map(|j| match subset.iter().position(|&s| s == j) {
            Some(b) => {
                let (a, p) = (&covering[j][origin[j] as usize], &covering[j][partner[b] as usize]);
                a.iter().filter(|c| !p.contains(c)).chain(p.iter().filter(|c| !a.contains(c))).copied().collect()
            }
            None => covering[j][origin[j] as usize].clone(),
        })
        .collect();
    let mut changed = Vec::new();
    let mut added = 0u32;
    let mut pick = vec![0usize; per_dim.len()];
    loop {
        let codes: Vec<usize> = pick.iter().zip(&per_dim).map(|(&p, cs)| cs[p]).collect();
        let cell = table.cell_of_codes(&codes);
        if !chosen.contains(&cell) {
            added += cost(cell)?;
        }
        changed.push(cell);
        let mut d = pick.len();
        loop {
            if d == 0 {
                return Some(Cube { dims: subset.len(), corners, changed, added, reach });
            }
            d -= 1;
            pick[d] += 1;
            if pick[d] < per_dim[d].len() {
                break;
            }
            pick[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdc::table::{Contribution, Dimension, Statistic};

    fn dim(name: &str, n: usize) -> Dimension {
        Dimension::new(name, (0..n).map(|i| format!("{name}{i}")).collect(), vec![], &[]).unwrap()
    }

    /// A SUM table over `values.len()` rows × `values[0].len()` columns, one contributor per
    /// non-zero inner cell.
    fn sum_table(values: &[&[f64]]) -> Table {
        let dims = vec![dim("r", values.len()), dim("c", values[0].len())];
        let probe = Table::build(dims.clone(), Statistic::Sum, &[], 2).unwrap();
        let mut contributions = Vec::new();
        for (r, row) in values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    let inner = probe.inner_of_leaves(&[r as u32, c as u32]);
                    contributions.push(Contribution { inner, contributor: inner, holding: None, value: v });
                }
            }
        }
        Table::build(dims, Statistic::Sum, &contributions, 2).unwrap()
    }

    fn inner_values(t: &Table) -> Vec<f64> {
        (0..t.inner_count() as u32).map(|i| t.stats(t.output_of_inner(i)).additive).collect()
    }

    #[test]
    fn an_inner_cell_moves_around_a_rectangle_of_inner_cells() {
        let t = sum_table(&[&[5.0, 6.0, 9.0], &[7.0, 8.0, 9.0], &[5.0, 5.0, 5.0]]);
        let target = t.output_of_inner(0);
        let free = |_: usize| Some(1);
        let cells = widen(&t, target, 3.0, false, &inner_values(&t), true, &free).unwrap();
        // A 2×2 rectangle of inner cells changes exactly its four corners and keeps every margin
        // (a move along one row costs as many cells but loses two margins).
        assert_eq!(cells.len(), 4, "{cells:?}");
        assert!(cells.iter().all(|&c| (0..9).any(|i| t.output_of_inner(i) == c)), "{cells:?}");
        assert!(cells.contains(&target));
    }

    #[test]
    fn corners_that_go_down_bound_the_move_and_chain_further_cubes() {
        // Going up by 10 from (0,0) needs the other row and column to go down by 10: no single
        // cell of row 1 or column 1.. holds 10, so two cubes share the move.
        let t = sum_table(&[&[1.0, 6.0, 6.0], &[6.0, 6.0, 6.0], &[6.0, 6.0, 6.0]]);
        let target = t.output_of_inner(0);
        let free = |_: usize| Some(1);
        let cells = widen(&t, target, 10.0, false, &inner_values(&t), true, &free).unwrap();
        assert!(cells.len() > 4, "one rectangle moves 6 at most: {cells:?}");
        // Beyond what every other cell together can give, there is no move.
        assert_eq!(widen(&t, target, 100.0, false, &inner_values(&t), true, &free), None);
    }

    #[test]
    fn a_cell_that_must_stay_published_is_never_changed() {
        let t = sum_table(&[&[5.0, 6.0, 9.0], &[7.0, 8.0, 9.0], &[5.0, 5.0, 5.0]]);
        let target = t.output_of_inner(0);
        let keep = t.output_of_inner(t.inner_of_leaves(&[1, 1]));
        let cost = |c: usize| if c == keep { None } else { Some(1) };
        let cells = widen(&t, target, 3.0, false, &inner_values(&t), true, &cost).unwrap();
        assert!(!cells.contains(&keep), "{cells:?}");
        // Every margin forced: only inner cells move.
        let inner: Vec<usize> = (0..9).map(|i| t.output_of_inner(i)).collect();
        let cost = |c: usize| if inner.contains(&c) { Some(1) } else { None };
        let cells = widen(&t, target, 3.0, false, &inner_values(&t), true, &cost).unwrap();
        assert!(cells.iter().all(|c| inner.contains(c)), "{cells:?}");
        // Nothing but the target may change: no move.
        let cost = |c: usize| (c == target).then_some(0);
        assert_eq!(widen(&t, target, 3.0, false, &inner_values(&t), true, &cost), None);
    }

    #[test]
    fn cells_already_suppressed_are_preferred() {
        let t = sum_table(&[&[5.0, 6.0, 9.0], &[7.0, 8.0, 9.0], &[5.0, 5.0, 5.0]]);
        let target = t.output_of_inner(0);
        // (2,2), (0,2) and (2,0) already suppressed: the rectangle through them costs nothing.
        let hidden: Vec<usize> =
            [[2, 2], [0, 2], [2, 0]].iter().map(|l| t.output_of_inner(t.inner_of_leaves(l))).collect();
        let cost = |c: usize| Some(u32::from(!hidden.contains(&c) && c != target));
        let cells = widen(&t, target, 3.0, false, &inner_values(&t), true, &cost).unwrap();
        let mut want: Vec<usize> = hidden.clone();
        want.push(target);
        want.sort_unstable();
        assert_eq!(cells.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_downward_move_is_bounded_by_the_target_itself() {
        let t = sum_table(&[&[2.0, 6.0], &[6.0, 6.0]]);
        let target = t.output_of_inner(0);
        let free = |_: usize| Some(1);
        assert!(widen(&t, target, -2.0, false, &inner_values(&t), true, &free).is_some());
        assert_eq!(widen(&t, target, -3.0, false, &inner_values(&t), true, &free), None, "it cannot go below 0");
        // A frequency move needs any step at all.
        assert!(widen(&t, target, -1.0, true, &inner_values(&t), true, &free).is_some());
    }
}
