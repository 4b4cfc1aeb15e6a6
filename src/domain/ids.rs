//! Identifiers: parsed once at the edge, valid everywhere inside.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit; got `{value}`")]
pub struct InvalidId {
    /// Which identifier.
    pub kind: &'static str,
    /// The refused text (truncated to 80 characters).
    pub value: String,
}

fn check(kind: &'static str, s: &str) -> Result<(), InvalidId> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidId { kind, value: s.chars().take(80).collect() })
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier: 1–64 characters of `a-z 0-9 - _ .`, starting alphanumeric.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                check($kind, s)?;
                Ok($name(s.to_owned()))
            }

            /// The identifier's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                check($kind, &s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A participant's id; also the common name of its client certificate.
    ParticipantId,
    "participant id"
);
id_type!(
    /// A dataset's id, chosen by its owner.
    DatasetId,
    "dataset id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(ParticipantId::parse("tj-stats").is_ok());
        assert!(ParticipantId::parse("hk.univ_1").is_ok());
        for bad in ["", "-x", "Upper", "has space", &"a".repeat(65)] {
            assert!(ParticipantId::parse(bad).is_err(), "{bad}");
        }
    }
}
