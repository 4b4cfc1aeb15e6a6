//! Counting persons (docs/rules.md §3.1): the ruleset's window, the ledger sums inside it and the `*_after` arithmetic.

use chrono::{DateTime, FixedOffset, NaiveDate};

use super::calendar;
use super::config::PolicyConfig;
pub use super::transfer::Persons;
use super::transfer::{Ruleset, Transfer};

impl Transfer {
    /// The counting window of this transfer: the ledger sums the server passes to
    /// [`crate::policy::assess`] must be the exporter's authorised exports inside it.
    pub fn window(&self, config: &PolicyConfig) -> Window {
        Window::new(self.ruleset, self.at, config)
    }
}

/// One earlier authorised export of the same exporter, already de-duplicated: the persons it
/// added to the distinct count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When it was authorised.
    pub at: DateTime<FixedOffset>,
    /// Persons it added to the non-sensitive count.
    pub nonsensitive: u64,
    /// Persons it added to the sensitive count.
    pub sensitive: u64,
}

/// The counting window of a transfer: from `start` 00:00 Asia/Shanghai up to and including
/// the transfer's own time `end`.
///
/// Invariant: `start` is 1 January of some year, not after `end`'s Asia/Shanghai day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First day counted (1 January, Asia/Shanghai).
    pub start: NaiveDate,
    /// The transfer's time: later ledger entries are not "earlier exports" (matters on replay).
    pub end: DateTime<FixedOffset>,
}

impl Window {
    /// The window of `ruleset` for a transfer at `at`: `CN2024` since 1 January of the
    /// transfer's year, `CN2022` since 1 January of the previous year (years back per `config`).
    pub fn new(ruleset: Ruleset, at: DateTime<FixedOffset>, config: &PolicyConfig) -> Window {
        let years_back = match ruleset {
            Ruleset::Cn2024 => config.cn2024_window_years_back,
            Ruleset::Cn2022 => config.cn2022_window_years_back,
        };
        Window { start: calendar::first_of_january(at, years_back), end: at }
    }

    /// The first instant of the window, for a ledger query `start_instant() <= at <= end`.
    pub fn start_instant(&self) -> DateTime<FixedOffset> {
        calendar::start_of_day(self.start)
    }

    /// Whether an entry authorised at `at` is inside the window (both ends inclusive).
    pub fn contains(&self, at: DateTime<FixedOffset>) -> bool {
        at >= self.start_instant() && at <= self.end
    }
}

/// The exporter's persons counted inside a window, before this transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    /// Distinct non-sensitive persons exported in the window.
    pub nonsensitive: u64,
    /// Distinct sensitive persons exported in the window.
    pub sensitive: u64,
}

impl WindowTotals {
    /// Sums the entries inside `window`; entries outside it are ignored. Saturating.
    pub fn sum<'a>(entries: impl IntoIterator<Item = &'a HistoryEntry>, window: &Window) -> Self {
        let start = window.start_instant();
        entries.into_iter().filter(|e| e.at >= start && e.at <= window.end).fold(WindowTotals::default(), |acc, e| {
            WindowTotals {
                nonsensitive: acc.nonsensitive.saturating_add(e.nonsensitive),
                sensitive: acc.sensitive.saturating_add(e.sensitive),
            }
        })
    }
}

/// The counts a decision reports and the volume rows compare against the thresholds.
///
/// Invariant: `*_after >= *_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// First day of the window.
    pub window_start: NaiveDate,
    /// Non-sensitive persons in the window before this transfer.
    pub nonsensitive_before: u64,
    /// `nonsensitive_before + persons.nonsensitive - persons.already_counted_nonsensitive`.
    pub nonsensitive_after: u64,
    /// Sensitive persons in the window before this transfer.
    pub sensitive_before: u64,
    /// `sensitive_before + persons.sensitive - persons.already_counted_sensitive`.
    pub sensitive_after: u64,
}

impl Counts {
    /// `*_after = window sum + persons − already counted` (docs/assess.md), saturating.
    pub fn new(window: &Window, totals: WindowTotals, persons: &Persons) -> Counts {
        let new_nonsensitive = persons.nonsensitive.saturating_sub(persons.already_counted_nonsensitive);
        let new_sensitive = persons.sensitive.saturating_sub(persons.already_counted_sensitive);
        Counts {
            window_start: window.start,
            nonsensitive_before: totals.nonsensitive,
            nonsensitive_after: totals.nonsensitive.saturating_add(new_nonsensitive),
            sensitive_before: totals.sensitive,
            sensitive_after: totals.sensitive.saturating_add(new_sensitive),
        }
    }

    /// The persons this transfer adds to the ledger when it is authorised: `(non-sensitive,
    /// sensitive)` = `*_after − *_before`.
    pub fn added(&self) -> (u64, u64) {
        (self.nonsensitive_after - self.nonsensitive_before, self.sensitive_after - self.sensitive_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn entry(when: &str, nonsensitive: u64) -> HistoryEntry {
        HistoryEntry { at: at(when), nonsensitive, sensitive: 1 }
    }

    #[test]
    fn only_entries_inside_the_window_are_summed() {
        let history = [
            entry("2024-12-31T23:59:59+08:00", 1),         // before the CN2024 window
            entry("2024-12-31T16:00:00Z", 10),             // 2025-01-01 00:00 Shanghai: inside
            entry("2025-03-01T09:00:00+08:00", 100),       // inside
            entry("2025-06-01T10:00:00+08:00", 1_000),     // at the transfer's time: inside
            entry("2025-06-01T10:00:01+08:00", 10_000),    // after the transfer: outside
            entry("2023-12-31T23:59:59+08:00", 100_000),   // before both windows
            entry("2024-01-01T00:00:00+08:00", 1_000_000), // first instant of the CN2022 window
        ];
        let config = PolicyConfig::default();
        let now = at("2025-06-01T10:00:00+08:00");
        let cases = [(Ruleset::Cn2024, 1_110, 3), (Ruleset::Cn2022, 1_001_111, 5)];
        for (ruleset, nonsensitive, sensitive) in cases {
            let window = Window::new(ruleset, now, &config);
            let totals = WindowTotals::sum(&history, &window);
            assert_eq!(totals, WindowTotals { nonsensitive, sensitive }, "{ruleset}");
            assert!(window.contains(now));
        }
    }

    #[test]
    fn already_counted_persons_are_subtracted() {
        let window = Window::new(Ruleset::Cn2024, at("2025-06-01T10:00:00+08:00"), &PolicyConfig::default());
        let totals = WindowTotals { nonsensitive: 60_000, sensitive: 9_000 };
        let persons = Persons {
            nonsensitive: 50_000,
            sensitive: 2_000,
            already_counted_nonsensitive: 10_001,
            already_counted_sensitive: 1_000,
        };
        let counts = Counts::new(&window, totals, &persons);
        assert_eq!(counts.window_start.to_string(), "2025-01-01");
        assert_eq!((counts.nonsensitive_after, counts.sensitive_after), (99_999, 10_000));
        assert_eq!(counts.added(), (39_999, 1_000));
    }
}
