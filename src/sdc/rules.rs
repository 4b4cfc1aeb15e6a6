//! Primary rules (docs/rules.md §5, docs/tables.md): minimum frequency, zeros, holdings, p %, (n,k) dominance.

use super::table::CellStats;

/// The (n,k) dominance rule: unsafe when the `n` largest respondents hold more than `k` % of
/// the cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dominance {
    /// How many of the largest respondents are summed (≥ 1).
    pub n: u32,
    /// The share in percent (0 < k ≤ 100).
    pub k: f64,
}

/// The primary-suppression parameters. Confidential: never returned to a client.
///
/// # Defaults
/// [`Rules::domestic`]: `n = 3`, zeros safe, p = 10, no dominance. [`Rules::export`]: `n = 10`,
/// zeros unsafe, p = 10, (2, 90).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Unsafe iff `0 < N < min_frequency` (≥ 1; 1 turns the rule off).
    pub min_frequency: u32,
    /// Cells without contributors are unsafe too.
    pub zeros_unsafe: bool,
    /// The p % rule (magnitude tables only), 0 < p ≤ 100.
    pub p_percent: Option<f64>,
    /// The (n,k) dominance rule (magnitude tables only).
    pub dominance: Option<Dominance>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules::domestic()
    }
}

/// A parameter outside its range, or weaker than a floor: the parameter's name and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct RulesError {
    /// `min_frequency`, `p_percent`, `dominance.n`, `dominance.k` or `zeros_unsafe`.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl Rules {
    /// The domestic defaults.
    pub const fn domestic() -> Rules {
        Rules { min_frequency: 3, zeros_unsafe: false, p_percent: Some(10.0), dominance: None }
    }

    /// The export defaults (stricter).
    pub const fn export() -> Rules {
        Rules {
            min_frequency: 10,
            zeros_unsafe: true,
            p_percent: Some(10.0),
            dominance: Some(Dominance { n: 2, k: 90.0 }),
        }
    }

    /// Checks every parameter's range.
    ///
    /// # Errors
    /// [`RulesError`] naming the first parameter out of range.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.min_frequency < 1 {
            return Err(RulesError { key: "min_frequency", reason: "must be at least 1".into() });
        }
        if let Some(p) = self.p_percent {
            if !(p > 0.0 && p <= 100.0) {
                return Err(RulesError { key: "p_percent", reason: format!("{p} is not in (0, 100]") });
            }
        }
        if let Some(d) = self.dominance {
            if d.n < 1 {
                return Err(RulesError { key: "dominance.n", reason: "must be at least 1".into() });
            }
            if !(d.k > 0.0 && d.k <= 100.0) {
                return Err(RulesError { key: "dominance.k", reason: format!("{} is not in (0, 100]", d.k) });
            }
        }
        Ok(())
    }

    /// Checks that these rules are at least as strict as `floor` (a dataset owner's rules may
    /// only tighten the gateway's): a larger or equal `n`, zeros unsafe if the floor says so,
    /// a p at least the floor's, a dominance rule with `n` at least and `k` at most the floor's.
    ///
    /// # Errors
    /// [`RulesError`] naming the first weaker parameter (never its value: parameters are
    /// confidential).
    pub fn at_least_as_strict_as(&self, floor: &Rules) -> Result<(), RulesError> {
        let weaker = |key| Err(RulesError { key, reason: "weaker than the gateway's".into() });
        if self.min_frequency < floor.min_frequency {
            return weaker("min_frequency");
        }
        if floor.zeros_unsafe && !self.zeros_unsafe {
            return weaker("zeros_unsafe");
        }
        if let Some(p) = floor.p_percent {
            if self.p_percent.is_none_or(|q| q < p) {
                return weaker("p_percent");
            }
        }
        if let Some(f) = floor.dominance {
            match self.dominance {
                None => return weaker("dominance.n"),
                Some(d) if d.n < f.n => return weaker("dominance.n"),
                Some(d) if d.k > f.k => return weaker("dominance.k"),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// How many of the largest respondent totals a cell must keep for these rules.
    pub fn keep_top(&self) -> usize {
        self.dominance.map_or(2, |d| (d.n as usize).max(2))
    }

    /// Classifies one cell: `None` when it is safe. `magnitude`: the p % and dominance rules
    /// apply (SUM and MEAN tables).
    pub fn classify(&self, s: &CellStats, magnitude: bool) -> Option<Primary> {
        let mut reasons = Vec::new();
        let n = s.respondents;
        if n == 0 {
            if self.zeros_unsafe {
                reasons.push(Reason::Zero);
            }
        } else if n < self.min_frequency {
            reasons.push(Reason::Frequency);
        }
        if s.one_holding {
            reasons.push(Reason::Holding);
        }
        let mut level: f64 = 0.0;
        if magnitude && n > 0 {
            let x = s.abs_total;
            let x1 = s.top.first().copied().unwrap_or(0.0);
            let x2 = s.top.get(1).copied().unwrap_or(0.0);
            if let Some(p) = self.p_percent {
                // X − x1 − x2 < (p/100)·x1, multiplied out by 100.
                let rest = x - x1 - x2;
                if 100.0 * rest < p * x1 {
                    reasons.push(Reason::PPercent);
                    level = level.max(p / 100.0 * x1 - rest);
                }
            }
            if let Some(d) = self.dominance {
                // x1 + … + xn > (k/100)·X, multiplied out by 100.
                let top: f64 = s.top.iter().take(d.n as usize).sum();
                if 100.0 * top > d.k * x {
                    reasons.push(Reason::Dominance);
                    level = level.max(100.0 / d.k * top - x);
                }
            }
        }
        (!reasons.is_empty()).then_some(Primary { reasons, protection: level })
    }
}

/// Which rule made a cell unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No contributors, and zeros are unsafe.
    Zero,
    /// `0 < N < n`.
    Frequency,
    /// Every contributor belongs to one holding.
    Holding,
    /// The p % rule.
    PPercent,
    /// The (n,k) dominance rule.
    Dominance,
}

/// A primary cell: the rules it fails and the protection it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Primary {
    /// The rules it fails, in rule order.
    pub reasons: Vec<Reason>,
    /// The upper = lower protection level the interval audit demands (the largest of the
    /// failing magnitude rules' levels; 0 when only frequency-type rules fail, which demand an
    /// interval that is not a single point).
    pub protection: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell of distinct respondents with these contributions.
    fn cell(xs: &[f64]) -> CellStats {
        let mut top: Vec<f64> = xs.iter().map(|x| x.abs()).collect();
        top.sort_by(|a, b| b.total_cmp(a));
        CellStats {
            contributors: xs.len() as u32,
            respondents: xs.len() as u32,
            sum: xs.iter().sum(),
            abs_total: xs.iter().map(|x| x.abs()).sum(),
            top,
            one_holding: false,
            additive: xs.iter().sum(),
        }
    }

    fn reasons(rules: &Rules, xs: &[f64], magnitude: bool) -> Vec<Reason> {
        rules.classify(&cell(xs), magnitude).map(|p| p.reasons).unwrap_or_default()
    }

    #[test]
    fn rules_md_worked_examples() {
        let counts = Rules::domestic();
        assert_eq!(reasons(&counts, &[1.0, 1.0], false), [Reason::Frequency], "counts N = 2 unsafe");
        assert_eq!(reasons(&counts, &[1.0, 1.0, 1.0], false), [], "N = 3 safe");

        let p10 = Rules { min_frequency: 1, p_percent: Some(10.0), ..Rules::domestic() };
        assert_eq!(reasons(&p10, &[52_000.0, 50_000.0, 8_000.0], true), [], "8 000 ≥ 5 200");
        let unsafe_p = p10.classify(&cell(&[50_000.0, 49_000.0, 1_000.0]), true).unwrap();
        assert_eq!(unsafe_p.reasons, [Reason::PPercent], "1 000 < 5 000");
        assert_eq!(unsafe_p.protection, 4_000.0);

        let d185 = Rules {
            min_frequency: 1,
            p_percent: None,
            dominance: Some(Dominance { n: 1, k: 85.0 }),
            ..Rules::domestic()
        };
        let dominated = d185.classify(&cell(&[300.0, 20.0, 10.0]), true).unwrap();
        assert_eq!(dominated.reasons, [Reason::Dominance], "300 > 280.5");
        assert!((dominated.protection - (300.0 / 0.85 - 330.0)).abs() < 1e-9);
    }

    #[test]
    fn boundaries_are_safe() {
        // p %: X − x1 − x2 = (p/100)·x1 exactly is safe.
        let p10 = Rules { min_frequency: 1, ..Rules::domestic() };
        assert_eq!(reasons(&p10, &[100.0, 50.0, 10.0], true), []);
        assert_eq!(reasons(&p10, &[100.0, 50.0, 9.0], true), [Reason::PPercent]);
        // (1,50): x1 = 50 % of X exactly is safe.
        let d = Rules {
            min_frequency: 1,
            p_percent: None,
            dominance: Some(Dominance { n: 1, k: 50.0 }),
            ..Rules::domestic()
        };
        assert_eq!(reasons(&d, &[5.0, 5.0], true), []);
        assert_eq!(reasons(&d, &[5.0, 4.0], true), [Reason::Dominance]);
    }

    #[test]
    fn zeros_holdings_and_count_tables() {
        let export = Rules::export();
        assert_eq!(reasons(&export, &[], false), [Reason::Zero]);
        assert_eq!(reasons(&Rules::domestic(), &[], false), []);
        assert_eq!(reasons(&export, &[1.0; 9], false), [Reason::Frequency]);
        assert_eq!(reasons(&export, &[1.0; 10], false), []);
        // Magnitude rules never apply to a COUNT table.
        assert_eq!(reasons(&Rules { min_frequency: 1, ..export }, &[100.0, 1.0], false), []);
        let mut held = cell(&[5.0, 5.0, 5.0]);
        held.one_holding = true;
        assert_eq!(Rules::domestic().classify(&held, false).unwrap().reasons, [Reason::Holding]);
        // Negative contributions count by their absolute value.
        assert_eq!(
            reasons(&Rules { min_frequency: 1, ..export }, &[-100.0, 1.0, 1.0], true),
            [Reason::PPercent, Reason::Dominance]
        );
    }

    #[test]
    fn parameters_only_tighten() {
        let export = Rules::export();
        export.at_least_as_strict_as(&Rules::domestic()).unwrap();
        let err = |r: Rules| r.at_least_as_strict_as(&export).unwrap_err().key;
        assert_eq!(err(Rules::domestic()), "min_frequency");
        assert_eq!(err(Rules { zeros_unsafe: false, ..export }), "zeros_unsafe");
        assert_eq!(err(Rules { p_percent: Some(5.0), ..export }), "p_percent");
        assert_eq!(err(Rules { dominance: None, ..export }), "dominance.n");
        assert_eq!(err(Rules { dominance: Some(Dominance { n: 2, k: 95.0 }), ..export }), "dominance.k");
        Rules { min_frequency: 12, dominance: Some(Dominance { n: 3, k: 80.0 }), ..export }
            .at_least_as_strict_as(&export)
            .unwrap();
        assert!(!err(Rules { min_frequency: 9, ..export }).is_empty());
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(Rules { min_frequency: 0, ..Rules::domestic() }.validate().unwrap_err().key, "min_frequency");
        assert_eq!(Rules { p_percent: Some(0.0), ..Rules::domestic() }.validate().unwrap_err().key, "p_percent");
        let d = |n, k| Rules { dominance: Some(Dominance { n, k }), ..Rules::domestic() }.validate();
        assert_eq!(d(0, 80.0).unwrap_err().key, "dominance.n");
        assert_eq!(d(1, 120.0).unwrap_err().key, "dominance.k");
        d(2, 100.0).unwrap();
        assert_eq!(Rules::export().keep_top(), 2);
        assert_eq!(Rules { dominance: Some(Dominance { n: 4, k: 90.0 }), ..Rules::domestic() }.keep_top(), 4);
    }
}
