//! Standing reports' schedules (docs/reports.md): the one run due now, and the period it covers.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::calendar;

/// The last year a [`Period`] can name: periods are written with four-digit years.
const MAX_YEAR: i32 = 9999;
/// Month slots `0000-01 ..= 9999-12`.
const MONTH_SLOTS: u32 = 10_000 * 12;
/// Quarter slots `0000-Q1 ..= 9999-Q4`.
const QUARTER_SLOTS: u32 = 10_000 * 4;

/// Caller text echoed in an error, cut to 80 characters.
fn echo(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A decimal number written as digits only, without a sign or leading zeros (`0` itself is
/// canonical). `None` for anything else, or when it does not fit a `u64`.
fn canonical_u64(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if digits && !leading_zero {
        text.parse().ok()
    } else {
        None
    }
}

/// Why a schedule's text (`monthly:5`, `quarterly:1`, `on-release`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Not one of the three forms (they are lower-case; nothing may follow `on-release`).
    #[error("unknown schedule `{0}`: expected `monthly:DAY`, `quarterly:DAY` or `on-release`")]
    Unknown(String),
    /// `monthly` or `quarterly` without a day after the colon.
    #[error("`{0}` needs a day of the month: `{0}:DAY`, DAY 1..=31")]
    MissingDay(&'static str),
    /// The day is not written in decimal digits.
    #[error("day `{0}` is not a number")]
    DayNotANumber(String),
    /// The day is written with a leading zero (`05`): one text per schedule.
    #[error("day `{0}` has a leading zero: write it without")]
    DayLeadingZero(String),
    /// The day is a number outside 1..=31.
    #[error("day {0} is not 1..=31")]
    DayOutOfRange(String),
}

/// A day of the month on which a time-based schedule fires.
///
/// Invariant: 1..=31. A month without the day uses its last day ([`Schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DayOfMonth(u8);

impl DayOfMonth {
    /// The day `day`.
    ///
    /// # Errors
    /// [`ScheduleError::DayOutOfRange`] unless `day` is 1..=31.
    pub fn new(day: u8) -> Result<DayOfMonth, ScheduleError> {
        if (1..=31).contains(&day) {
            Ok(DayOfMonth(day))
        } else {
            Err(ScheduleError::DayOutOfRange(day.to_string()))
        }
    }

    /// The day, 1..=31.
    pub fn get(self) -> u8 {
        self.0
    }

    /// This day in `year`-`month`, or the month's last day when it has fewer days.
    /// `None` only for a year outside chrono's range.
    fn in_month(self, year: i32, month: u32) -> Option<NaiveDate> {
        (1..=u32::from(self.0)).rev().find_map(|day| NaiveDate::from_ymd_opt(year, month, day))
    }
}

impl FromStr for DayOfMonth {
    type Err = ScheduleError;

    /// Parses `1` ..= `31`, digits only, no leading zero.
    fn from_str(s: &str) -> Result<DayOfMonth, ScheduleError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScheduleError::DayNotANumber(echo(s)));
        }
        let day = canonical_u64(s).ok_or_else(|| {
            if s.len() > 1 && s.starts_with('0') {
                ScheduleError::DayLeadingZero(echo(s))
            } else {
                ScheduleError::DayOutOfRange(echo(s))
            }
        })?;
        u8::try_from(day).map_err(|_| ScheduleError::DayOutOfRange(echo(s))).and_then(DayOfMonth::new)
    }
}

impl fmt::Display for DayOfMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// When a standing report runs. One text form, in requests, configuration and JSON alike:
/// `monthly:DAY`, `quarterly:DAY`, `on-release` ([`FromStr`] and [`fmt::Display`]; serde uses
/// the same string).
///
/// Time-based schedules fire at 00:00 Asia/Shanghai (UTC+8, [`crate::domain::SHANGHAI`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Schedule {
    /// `monthly:DAY`: on `day` of every month; a month without that day runs on its last day
    /// (31 → 30 April, 28 or 29 February). Periods are months (`2026-03`).
    Monthly {
        /// The day of the month.
        day: DayOfMonth,
    },
    /// `quarterly:DAY`: on `day` of the first month of each quarter (January, April, July,
    /// October), with the same last-day rule. Periods are quarters (`2026-Q2`).
    Quarterly {
        /// The day of the quarter's first month.
        day: DayOfMonth,
    },
    /// `on-release`: for each version of the dataset released after the report was defined.
    /// Not time-based: see [`due_on_release`]. Periods are versions (`v7`).
    OnRelease,
}

impl Schedule {
    /// The instant at which `period`'s run is scheduled.
    ///
    /// # Errors
    /// [`DueError::NotTimeBased`] for [`Schedule::OnRelease`]; [`DueError::PeriodMismatch`]
    /// when `period` is not one of this schedule's periods (a quarter for a monthly schedule).
    pub fn scheduled_at(&self, period: &Period) -> Result<DateTime<Utc>, DueError> {
        let (cadence, day) = self.timed()?;
        let slot =
            cadence.slot_of_period(period).ok_or(DueError::PeriodMismatch { schedule: *self, period: *period })?;
        // A named period lies in years 0000..=9999, where every date exists.
        cadence.run_at(slot, day).ok_or(DueError::OutOfRange)
    }

    /// The cadence and day of a time-based schedule.
    fn timed(&self) -> Result<(Cadence, DayOfMonth), DueError> {
        match *self {
            Schedule::Monthly { day } => Ok((Cadence::Monthly, day)),
            Schedule::Quarterly { day } => Ok((Cadence::Quarterly, day)),
            Schedule::OnRelease => Err(DueError::NotTimeBased),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses exactly `monthly:DAY`, `quarterly:DAY` (DAY 1..=31, no leading zero) or
    /// `on-release`. Anything else is refused: case, spaces and suffixes are not guessed at.
    fn from_str(s: &str) -> Result<Schedule, ScheduleError> {
        if s == "on-release" {
            return Ok(Schedule::OnRelease);
        }
        let (kind, day) = s.split_once(':').map_or((s, None), |(kind, day)| (kind, Some(day)));
        let (kind, make): (&'static str, fn(DayOfMonth) -> Schedule) = match kind {
            "monthly" => ("monthly", |day| Schedule::Monthly { day }),
            "quarterly" => ("quarterly", |day| Schedule::Quarterly { day }),
            _ => return Err(ScheduleError::Unknown(echo(s))),
        };
        let day = day.filter(|day| !day.is_empty()).ok_or(ScheduleError::MissingDay(kind))?;
        Ok(make(day.parse()?))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Monthly { day } => write!(f, "monthly:{day}"),
            Schedule::Quarterly { day } => write!(f, "quarterly:{day}"),
            Schedule::OnRelease => f.write_str("on-release"),
        }
    }
}

impl TryFrom<String> for Schedule {
    type Error = ScheduleError;
    fn try_from(s: String) -> Result<Schedule, ScheduleError> {
        s.parse()
    }
}

impl From<Schedule> for String {
    fn from(schedule: Schedule) -> String {
        schedule.to_string()
    }
}

/// Why a period's text (`2026-03`, `2026-Q2`, `v7`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodError {
    /// Not one of the three forms.
    #[error("`{0}` is not a period: expected `YYYY-MM`, `YYYY-Qn` or `vN`")]
    Malformed(String),
    /// `YYYY-MM` with a month outside 01..=12.
    #[error("month {0} is not 01..=12")]
    MonthOutOfRange(String),
    /// `YYYY-Qn` with a quarter outside 1..=4.
    #[error("quarter Q{0} is not Q1..=Q4")]
    QuarterOutOfRange(String),
    /// `vN` where N is not a version number: digits without a leading zero, 1 or more, within
    /// 64 bits.
    #[error("`{0}` is not a version: versions are v1, v2, … without leading zeros")]
    Version(String),
}

/// The period a run covers, as one stable text that every replica computes alike: `2026-03` (a
/// month, for a monthly schedule), `2026-Q2` (a quarter, quarterly), `v7` (a released version,
/// on-release). The period of a time-based run is the month or quarter in which it is
/// scheduled.
///
/// Invariant: years are 0000..=9999, months 1..=12, quarters 1..=4, versions ≥ 1. Periods of
/// one kind are ordered in time; the order between kinds means nothing (and is never used here:
/// a period of another kind than the schedule's is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period(Slot);

/// A period as a count from the first one of its kind, so that stepping and comparing are
/// integer operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Slot {
    /// Months since 0000-01, below [`MONTH_SLOTS`].
    Month(u32),
    /// Quarters since 0000-Q1, below [`QUARTER_SLOTS`].
    Quarter(u32),
    /// The version number, ≥ 1.
    Version(u64),
}

impl Period {
    /// The month `year`-`month`; `None` unless `year` ≤ 9999 and `month` is 1..=12.
    pub fn month(year: u16, month: u8) -> Option<Period> {
        (i32::from(year) <= MAX_YEAR && (1..=12).contains(&month))
            .then(|| Period(Slot::Month(u32::from(year) * 12 + u32::from(month) - 1)))
    }

    /// The quarter `year`-Q`quarter`; `None` unless `year` ≤ 9999 and `quarter` is 1..=4.
    pub fn quarter(year: u16, quarter: u8) -> Option<Period> {
        (i32::from(year) <= MAX_YEAR && (1..=4).contains(&quarter))
            .then(|| Period(Slot::Quarter(u32::from(year) * 4 + u32::from(quarter) - 1)))
    }

    /// The released version `version`; `None` for 0 (versions are 1, 2, 3, …).
    pub fn version(version: u64) -> Option<Period> {
        (version >= 1).then_some(Period(Slot::Version(version)))
    }

    /// The version number of an on-release period; `None` for a month or a quarter.
    pub fn as_version(&self) -> Option<u64> {
        match self.0 {
            Slot::Version(version) => Some(version),
            Slot::Month(_) | Slot::Quarter(_) => None,
        }
    }

    /// The period `delta` steps later (earlier when negative) of the same kind; `None` past
    /// either end of the kind's range.
    fn step(self, delta: i64) -> Option<Period> {
        let within = |slot: u32, slots: u32| {
            i64::from(slot).checked_add(delta).and_then(|s| u32::try_from(s).ok()).filter(|s| *s < slots)
        };
        Some(Period(match self.0 {
            Slot::Month(slot) => Slot::Month(within(slot, MONTH_SLOTS)?),
            Slot::Quarter(slot) => Slot::Quarter(within(slot, QUARTER_SLOTS)?),
            Slot::Version(version) => Slot::Version(version.checked_add_signed(delta).filter(|v| *v >= 1)?),
        }))
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    /// Parses exactly the text [`fmt::Display`] writes: `YYYY-MM`, `YYYY-Qn` or `vN`.
    fn from_str(s: &str) -> Result<Period, PeriodError> {
        if let Some(number) = s.strip_prefix('v') {
            return canonical_u64(number).and_then(Period::version).ok_or_else(|| PeriodError::Version(echo(s)));
        }
        let malformed = || PeriodError::Malformed(echo(s));
        let digits = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
        let (year, rest) = s.split_once('-').ok_or_else(malformed)?;
        if !digits(year, 4) {
            return Err(malformed());
        }
        let year: u16 = year.parse().map_err(|_| malformed())?;
        if let Some(quarter) = rest.strip_prefix('Q') {
            if !digits(quarter, 1) {
                return Err(malformed());
            }
            let number = quarter.parse().map_err(|_| malformed())?;
            Period::quarter(year, number).ok_or_else(|| PeriodError::QuarterOutOfRange(quarter.to_owned()))
        } else {
            if !digits(rest, 2) {
                return Err(malformed());
            }
            let number = rest.parse().map_err(|_| malformed())?;
            Period::month(year, number).ok_or_else(|| PeriodError::MonthOutOfRange(rest.to_owned()))
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Slot::Month(slot) => write!(f, "{:04}-{:02}", slot / 12, slot % 12 + 1),
            Slot::Quarter(slot) => write!(f, "{:04}-Q{}", slot / 4, slot % 4 + 1),
            Slot::Version(version) => write!(f, "v{version}"),
        }
    }
}

impl TryFrom<String> for Period {
    type Error = PeriodError;
    fn try_from(s: String) -> Result<Period, PeriodError> {
        s.parse()
    }
}

impl From<Period> for String {
    fn from(period: Period) -> String {
        period.to_string()
    }
}

/// Why [`due`], [`due_on_release`] or [`Schedule::scheduled_at`] cannot answer. Each is a
/// caller's mistake or a corrupt record, never a state of the clock: fail closed, run nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DueError {
    /// A time-based question about an `on-release` schedule.
    #[error("an on-release schedule is not due by time")]
    NotTimeBased,
    /// The recorded last run (or the period asked about) is of another kind than the
    /// schedule's periods, e.g. `v7` for `monthly:5`: the schedule was changed without its
    /// runs, or the record is corrupt.
    #[error("period `{period}` is not a period of schedule `{schedule}`")]
    PeriodMismatch {
        /// The schedule.
        schedule: Schedule,
        /// The period of another kind.
        period: Period,
    },
    /// An instant whose Asia/Shanghai year is outside 0000..=9999, the years periods name.
    #[error("instant outside the years 0000 to 9999 that periods name")]
    OutOfRange,
}

/// The one run owed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The period to produce: the latest one owed.
    pub period: Period,
    /// When its run was scheduled (≤ the `now` asked about); `None` for an on-release run,
    /// which has no scheduled instant.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// How many owed periods before `period` are skipped: they are not produced, only recorded
    /// as not produced ([`Due::skipped`]). Saturates at `u32::MAX` (only a gap of versions
    /// that large could reach it).
    pub missed: u32,
}

impl Due {
    /// The skipped periods, oldest first: the `missed` periods just before `period`.
    pub fn skipped(&self) -> impl Iterator<Item = Period> + '_ {
        (1..=self.missed).rev().filter_map(|back| self.period.step(-i64::from(back)))
    }
}

/// The run of a time-based schedule owed at `now`, if any: the latest period whose scheduled
/// instant is ≤ `now`, ≥ `defined_at` (a report never runs for a period scheduled before it was
/// defined) and later than `last_run`. Periods owed before it are not run: they are counted in
/// [`Due::missed`], so a gateway that was down for three months produces one report, not
/// three.
///
/// Recording the returned period as `last_run` makes the answer `None` until the next
/// scheduled instant ([`next_run`]). A `last_run` after `now` (a clock set back) gives `None`.
///
/// # Errors
/// [`DueError::NotTimeBased`] for `on-release`; [`DueError::PeriodMismatch`] when `last_run`
/// is not of the schedule's kind; [`DueError::OutOfRange`] when `now` or `defined_at` falls
/// outside the years 0000..=9999.
pub fn due(
    schedule: &Schedule,
    last_run: Option<&Period>,
    now: DateTime<Utc>,
    defined_at: DateTime<Utc>,
) -> Result<Option<Due>, DueError> {
    let (cadence, day) = schedule.timed()?;
    let last = last_run
        .map(|period| {
            cadence.slot_of_period(period).ok_or(DueError::PeriodMismatch { schedule: *schedule, period: *period })
        })
        .transpose()?;
    let latest = cadence.latest_at_or_before(day, now)?;
    let first = cadence.first_at_or_after(day, defined_at)?;
    let earliest = last.map_or(first, |last| first.max(last + 1));
    if latest < earliest {
        return Ok(None);
    }
    let period = cadence.period(latest).ok_or(DueError::OutOfRange)?;
    let scheduled_at = cadence.run_at(latest, day).ok_or(DueError::OutOfRange)?;
    let missed = u32::try_from(latest - earliest).unwrap_or(u32::MAX);
    Ok(Some(Due { period, scheduled_at: Some(scheduled_at), missed }))
}

/// The run of an `on-release` schedule owed now, if any: the latest released version when it
/// is newer than both `last_run` and `latest_at_definition` (the latest version already
/// released when the report was defined; `None` if there was none — a report runs for
/// versions released after it was defined, as [`due`] runs for periods scheduled after).
/// Versions in between are counted in [`Due::missed`] and not run.
///
/// `latest_released` is `None` when no version has been released.
///
/// # Errors
/// [`DueError::PeriodMismatch`] when `last_run` is a month or a quarter.
pub fn due_on_release(
    last_run: Option<&Period>,
    latest_at_definition: Option<u64>,
    latest_released: Option<u64>,
) -> Result<Option<Due>, DueError> {
    let last = last_run
        .map(|period| {
            period.as_version().ok_or(DueError::PeriodMismatch { schedule: Schedule::OnRelease, period: *period })
        })
        .transpose()?
        .unwrap_or(0);
    let floor = last.max(latest_at_definition.unwrap_or(0));
    let Some(latest) = latest_released.filter(|latest| *latest > floor) else {
        return Ok(None);
    };
    let missed = u32::try_from(latest - floor - 1).unwrap_or(u32::MAX);
    // latest > floor ≥ 0, so it is a version number.
    Ok(Period::version(latest).map(|period| Due { period, scheduled_at: None, missed }))
}

/// The first instant strictly after `after` at which a time-based schedule fires, for
/// monitoring ("next due"). `None` for `on-release`, and when that instant or `after` lies
/// outside the years 0000..=9999.
pub fn next_run(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (cadence, day) = schedule.timed().ok()?;
    let slot = cadence.latest_at_or_before(day, after).ok()? + 1;
    cadence.period(slot)?;
    cadence.run_at(slot, day)
}

/// The periods of a time-based schedule: months or quarters, counted as slots since the first
/// of year 0000 (negative before it), so that each slot's run lies inside the slot.
#[derive(Debug, Clone, Copy)]
enum Cadence {
    Monthly,
    Quarterly,
}

impl Cadence {
    fn per_year(self) -> i64 {
        match self {
            Cadence::Monthly => 12,
            Cadence::Quarterly => 4,
        }
    }

    /// The slot in which the Asia/Shanghai day `date` falls.
    fn slot_of_date(self, date: NaiveDate) -> i64 {
        let month0 = i64::from(date.month0());
        let within = match self {
            Cadence::Monthly => month0,
            Cadence::Quarterly => month0 / 3,
        };
        i64::from(date.year()) * self.per_year() + within
    }

    /// The slot of `at`, refusing an instant outside the years periods name.
    fn slot_of_instant(self, at: DateTime<Utc>) -> Result<i64, DueError> {
        let date = calendar::shanghai_date(at.fixed_offset());
        if (0..=MAX_YEAR).contains(&date.year()) {
            Ok(self.slot_of_date(date))
        } else {
            Err(DueError::OutOfRange)
        }
    }

    /// The scheduled instant of `slot`: 00:00 Asia/Shanghai of `day` in the slot's (first)
    /// month, or of its last day. `None` only outside chrono's years.
    fn run_at(self, slot: i64, day: DayOfMonth) -> Option<DateTime<Utc>> {
        let year = i32::try_from(slot.div_euclid(self.per_year())).ok()?;
        let within = u32::try_from(slot.rem_euclid(self.per_year())).ok()?;
        let month = match self {
            Cadence::Monthly => within + 1,
            Cadence::Quarterly => within * 3 + 1,
        };
        Some(calendar::start_of_day(day.in_month(year, month)?).to_utc())
    }

    /// The latest slot whose run is at or before `at` (the slot of `at`, or the one before
    /// when `at` precedes its run).
    fn latest_at_or_before(self, day: DayOfMonth, at: DateTime<Utc>) -> Result<i64, DueError> {
        let slot = self.slot_of_instant(at)?;
        let run = self.run_at(slot, day).ok_or(DueError::OutOfRange)?;
        Ok(if run <= at { slot } else { slot - 1 })
    }

    /// The first slot whose run is at or after `at`.
    fn first_at_or_after(self, day: DayOfMonth, at: DateTime<Utc>) -> Result<i64, DueError> {
        let slot = self.slot_of_instant(at)?;
        let run = self.run_at(slot, day).ok_or(DueError::OutOfRange)?;
        Ok(if run >= at { slot } else { slot + 1 })
    }

    /// The period named by `slot`; `None` outside 0000..=9999.
    fn period(self, slot: i64) -> Option<Period> {
        let slot = u32::try_from(slot).ok()?;
        match self {
            Cadence::Monthly => (slot < MONTH_SLOTS).then_some(Period(Slot::Month(slot))),
            Cadence::Quarterly => (slot < QUARTER_SLOTS).then_some(Period(Slot::Quarter(slot))),
        }
    }

    /// The slot of `period` when it is of this cadence's kind.
    fn slot_of_period(self, period: &Period) -> Option<i64> {
        match (self, period.0) {
            (Cadence::Monthly, Slot::Month(slot)) | (Cadence::Quarterly, Slot::Quarter(slot)) => Some(i64::from(slot)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Months;
    use proptest::prelude::*;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn sched(text: &str) -> Schedule {
        text.parse().unwrap()
    }

    fn period(text: &str) -> Period {
        text.parse().unwrap()
    }

    /// `due` for a report defined long ago, so that only `last_run` limits it.
    fn due_since_2020(schedule: &str, last_run: Option<&str>, now: &str) -> Option<Due> {
        let last = last_run.map(period);
        due(&sched(schedule), last.as_ref(), at(now), at("2020-01-01T00:00:00+08:00")).unwrap()
    }

    #[test]
    fn a_missing_day_runs_on_the_last_day_of_the_month() {
        let cases = [
            ("monthly:31", "2026-01", "2026-01-31T00:00:00+08:00"),
            ("monthly:31", "2026-04", "2026-04-30T00:00:00+08:00"),
            ("monthly:31", "2026-02", "2026-02-28T00:00:00+08:00"),
            ("monthly:31", "2028-02", "2028-02-29T00:00:00+08:00"),
            ("monthly:30", "2028-02", "2028-02-29T00:00:00+08:00"),
            ("monthly:29", "2026-02", "2026-02-28T00:00:00+08:00"),
            ("monthly:29", "2024-02", "2024-02-29T00:00:00+08:00"),
            ("monthly:28", "2026-02", "2026-02-28T00:00:00+08:00"),
            ("monthly:31", "2100-02", "2100-02-28T00:00:00+08:00"),
            ("monthly:1", "2026-12", "2026-12-01T00:00:00+08:00"),
            ("quarterly:31", "2026-Q1", "2026-01-31T00:00:00+08:00"),
            ("quarterly:31", "2026-Q2", "2026-04-30T00:00:00+08:00"),
            ("quarterly:31", "2026-Q3", "2026-07-31T00:00:00+08:00"),
            ("quarterly:31", "2026-Q4", "2026-10-31T00:00:00+08:00"),
        ];
        for (schedule, p, expected) in cases {
            assert_eq!(sched(schedule).scheduled_at(&period(p)), Ok(at(expected)), "{schedule} {p}");
        }
    }

    #[test]
    fn day_31_is_due_on_the_last_day_of_april_and_february_not_in_the_next_month() {
        let cases = [
            ("2026-03", "2026-04-30T00:00:00+08:00", "2026-04"),
            ("2026-01", "2026-02-28T00:00:00+08:00", "2026-02"),
            ("2028-01", "2028-02-29T00:00:00+08:00", "2028-02"),
        ];
        for (last, now, expected) in cases {
            let due = due_since_2020("monthly:31", Some(last), now).unwrap();
            assert_eq!((due.period, due.missed), (period(expected), 0), "{now}");
        }
        assert_eq!(due_since_2020("monthly:31", Some("2028-01"), "2028-02-28T23:59:59+08:00"), None);
    }

    #[test]
    fn a_run_is_due_at_shanghai_midnight_which_is_16_00_utc_the_day_before() {
        let just_before = due_since_2020("monthly:5", Some("2026-02"), "2026-03-04T15:59:59Z");
        assert_eq!(just_before, None);
        let on_time = due_since_2020("monthly:5", Some("2026-02"), "2026-03-04T16:00:00Z").unwrap();
        assert_eq!(on_time.period, period("2026-03"));
        assert_eq!(on_time.scheduled_at, Some(at("2026-03-04T16:00:00Z")));
        // The UTC date is still the 4th: a UTC calendar would wait eight more hours.
        assert_eq!(next_run(&sched("monthly:5"), at("2026-03-04T00:00:00Z")), Some(at("2026-03-04T16:00:00Z")));
    }

    #[test]
    fn quarters_turn_over_at_shanghai_midnight_of_their_first_day() {
        let cases = [
            ("2026-03-31T23:59:59+08:00", "2026-Q1"),
            ("2026-04-01T00:00:00+08:00", "2026-Q2"),
            ("2026-06-30T23:59:59+08:00", "2026-Q2"),
            ("2026-07-01T00:00:00+08:00", "2026-Q3"),
            ("2026-10-01T00:00:00+08:00", "2026-Q4"),
            ("2025-12-31T15:59:59Z", "2025-Q4"),
            ("2025-12-31T16:00:00Z", "2026-Q1"),
        ];
        for (now, expected) in cases {
            let due = due_since_2020("quarterly:1", Some("2025-Q3"), now).unwrap();
            assert_eq!(due.period, period(expected), "{now}");
        }
        let before_the_day = due_since_2020("quarterly:15", Some("2026-Q1"), "2026-04-14T23:59:59+08:00");
        assert_eq!(before_the_day, None);
    }

    #[test]
    fn a_report_never_runs_for_a_period_scheduled_before_it_was_defined() {
        let monthly_5 = sched("monthly:5");
        let defined = at("2026-03-20T10:00:00+08:00");
        for now in ["2026-03-20T10:00:00+08:00", "2026-03-31T23:59:59+08:00", "2026-04-04T23:59:59+08:00"] {
            assert_eq!(due(&monthly_5, None, at(now), defined), Ok(None), "{now}");
        }
        let first = due(&monthly_5, None, at("2026-04-05T00:00:00+08:00"), defined).unwrap().unwrap();
        assert_eq!((first.period, first.missed), (period("2026-04"), 0));

        // Defined before the day of its month: that month runs.
        let early = due(&monthly_5, None, at("2026-03-05T00:00:00+08:00"), at("2026-03-03T09:00:00+08:00"));
        assert_eq!(early.unwrap().unwrap().period, period("2026-03"));
        // Defined at the very instant of a run: that run is not before the definition.
        let instant = at("2026-03-05T00:00:00+08:00");
        assert_eq!(due(&monthly_5, None, instant, instant).unwrap().unwrap().period, period("2026-03"));
        // Defined one second after it: the next month.
        let late = instant + chrono::Duration::seconds(1);
        assert_eq!(due(&monthly_5, None, at("2026-04-04T23:00:00+08:00"), late), Ok(None));

        let quarterly = sched("quarterly:1");
        let defined = at("2026-02-10T00:00:00+08:00");
        assert_eq!(due(&quarterly, None, at("2026-03-31T12:00:00+08:00"), defined), Ok(None));
        let first = due(&quarterly, None, at("2026-04-01T00:00:00+08:00"), defined).unwrap().unwrap();
        assert_eq!((first.period, first.missed), (period("2026-Q2"), 0));
    }

    #[test]
    fn missed_months_are_caught_up_once_with_the_latest_and_counted() {
        let due = due_since_2020("monthly:5", Some("2026-01"), "2026-05-10T12:00:00+08:00").unwrap();
        assert_eq!(due.period, period("2026-05"));
        assert_eq!(due.scheduled_at, Some(at("2026-05-05T00:00:00+08:00")));
        assert_eq!(due.missed, 3);
        assert_eq!(due.skipped().collect::<Vec<_>>(), ["2026-02", "2026-03", "2026-04"].map(period));

        // Before the day in May, April is the latest owed.
        let due = due_since_2020("monthly:5", Some("2026-01"), "2026-05-04T12:00:00+08:00").unwrap();
        assert_eq!((due.period, due.missed), (period("2026-04"), 2));
    }

    #[test]
    fn missed_periods_without_a_previous_run_count_from_the_definition() {
        let defined = at("2026-01-10T00:00:00+08:00");
        let due = due(&sched("monthly:5"), None, at("2026-05-10T00:00:00+08:00"), defined).unwrap().unwrap();
        assert_eq!((due.period, due.missed), (period("2026-05"), 3));
        assert_eq!(due.skipped().collect::<Vec<_>>(), ["2026-02", "2026-03", "2026-04"].map(period));
    }

    #[test]
    fn missed_quarters_are_caught_up_once_across_a_year() {
        let due = due_since_2020("quarterly:1", Some("2025-Q3"), "2026-07-02T00:00:00+08:00").unwrap();
        assert_eq!((due.period, due.missed), (period("2026-Q3"), 3));
        assert_eq!(due.skipped().collect::<Vec<_>>(), ["2025-Q4", "2026-Q1", "2026-Q2"].map(period));
        let december = due_since_2020("monthly:1", Some("2025-11"), "2026-01-01T00:00:00+08:00").unwrap();
        assert_eq!((december.period, december.missed), (period("2026-01"), 1));
        assert_eq!(december.skipped().collect::<Vec<_>>(), [period("2025-12")]);
    }

    #[test]
    fn a_recorded_run_is_not_due_again_until_the_next_instant() {
        let schedule = sched("monthly:31");
        let defined = at("2026-01-01T00:00:00+08:00");
        let mut last: Option<Period> = None;
        let mut now = at("2026-01-31T00:00:00+08:00");
        let mut runs = Vec::new();
        for _ in 0..14 {
            let run = due(&schedule, last.as_ref(), now, defined).unwrap().unwrap();
            assert_eq!((run.scheduled_at, run.missed), (Some(now), 0));
            runs.push(run.period.to_string());
            last = Some(run.period);
            assert_eq!(due(&schedule, last.as_ref(), now, defined), Ok(None));
            let next = next_run(&schedule, now).unwrap();
            let just_before = next - chrono::Duration::nanoseconds(1);
            assert_eq!(due(&schedule, last.as_ref(), just_before, defined), Ok(None));
            now = next;
        }
        let expected: Vec<String> =
            (1..=12).map(|m| format!("2026-{m:02}")).chain(["2027-01".into(), "2027-02".into()]).collect();
        assert_eq!(runs, expected);
    }

    #[test]
    fn a_last_run_after_now_makes_nothing_due() {
        assert_eq!(due_since_2020("monthly:5", Some("2026-06"), "2026-03-10T00:00:00+08:00"), None);
        assert_eq!(due_since_2020("monthly:5", Some("2026-03"), "2026-03-10T00:00:00+08:00"), None);
        assert_eq!(due_since_2020("quarterly:1", Some("2027-Q1"), "2026-12-31T00:00:00+08:00"), None);
    }

    #[test]
    fn next_run_is_strictly_after_the_instant() {
        let cases = [
            ("monthly:5", "2026-03-05T00:00:00+08:00", "2026-04-05T00:00:00+08:00"),
            ("monthly:5", "2026-03-04T23:59:59+08:00", "2026-03-05T00:00:00+08:00"),
            ("monthly:31", "2026-01-31T00:00:00+08:00", "2026-02-28T00:00:00+08:00"),
            ("monthly:31", "2026-02-28T00:00:00+08:00", "2026-03-31T00:00:00+08:00"),
            ("quarterly:1", "2026-01-01T00:00:00+08:00", "2026-04-01T00:00:00+08:00"),
            ("quarterly:31", "2026-11-30T00:00:00+08:00", "2027-01-31T00:00:00+08:00"),
            ("quarterly:15", "2026-04-14T12:00:00+08:00", "2026-04-15T00:00:00+08:00"),
        ];
        for (schedule, after, expected) in cases {
            assert_eq!(next_run(&sched(schedule), at(after)), Some(at(expected)), "{schedule} after {after}");
        }
        assert_eq!(next_run(&Schedule::OnRelease, at("2026-01-01T00:00:00Z")), None);
        assert_eq!(next_run(&sched("monthly:1"), at("9999-12-01T00:00:00+08:00")), None);
    }

    #[test]
    fn schedules_read_back_from_the_text_they_write() {
        for text in ["monthly:1", "monthly:5", "monthly:31", "quarterly:1", "quarterly:31", "on-release"] {
            let schedule = sched(text);
            assert_eq!(schedule.to_string(), text);
            let json = serde_json::to_string(&schedule).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
        }
        assert_eq!(sched("monthly:5"), Schedule::Monthly { day: DayOfMonth::new(5).unwrap() });
        assert_eq!(sched("quarterly:1"), Schedule::Quarterly { day: DayOfMonth::new(1).unwrap() });
        assert_eq!(sched("on-release"), Schedule::OnRelease);
    }

    #[test]
    fn every_malformed_schedule_is_refused_naming_the_problem() {
        use ScheduleError::*;
        let cases = [
            ("monthly:32", DayOutOfRange("32".into()), "day 32 is not 1..=31"),
            ("monthly:0", DayOutOfRange("0".into()), "day 0 is not 1..=31"),
            (
                "quarterly:99999999999999999999",
                DayOutOfRange("99999999999999999999".into()),
                "day 99999999999999999999 is not 1..=31",
            ),
            ("monthly:256", DayOutOfRange("256".into()), "day 256 is not 1..=31"),
            ("monthly:05", DayLeadingZero("05".into()), "day `05` has a leading zero: write it without"),
            ("monthly:x", DayNotANumber("x".into()), "day `x` is not a number"),
            ("monthly:+5", DayNotANumber("+5".into()), "day `+5` is not a number"),
            ("monthly:5 ", DayNotANumber("5 ".into()), "day `5 ` is not a number"),
            ("monthly:-1", DayNotANumber("-1".into()), "day `-1` is not a number"),
            ("quarterly:1:2", DayNotANumber("1:2".into()), "day `1:2` is not a number"),
            ("monthly", MissingDay("monthly"), "`monthly` needs a day of the month: `monthly:DAY`, DAY 1..=31"),
            (
                "quarterly:",
                MissingDay("quarterly"),
                "`quarterly` needs a day of the month: `quarterly:DAY`, DAY 1..=31",
            ),
            ("", Unknown("".into()), "unknown schedule ``: expected `monthly:DAY`, `quarterly:DAY` or `on-release`"),
            (
                "weekly:1",
                Unknown("weekly:1".into()),
                "unknown schedule `weekly:1`: expected `monthly:DAY`, `quarterly:DAY` or `on-release`",
            ),
        ];
        for (text, error, message) in cases {
            let refused = text.parse::<Schedule>().unwrap_err();
            assert_eq!(refused, error, "{text}");
            assert_eq!(refused.to_string(), message, "{text}");
        }
        for unknown in
            ["Monthly:5", "MONTHLY:5", " monthly:5", "on-release:1", "on_release", "onrelease", "yearly:1", ":5"]
        {
            assert_eq!(unknown.parse::<Schedule>(), Err(Unknown(unknown.into())), "{unknown}");
        }
        assert!(serde_json::from_str::<Schedule>("\"monthly:32\"")
            .unwrap_err()
            .to_string()
            .contains("day 32 is not 1..=31"));
        assert!(serde_json::from_str::<Schedule>("{\"Monthly\":{\"day\":5}}").is_err());
        assert!(serde_json::from_str::<Schedule>("5").is_err());
        assert_eq!(DayOfMonth::new(0), Err(DayOutOfRange("0".into())));
        assert_eq!(DayOfMonth::new(32), Err(DayOutOfRange("32".into())));
        assert_eq!(DayOfMonth::new(31).map(DayOfMonth::get), Ok(31));
    }

    #[test]
    fn periods_read_back_from_the_text_they_write() {
        let cases = [
            (Period::month(2026, 3), "2026-03"),
            (Period::month(0, 1), "0000-01"),
            (Period::month(9999, 12), "9999-12"),
            (Period::quarter(2026, 2), "2026-Q2"),
            (Period::quarter(987, 4), "0987-Q4"),
            (Period::version(7), "v7"),
            (Period::version(u64::MAX), "v18446744073709551615"),
        ];
        for (built, text) in cases {
            let built = built.unwrap();
            assert_eq!(built.to_string(), text);
            assert_eq!(period(text), built);
            let json = serde_json::to_string(&built).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Period>(&json).unwrap(), built);
        }
        assert_eq!(period("v7").as_version(), Some(7));
        assert_eq!(period("2026-03").as_version(), None);
        assert!(period("2026-03") < period("2026-11") && period("2025-12") < period("2026-01"));
        assert!(period("2026-Q4") < period("2027-Q1") && period("v9") < period("v10"));
    }

    #[test]
    fn every_malformed_period_is_refused_naming_the_problem() {
        use PeriodError::*;
        let cases = [
            ("2026-13", MonthOutOfRange("13".into()), "month 13 is not 01..=12"),
            ("2026-00", MonthOutOfRange("00".into()), "month 00 is not 01..=12"),
            ("2026-Q5", QuarterOutOfRange("5".into()), "quarter Q5 is not Q1..=Q4"),
            ("2026-Q0", QuarterOutOfRange("0".into()), "quarter Q0 is not Q1..=Q4"),
            ("v0", Version("v0".into()), "`v0` is not a version: versions are v1, v2, … without leading zeros"),
            ("v07", Version("v07".into()), "`v07` is not a version: versions are v1, v2, … without leading zeros"),
            ("v", Version("v".into()), "`v` is not a version: versions are v1, v2, … without leading zeros"),
            ("v+7", Version("v+7".into()), "`v+7` is not a version: versions are v1, v2, … without leading zeros"),
            (
                "v18446744073709551616",
                Version("v18446744073709551616".into()),
                "`v18446744073709551616` is not a version: versions are v1, v2, … without leading zeros",
            ),
            ("2026-3", Malformed("2026-3".into()), "`2026-3` is not a period: expected `YYYY-MM`, `YYYY-Qn` or `vN`"),
        ];
        for (text, error, message) in cases {
            let refused = text.parse::<Period>().unwrap_err();
            assert_eq!(refused, error, "{text}");
            assert_eq!(refused.to_string(), message, "{text}");
        }
        for malformed in [
            "",
            "2026",
            "26-03",
            "12026-01",
            "2026-03-01",
            "2026-q2",
            "2026-Q22",
            "2026-Q",
            "2026/03",
            "V7",
            " 2026-03",
            "+026-03",
        ] {
            assert_eq!(malformed.parse::<Period>(), Err(Malformed(malformed.into())), "{malformed}");
        }
        assert_eq!(Period::month(2026, 13), None);
        assert_eq!(Period::month(10_000, 1), None);
        assert_eq!(Period::quarter(2026, 0), None);
        assert_eq!(Period::version(0), None);
    }

    #[test]
    fn a_period_of_another_kind_or_an_on_release_schedule_is_an_error_not_a_run() {
        let now = at("2026-05-10T00:00:00+08:00");
        let defined = at("2020-01-01T00:00:00+08:00");
        let monthly = sched("monthly:5");
        for last in ["2026-Q1", "v7"] {
            let error = due(&monthly, Some(&period(last)), now, defined).unwrap_err();
            assert_eq!(error, DueError::PeriodMismatch { schedule: monthly, period: period(last) });
            assert_eq!(error.to_string(), format!("period `{last}` is not a period of schedule `monthly:5`"));
        }
        let quarterly = sched("quarterly:1");
        assert!(matches!(
            due(&quarterly, Some(&period("2026-03")), now, defined),
            Err(DueError::PeriodMismatch { .. })
        ));
        assert_eq!(due(&Schedule::OnRelease, None, now, defined), Err(DueError::NotTimeBased));
        assert_eq!(Schedule::OnRelease.scheduled_at(&period("v1")), Err(DueError::NotTimeBased));
        assert!(matches!(monthly.scheduled_at(&period("2026-Q1")), Err(DueError::PeriodMismatch { .. })));
        assert!(matches!(
            due_on_release(Some(&period("2026-03")), None, Some(4)),
            Err(DueError::PeriodMismatch { .. })
        ));
    }

    #[test]
    fn instants_beyond_the_years_periods_name_are_an_error() {
        let monthly = sched("monthly:5");
        let defined = at("2020-01-01T00:00:00+08:00");
        let utc = |year| NaiveDate::from_ymd_opt(year, 6, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert_eq!(due(&monthly, None, utc(10_000), defined), Err(DueError::OutOfRange));
        assert_eq!(due(&monthly, None, at("2026-01-10T00:00:00+08:00"), utc(-1)), Err(DueError::OutOfRange));
        assert_eq!(next_run(&monthly, utc(10_000)), None);
        // 9999-12-31T16:00Z is already 10000-01-01 in Asia/Shanghai.
        assert_eq!(due(&monthly, None, at("9999-12-31T16:00:00Z"), defined), Err(DueError::OutOfRange));
        let last = due(&monthly, None, at("9999-12-31T23:59:59+08:00"), at("9999-12-01T00:00:00+08:00")).unwrap();
        assert_eq!(last.map(|due| due.period), Some(period("9999-12")));
    }

    #[test]
    fn on_release_runs_the_latest_version_newer_than_the_last_run() {
        let run = |last: Option<&str>, at_definition, latest| {
            let last = last.map(period);
            due_on_release(last.as_ref(), at_definition, latest)
                .unwrap()
                .map(|due| (due.period.to_string(), due.missed))
        };
        // Without a previous run: versions after the definition.
        assert_eq!(run(None, None, None), None);
        assert_eq!(run(None, None, Some(1)), Some(("v1".into(), 0)));
        assert_eq!(run(None, None, Some(3)), Some(("v3".into(), 2)));
        assert_eq!(run(None, Some(5), Some(5)), None);
        assert_eq!(run(None, Some(5), Some(6)), Some(("v6".into(), 0)));
        assert_eq!(run(None, Some(5), Some(8)), Some(("v8".into(), 2)));
        // With one.
        assert_eq!(run(Some("v7"), Some(5), Some(7)), None);
        assert_eq!(run(Some("v7"), Some(5), Some(6)), None);
        assert_eq!(run(Some("v7"), Some(5), None), None);
        assert_eq!(run(Some("v7"), Some(5), Some(8)), Some(("v8".into(), 0)));
        assert_eq!(run(Some("v7"), None, Some(10)), Some(("v10".into(), 2)));
        assert_eq!(run(Some("v2"), Some(5), Some(7)), Some(("v7".into(), 1)));
        assert_eq!(run(Some("v1"), None, Some(u64::MAX)), Some((format!("v{}", u64::MAX), u32::MAX)));

        let due = due_on_release(Some(&period("v7")), None, Some(10)).unwrap().unwrap();
        assert_eq!(due.scheduled_at, None);
        assert_eq!(due.skipped().collect::<Vec<_>>(), ["v8", "v9"].map(period));
        assert_eq!(due_on_release(Some(&period("v10")), None, Some(10)), Ok(None));
    }

    /// Whether `date` is a run day of `schedule`, from the rule as written (independent of the
    /// module's slot arithmetic).
    fn is_run_day(schedule: &Schedule, date: NaiveDate) -> bool {
        let first = date.with_day(1).unwrap();
        let last_day = (first + Months::new(1)).pred_opt().unwrap().day();
        let (day, months) = match schedule {
            Schedule::Monthly { day } => (day.get(), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12][..]),
            Schedule::Quarterly { day } => (day.get(), &[1, 4, 7, 10][..]),
            Schedule::OnRelease => unreachable!(),
        };
        months.contains(&date.month()) && date.day() == u32::from(day).min(last_day)
    }

    /// The period named by a run day, written out by hand.
    fn period_text(schedule: &Schedule, date: NaiveDate) -> String {
        match schedule {
            Schedule::Quarterly { .. } => format!("{:04}-Q{}", date.year(), date.month0() / 3 + 1),
            _ => format!("{:04}-{:02}", date.year(), date.month()),
        }
    }

    fn time_schedule() -> impl Strategy<Value = Schedule> {
        (any::<bool>(), prop_oneof![Just(1u8), 28..=31u8, 1..=31u8]).prop_map(|(monthly, day)| {
            let day = DayOfMonth::new(day).unwrap();
            if monthly {
                Schedule::Monthly { day }
            } else {
                Schedule::Quarterly { day }
            }
        })
    }

    /// Instants from 2023 to 2028, mostly where schedules are hard: days at the edges of months,
    /// at or a second either side of a Shanghai midnight (where runs are), or at 00:00 UTC.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        let day = prop_oneof![1..=2u32, 27..=31u32, 1..=31u32];
        (0..72u32, day, 0..86_400i64, 0..6u8).prop_map(|(month, day, seconds, near)| {
            let first = NaiveDate::from_ymd_opt(2023 + (month / 12) as i32, month % 12 + 1, 1).unwrap();
            let date = (first + Months::new(1)).pred_opt().unwrap().min(first + chrono::Days::new(u64::from(day) - 1));
            let offset = match near {
                0 => 0,
                1 => -1,
                2 => 1,
                3 => 8 * 3600, // 00:00 UTC
                _ => seconds,
            };
            calendar::start_of_day(date).to_utc() + chrono::Duration::seconds(offset)
        })
    }

    proptest! {
        #[test]
        fn due_is_the_latest_owed_run_and_counts_the_others(
            schedule in time_schedule(),
            defined_at in instant(),
            now in instant(),
            last_run_day in proptest::option::of(instant()),
        ) {
            let last_run = last_run_day.map(|at| period(&period_text(&schedule, calendar::shanghai_date(at.fixed_offset()))));
            let owed: Vec<(String, DateTime<Utc>)> = calendar::shanghai_date(defined_at.fixed_offset())
                .iter_days()
                .take_while(|day| *day <= calendar::shanghai_date(now.fixed_offset()))
                .filter(|day| is_run_day(&schedule, *day))
                .map(|day| (period_text(&schedule, day), calendar::start_of_day(day).to_utc()))
                .filter(|(text, at)| *at >= defined_at && *at <= now && last_run.is_none_or(|last| last.to_string() < *text))
                .collect();
            let answer = due(&schedule, last_run.as_ref(), now, defined_at).unwrap();
            match owed.last() {
                None => prop_assert_eq!(answer, None),
                Some((text, scheduled_at)) => {
                    let answer = answer.unwrap();
                    prop_assert_eq!(answer.period.to_string(), text.clone());
                    prop_assert_eq!(answer.scheduled_at, Some(*scheduled_at));
                    prop_assert_eq!(answer.missed as usize, owed.len() - 1);
                    let skipped: Vec<String> = answer.skipped().map(|p| p.to_string()).collect();
                    let expected: Vec<String> = owed[..owed.len() - 1].iter().map(|(text, _)| text.clone()).collect();
                    prop_assert_eq!(skipped, expected);
                    prop_assert_eq!(schedule.scheduled_at(&answer.period), Ok(*scheduled_at));
                    prop_assert_eq!(due(&schedule, Some(&answer.period), now, defined_at), Ok(None));
                }
            }
        }

        #[test]
        fn next_run_is_the_first_run_day_strictly_after(schedule in time_schedule(), after in instant()) {
            let expected = calendar::shanghai_date(after.fixed_offset())
                .iter_days()
                .take(130)
                .filter(|day| is_run_day(&schedule, *day))
                .map(|day| calendar::start_of_day(day).to_utc())
                .find(|run| *run > after);
            prop_assert_eq!(next_run(&schedule, after), expected);
        }

        #[test]
        fn text_forms_round_trip(schedule in time_schedule(), year in 0..=9999u16, month in 1..=12u8, version in 1..=u64::MAX) {
            prop_assert_eq!(schedule.to_string().parse::<Schedule>(), Ok(schedule));
            for p in [Period::month(year, month).unwrap(), Period::quarter(year, month % 4 + 1).unwrap(), Period::version(version).unwrap()] {
                prop_assert_eq!(p.to_string().parse::<Period>(), Ok(p));
            }
        }
    }
}
