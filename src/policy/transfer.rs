//! The transfer the rules read: who sends, who receives, what and how many persons — the one
//! input every table, the approvals and the counting share (so none of them depends on another
//! for it).

use chrono::{DateTime, FixedOffset};

use crate::domain::classification::{named_enum, Classification};
use crate::domain::participant::{ParticipantKind, RecipientType, Region};

named_enum! {
    /// Whether a transfer leaves mainland China (docs/rules.md §2).
    Direction, "direction" {
        /// Domestic sharing: the D-rows apply.
        Domestic = "DOMESTIC",
        /// An export (数据出境): the export table of the ruleset applies.
        Export = "EXPORT",
    }
}

/// The distinct natural persons a transfer carries, per bucket (docs/rules.md §3.1).
///
/// `already_counted_*` is how many of this transfer's persons are already inside the window's
/// count; it should not exceed the matching bucket (the JSON edge refuses that). The arithmetic
/// saturates, so an inconsistent value never wraps around: it just adds nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Persons {
    /// Distinct persons in the non-sensitive bucket (the transfer carries a `PI` field).
    pub nonsensitive: u64,
    /// Distinct persons in the sensitive bucket (the transfer carries an `SPI` field).
    pub sensitive: u64,
    /// Of `nonsensitive`, how many the window already counts.
    pub already_counted_nonsensitive: u64,
    /// Of `sensitive`, how many the window already counts.
    pub already_counted_sensitive: u64,
}

named_enum! {
    /// Which export table and counting window apply.
    #[derive(Default)]
    Ruleset, "ruleset" {
        /// CAC Order 16 of 2024: the default.
        #[default]
        Cn2024 = "CN2024",
        /// CAC Order 11 of 2022: replay of transfers dated 2022-09-01 … 2024-03-21.
        Cn2022 = "CN2022",
    }
}

named_enum! {
    /// An exemption claim (CAC Order 16 Art. 4, 5). Counts only when attested by an officer.
    #[derive(Default)]
    Exemption, "exemption" {
        /// No claim.
        #[default]
        None = "NONE",
        /// Data collected abroad, transiting (E2).
        ForeignOriginTransit = "FOREIGN_ORIGIN_TRANSIT",
        /// Needed to perform a contract with the individual (E3).
        ContractWithIndividual = "CONTRACT_WITH_INDIVIDUAL",
        /// Cross-border human-resources management (E3).
        CrossBorderHr = "CROSS_BORDER_HR",
        /// Protecting life, health or property in an emergency (E3).
        Emergency = "EMERGENCY",
    }
}

/// The organisation the data leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    /// Its participant id; approvals and the ledger are per exporter.
    pub id: String,
    /// State organ, CIIO or other (X5, X6, A2–A4, C1, C2, V1).
    pub kind: ParticipantKind,
    /// In the Tianjin free-trade zone (E4).
    pub in_tianjin_ftz: bool,
}

/// The organisation the data goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Its participant id (approval scope).
    pub id: String,
    /// Its type (X4, D2).
    pub kind: RecipientType,
    /// Where it is (export determination, approval scope).
    pub region: Region,
}

/// An exemption claim and the officer who attested it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemptionClaim {
    /// What is claimed.
    pub exemption: Exemption,
    /// The attesting officer; `None` means the claim is ignored.
    pub attested_by: Option<String>,
}

impl ExemptionClaim {
    /// The claim when it counts: attested and not `NONE`.
    pub fn attested(&self) -> Option<Exemption> {
        match (self.exemption, &self.attested_by) {
            (Exemption::None, _) | (_, None) => None,
            (exemption, Some(_)) => Some(exemption),
        }
    }
}

/// One field the transfer delivers (fields delivered as `REDACT` or `DROP` are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name (for the log and review queue; the rules do not read it).
    pub name: String,
    /// Its classification.
    pub classification: Classification,
}

/// Everything the rules read about one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Which export table and window apply.
    pub ruleset: Ruleset,
    /// When the transfer is authorised: approval validity and the counting window use it.
    pub at: DateTime<FixedOffset>,
    /// Who sends.
    pub exporter: Exporter,
    /// Who receives.
    pub recipient: Recipient,
    /// Remote query from outside mainland China (an export whatever the recipient region).
    pub access_from_outside_mainland: bool,
    /// Government data (X6, E4).
    pub government_data: bool,
    /// Stated purpose (approval scope).
    pub purpose: String,
    /// The statutory duty the recipient relies on (D6); `None` when none is recorded.
    pub legal_basis: Option<String>,
    /// The purpose is statistical (D2).
    pub statistical_purpose: bool,
    /// Exemption claim (E2, E3).
    pub exemption: ExemptionClaim,
    /// The delivered fields.
    pub fields: Vec<Field>,
    /// Distinct persons per bucket.
    pub persons: Persons,
}

impl Transfer {
    /// Export or domestic (docs/rules.md §2): an export when the recipient region is outside mainland
    /// China (`HK`, `MO`, `TW` included) or when accessed from outside the mainland.
    pub fn direction(&self) -> Direction {
        if self.access_from_outside_mainland || !self.recipient.region.is_mainland() {
            Direction::Export
        } else {
            Direction::Domestic
        }
    }
}
