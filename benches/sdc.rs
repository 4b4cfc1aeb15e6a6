//! Secondary suppression of a 5 000-inner-cell table (10 × 20 × 25, every margin: 6 006 output
//! cells) with about 5 % primary cells, on one core. Prints the time to build the table (the
//! baseline, measured in the same run), the exact Gaussian elimination alone (secondary
//! suppression), and the whole `protect` call (primary rules, elimination walks, singleton
//! passes, interval audit, widening), each with its ratio to the baseline, and the protect
//! call's phase split (from `protect_traced`). The bar: secondary suppression ≤ 1 s. Run: `cargo bench --bench sdc`.

use std::time::{Duration, Instant};

use bth_gateway::sdc::gauss::{self, indicator};
use bth_gateway::sdc::{protect_traced, Contribution, Dimension, Phase, Rules, Statistic, Status, Table};

const SHAPE: [usize; 3] = [10, 20, 25];

fn dimensions() -> Vec<Dimension> {
    SHAPE
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            Dimension::new(&format!("d{d}"), (0..n).map(|l| format!("c{l}")).collect(), vec![], &[]).unwrap()
        })
        .collect()
}

/// Contributions: one in twenty inner cells gets 1–2 contributors (primary under n = 3), the
/// rest 3–12; a linear congruential generator keeps the table the same on every run.
fn contributions() -> Vec<Contribution> {
    let mut state: u64 = 0x5dc;
    let mut next = |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let inner: u32 = SHAPE.iter().product::<usize>() as u32;
    let mut out = Vec::new();
    let mut contributor = 0;
    for i in 0..inner {
        let n = if next(20) == 0 { 1 + next(2) } else { 3 + next(10) };
        for _ in 0..n {
            out.push(Contribution { inner: i, contributor, holding: None, value: 1.0 });
            contributor += 1;
        }
    }
    out
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

fn main() {
    let rules = Rules::domestic();
    let contributions = contributions();
    let (build, table) =
        best_of(3, || Table::build(dimensions(), Statistic::Count, &contributions, rules.keep_top()).unwrap());

    let primary: Vec<bool> =
        (0..table.output_count()).map(|c| rules.classify(table.stats(c), false).is_some()).collect();
    let targets: Vec<_> =
        (0..table.output_count()).filter(|&c| primary[c]).map(|c| indicator(&table.inner_of(c))).collect();
    let mut order: Vec<usize> = (0..table.output_count()).filter(|&c| !primary[c]).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(table.stats(c).contributors), c));
    let candidates: Vec<_> = order.iter().map(|&c| indicator(&table.inner_of(c))).collect();
    let (elimination, outcome) =
        best_of(3, || gauss::eliminate(table.inner_count(), &[], &targets, &candidates).unwrap());
    let secondary = outcome.published.iter().filter(|&&p| !p).count();

    let mut split = Split::default();
    let (engine, protection) = best_of(1, || {
        split = Split::default();
        let mut last = Instant::now();
        protect_traced(&table, &rules, &[], &mut |phase| {
            let now = Instant::now();
            split.add(phase, now - last);
            last = now;
        })
        .unwrap()
    });

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |d: Duration| d.as_secs_f64() / build.as_secs_f64();
    println!(
        "sdc: {} inner cells, {} output cells, {} primary ({:.1} % of inner cells)",
        table.inner_count(),
        table.output_count(),
        targets.len(),
        100.0 * targets.len() as f64 / table.inner_count() as f64
    );
    println!("  build the table (baseline)      {:>9.1} ms", ms(build));
    println!(
        "  secondary suppression (one elimination walk) {:>9.1} ms  ×{:.1} baseline  ({secondary} secondary)  {}",
        ms(elimination),
        ratio(elimination),
        if elimination <= Duration::from_secs(1) { "≤ 1 s: ok" } else { "> 1 s: TOO SLOW" }
    );
    println!(
        "  whole protect call             {:>9.1} ms  ×{:.1} baseline  ({} primary, {} secondary)",
        ms(engine),
        ratio(engine),
        protection.count(Status::Primary),
        protection.count(Status::Secondary)
    );
    println!("  phase split of the protect call:");
    for (name, d, note) in [
        ("classify", split.classify, String::new()),
        ("elimination walks", split.eliminate, format!("{} walks", split.walks)),
        ("singleton passes", split.singletons, format!("{} fresh targets", split.fresh)),
        (
            "interval audit",
            split.audit,
            format!("{} audits, {} cells certified exactly, {} cells by LP", split.audits, split.exact, split.by_lp),
        ),
        ("widening", split.widen, format!("{} cells", split.widened)),
    ] {
        println!("    {name:<18} {:>9.1} ms  {:>5.1} %  {note}", ms(d), 100.0 * d.as_secs_f64() / engine.as_secs_f64());
    }
}

/// Where the protect call's time went, from its phase reports.
#[derive(Default)]
struct Split {
    classify: Duration,
    eliminate: Duration,
    singletons: Duration,
    audit: Duration,
    widen: Duration,
    walks: usize,
    fresh: usize,
    audits: usize,
    exact: usize,
    by_lp: usize,
    widened: usize,
}

impl Split {
    fn add(&mut self, phase: Phase, d: Duration) {
        match phase {
            Phase::Classified => self.classify += d,
            Phase::Eliminated => {
                self.eliminate += d;
                self.walks += 1;
            }
            Phase::Singletons { fresh } => {
                self.singletons += d;
                self.fresh += fresh;
            }
            Phase::Audited { exact, by_lp, .. } => {
                self.audit += d;
                self.audits += 1;
                self.exact += exact;
                self.by_lp += by_lp;
            }
            Phase::Widened { cells } => {
                self.widen += d;
                self.widened += cells;
            }
            _ => {}
        }
    }
}
