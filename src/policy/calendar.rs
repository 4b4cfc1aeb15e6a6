//! The Asia/Shanghai calendar in which the rules count days, validity periods and windows.

use chrono::{DateTime, Datelike, FixedOffset, Months, NaiveDate};

use crate::domain::SHANGHAI;

/// The calendar day in Asia/Shanghai on which the instant `at` falls.
pub fn shanghai_date(at: DateTime<FixedOffset>) -> NaiveDate {
    at.with_timezone(&SHANGHAI).date_naive()
}

/// Midnight at the start of `day` in Asia/Shanghai, as an instant.
///
/// Saturates to the earliest representable instant for days at the very start of chrono's
/// range (a fixed offset otherwise maps every local time to exactly one instant).
pub fn start_of_day(day: NaiveDate) -> DateTime<FixedOffset> {
    day.and_time(chrono::NaiveTime::MIN)
        .and_local_timezone(SHANGHAI)
        .earliest()
        .unwrap_or(DateTime::<chrono::Utc>::MIN_UTC.with_timezone(&SHANGHAI))
}

/// Parses a calendar day written `YYYY-MM-DD`.
///
/// # Errors
/// When `text` is not a valid date in that format.
pub fn parse_day(text: &str) -> Result<NaiveDate, chrono::ParseError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
}

/// The same calendar day `years` later ("the period ends on the same calendar day of the final
/// year"). A 29 February whose target year has none ends on 28 February, the last day of that
/// month: the period never runs longer than the stated years. Saturates at chrono's last day.
pub fn same_day_years_later(day: NaiveDate, years: u32) -> NaiveDate {
    day.checked_add_months(Months::new(years.saturating_mul(12))).unwrap_or(NaiveDate::MAX)
}

/// 1 January of the year `years_back` years before the Asia/Shanghai year of `at`.
/// Saturates at chrono's first day.
pub fn first_of_january(at: DateTime<FixedOffset>, years_back: u32) -> NaiveDate {
    let back = i32::try_from(years_back).unwrap_or(i32::MAX);
    shanghai_date(at)
        .year()
        .checked_sub(back)
        .and_then(|year| NaiveDate::from_ymd_opt(year, 1, 1))
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        parse_day(text).unwrap()
    }

    #[test]
    fn instants_fall_on_their_shanghai_day() {
        let cases = [
            ("2025-06-01T10:00:00+08:00", "2025-06-01"),
            ("2024-10-10T15:59:59Z", "2024-10-10"),
            ("2024-10-10T16:00:00Z", "2024-10-11"),
            ("2024-12-31T20:00:00-05:00", "2025-01-01"),
        ];
        for (instant, expected) in cases {
            assert_eq!(shanghai_date(at(instant)), day(expected), "{instant}");
        }
    }

    #[test]
    fn periods_end_on_the_same_calendar_day() {
        let cases = [
            ("2022-10-10", 2, "2024-10-10"),
            ("2024-03-22", 3, "2027-03-22"),
            ("2024-02-29", 3, "2027-02-28"),
            ("2024-02-29", 4, "2028-02-29"),
        ];
        for (issued, years, expected) in cases {
            assert_eq!(same_day_years_later(day(issued), years), day(expected), "{issued}+{years}");
        }
    }

    #[test]
    fn windows_start_on_the_first_of_january_in_shanghai() {
        let cases = [
            ("2025-06-01T10:00:00+08:00", 0, "2025-01-01"),
            ("2025-06-01T10:00:00+08:00", 1, "2024-01-01"),
            ("2024-12-31T17:00:00Z", 0, "2025-01-01"),
        ];
        for (instant, back, expected) in cases {
            assert_eq!(first_of_january(at(instant), back), day(expected), "{instant}");
        }
        assert_eq!(start_of_day(day("2025-01-01")), at("2024-12-31T16:00:00Z"));
    }

    #[test]
    fn malformed_days_are_refused() {
        for bad in ["2025-02-30", "2025/01/01", "", "2025-01-01T00:00:00+08:00"] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
