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
