//! Domain types: parsed, valid values that the rest of the gateway relies on.

pub mod classification;
pub mod dataset;
pub mod grant;
pub mod hold;
pub mod ids;
pub mod mask;
pub mod participant;
pub mod record;
pub mod values;

/// Whether caller-supplied free text (a title, a purpose, a reason) holds a control character
/// other than tab and line breaks. Such text is refused: NUL cannot be stored in a PostgreSQL
/// text column, and the others only hide what a reviewer reads.
pub fn has_control_chars(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}
