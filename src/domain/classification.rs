//! Field classification (docs/rules.md §1): levels, personal-information flags, share attributes.

use serde::{Deserialize, Serialize};

/// The error of parsing one of this module's enums from its wire name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownName {
    /// What was being parsed (`level`, `pi`, …).
    pub kind: &'static str,
    /// The text that matched no variant.
    pub value: String,
}

/// Declares a closed enum whose variants have stable upper-case wire names, with `FromStr`,
/// `Display` and serde in those names.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::classification::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::classification::UnknownName { kind: $kind, value: s.to_owned() }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

named_enum! {
    /// Classification grade. The derived order is the spec's: `G1 < G2 < G3 < G4 < I < C < X`.
    Level, "level" {
        /// Public: lawfully published data.
        G1 = "G1",
        /// Internal general data, no personal information.
        G2 = "G2",
        /// Restricted: ordinary personal information, unpublished statistics.
        G3 = "G3",
        /// Sensitive: sensitive personal information, identifiable survey material.
        G4 = "G4",
        /// Important data (重要数据).
        I = "I",
        /// Core data (核心数据).
        C = "C",
        /// Secret: never enters the gateway.
        X = "X",
    }
}

named_enum! {
    /// Personal-information flag. Ordered `NONE < PI < SPI`.
    #[derive(Default)]
    Pi, "pi" {
        /// No personal information.
        #[default]
        None = "NONE",
        /// Personal information.
        Pi = "PI",
        /// Sensitive personal information (PIPL Art. 28).
        Spi = "SPI",
    }
}

named_enum! {
    /// The government catalogue's share attribute. No default: every field carries one (an
    /// unset share attribute is refused at the edge).
    Share, "share" {
        /// 无条件共享: may be granted by default.
        Unconditional = "UNCONDITIONAL",
        /// 有条件共享: shared only under an owner-approved grant.
        Conditional = "CONDITIONAL",
        /// 不予共享: never shared (rule D3).
        NotShared = "NOT_SHARED",
    }
}

/// The classification of one field: its level and flags (docs/rules.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The grade.
    pub level: Level,
    /// Personal information carried by the field.
    pub pi: Pi,
    /// Identifiable statistical survey material (统计法 Art. 28).
    pub stat_micro: bool,
    /// Catalogue share attribute.
    pub share: Share,
    /// The field falls in a category of the Tianjin FTZ data-export negative list.
    pub ftz_negative_list: bool,
}

/// Why a classification violates the invariants of docs/rules.md §1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassificationError {
    /// `PI` needs level `G3` or above.
    #[error("pi PI requires level G3 or above, got {0}")]
    PiBelowG3(Level),
    /// `SPI` needs level `G4` or above.
    #[error("pi SPI requires level G4 or above, got {0}")]
    SpiBelowG4(Level),
    /// Statistical microdata needs level `G4` or above.
    #[error("stat_micro requires level G4 or above, got {0}")]
    StatMicroBelowG4(Level),
    /// Secret data never enters the gateway.
    #[error("level X (secret) never enters the gateway")]
    Secret,
}

impl Classification {
    /// Builds a classification, applying the spec's default for `ftz_negative_list` (true when
    /// `pi ≠ NONE`) when `ftz_negative_list` is `None`.
    pub fn new(level: Level, pi: Pi, stat_micro: bool, share: Share, ftz_negative_list: Option<bool>) -> Self {
        Classification { level, pi, stat_micro, share, ftz_negative_list: ftz_negative_list.unwrap_or(pi != Pi::None) }
    }

    /// Checks the registration invariants: `PI ⇒ ≥ G3`, `SPI ⇒ ≥ G4`, `stat_micro ⇒ ≥ G4`.
    /// Level `X` is not an invariant violation here (the assessment engine must still be able
    /// to reason about it); [`Classification::admissible`] refuses it for the catalog.
    pub fn check_invariants(&self) -> Result<(), ClassificationError> {
        match self.pi {
            Pi::Pi if self.level < Level::G3 => return Err(ClassificationError::PiBelowG3(self.level)),
            Pi::Spi if self.level < Level::G4 => return Err(ClassificationError::SpiBelowG4(self.level)),
            _ => {}
        }
        if self.stat_micro && self.level < Level::G4 {
            return Err(ClassificationError::StatMicroBelowG4(self.level));
        }
        Ok(())
    }

    /// The invariants plus the catalog's own rule: a field of level `X` is refused.
    pub fn admissible(&self) -> Result<(), ClassificationError> {
        if self.level == Level::X {
            return Err(ClassificationError::Secret);
        }
        self.check_invariants()
    }
}

/// The classification of a set of fields (就高从严): max level, max pi, flags ORed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetSummary {
    /// Highest level in the set (`None` for an empty set).
    pub level: Option<Level>,
    /// Highest personal-information flag.
    pub pi: Pi,
    /// Some field is `PI` (not only `SPI`).
    pub has_pi: bool,
    /// Some field is `SPI`.
    pub has_spi: bool,
    /// Some field is statistical microdata.
    pub stat_micro: bool,
    /// Some field is `NOT_SHARED`.
    pub not_shared: bool,
    /// Some field is on the FTZ negative list.
    pub ftz_negative_list: bool,
    /// Some field is level `X`.
    pub has_x: bool,
    /// Some field is level `C`.
    pub has_c: bool,
    /// Some field is level `I`.
    pub has_i: bool,
}

impl SetSummary {
    /// Summarises the classifications of the fields a transfer carries.
    pub fn of<'a>(fields: impl IntoIterator<Item = &'a Classification>) -> Self {
        let mut s = SetSummary::default();
        for c in fields {
            s.level = Some(s.level.map_or(c.level, |l| l.max(c.level)));
            s.pi = s.pi.max(c.pi);
            s.has_pi |= c.pi == Pi::Pi;
            s.has_spi |= c.pi == Pi::Spi;
            s.stat_micro |= c.stat_micro;
            s.not_shared |= c.share == Share::NotShared;
            s.ftz_negative_list |= c.ftz_negative_list;
            s.has_x |= c.level == Level::X;
            s.has_c |= c.level == Level::C;
            s.has_i |= c.level == Level::I;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_as_the_spec_says() {
        let ordered = [Level::G1, Level::G2, Level::G3, Level::G4, Level::I, Level::C, Level::X];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Level::ALL, &ordered);
    }

    #[test]
    fn pi_below_g3_is_refused() {
        let c = Classification::new(Level::G2, Pi::Pi, false, Share::Conditional, None);
        assert_eq!(c.check_invariants(), Err(ClassificationError::PiBelowG3(Level::G2)));
        let c = Classification::new(Level::G3, Pi::Spi, false, Share::Conditional, None);
        assert_eq!(c.check_invariants(), Err(ClassificationError::SpiBelowG4(Level::G3)));
        let c = Classification::new(Level::G3, Pi::None, true, Share::Conditional, None);
        assert_eq!(c.check_invariants(), Err(ClassificationError::StatMicroBelowG4(Level::G3)));
        let c = Classification::new(Level::G4, Pi::Spi, true, Share::Conditional, None);
        assert_eq!(c.check_invariants(), Ok(()));
    }

    #[test]
    fn level_x_is_not_admissible() {
        let c = Classification::new(Level::X, Pi::None, false, Share::Conditional, None);
        assert_eq!(c.admissible(), Err(ClassificationError::Secret));
    }

    #[test]
    fn ftz_negative_list_defaults_to_pi() {
        assert!(Classification::new(Level::G3, Pi::Pi, false, Share::Conditional, None).ftz_negative_list);
        assert!(!Classification::new(Level::G3, Pi::None, false, Share::Conditional, None).ftz_negative_list);
        assert!(!Classification::new(Level::G3, Pi::Pi, false, Share::Conditional, Some(false)).ftz_negative_list);
    }

    #[test]
    fn a_set_takes_the_highest_grade() {
        let a = Classification::new(Level::G2, Pi::None, false, Share::Unconditional, None);
        let b = Classification::new(Level::G4, Pi::Spi, false, Share::Conditional, None);
        let s = SetSummary::of([&a, &b]);
        assert_eq!(s.level, Some(Level::G4));
        assert_eq!(s.pi, Pi::Spi);
        assert!(s.has_spi && !s.has_pi && s.ftz_negative_list);
    }

    #[test]
    fn names_round_trip() {
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>().unwrap(), *l);
        }
        assert!("G5".parse::<Level>().is_err());
    }
}
