//! `bth-gateway sdc FILE` end to end, and the engine under random tables.
//!
//! Every check here is written apart from the engine: the table is rebuilt from the input
//! JSON, the rules are re-evaluated, and each primary cell is audited by its own linear
//! programme over *all* inner cells and *all* published cells (no elimination, no components),
//! and by an exact rational rank test.
//!
//! - the cases in `tests/cases/sdc/` (the public T-cases with a reference pattern, the R-cases
//!   from docs/rules.md §5's worked examples) run through the real binary;
//! - malformed inputs exit 2 with one line naming the key;
//! - proptest: random tables of 1–3 dimensions with hierarchies, zeros, singletons, shared
//!   contributors and holdings are protected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use good_lp::{microlp, variable, Expression, ProblemVariables, ResolutionError, Solution, SolverModel};
use proptest::prelude::*;
use serde_json::{json, Value};

// ---- an independent model of the input ----

/// A dimension rebuilt: its name, its leaves, each label's leaf set.
type Dim = (String, Vec<String>, BTreeMap<String, BTreeSet<usize>>);

/// The input rebuilt: per dimension each label's leaf set, the inner cells' contributions.
struct Model {
    dims: Vec<Dim>,
    magnitude: bool,
    /// Per inner cell (mixed radix, last dimension fastest): `(contributor, respondent, value)`.
    inner: Vec<Vec<(String, String, f64)>>,
    rules: (u64, bool, Option<f64>, Option<(usize, f64)>),
}

impl Model {
    fn new(input: &Value) -> Model {
        let mut dims = Vec::new();
        for d in input["dimensions"].as_array().unwrap() {
            let leaves: Vec<String> =
                d["categories"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
            let mut labels: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
            labels.insert("Total".into(), (0..leaves.len()).collect());
            for (i, l) in leaves.iter().enumerate() {
                labels.insert(l.clone(), BTreeSet::from([i]));
            }
            let groups = d.get("hierarchy").and_then(Value::as_object).cloned().unwrap_or_default();
            // Resolve by repeated passes (the inputs here have no cycles).
            for _ in 0..=groups.len() {
                for (g, children) in &groups {
                    let mut set = BTreeSet::new();
                    let mut complete = true;
                    for c in children.as_array().unwrap() {
                        match labels.get(c.as_str().unwrap()) {
                            Some(s) => set.extend(s.iter().copied()),
                            None => complete = false,
                        }
                    }
                    if complete {
                        labels.insert(g.clone(), set);
                    }
                }
            }
            for len in d.get("prefixes").and_then(Value::as_array).into_iter().flatten() {
                let len = len.as_u64().unwrap() as usize;
                for (i, l) in leaves.iter().enumerate() {
                    labels.entry(l.chars().take(len).collect()).or_default().insert(i);
                }
            }
            dims.push((d["name"].as_str().unwrap().to_owned(), leaves, labels));
        }
        let size: usize = dims.iter().map(|d| d.1.len()).product();
        let mut inner = vec![Vec::new(); size];
        for (n, r) in input["records"].as_array().unwrap().iter().enumerate() {
            let mut index = 0;
            for (name, leaves, _) in &dims {
                let label = r["cell"][name].as_str().unwrap();
                index = index * leaves.len() + leaves.iter().position(|l| l == label).unwrap();
            }
            let id = |v: &Value| if v.is_string() { v.as_str().unwrap().to_owned() } else { v.to_string() };
            let contributor = r.get("contributor").map_or(format!("row{n}"), id);
            let respondent = r.get("holding").map_or(format!("c:{contributor}"), |h| format!("h:{}", id(h)));
            inner[index].push((contributor, respondent, r.get("value").and_then(Value::as_f64).unwrap_or(0.0)));
        }
        let rules = &input["rules"];
        let get = |k: &str| rules.get(k);
        Model {
            dims,
            magnitude: input["statistic"] != "COUNT",
            inner,
            rules: (
                get("min_frequency").and_then(Value::as_u64).unwrap_or(3),
                get("zeros_unsafe").and_then(Value::as_bool).unwrap_or(false),
                match get("p_percent") {
                    None => Some(10.0),
                    Some(v) => v.as_f64(),
                },
                get("dominance").and_then(|d| Some((d.get("n")?.as_u64()? as usize, d.get("k")?.as_f64()?))),
            ),
        }
    }

    /// The inner cells of a `{dimension: label}` cell.
    fn cell(&self, cell: &Value) -> Vec<usize> {
        let mut out = vec![0usize];
        for (name, leaves, labels) in &self.dims {
            let set = &labels[cell[name].as_str().unwrap()];
            out = out.iter().flat_map(|&o| set.iter().map(move |&l| o * leaves.len() + l)).collect();
        }
        out
    }

    /// The value of an inner cell in the additive model (COUNT: its distinct contributors).
    fn inner_value(&self, i: usize) -> f64 {
        if self.magnitude {
            self.inner[i].iter().map(|c| c.2).sum()
        } else {
            self.inner[i].iter().map(|c| &c.0).collect::<BTreeSet<_>>().len() as f64
        }
    }

    /// `(published value, contributors)` of a cell.
    fn published(&self, inner: &[usize]) -> (f64, usize) {
        let all: Vec<&(String, String, f64)> = inner.iter().flat_map(|&i| &self.inner[i]).collect();
        let contributors = all.iter().map(|c| &c.0).collect::<BTreeSet<_>>().len();
        let value = if self.magnitude { all.iter().map(|c| c.2).sum() } else { contributors as f64 };
        (value, contributors)
    }

    /// `Some(protection level)` when the cell fails a rule.
    fn primary(&self, inner: &[usize]) -> Option<f64> {
        let mut per: BTreeMap<&str, f64> = BTreeMap::new();
        let mut holdings = BTreeSet::new();
        let mut plain = false;
        for c in inner.iter().flat_map(|&i| &self.inner[i]) {
            *per.entry(c.1.as_str()).or_default() += c.2.abs();
            if c.1.starts_with("h:") {
                holdings.insert(c.1.clone());
            } else {
                plain = true;
            }
        }
        let n = per.len() as u64;
        let (min, zeros, p, dominance) = self.rules;
        let mut unsafe_cell = (n == 0 && zeros) || (n > 0 && n < min) || (holdings.len() == 1 && !plain);
        let mut level: f64 = 0.0;
        if self.magnitude && n > 0 {
            let mut xs: Vec<f64> = per.values().copied().collect();
            xs.sort_by(|a, b| b.total_cmp(a));
            let total: f64 = xs.iter().sum();
            let x = |i: usize| xs.get(i).copied().unwrap_or(0.0);
            if let Some(p) = p {
                if 100.0 * (total - x(0) - x(1)) < p * x(0) {
                    unsafe_cell = true;
                    level = level.max(p / 100.0 * x(0) - (total - x(0) - x(1)));
                }
            }
            if let Some((dn, k)) = dominance {
                let top: f64 = xs.iter().take(dn).sum();
                if 100.0 * top > k * total {
                    unsafe_cell = true;
                    level = level.max(100.0 / k * top - total);
                }
            }
        }
        unsafe_cell.then_some(level)
    }
}

/// Checks an output against the model: every cell once, true published values, exactly the
/// primary cells the rules give, every primary protected by an LP over all inner cells and not
/// in the rational span of the published cells. Returns `(primary, suppressed)` cells.
fn check(input: &Value, output: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let model = Model::new(input);
    let cells = output["cells"].as_array().unwrap();
    let expected_cells: usize = model.dims.iter().map(|d| d.2.len()).product();
    let distinct: BTreeSet<String> = cells.iter().map(|c| c["cell"].to_string()).collect();
    assert_eq!((cells.len(), distinct.len()), (expected_cells, expected_cells), "every output cell once");
    let refused = !output["refused"].is_null();
    let mut primary = BTreeSet::new();
    let mut suppressed = BTreeSet::new();
    let mut published: Vec<Vec<usize>> = Vec::new();
    let mut protect: Vec<(String, Vec<usize>, f64)> = Vec::new();
    for c in cells {
        let inner = model.cell(&c["cell"]);
        let key = c["cell"].to_string();
        let rule = model.primary(&inner);
        let status = c["status"].as_str().unwrap();
        assert_eq!(status == "PRIMARY", rule.is_some(), "{key}: status {status} vs the rules");
        if status == "PUBLISHED" {
            assert!(!refused, "a refused table publishes nothing");
            let (value, contributors) = model.published(&inner);
            assert_eq!(c["contributors"].as_u64(), Some(contributors as u64), "{key}");
            let got = c["value"].as_f64().unwrap();
            assert!((got - value).abs() <= 1e-9 * value.abs().max(1.0), "{key}: {got} ≠ {value}");
            published.push(inner.clone());
        } else {
            assert!(c["value"].is_null() && c["contributors"].is_null(), "{key}: a suppressed value is null");
            suppressed.insert(key.clone());
        }
        if let Some(level) = rule {
            primary.insert(key.clone());
            protect.push((key, inner, level));
        }
    }
    if refused {
        return (primary, suppressed);
    }
    let values: Vec<f64> = (0..model.inner.len()).map(|i| model.inner_value(i)).collect();
    let nonnegative = model.inner.iter().flatten().all(|c| c.2 >= 0.0);
    for (key, inner, level) in &protect {
        let value: f64 = inner.iter().map(|&i| values[i]).sum();
        let (lo, hi) = lp_interval(&values, nonnegative, &published, inner);
        let tol = 1e-6 * value.abs().max(*level).max(1.0);
        assert!(hi.is_none_or(|h| h - lo > tol), "{key}: interval [{lo}, {hi:?}] is a point");
        assert!(hi.is_none_or(|h| h >= value + level - tol), "{key}: upper {hi:?} < {value} + {level}");
        assert!(lo <= value - level + tol, "{key}: lower {lo} > {value} − {level}");
        let in_span = in_rational_span(model.inner.len(), &published, inner);
        assert!(!in_span, "{key}: a linear combination of published cells");
    }
    (primary, suppressed)
}

/// `[min, max]` of `Σ target` over every inner cell, subject to every published cell.
fn lp_interval(values: &[f64], nonnegative: bool, published: &[Vec<usize>], target: &[usize]) -> (f64, Option<f64>) {
    let bound = |maximise: bool| -> Option<f64> {
        let mut vars = ProblemVariables::new();
        let x: Vec<_> =
            values.iter().map(|_| vars.add(if nonnegative { variable().min(0) } else { variable() })).collect();
        let goal: Expression = target.iter().map(|&i| x[i]).sum();
        let problem = if maximise { vars.maximise(goal.clone()) } else { vars.minimise(goal.clone()) };
        let mut model = problem.using(microlp);
        for cell in published {
            let lhs: Expression = cell.iter().map(|&i| x[i]).sum();
            let rhs: f64 = cell.iter().map(|&i| values[i]).sum();
            model.add_constraint(lhs.eq(rhs));
        }
        match model.solve() {
            Ok(s) => Some(s.eval(&goal)),
            Err(ResolutionError::Unbounded) => None,
            Err(e) => panic!("independent LP: {e}"),
        }
    };
    (bound(false).unwrap_or(f64::NEG_INFINITY), bound(true))
}

/// A subset of the 0/1 vectors `cells` with the same rational span, each independent of the
/// ones before it.
fn independent(n: usize, cells: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut kept: Vec<Vec<usize>> = Vec::new();
    for cell in cells {
        if !in_rational_span(n, &kept, cell) {
            kept.push(cell.clone());
        }
    }
    kept
}

/// Exact: is the 0/1 vector `target` a rational combination of the `published` 0/1 vectors?
/// Dense row reduction over fractions `(numerator, denominator)` in i128.
fn in_rational_span(n: usize, published: &[Vec<usize>], target: &[usize]) -> bool {
    type Q = (i128, i128);
    fn norm((a, b): Q) -> Q {
        fn gcd(a: i128, b: i128) -> i128 {
            if b == 0 {
                a.abs()
            } else {
                gcd(b, a % b)
            }
        }
        let g = gcd(a, b).max(1) * b.signum();
        (a / g, b / g)
    }
    let sub = |x: Q, f: Q, y: Q| norm((x.0 * f.1 * y.1 - f.0 * y.0 * x.1, x.1 * f.1 * y.1));
    let vector = |cells: &[usize]| {
        let mut v = vec![(0i128, 1i128); n];
        for &i in cells {
            v[i] = (1, 1);
        }
        v
    };
    let mut basis: Vec<(usize, Vec<Q>)> = Vec::new();
    let reduce = |mut v: Vec<Q>, basis: &[(usize, Vec<Q>)]| {
        for (pivot, b) in basis {
            if v[*pivot].0 != 0 {
                let f = norm((v[*pivot].0 * b[*pivot].1, v[*pivot].1 * b[*pivot].0));
                for i in 0..n {
                    if b[i].0 != 0 {
                        v[i] = sub(v[i], f, b[i]);
                    }
                }
            }
        }
        v
    };
    for cell in published {
        let v = reduce(vector(cell), &basis);
        if let Some(pivot) = v.iter().position(|q| q.0 != 0) {
            basis.push((pivot, v));
        }
    }
    reduce(vector(target), &basis).iter().all(|q| q.0 == 0)
}

// ---- the binary ----

fn run(file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bth-gateway")).arg("sdc").arg(file).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/sdc");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
}

fn keys(cells: &Value) -> BTreeSet<String> {
    cells.as_array().unwrap().iter().map(|c| c.to_string()).collect()
}

#[test]
fn every_case_through_the_binary_gives_the_primary_cells_and_a_protected_pattern_no_larger_than_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    let paths = cases();
    assert!(paths.len() >= 7, "T1, T2, T4, T5a and the three worked examples");
    for path in &paths {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let input_file = dir.path().join("input.json");
        std::fs::write(&input_file, case["input"].to_string()).unwrap();
        let (code, stdout, stderr) = run(&input_file);
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(code, 0, "{name}: {stderr}");
        let output: Value = serde_json::from_str(&stdout).unwrap();
        assert!(output["refused"].is_null(), "{name}: refused {}", output["refused"]);
        let (primary, suppressed) = check(&case["input"], &output);
        assert_eq!(primary, keys(&case["expect"]["primary"]), "{name}: primary cells");
        if let Some(reference) = case["expect"].get("reference_suppressed") {
            let reference = keys(reference);
            assert!(
                suppressed.len() <= reference.len(),
                "{name}: {} suppressed, reference {}",
                suppressed.len(),
                reference.len()
            );
            report.push(format!("{name}: {} suppressed (reference {})", suppressed.len(), reference.len()));
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn malformed_input_exits_2_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = json!({"statistic": "SUM",
        "dimensions": [{"name": "geo", "categories": ["A", "B"], "hierarchy": {"AB": ["A", "B"]}}],
        "records": [{"cell": {"geo": "A"}, "value": 3}]});
    let cases = [
        (json!({"statistic": "SUM", "dimensions": []}), "dimensions: 1 to 4 dimensions expected"),
        (
            {
                let mut v = base.clone();
                v["records"][0]["cell"]["geo"] = json!("C");
                v
            },
            "records[0].cell.geo: unknown leaf category `C`",
        ),
        (
            {
                let mut v = base.clone();
                v["records"][0].as_object_mut().unwrap().remove("value");
                v
            },
            "records[0].value: required for SUM",
        ),
        (
            {
                let mut v = base.clone();
                v["rules"] = json!({"dominance": {"n": 0, "k": 90}});
                v
            },
            "rules.dominance.n: must be at least 1",
        ),
        (
            {
                let mut v = base.clone();
                v["dimensions"][0]["hierarchy"]["AB"] = json!(["A", "Z"]);
                v
            },
            "dimensions[0].hierarchy.AB[1]: unknown category or group `Z`",
        ),
        (
            {
                let mut v = base.clone();
                v["statistic"] = json!(7);
                v
            },
            "statistic: invalid type",
        ),
    ];
    for (input, expected) in cases {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, input.to_string()).unwrap();
        let (code, stdout, stderr) = run(&file);
        assert_eq!(code, 2, "{input}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("error: {expected}")), "{stderr:?} lacks {expected:?}");
    }
    let (code, _, stderr) = run(&dir.path().join("absent.json"));
    assert_eq!(code, 2);
    assert!(stderr.starts_with("error: reading "), "{stderr}");
}

#[test]
fn a_release_that_reveals_a_primary_cell_is_refused_with_the_conflict_and_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    for (geo, n) in [("A", 1), ("B", 4), ("C", 5)] {
        for _ in 0..n {
            records.push(json!({"cell": {"geo": geo}}));
        }
    }
    let input = json!({"statistic": "COUNT", "dimensions": [{"name": "geo", "categories": ["A", "B", "C"]}],
        "records": records,
        "released": [{"cell": {"geo": "Total"}, "value": 10}, {"cell": {"geo": "B"}, "value": 4},
                     {"cell": {"geo": "C"}, "value": 5}]});
    let file = dir.path().join("ledger.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let (code, stdout, _) = run(&file);
    assert_eq!(code, 0);
    let output: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output["refused"], "released cell released[2] {geo=C} reveals primary cell {geo=A}");
    check(&input, &output);
}

// ---- random tables ----

/// A random table: 1–3 dimensions of 2–4 leaves, an optional two-level hierarchy, 0–3 rows
/// per inner cell from a small pool of contributors (shared across cells, some in holdings).
fn table() -> impl Strategy<Value = Value> {
    let dims = prop::collection::vec((2usize..=4, 0u8..3), 1..=3);
    (dims, prop::bool::ANY, 2u64..=4, prop::bool::ANY, 0u8..3, any::<u64>())
        .prop_map(|(dims, count, min, zeros, magnitude_rules, seed)| {
            let mut rng = seed;
            let mut next = move |n: u64| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 33) % n
            };
            let mut dimensions = Vec::new();
            for (d, &(leaves, hierarchy)) in dims.iter().enumerate() {
                let cats: Vec<String> = (0..leaves).map(|l| format!("{d}{l}x")).collect();
                let mut dim = json!({"name": format!("d{d}"), "categories": cats});
                match hierarchy {
                    1 => dim["hierarchy"] = json!({"g": [cats[0], cats[1]], "h": ["g"]}),
                    2 => dim["prefixes"] = json!([1]),
                    _ => {}
                }
                dimensions.push(dim);
            }
            let inner: usize = dims.iter().map(|d| d.0).product();
            let mut records = Vec::new();
            for i in 0..inner {
                let mut rest = i;
                let mut cell = serde_json::Map::new();
                for (d, &(leaves, _)) in dims.iter().enumerate().rev() {
                    cell.insert(format!("d{d}"), json!(format!("{d}{}x", rest % leaves)));
                    rest /= leaves;
                }
                let rows = [0, 1, 1, 2, 3, 4][next(6) as usize];
                for _ in 0..rows {
                    let who = next(12);
                    let mut r = json!({"cell": cell, "contributor": format!("c{who}"), "value": next(50) + u64::from(next(4) == 0) * 500});
                    if who < 2 {
                        r["holding"] = json!("h0");
                    }
                    records.push(r);
                }
            }
            let (p, dominance) = match magnitude_rules {
                0 => (json!(null), json!(null)),
                1 => (json!(10), json!(null)),
                _ => (json!(null), json!({"n": 2, "k": 85})),
            };
            json!({"statistic": if count { "COUNT" } else { "SUM" }, "dimensions": dimensions, "records": records,
                   "rules": {"min_frequency": min, "zeros_unsafe": zeros, "p_percent": p, "dominance": dominance}})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_tables_keep_every_primary_cell_protected(input in table()) {
        let output = bth_gateway::sdc::input::sdc_json(&input.to_string()).unwrap();
        let output = serde_json::to_value(output).unwrap();
        check(&input, &output);
    }
}

/// The engine never leaves a primary cell reachable when earlier releases are forced: force a
/// random subset of the safe inner cells of a random table; the answer is protected or refused.
#[test]
fn forced_releases_are_published_or_the_table_is_refused() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 24, ..ProptestConfig::default() });
    runner
        .run(&(table(), any::<u64>()), |(input, pick)| {
            let first = serde_json::to_value(bth_gateway::sdc::input::sdc_json(&input.to_string()).unwrap()).unwrap();
            let released: Vec<Value> = first["cells"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(i, c)| c["status"] == "SECONDARY" && (pick >> (i % 64)) & 1 == 1)
                .map(|(_, c)| c["cell"].clone())
                .collect();
            let model = Model::new(&input);
            let mut forced = input.clone();
            forced["released"] = released
                .iter()
                .map(|cell| {
                    let (value, _) = model.published(&model.cell(cell));
                    json!({"cell": cell, "value": value})
                })
                .collect();
            let output = serde_json::to_value(bth_gateway::sdc::input::sdc_json(&forced.to_string()).unwrap()).unwrap();
            check(&forced, &output);
            if output["refused"].is_null() {
                let published: HashMap<String, &Value> =
                    output["cells"].as_array().unwrap().iter().map(|c| (c["cell"].to_string(), &c["status"])).collect();
                for cell in &released {
                    prop_assert_eq!(published[&cell.to_string()], "PUBLISHED");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// The checks above can fail: publishing one secondary cell of a protected pattern (with its
/// true value) reveals a primary cell, and the independent audit says so.
#[test]
fn the_independent_audit_rejects_a_pattern_with_one_secondary_cell_published() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/sdc/T2-counts-min3.json");
    let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let good = serde_json::to_value(bth_gateway::sdc::input::sdc_json(&case["input"].to_string()).unwrap()).unwrap();
    check(&case["input"], &good);
    let model = Model::new(&case["input"]);
    let cells = good["cells"].as_array().unwrap();
    let secondary: Vec<usize> = (0..cells.len()).filter(|&i| cells[i]["status"] == "SECONDARY").collect();
    assert!(!secondary.is_empty());
    for i in secondary {
        let mut bad = good.clone();
        let (value, contributors) = model.published(&model.cell(&cells[i]["cell"]));
        bad["cells"][i] =
            json!({"cell": cells[i]["cell"], "status": "PUBLISHED", "value": value, "contributors": contributors});
        let caught = std::panic::catch_unwind(|| check(&case["input"], &bad));
        assert!(caught.is_err(), "publishing {} went unnoticed", cells[i]["cell"]);
    }
}

/// The fast audit (the exact certificate, linear programmes only for the cells it leaves open)
/// against the plain one (two programmes per primary cell) and this file's independent
/// programme over all inner cells, on random suppression patterns of random tables (some with
/// negative contributions): the same verdict for every primary cell, and a certified interval
/// inside the programmes' one.
#[test]
fn the_fast_audit_agrees_with_the_plain_linear_programmes_on_random_patterns() {
    use bth_gateway::sdc::{audit_pattern, input::SdcRequest, Method, Status};
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    });
    let mut totals = [0usize; 3]; // primary cells (x ≥ 0), protected by the certificate, protected
    let totals_cell = std::cell::RefCell::new(&mut totals);
    runner
        .run(&(table(), any::<u64>(), 0u8..4), |(mut input, seed, publish)| {
            let mut rng = seed;
            let mut next = move |n: u64| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 33) % n
            };
            if input["statistic"] == "SUM" && next(3) == 0 {
                for r in input["records"].as_array_mut().unwrap() {
                    if next(4) == 0 {
                        r["value"] = json!(-r["value"].as_f64().unwrap());
                    }
                }
            }
            let request = SdcRequest::from_json(&input.to_string()).unwrap();
            let table = &request.table;
            let rules = &request.rules;
            let magnitude = table.statistic().is_magnitude();
            // Publish each safe cell with probability (2 + publish) / 6.
            let status: Vec<Status> = (0..table.output_count())
                .map(|c| {
                    if rules.classify(table.stats(c), magnitude).is_some() {
                        Status::Primary
                    } else if next(6) < 2 + u64::from(publish) {
                        Status::Published
                    } else {
                        Status::Secondary
                    }
                })
                .collect();
            let fast = audit_pattern(table, rules, &status, &[], Method::Fast).unwrap();
            let values: Vec<f64> =
                (0..table.inner_count() as u32).map(|i| table.stats(table.output_of_inner(i)).additive).collect();
            let published: Vec<Vec<usize>> = (0..table.output_count())
                .filter(|&c| status[c] == Status::Published)
                .map(|c| table.inner_of(c).into_iter().map(|i| i as usize).collect())
                .collect();
            // The same equalities without the redundant ones (microlp can stall on a heavily
            // redundant system; dropping an implied equality changes no interval).
            let published = independent(table.inner_count(), &published);
            if !table.is_nonnegative() {
                // Without x ≥ 0 the interval is a point in the span and unbounded outside it:
                // the fast audit decides every cell exactly, with no programme (microlp stalls
                // on some of these free-variable programmes, so the exact span test is the
                // independent check here).
                for f in &fast {
                    let inner: Vec<usize> = table.inner_of(f.cell).into_iter().map(|i| i as usize).collect();
                    let in_span = in_rational_span(table.inner_count(), &published, &inner);
                    prop_assert!(f.certified, "{:?}", f);
                    prop_assert_eq!(f.protected, !in_span, "{:?}", f);
                    prop_assert_eq!(f.interval.upper.is_none(), !in_span, "{:?}", f);
                }
                return Ok(());
            }
            let plain = audit_pattern(table, rules, &status, &[], Method::LinearProgramming).unwrap();
            prop_assert_eq!(fast.len(), plain.len());
            let mut totals = totals_cell.borrow_mut();
            for (f, p) in fast.iter().zip(&plain) {
                prop_assert_eq!(f.cell, p.cell);
                prop_assert!(!p.certified);
                let need = rules.classify(table.stats(f.cell), magnitude).unwrap().protection;
                let value = table.stats(f.cell).additive;
                let inner: Vec<usize> = table.inner_of(f.cell).into_iter().map(|i| i as usize).collect();
                let (lo, hi) = lp_interval(&values, table.is_nonnegative(), &published, &inner);
                let independent = bth_gateway::sdc::Interval { lower: lo, upper: hi };
                let verdict = bth_gateway::sdc::audit::protects(&independent, value, need);
                prop_assert_eq!(f.protected, p.protected, "cell {}: fast {:?} plain {:?}", f.cell, f, p);
                prop_assert_eq!(f.protected, verdict, "cell {}: fast {:?} independent {:?}", f.cell, f, independent);
                if f.certified {
                    let tol = 1e-6 * value.abs().max(need).max(1.0);
                    prop_assert!(f.interval.lower >= lo - tol, "{:?} not inside [{}, {:?}]", f, lo, hi);
                    prop_assert!(
                        hi.is_none_or(|h| f.interval.upper.is_some_and(|u| u <= h + tol)),
                        "{:?} not inside [{}, {:?}]",
                        f,
                        lo,
                        hi
                    );
                    // Certified protected: outside the span; certified short: a point, in it.
                    prop_assert_eq!(f.protected, !in_rational_span(table.inner_count(), &published, &inner));
                }
                totals[0] += 1;
                totals[1] += usize::from(f.certified && f.protected);
                totals[2] += usize::from(f.protected);
            }
            Ok(())
        })
        .unwrap();
    let [cells, certified, protected] = totals;
    println!("{cells} primary cells of x ≥ 0 tables: {certified} protected by the certificate, {protected} in all");
    assert!(certified > 0 && certified < protected && protected < cells, "every verdict exercised: {totals:?}");
}
