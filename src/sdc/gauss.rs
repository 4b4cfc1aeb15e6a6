//! Secondary suppression by Gaussian elimination in exact integer arithmetic (docs/tables.md §4).
//!
//! Cells are vectors over the inner cells. A *target* (a primary cell, or an extra vector that
//! must stay unknown, such as a sum of singletons) is revealed exactly when it lies in the span
//! of the published vectors. The engine keeps an integer basis of the orthogonal complement of
//! that span (the *kernel*: every `y` with `c·y = 0` for each published `c`), starting from the
//! unit vectors. A target `p` is in the span iff `p·y = 0` for every kernel vector `y`.
//! Publishing `c` removes one kernel dimension; it reveals `p` iff `p`'s syndrome (its dot
//! products with the kernel basis) is parallel to `c`'s, so each candidate is decided exactly
//! before it is published. Kernel vectors of table structures stay sparse, which is why the
//! complement is kept rather than the span.
//!
//! All arithmetic is on `i64` coefficients with `i128` intermediates and a gcd normalisation;
//! an overflow is an error (the caller refuses the table: fail closed).

/// A sparse integer vector over inner cells: `(row, coefficient)`, rows strictly increasing,
/// no zero coefficient.
pub type SparseVec = Vec<(u32, i64)>;

/// Exact arithmetic left `i64` even after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exact arithmetic overflowed")]
pub struct Overflow;

/// Why elimination stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GaussError {
    /// Publishing forced cell `forced` (with the forced cells before it) reveals target `target`.
    #[error("forced cell {forced} reveals target {target}")]
    ForcedReveals {
        /// Index into the forced cells.
        forced: usize,
        /// Index into the targets.
        target: usize,
    },
    /// [`Overflow`].
    #[error(transparent)]
    Overflow(#[from] Overflow),
}

/// What elimination decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Per candidate (in the order given): published.
    pub published: Vec<bool>,
    /// Inner cells not determined by the published and forced cells (sorted): the unknowns of
    /// the interval audit.
    pub unknown: Vec<u32>,
}

/// The kernel basis and an index of which kernel vectors touch each row.
struct Kernel {
    vectors: Vec<Option<SparseVec>>,
    /// `by_row[i]`: kernel ids whose vector had row `i` at some point (may be stale).
    by_row: Vec<Vec<u32>>,
    /// Scratch: coefficient of each row in the vector being dotted, valid where `row_stamp`
    /// equals `stamp`.
    row_coef: Vec<i64>,
    row_stamp: Vec<u32>,
    kernel_stamp: Vec<u32>,
    stamp: u32,
}

impl Kernel {
    fn new(rows: usize) -> Kernel {
        Kernel {
            vectors: (0..rows as u32).map(|i| Some(vec![(i, 1)])).collect(),
            by_row: (0..rows as u32).map(|i| vec![i]).collect(),
            row_coef: vec![0; rows],
            row_stamp: vec![0; rows],
            kernel_stamp: vec![0; rows],
            stamp: 0,
        }
    }

    /// The dot products of `v` with every kernel vector, nonzero ones only, sorted by kernel id.
    fn syndrome(&mut self, v: &[(u32, i64)]) -> Result<Vec<(u32, i64)>, Overflow> {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.row_stamp.fill(0);
            self.kernel_stamp.fill(0);
            self.stamp = 1;
        }
        let stamp = self.stamp;
        let mut touched = Vec::new();
        for &(row, coef) in v {
            self.row_coef[row as usize] = coef;
            self.row_stamp[row as usize] = stamp;
            for &k in &self.by_row[row as usize] {
                if self.kernel_stamp[k as usize] != stamp {
                    self.kernel_stamp[k as usize] = stamp;
                    touched.push(k);
                }
            }
        }
        touched.sort_unstable();
        let mut out = Vec::new();
        for k in touched {
            let Some(y) = &self.vectors[k as usize] else { continue };
            let mut dot: i128 = 0;
            for &(row, a) in y {
                if self.row_stamp[row as usize] == stamp {
                    dot = dot.checked_add(i128::from(a) * i128::from(self.row_coef[row as usize])).ok_or(Overflow)?;
                }
            }
            if dot != 0 {
                out.push((k, i64::try_from(dot).map_err(|_| Overflow)?));
            }
        }
        Ok(out)
    }

    /// Publishes a vector whose syndrome `t` is nonzero: eliminates one kernel dimension.
    fn publish(&mut self, t: &[(u32, i64)]) -> Result<(), Overflow> {
        // Pivot: the sparsest kernel vector touched (least fill-in), lowest id on ties.
        let &(j, tj) = t
            .iter()
            .min_by_key(|(k, _)| (self.vectors[*k as usize].as_ref().map_or(usize::MAX, Vec::len), *k))
            .ok_or(Overflow)?;
        let yj = self.vectors[j as usize].take().ok_or(Overflow)?;
        for &(k, tk) in t {
            if k == j {
                continue;
            }
            let Some(yk) = self.vectors[k as usize].take() else { continue };
            // y_k ← t_j·y_k − t_k·y_j keeps y_k orthogonal to the new vector.
            let combined = combine(tj, &yk, tk, &yj)?;
            for &(row, _) in &combined {
                if yk.binary_search_by_key(&row, |&(r, _)| r).is_err() {
                    self.by_row[row as usize].push(k);
                }
            }
            self.vectors[k as usize] = Some(combined);
        }
        Ok(())
    }

    fn unknown_rows(&self) -> Vec<u32> {
        let mut rows: Vec<u32> = self.vectors.iter().flatten().flat_map(|y| y.iter().map(|&(r, _)| r)).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }
}

/// `a·x − b·y`, divided by the gcd of its coefficients, first coefficient positive.
fn combine(a: i64, x: &[(u32, i64)], b: i64, y: &[(u32, i64)]) -> Result<SparseVec, Overflow> {
    let (a, b) = (i128::from(a), i128::from(b));
    let mut out: Vec<(u32, i128)> = Vec::with_capacity(x.len() + y.len());
    let (mut i, mut j) = (0, 0);
    while i < x.len() || j < y.len() {
        let (row, value) = match (x.get(i), y.get(j)) {
            (Some(&(rx, vx)), Some(&(ry, _))) if rx < ry => {
                i += 1;
                (rx, a * i128::from(vx))
            }
            (Some(&(rx, _)), Some(&(ry, vy))) if ry < rx => {
                j += 1;
                (ry, -b * i128::from(vy))
            }
            (Some(&(rx, vx)), Some(&(_, vy))) => {
                i += 1;
                j += 1;
                (rx, (a * i128::from(vx)).checked_sub(b * i128::from(vy)).ok_or(Overflow)?)
            }
            (Some(&(rx, vx)), None) => {
                i += 1;
                (rx, a * i128::from(vx))
            }
            (None, Some(&(ry, vy))) => {
                j += 1;
                (ry, -b * i128::from(vy))
            }
            (None, None) => break,
        };
        if value != 0 {
            out.push((row, value));
        }
    }
    let g = out.iter().fold(0i128, |g, &(_, v)| gcd(g, v.abs()));
    let sign = if out.first().is_some_and(|&(_, v)| v < 0) { -1 } else { 1 };
    out.into_iter().map(|(r, v)| Ok((r, i64::try_from(sign * v / g.max(1)).map_err(|_| Overflow)?))).collect()
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Whether two syndromes are parallel (same support, proportional).
fn parallel(s: &[(u32, i64)], t: &[(u32, i64)]) -> bool {
    if s.len() != t.len() || s.is_empty() {
        return false;
    }
    let (s0, t0) = (i128::from(s[0].1), i128::from(t[0].1));
    s.iter().zip(t).all(|(&(ks, vs), &(kt, vt))| ks == kt && i128::from(vs) * t0 == i128::from(vt) * s0)
}

/// A 0/1 vector over the given sorted inner cells.
pub fn indicator(rows: &[u32]) -> SparseVec {
    rows.iter().map(|&r| (r, 1)).collect()
}

/// Runs the elimination over `inner` inner cells: every forced vector is published first (in
/// order), then each candidate in priority order is published unless publishing it would make
/// some target a linear combination of the published vectors; then it is suppressed.
///
/// # Errors
/// [`GaussError::ForcedReveals`] when the forced vectors alone reveal a target (the first such
/// forced vector, in order); [`GaussError::Overflow`].
pub fn eliminate(
    inner: usize,
    forced: &[SparseVec],
    targets: &[SparseVec],
    candidates: &[SparseVec],
) -> Result<Outcome, GaussError> {
    let mut kernel = Kernel::new(inner);
    for (f, v) in forced.iter().enumerate() {
        let t = kernel.syndrome(v)?;
        if t.is_empty() {
            continue;
        }
        if let Some(target) = revealed_by(&mut kernel, targets, &t)? {
            return Err(GaussError::ForcedReveals { forced: f, target });
        }
        kernel.publish(&t)?;
    }
    let mut published = Vec::with_capacity(candidates.len());
    for v in candidates {
        let t = kernel.syndrome(v)?;
        if t.is_empty() {
            // Already determined: publishing it adds nothing.
            published.push(true);
            continue;
        }
        if revealed_by(&mut kernel, targets, &t)?.is_some() {
            published.push(false);
            continue;
        }
        kernel.publish(&t)?;
        published.push(true);
    }
    Ok(Outcome { published, unknown: kernel.unknown_rows() })
}

/// The first target that publishing a vector with syndrome `t` would reveal.
fn revealed_by(kernel: &mut Kernel, targets: &[SparseVec], t: &[(u32, i64)]) -> Result<Option<usize>, Overflow> {
    let (j, _) = t[0];
    let Some(yj) = kernel.vectors[j as usize].clone() else { return Ok(None) };
    for (index, p) in targets.iter().enumerate() {
        // Necessary: p·y_j ≠ 0 (a parallel syndrome has the same support as t).
        let mut dot: i128 = 0;
        for &(row, a) in &yj {
            if let Ok(at) = p.binary_search_by_key(&row, |&(r, _)| r) {
                dot += i128::from(a) * i128::from(p[at].1);
            }
        }
        if dot == 0 {
            continue;
        }
        let s = kernel.syndrome(p)?;
        if parallel(&s, t) {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inner cells of a 2×2 table, row-major: a=0 b=1 / c=2 d=3.
    fn cells_2x2() -> Vec<SparseVec> {
        vec![
            indicator(&[0, 1, 2, 3]), // total
            indicator(&[0, 1]),       // row 1
            indicator(&[2, 3]),       // row 2
            indicator(&[0, 2]),       // column 1
            indicator(&[1, 3]),       // column 2
            indicator(&[0]),
            indicator(&[1]),
            indicator(&[2]),
            indicator(&[3]),
        ]
    }

    #[test]
    fn a_primary_inner_cell_in_a_2x2_table_takes_the_other_three_with_it() {
        let cells = cells_2x2();
        let targets = vec![indicator(&[0])];
        let candidates: Vec<SparseVec> = cells.iter().filter(|c| **c != indicator(&[0])).cloned().collect();
        let out = eliminate(4, &[], &targets, &candidates).unwrap();
        // Margins and the total publish; then b, c and d would each reveal a.
        assert_eq!(out.published, [true, true, true, true, true, false, false, false]);
        assert_eq!(out.unknown, [0, 1, 2, 3]);
    }

    #[test]
    fn a_combination_across_margins_is_caught() {
        // Target a+d: not a single cell, but row1 + col1 − total... = a − d; a+d needs b and c.
        let targets = vec![indicator(&[0, 3])];
        let candidates = vec![indicator(&[1]), indicator(&[2]), indicator(&[0, 1, 2, 3])];
        let out = eliminate(4, &[], &targets, &candidates).unwrap();
        assert_eq!(out.published, [true, true, false], "b, c published: the total would give a + d");
    }

    #[test]
    fn forced_cells_that_reveal_a_target_are_a_conflict() {
        let targets = vec![indicator(&[0])];
        let forced = vec![indicator(&[0, 1]), indicator(&[1])];
        assert_eq!(eliminate(4, &forced, &targets, &[]), Err(GaussError::ForcedReveals { forced: 1, target: 0 }));
        let ok = eliminate(4, &[indicator(&[0, 1])], &targets, &[indicator(&[1]), indicator(&[2])]).unwrap();
        assert_eq!(ok.published, [false, true]);
    }

    #[test]
    fn combine_normalises_by_the_gcd_and_sign() {
        assert_eq!(combine(2, &[(0, 2), (3, 4)], 2, &[(0, 2), (1, 2)]).unwrap(), [(1, 1), (3, -2)]);
        assert_eq!(combine(1, &[(0, -3)], 0, &[]).unwrap(), [(0, 1)]);
        assert_eq!(combine(i64::MAX, &[(0, i64::MAX), (1, 1)], 1, &[(1, 2)]), Err(Overflow));
    }

    #[test]
    fn already_determined_candidates_publish() {
        let out = eliminate(2, &[], &[indicator(&[0])], &[indicator(&[0, 1]), indicator(&[0, 1])]).unwrap();
        assert_eq!(out.published, [true, true]);
        assert_eq!(out.unknown, [0, 1]);
    }
}
