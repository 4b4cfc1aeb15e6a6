//! Domain types: parsed, valid values that the rest of the gateway relies on.

pub mod classification;
pub mod dataset;
pub mod grant;
pub mod hold;
pub mod ids;
pub mod mask;
pub mod participant;
pub mod record;
pub mod review;
/// Standing reports' schedules: the one run due now in the Asia/Shanghai calendar, and its period.
pub mod schedule;
pub mod values;

use chrono::FixedOffset;

/// Asia/Shanghai as a fixed offset, UTC+8: the one definition of the zone in which the rules
/// count days (`policy::calendar`) and records and masks show local times.
///
/// China has observed no daylight-saving time since 1991, so a fixed offset is exact for every
/// date the rulesets can meet (the oldest, `CN2022`, starts in 2022) and needs no tz database.
pub const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// Why caller-supplied free text (a title, a purpose, a reason) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Longer than its limit, in bytes.
    #[error("at most {0} bytes")]
    TooLong(usize),
    /// A control character other than tab and line breaks: NUL cannot be stored in a PostgreSQL
    /// text column, and the others only hide what a reviewer reads.
    #[error("contains a control character")]
    ControlCharacter,
}

/// Checks free text against a limit of `max` bytes and for control characters.
///
/// # Errors
/// [`TextError`] saying which.
pub fn check_free_text(text: &str, max: usize) -> Result<(), TextError> {
    if text.len() > max {
        return Err(TextError::TooLong(max));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(TextError::ControlCharacter);
    }
    Ok(())
}
