//! Replay of the transfer log (docs/replay.md): the state rebuilt from the records alone, and
//! every `transfer.decision` run again through the policy engine. Pure: records in, a report out.
//!
//! # Layout
//! - [`records`]: the members replay reads, as typed structs — the one place that names them.
//! - [`state`]: [`State`], what the state records leave (participants, datasets, grants,
//!   approvals, holds, policies, ledger totals).
//! - [`decision`]: one decision checked against the state at its leaf, and its re-run.
//! - [`store`]: [`compare_store`], the database's rows against the rebuilt state (async, the
//!   only part that does I/O).
//!
//! Feed every leaf in order with [`Replay::feed`], then call [`Replay::finish`]: the person
//! ledger is checked over the whole log first (decisions of several replicas reach the log out
//! of ledger order), then each decision is run again with the totals the ledger gives it.

mod decision;
mod records;
pub mod state;
pub mod store;

use std::collections::BTreeMap;

pub use state::State;
pub use store::{compare_store, Finding};

use crate::policy::WindowTotals;
use decision::{Entry, Pending};

/// One way the log does not replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The leaf index of the record concerned.
    pub leaf: u64,
    /// That record's `type` (`transfer.decision`, `hold.resolved`, …).
    pub kind: String,
    /// What is wrong, in one line; a decision's begins with its transfer id when known.
    pub what: String,
}

impl std::fmt::Display for Divergence {
    /// `leaf 17 (transfer.decision t-…): what`, the transfer id moved beside the kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.what.split_once(": ").filter(|(id, _)| id.starts_with("t-") && !id.contains(' ')) {
            Some((id, what)) => write!(f, "leaf {} ({} {id}): {what}", self.leaf, self.kind),
            None => write!(f, "leaf {} ({}): {}", self.leaf, self.kind, self.what),
        }
    }
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `transfer.decision` records seen.
    pub decisions: usize,
    /// Every divergence, ordered by leaf (several may concern one leaf).
    pub divergences: Vec<Divergence>,
}

/// A replay in progress: feed it the log's leaves in order.
#[derive(Debug, Default)]
pub struct Replay {
    state: State,
    decisions: usize,
    divergences: Vec<Divergence>,
    pending: Vec<Pending>,
    entries: Vec<Entry>,
    next: u64,
}

impl Replay {
    /// An empty replay (before leaf 0).
    pub fn new() -> Replay {
        Replay::default()
    }

    /// The state rebuilt from the leaves fed so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Reads the leaf at `leaf_index` (its canonical JSON). Leaves must come in order from 0; a
    /// leaf out of order is itself a divergence.
    pub fn feed(&mut self, leaf_index: u64, canonical_json: &str) {
        let envelope: records::Envelope = match state::parse(canonical_json) {
            Ok(e) => e,
            Err(what) => return self.diverge(leaf_index, "unknown", what),
        };
        if leaf_index != self.next {
            let what = format!("leaf {leaf_index} follows leaf {} (run `audit verify`)", self.next.wrapping_sub(1));
            self.diverge(leaf_index, &envelope.kind, what);
        }
        self.next = leaf_index + 1;
        if envelope.kind != records::kind::TRANSFER_DECISION {
            if let Err(what) = self.state.apply(leaf_index, &envelope.kind, &envelope.actor, canonical_json) {
                self.diverge(leaf_index, &envelope.kind, what);
            }
            return;
        }
        self.decisions += 1;
        let checked = decision::check(&self.state, leaf_index, &envelope.at, canonical_json);
        let id = checked.pending.as_ref().map(|p| p.transfer_id.clone());
        for problem in checked.problems {
            let what = match &id {
                Some(id) => format!("{id}: {problem}"),
                None => problem,
            };
            self.diverge(leaf_index, &envelope.kind, what);
        }
        if let Some(e) = checked.entry {
            let totals = self.state.ledger.entry((e.exporter.clone(), e.year)).or_default();
            totals.nonsensitive = totals.nonsensitive.saturating_add(e.added.nonsensitive);
            totals.sensitive = totals.sensitive.saturating_add(e.added.sensitive);
            totals.multi_year |= !e.one_year;
            self.entries.push(e);
        }
        self.pending.extend(checked.pending);
    }

    /// Checks the person ledger over the whole log and runs every decision again; the report.
    /// Does not change the replay: more leaves may be fed and `finish` called again.
    pub fn finish(&self) -> Report {
        let mut divergences = self.divergences.clone();
        let kind = records::kind::TRANSFER_DECISION;
        let mut diverge = |leaf: u64, what: String| divergences.push(Divergence { leaf, kind: kind.to_owned(), what });

        // Per exporter, the counted entries by position: exactly 0, 1, 2, …
        let mut ledgers: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            ledgers.entry(&e.exporter).or_default().push(e);
        }
        for (exporter, entries) in &mut ledgers {
            entries.sort_by_key(|e| (e.position, e.leaf));
            let mut expected = 0u64;
            let mut previous: Option<&Entry> = None;
            for e in entries.iter() {
                match previous {
                    Some(prev) if prev.position == e.position => diverge(
                        e.leaf,
                        format!(
                            "exporter {exporter}'s ledger entry {} is claimed by two decisions (leaves {} and {})",
                            e.position + 1,
                            prev.leaf,
                            e.leaf
                        ),
                    ),
                    _ if e.position > expected => diverge(
                        e.leaf,
                        format!(
                            "exporter {exporter}'s ledger has a gap: this decision counts entry {}, but no counted decision in the log is entry {}{}",
                            e.position + 1,
                            expected + 1,
                            if e.position > expected + 1 { format!(" to {}", e.position) } else { String::new() }
                        ),
                    ),
                    _ => {}
                }
                expected = expected.max(e.position + 1);
                previous = Some(e);
            }
        }

        for p in &self.pending {
            let id = &p.transfer_id;
            let totals = match p.ledger {
                None => WindowTotals::default(),
                Some(l) => {
                    let entries = ledgers.get(p.transfer.exporter.id.as_str()).map_or(&[][..], |v| &v[..]);
                    let counted = entries.last().map_or(0, |e| e.position + 1);
                    if l.position > counted {
                        diverge(
                            p.leaf,
                            format!(
                                "{id}: ledger position {} is beyond the {counted} entries the log's counted decisions of {} make",
                                l.position, p.transfer.exporter.id
                            ),
                        );
                    }
                    let years_back = i32::try_from(p.years_back()).unwrap_or(i32::MAX);
                    let first_year = l.year.saturating_sub(years_back);
                    let sum = entries
                        .iter()
                        .filter(|e| e.position < l.position && (first_year..=l.year).contains(&e.year))
                        .fold(WindowTotals::default(), |acc, e| WindowTotals {
                            nonsensitive: acc.nonsensitive.saturating_add(e.added.nonsensitive),
                            sensitive: acc.sensitive.saturating_add(e.added.sensitive),
                        });
                    let (before, exporter) = (p.recorded_before, &p.transfer.exporter.id);
                    if years_back == 0 {
                        if before != sum {
                            diverge(
                                p.leaf,
                                format!(
                                    "{id}: counts before (non-sensitive {}, sensitive {}) disagree with exporter {exporter}'s ledger rebuilt from its {} earlier entries of {} (non-sensitive {}, sensitive {})",
                                    before.nonsensitive, before.sensitive, l.position, l.year, sum.nonsensitive, sum.sensitive
                                ),
                            );
                        }
                        sum
                    } else {
                        // A window of several years holds distinct persons across them, which the
                        // log cannot recompute: only the bound is checked, the record's counts used.
                        if before.nonsensitive > sum.nonsensitive || before.sensitive > sum.sensitive {
                            diverge(
                                p.leaf,
                                format!(
                                    "{id}: counts before (non-sensitive {}, sensitive {}) exceed what exporter {exporter}'s earlier entries of {first_year}–{} add up to (non-sensitive {}, sensitive {})",
                                    before.nonsensitive, before.sensitive, l.year, sum.nonsensitive, sum.sensitive
                                ),
                            );
                        }
                        before
                    }
                }
            };
            if let Some(what) = p.rerun(totals) {
                diverge(p.leaf, format!("{id}: {what}"));
            }
        }
        divergences.sort_by_key(|d| d.leaf);
        Report { decisions: self.decisions, divergences }
    }

    fn diverge(&mut self, leaf: u64, kind: &str, what: String) {
        self.divergences.push(Divergence { leaf, kind: kind.to_owned(), what });
    }
}

#[cfg(test)]
mod tests;
