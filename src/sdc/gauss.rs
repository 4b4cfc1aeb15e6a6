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
    /// A basis of the kernel: integer vectors orthogonal to every published and forced vector,
    /// each normalised (gcd 1). Their supports cover exactly `unknown`. Moving the inner values
    /// along any of them keeps every published value: the exact audit's certificates
    /// ([`crate::sdc::audit::certify`]).
    pub kernel: Vec<SparseVec>,
}

/// The kernel basis and an index of which kernel vectors touch each row.
struct Kernel {
    vectors: Vec<Option<SparseVec>>,
    /// `by_row[i]`: kernel ids whose vector has had row `i` (may be stale or repeated: a
    /// syndrome drops the ids that no longer touch the row as it meets them).
    by_row: Vec<Vec<u32>>,
    /// Scratch per kernel vector: the dot product being accumulated, valid where `seen` equals
    /// `stamp`; `visit` marks the row being read (to skip a repeated id).
    acc: Vec<i128>,
    seen: Vec<u64>,
    visit: Vec<u64>,
    stamp: u64,
}

impl Kernel {
    fn new(rows: usize) -> Kernel {
        Kernel::from_vectors(rows, (0..rows as u32).map(|i| vec![(i, 1)]).collect())
    }

    /// A kernel spanned by the given vectors (over `rows` inner cells).
    fn from_vectors(rows: usize, vectors: Vec<SparseVec>) -> Kernel {
        let mut by_row: Vec<Vec<u32>> = vec![Vec::new(); rows];
        for (k, y) in vectors.iter().enumerate() {
            for &(row, _) in y {
                by_row[row as usize].push(k as u32);
            }
        }
        Kernel {
            acc: vec![0; vectors.len()],
            seen: vec![0; vectors.len()],
            visit: vec![0; vectors.len()],
            vectors: vectors.into_iter().map(Some).collect(),
            by_row,
            stamp: 0,
        }
    }

    fn into_basis(self) -> Vec<SparseVec> {
        self.vectors.into_iter().flatten().collect()
    }

    /// The dot products of `v` with every kernel vector, nonzero ones only, sorted by kernel id.
    ///
    /// Column-wise: for each row of `v`, the kernel vectors through that row (each looked up by
    /// binary search), so the cost follows `v`'s rows, not the kernel vectors' lengths.
    fn syndrome(&mut self, v: &[(u32, i64)]) -> Result<Vec<(u32, i64)>, Overflow> {
        let Kernel { vectors, by_row, acc, seen, visit, stamp } = self;
        *stamp += 1;
        let call = *stamp;
        let mut touched = Vec::new();
        for &(row, coef) in v {
            *stamp += 1;
            let here = *stamp;
            let list = &mut by_row[row as usize];
            let mut kept = 0;
            for r in 0..list.len() {
                let k = list[r] as usize;
                let Some(y) = &vectors[k] else { continue };
                let Ok(at) = y.binary_search_by_key(&row, |&(r, _)| r) else { continue };
                if visit[k] == here {
                    continue;
                }
                visit[k] = here;
                list[kept] = k as u32;
                kept += 1;
                let product = i128::from(y[at].1) * i128::from(coef);
                if seen[k] != call {
                    seen[k] = call;
                    acc[k] = product;
                    touched.push(k as u32);
                } else {
                    acc[k] = acc[k].checked_add(product).ok_or(Overflow)?;
                }
            }
            list.truncate(kept);
        }
        touched.sort_unstable();
        let mut out = Vec::with_capacity(touched.len());
        for k in touched {
            let dot = acc[k as usize];
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
    let mut targets = Targets::new(inner, targets);
    for (f, v) in forced.iter().enumerate() {
        let t = kernel.syndrome(v)?;
        if t.is_empty() {
            continue;
        }
        if let Some(target) = revealed_by(&mut kernel, &mut targets, &t)? {
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
        if revealed_by(&mut kernel, &mut targets, &t)?.is_some() {
            published.push(false);
            continue;
        }
        kernel.publish(&t)?;
        published.push(true);
    }
    Ok(Outcome { published, unknown: kernel.unknown_rows(), kernel: kernel.into_basis() })
}

/// The part of a kernel basis (over `inner` inner cells) that vanishes on `rows`: a basis of
/// `{y ∈ span(kernel) : y_r = 0 for every r in rows}`, as if each of those inner cells were
/// published too.
///
/// # Errors
/// [`Overflow`].
pub fn pin(inner: usize, kernel: &[SparseVec], rows: &[u32]) -> Result<Vec<SparseVec>, Overflow> {
    let mut kernel = Kernel::from_vectors(inner, kernel.to_vec());
    for &row in rows {
        let t = kernel.syndrome(&[(row, 1)])?;
        if !t.is_empty() {
            kernel.publish(&t)?;
        }
    }
    Ok(kernel.into_basis())
}

/// The targets, indexed by row so that the few a kernel vector touches are found directly.
struct Targets<'a> {
    vectors: &'a [SparseVec],
    /// `by_row[i]`: `(target, coefficient)` of every target with row `i`.
    by_row: Vec<Vec<(u32, i64)>>,
    /// Scratch per target: the dot product being accumulated, valid where `seen` equals `stamp`.
    acc: Vec<i128>,
    wide: Vec<bool>,
    seen: Vec<u64>,
    stamp: u64,
}

impl<'a> Targets<'a> {
    fn new(rows: usize, vectors: &'a [SparseVec]) -> Targets<'a> {
        let mut by_row: Vec<Vec<(u32, i64)>> = vec![Vec::new(); rows];
        for (t, p) in vectors.iter().enumerate() {
            for &(row, a) in p {
                by_row[row as usize].push((t as u32, a));
            }
        }
        Targets {
            vectors,
            by_row,
            acc: vec![0; vectors.len()],
            wide: vec![false; vectors.len()],
            seen: vec![0; vectors.len()],
            stamp: 0,
        }
    }

    /// The targets `p` with `p·y ≠ 0`, in index order.
    fn touching(&mut self, y: &[(u32, i64)]) -> Vec<usize> {
        self.stamp += 1;
        let mut touched = Vec::new();
        for &(row, a) in y {
            for &(t, b) in &self.by_row[row as usize] {
                let t = t as usize;
                let product = i128::from(a) * i128::from(b);
                if self.seen[t] != self.stamp {
                    self.seen[t] = self.stamp;
                    self.acc[t] = product;
                    self.wide[t] = false;
                    touched.push(t);
                } else if let Some(sum) = self.acc[t].checked_add(product) {
                    self.acc[t] = sum;
                } else {
                    // Too wide to tell here: the exact test decides.
                    self.wide[t] = true;
                }
            }
        }
        touched.retain(|&t| self.acc[t] != 0 || self.wide[t]);
        touched.sort_unstable();
        touched
    }
}

/// The first target that publishing a vector with syndrome `t` would reveal.
fn revealed_by(kernel: &mut Kernel, targets: &mut Targets, t: &[(u32, i64)]) -> Result<Option<usize>, Overflow> {
    let (j, _) = t[0];
    // Necessary: p·y_j ≠ 0 (a parallel syndrome has the same support as t).
    let Some(yj) = &kernel.vectors[j as usize] else { return Ok(None) };
    for index in targets.touching(yj) {
        let s = kernel.syndrome(&targets.vectors[index])?;
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
