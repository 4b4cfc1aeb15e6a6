//! What the engine decides: rule ids, mechanisms, actions, and the decision with its counts and hold requirement.

use super::approvals::{ApprovalOutcome, ApprovalType};
use super::counting::Counts;
pub use super::transfer::Direction;
use super::transfer::Ruleset;
use crate::domain::classification::named_enum;
use crate::domain::participant::Region;

named_enum! {
    /// A row of the rule tables (docs/rules.md §3, §3.3, §4). Wire names are stable: decisions and
    /// the transfer log record them. Declaration order is table order, so [`Fired`] iterates in
    /// the order the tables list the rows.
    RuleId, "rule" {
        /// Any field of level `X`.
        X1 = "X1",
        /// Any field of level `C`.
        X2 = "X2",
        /// Any statistical microdata field.
        X3 = "X3",
        /// Foreign judicial or law-enforcement recipient without an applicable competent-authority approval.
        X4 = "X4",
        /// State organ exporting personal information.
        X5 = "X5",
        /// State organ exporting non-personal government data of level G2–G4.
        X6 = "X6",
        /// No personal information and no important data.
        E1 = "E1",
        /// Attested foreign-origin transit.
        E2 = "E2",
        /// Attested contract with the individual, cross-border HR or emergency.
        E3 = "E3",
        /// Tianjin FTZ exporter, no negative-list field.
        E4 = "E4",
        /// Important data.
        A1 = "A1",
        /// CIIO exporting personal information.
        A2 = "A2",
        /// Sensitive persons reaching the security-assessment threshold.
        A3 = "A3",
        /// Non-sensitive persons reaching the security-assessment threshold.
        A4 = "A4",
        /// Sensitive personal information below the security-assessment threshold.
        C1 = "C1",
        /// Non-sensitive persons between the contract and security-assessment thresholds.
        C2 = "C2",
        /// Non-sensitive personal information below the contract threshold.
        V1 = "V1",
        /// `CN2022`: important data.
        A1Cn2022 = "A1'",
        /// `CN2022`: CIIO exporting personal information.
        A2Cn2022 = "A2'",
        /// `CN2022`: personal information with a window count reaching a threshold.
        A3Cn2022 = "A3'",
        /// `CN2022`: any other personal information.
        CCn2022 = "C'",
        /// Domestic: any field of level `X`.
        D1 = "D1",
        /// Domestic: statistical microdata, unless to a statistics agency for a statistical purpose.
        D2 = "D2",
        /// Domestic: any `NOT_SHARED` field.
        D3 = "D3",
        /// Domestic aggregate pulls: a cell failing disclosure control. Never produced by this
        /// engine; the disclosure-control module reports it.
        D4 = "D4",
        /// Domestic: important or core data.
        D5 = "D5",
        /// Domestic: personal information without a recorded legal basis.
        D6 = "D6",
        /// Domestic: none of the above.
        D7 = "D7",
    }
}

impl RuleId {
    /// The mechanism this row yields when it fires.
    pub fn mechanism(self) -> Mechanism {
        use Mechanism::*;
        use RuleId::*;
        match self {
            X1 | X2 | X3 | X4 | D1 | D2 | D3 => Deny,
            X5 | A1 | A2 | A3 | A4 | A1Cn2022 | A2Cn2022 | A3Cn2022 => RequiresSecurityAssessment,
            X6 | D5 | D6 => RequiresOfficerApproval,
            C1 | C2 | CCn2022 => AllowWithSccFiling,
            E1 | E2 | E3 | E4 | V1 | D4 | D7 => Allow,
        }
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

/// The rows that fired, as a set iterated in table order. Copy, allocation-free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fired(u64);

impl Fired {
    /// Adds a row.
    pub fn insert(&mut self, rule: RuleId) {
        self.0 |= rule.bit();
    }

    /// Adds a row when `fires`.
    pub fn insert_if(&mut self, fires: bool, rule: RuleId) {
        if fires {
            self.insert(rule);
        }
    }

    /// Whether `rule` fired.
    pub fn contains(self, rule: RuleId) -> bool {
        self.0 & rule.bit() != 0
    }

    /// Whether no row fired.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The rows that fired, in table order.
    pub fn iter(self) -> impl Iterator<Item = RuleId> {
        RuleId::ALL.iter().copied().filter(move |r| self.contains(*r))
    }

    /// The most severe mechanism among the rows that fired; `ALLOW` when none did.
    pub fn mechanism(self) -> Mechanism {
        self.iter().map(RuleId::mechanism).max().unwrap_or(Mechanism::Allow)
    }
}

named_enum! {
    /// How a transfer may proceed. The derived order is severity, least severe first, so the
    /// result of a table is the `max` of its fired rows.
    Mechanism, "mechanism" {
        /// May proceed.
        Allow = "ALLOW",
        /// Needs a filed standard contract (or PI certification, or a security assessment).
        AllowWithSccFiling = "ALLOW_WITH_SCC_FILING",
        /// Needs the gateway officer's approval.
        RequiresOfficerApproval = "REQUIRES_OFFICER_APPROVAL",
        /// Needs a passed CAC security assessment.
        RequiresSecurityAssessment = "REQUIRES_SECURITY_ASSESSMENT",
        /// Never.
        Deny = "DENY",
    }
}

impl Mechanism {
    /// The approval types that satisfy this mechanism (docs/rules.md §3.2); empty for `ALLOW`
    /// (needs none) and `DENY` (nothing overrides it).
    pub fn satisfied_by(self) -> &'static [ApprovalType] {
        match self {
            Mechanism::Allow | Mechanism::Deny => &[],
            Mechanism::AllowWithSccFiling => {
                &[ApprovalType::SccFiling, ApprovalType::PiCertification, ApprovalType::CacSa]
            }
            Mechanism::RequiresOfficerApproval => &[ApprovalType::OfficerApproval],
            Mechanism::RequiresSecurityAssessment => &[ApprovalType::CacSa],
        }
    }
}

named_enum! {
    /// What the gateway does with the transfer.
    Action, "action" {
        /// Send it (and count it, for an export).
        Pass = "PASS",
        /// Queue it for an officer: an approval is missing.
        Hold = "HOLD",
        /// Refuse it.
        Block = "BLOCK",
    }
}

/// What an approval must cover for a held transfer to pass: the officers' review-queue item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequirement {
    /// The mechanism to satisfy (never `ALLOW` or `DENY`).
    pub mechanism: Mechanism,
    /// Any one of these types, applicable, satisfies it.
    pub satisfied_by: &'static [ApprovalType],
    /// The exporter the approval must be granted to.
    pub exporter: String,
    /// The recipient id its scope must cover.
    pub recipient: String,
    /// The recipient region its scope must cover.
    pub region: Region,
    /// The purpose its scope must cover.
    pub purpose: String,
    /// The counts its maxima must not be below (`*_after`).
    pub counts: Counts,
}

/// The engine's answer for one transfer.
///
/// Invariants: `action` is `Block` iff `mechanism` is `Deny`; `Pass` iff `mechanism` is `Allow`
/// or `approval` is `Valid`; `hold` is `Some` iff `action` is `Hold`; `rules` is never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Export or domestic sharing.
    pub direction: Direction,
    /// The ruleset evaluated (the domestic table is the same in every ruleset).
    pub ruleset: Ruleset,
    /// The most severe mechanism among the rows that fired.
    pub mechanism: Mechanism,
    /// What to do.
    pub action: Action,
    /// Every row that fired, in table order.
    pub rules: Fired,
    /// The approval used, or the closest candidate and why it did not apply; `None` when the
    /// mechanism needs no approval or there is no candidate. For `ALLOW`, and for a `DENY` due
    /// to X4, it is the competent-authority outcome (`authority`).
    pub approval: Option<ApprovalOutcome>,
    /// For an export to a foreign judicial or law-enforcement body: the competent-authority
    /// approval that switched X4 off, or the closest candidate.
    pub authority: Option<ApprovalOutcome>,
    /// Window and persons before and after this transfer.
    pub counts: Counts,
    /// What an approval must cover, when held.
    pub hold: Option<HoldRequirement>,
}

impl Decision {
    /// Whether the transfer is an export.
    pub fn is_export(&self) -> bool {
        self.direction == Direction::Export
    }

    /// What the server adds to the exporter's ledger once it sends the transfer: `Some((non-
    /// sensitive, sensitive))` for a passed export (exempt ones too, docs/rules.md §3.1), `None` for
    /// held or blocked transfers and for domestic sharing, which do not enter the export counts.
    pub fn ledger_entry(&self) -> Option<(u64, u64)> {
        (self.is_export() && self.action == Action::Pass).then(|| self.counts.added())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fired_rows_iterate_in_table_order() {
        let mut fired = Fired::default();
        for r in [RuleId::V1, RuleId::X5, RuleId::A1, RuleId::X3] {
            fired.insert(r);
        }
        let order: Vec<_> = fired.iter().map(RuleId::as_str).collect();
        assert_eq!(order, ["X3", "X5", "A1", "V1"]);
        assert_eq!(fired.mechanism(), Mechanism::Deny);
        assert_eq!(Fired::default().mechanism(), Mechanism::Allow);
        assert!(RuleId::ALL.len() <= 64);
    }

    #[test]
    fn mechanisms_are_ordered_by_severity() {
        use Mechanism::*;
        let ordered = [Allow, AllowWithSccFiling, RequiresOfficerApproval, RequiresSecurityAssessment, Deny];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn cn2022_rows_have_primed_wire_names() {
        let names: Vec<_> =
            [RuleId::A1Cn2022, RuleId::A2Cn2022, RuleId::A3Cn2022, RuleId::CCn2022].map(RuleId::as_str).into();
        assert_eq!(names, ["A1'", "A2'", "A3'", "C'"]);
        assert_eq!("C'".parse::<RuleId>(), Ok(RuleId::CCn2022));
    }
}
