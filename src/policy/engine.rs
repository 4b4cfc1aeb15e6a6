//! The export tables `CN2024` and `CN2022` (docs/rules.md §3, §3.3) and the domestic table (§4): a transfer in, a decision out.

use super::approvals::{self, Approval, ApprovalCheck, ApprovalType};
use super::config::PolicyConfig;
use super::counting::{Counts, WindowTotals};
use super::decision::{Action, Decision, Direction, Fired, HoldRequirement, Mechanism, RuleId};
use super::transfer::{Exemption, Ruleset, Transfer};
use crate::domain::classification::{Level, Pi, SetSummary};
use crate::domain::participant::{ParticipantKind, RecipientType};

/// Decides one transfer. Pure and infallible.
///
/// `totals` are the exporter's distinct persons already counted in `transfer.window(config)`
/// (see [`WindowTotals::sum`]); `approvals` are the recorded approvals (any exporter, any
/// state: the engine filters). Evaluates every row of the applicable table; the mechanism is the
/// most severe among the rows that fired, and the action follows docs/rules.md §3.2.
pub fn assess(transfer: &Transfer, totals: WindowTotals, approvals: &[Approval], config: &PolicyConfig) -> Decision {
    let counts = Counts::new(&transfer.window(config), totals, &transfer.persons);
    let set = SetSummary::of(transfer.fields.iter().map(|f| &f.classification));
    let direction = transfer.direction();

    let (rules, authority) = match direction {
        Direction::Domestic => (domestic(transfer, &set), None),
        Direction::Export => {
            let authority = (transfer.recipient.kind == RecipientType::ForeignJudicialOrLe)
                .then(|| approvals::closest(approvals, &[ApprovalType::CompetentAuthority], transfer, &counts, config))
                .flatten();
            let authorised = authority.as_ref().is_some_and(|a| a.check == ApprovalCheck::Valid);
            let facts = Facts { transfer, set: &set, counts: &counts, config, authorised };
            let rules = match transfer.ruleset {
                Ruleset::Cn2024 => facts.cn2024(),
                Ruleset::Cn2022 => facts.cn2022(),
            };
            (rules, authority)
        }
    };

    let mechanism = rules.mechanism();
    let (action, approval) = match mechanism {
        Mechanism::Deny => (Action::Block, if rules.contains(RuleId::X4) { authority.clone() } else { None }),
        Mechanism::Allow => (Action::Pass, authority.clone()),
        _ => {
            let approval = approvals::closest(approvals, mechanism.satisfied_by(), transfer, &counts, config);
            let satisfied = approval.as_ref().is_some_and(|a| a.check == ApprovalCheck::Valid);
            (if satisfied { Action::Pass } else { Action::Hold }, approval)
        }
    };
    let hold = (action == Action::Hold).then(|| HoldRequirement {
        mechanism,
        satisfied_by: mechanism.satisfied_by(),
        exporter: transfer.exporter.id.clone(),
        recipient: transfer.recipient.id.clone(),
        region: transfer.recipient.region.clone(),
        purpose: transfer.purpose.clone(),
        counts,
    });

    Decision { direction, ruleset: transfer.ruleset, mechanism, action, rules, approval, authority, counts, hold }
}

/// The domestic table (docs/rules.md §4; D4 belongs to aggregate pulls). D7 fires when no other row
/// does.
fn domestic(transfer: &Transfer, set: &SetSummary) -> Fired {
    let statistical_use = transfer.recipient.kind == RecipientType::StatisticsAgency && transfer.statistical_purpose;
    let mut fired = Fired::default();
    fired.insert_if(set.has_x, RuleId::D1);
    fired.insert_if(set.stat_micro && !statistical_use, RuleId::D2);
    fired.insert_if(set.not_shared, RuleId::D3);
    fired.insert_if(set.has_i || set.has_c, RuleId::D5);
    fired.insert_if(set.pi != Pi::None && transfer.legal_basis.is_none(), RuleId::D6);
    fired.insert_if(fired.is_empty(), RuleId::D7);
    fired
}

/// What the export rows read, computed once.
struct Facts<'a> {
    transfer: &'a Transfer,
    set: &'a SetSummary,
    counts: &'a Counts,
    config: &'a PolicyConfig,
    /// An applicable `COMPETENT_AUTHORITY` approval exists (switches X4 off).
    authorised: bool,
}

impl Facts<'_> {
    /// X1–X6 and E1, common to both rulesets.
    fn common(&self) -> Fired {
        let (t, set) = (self.transfer, self.set);
        let state_organ = t.exporter.kind == ParticipantKind::StateOrgan;
        let has_pi = set.pi != Pi::None;
        let mut fired = Fired::default();
        fired.insert_if(set.has_x, RuleId::X1);
        fired.insert_if(set.has_c, RuleId::X2);
        fired.insert_if(set.stat_micro, RuleId::X3);
        fired.insert_if(t.recipient.kind == RecipientType::ForeignJudicialOrLe && !self.authorised, RuleId::X4);
        fired.insert_if(state_organ && has_pi, RuleId::X5);
        fired.insert_if(
            t.government_data && state_organ && !has_pi && matches!(set.level, Some(Level::G2 | Level::G3 | Level::G4)),
            RuleId::X6,
        );
        fired.insert_if(!has_pi && !set.has_i, RuleId::E1);
        fired
    }

    /// The `CN2024` table (docs/rules.md §3).
    fn cn2024(&self) -> Fired {
        let (t, set, counts, config) = (self.transfer, self.set, self.counts, self.config);
        let mut fired = self.common();
        let claim = t.exemption.attested();
        fired.insert_if(claim == Some(Exemption::ForeignOriginTransit) && !set.has_i, RuleId::E2);
        fired.insert_if(
            matches!(claim, Some(Exemption::ContractWithIndividual | Exemption::CrossBorderHr | Exemption::Emergency))
                && !set.has_i,
            RuleId::E3,
        );
        fired.insert_if(
            t.exporter.in_tianjin_ftz && !t.government_data && !set.ftz_negative_list && !set.has_i && !set.has_c,
            RuleId::E4,
        );
        fired.insert_if(set.has_i, RuleId::A1);

        // E2–E4 switch off the personal-information rows; never X-rows or A1.
        let exempt = [RuleId::E2, RuleId::E3, RuleId::E4].into_iter().any(|r| fired.contains(r));
        if exempt {
            return fired;
        }
        let ciio = t.exporter.kind == ParticipantKind::Ciio;
        let (nonsensitive, sensitive) = (counts.nonsensitive_after, counts.sensitive_after);
        let sa_sensitive = sensitive >= config.security_assessment_sensitive;
        let sa_nonsensitive = nonsensitive >= config.security_assessment_nonsensitive;
        let scc_nonsensitive = nonsensitive >= config.scc_nonsensitive;
        fired.insert_if(ciio && set.pi != Pi::None, RuleId::A2);
        fired.insert_if(!ciio && set.has_spi && sa_sensitive, RuleId::A3);
        fired.insert_if(!ciio && set.has_pi && sa_nonsensitive, RuleId::A4);
        fired.insert_if(!ciio && set.has_spi && !sa_sensitive, RuleId::C1);
        fired.insert_if(!ciio && set.has_pi && scc_nonsensitive && !sa_nonsensitive, RuleId::C2);
        fired.insert_if(!ciio && set.has_pi && !set.has_spi && !scc_nonsensitive, RuleId::V1);
        fired
    }

    /// The `CN2022` table (docs/rules.md §3.3): no E2–E4, no V1. A3' and C' need personal
    /// information in the transfer (Order 11 Art. 4 concerns providing personal information);
    /// C' fires for personal information that neither A2' nor A3' caught.
    fn cn2022(&self) -> Fired {
        let (t, set, counts, config) = (self.transfer, self.set, self.counts, self.config);
        let mut fired = self.common();
        let has_pi = set.pi != Pi::None;
        let over = counts.nonsensitive_after >= config.cn2022_security_assessment_nonsensitive
            || counts.sensitive_after >= config.cn2022_security_assessment_sensitive;
        fired.insert_if(set.has_i, RuleId::A1Cn2022);
        fired.insert_if(t.exporter.kind == ParticipantKind::Ciio && has_pi, RuleId::A2Cn2022);
        fired.insert_if(has_pi && over, RuleId::A3Cn2022);
        fired.insert_if(
            has_pi && !fired.contains(RuleId::A2Cn2022) && !fired.contains(RuleId::A3Cn2022),
            RuleId::CCn2022,
        );
        fired
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::classification::{Classification, Share};
    use crate::domain::participant::Region;
    use crate::policy::approvals::Scope;
    use crate::policy::counting::Persons;
    use crate::policy::transfer::{ExemptionClaim, Exporter, Field, Recipient};
    use chrono::DateTime;

    /// An export of nothing from `exp-a` (OTHER) to `r-ent` (ENTERPRISE, DE) on 2025-06-01.
    pub(crate) fn transfer() -> Transfer {
        Transfer {
            ruleset: Ruleset::Cn2024,
            at: DateTime::parse_from_rfc3339("2025-06-01T10:00:00+08:00").unwrap(),
            exporter: Exporter { id: "exp-a".into(), kind: ParticipantKind::Other, in_tianjin_ftz: false },
            recipient: Recipient {
                id: "r-ent".into(),
                kind: RecipientType::Enterprise,
                region: Region::parse("DE").unwrap(),
            },
            access_from_outside_mainland: false,
            government_data: false,
            purpose: "research".into(),
            legal_basis: None,
            statistical_purpose: false,
            exemption: ExemptionClaim::default(),
            fields: Vec::new(),
            persons: Persons::default(),
        }
    }

    fn field(level: Level, pi: Pi) -> Field {
        Field {
            name: format!("{level}-{pi}"),
            classification: Classification::new(level, pi, false, Share::Conditional, None),
        }
    }

    const G1: (Level, Pi) = (Level::G1, Pi::None);
    const G2: (Level, Pi) = (Level::G2, Pi::None);
    const PI: (Level, Pi) = (Level::G3, Pi::Pi);
    const SPI: (Level, Pi) = (Level::G4, Pi::Spi);
    const IMP: (Level, Pi) = (Level::I, Pi::None);
    const CORE: (Level, Pi) = (Level::C, Pi::None);
    const SECRET: (Level, Pi) = (Level::X, Pi::None);

    struct Row {
        kind: ParticipantKind,
        fields: &'static [(Level, Pi)],
        nonsensitive: u64,
        sensitive: u64,
        exemption: Exemption,
        rules: &'static str,
        mechanism: Mechanism,
    }

    fn run(row: &Row, ruleset: Ruleset) -> Decision {
        let t = Transfer {
            ruleset,
            exporter: Exporter { id: "exp-a".into(), kind: row.kind, in_tianjin_ftz: false },
            fields: row.fields.iter().map(|(l, p)| field(*l, *p)).collect(),
            persons: Persons { nonsensitive: row.nonsensitive, sensitive: row.sensitive, ..Persons::default() },
            exemption: ExemptionClaim { exemption: row.exemption, attested_by: Some("officer-1".into()) },
            ..transfer()
        };
        assess(&t, WindowTotals::default(), &[], &PolicyConfig::default())
    }

    fn rules(d: &Decision) -> String {
        d.rules.iter().map(RuleId::as_str).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn the_cn2024_export_table() {
        use Exemption::{ContractWithIndividual as Contract, ForeignOriginTransit as Transit, None as NoClaim};
        use Mechanism::*;
        use ParticipantKind::{Ciio, Other, StateOrgan};
        let row = |kind, fields, nonsensitive, sensitive, exemption, rules, mechanism| Row {
            kind,
            fields,
            nonsensitive,
            sensitive,
            exemption,
            rules,
            mechanism,
        };
        let table = [
            row(Other, &[G1, G2], 0, 0, NoClaim, "E1", Allow),
            row(Other, &[SECRET], 0, 0, NoClaim, "X1 E1", Deny),
            row(Other, &[CORE], 0, 0, NoClaim, "X2 E1", Deny),
            row(Other, &[IMP], 0, 0, NoClaim, "A1", RequiresSecurityAssessment),
            row(Other, &[PI], 99_999, 0, NoClaim, "V1", Allow),
            row(Other, &[PI], 100_000, 0, NoClaim, "C2", AllowWithSccFiling),
            row(Other, &[PI], 999_999, 0, NoClaim, "C2", AllowWithSccFiling),
            row(Other, &[PI], 1_000_000, 0, NoClaim, "A4", RequiresSecurityAssessment),
            row(Other, &[SPI], 0, 9_999, NoClaim, "C1", AllowWithSccFiling),
            row(Other, &[SPI], 0, 10_000, NoClaim, "A3", RequiresSecurityAssessment),
            row(Other, &[PI, SPI], 5, 5, NoClaim, "C1", AllowWithSccFiling),
            row(Ciio, &[PI], 1, 0, NoClaim, "A2", RequiresSecurityAssessment),
            row(Ciio, &[PI], 1, 0, Contract, "E3", Allow),
            row(Other, &[PI], 2_000_000, 0, Transit, "E2", Allow),
            row(Other, &[PI, IMP], 2_000_000, 0, Transit, "A1 A4", RequiresSecurityAssessment),
            row(StateOrgan, &[PI], 1, 0, Contract, "X5 E3", RequiresSecurityAssessment),
            row(StateOrgan, &[G2], 0, 0, NoClaim, "E1", Allow),
        ];
        for r in &table {
            let d = run(r, Ruleset::Cn2024);
            assert_eq!((rules(&d).as_str(), d.mechanism), (r.rules, r.mechanism), "{:?} {:?}", r.kind, r.fields);
            assert_eq!(d.direction, Direction::Export);
        }
    }

    #[test]
    fn the_cn2022_export_table() {
        use Exemption::{ContractWithIndividual as Contract, None as NoClaim};
        use Mechanism::*;
        use ParticipantKind::{Ciio, Other, StateOrgan};
        let row = |kind, fields, nonsensitive, sensitive, exemption, rules, mechanism| Row {
            kind,
            fields,
            nonsensitive,
            sensitive,
            exemption,
            rules,
            mechanism,
        };
        let table = [
            row(Other, &[G2], 0, 0, NoClaim, "E1", Allow),
            row(Other, &[IMP], 0, 0, NoClaim, "A1'", RequiresSecurityAssessment),
            row(Other, &[PI], 99_999, 0, NoClaim, "C'", AllowWithSccFiling),
            row(Other, &[PI], 100_000, 0, NoClaim, "A3'", RequiresSecurityAssessment),
            row(Other, &[SPI], 0, 9_999, NoClaim, "C'", AllowWithSccFiling),
            row(Other, &[SPI], 0, 10_000, NoClaim, "A3'", RequiresSecurityAssessment),
            row(Other, &[PI], 1, 0, Contract, "C'", AllowWithSccFiling),
            row(Ciio, &[PI], 1, 0, NoClaim, "A2'", RequiresSecurityAssessment),
            row(StateOrgan, &[PI, IMP], 1, 0, NoClaim, "X5 A1' C'", RequiresSecurityAssessment),
        ];
        for r in &table {
            let d = run(r, Ruleset::Cn2022);
            assert_eq!((rules(&d).as_str(), d.mechanism), (r.rules, r.mechanism), "{:?} {:?}", r.kind, r.fields);
        }
    }

    #[test]
    fn the_domestic_table() {
        let base = Transfer {
            recipient: Recipient {
                id: "tj-tax".into(),
                kind: RecipientType::GovDept,
                region: Region::parse("CN-TJ").unwrap(),
            },
            ..transfer()
        };
        let with = |fields: Vec<Field>, f: &dyn Fn(&mut Transfer)| {
            let mut t = Transfer { fields, ..base.clone() };
            f(&mut t);
            let d = assess(&t, WindowTotals::default(), &[], &PolicyConfig::default());
            assert_eq!(d.direction, Direction::Domestic);
            (rules(&d), d.mechanism)
        };
        let micro = Field {
            name: "survey".into(),
            classification: Classification::new(Level::G4, Pi::None, true, Share::Conditional, None),
        };
        let not_shared = Field {
            name: "arrears".into(),
            classification: Classification::new(Level::G3, Pi::None, false, Share::NotShared, None),
        };
        let nothing = |_: &mut Transfer| {};
        assert_eq!(with(vec![field(Level::G2, Pi::None)], &nothing), ("D7".into(), Mechanism::Allow));
        assert_eq!(with(vec![field(Level::X, Pi::None)], &nothing), ("D1".into(), Mechanism::Deny));
        assert_eq!(with(vec![micro.clone()], &nothing), ("D2".into(), Mechanism::Deny));
        let stats = |t: &mut Transfer| {
            t.recipient.kind = RecipientType::StatisticsAgency;
            t.statistical_purpose = true;
        };
        assert_eq!(with(vec![micro.clone()], &stats), ("D7".into(), Mechanism::Allow));
        let stats_other_purpose = |t: &mut Transfer| t.recipient.kind = RecipientType::StatisticsAgency;
        assert_eq!(with(vec![micro], &stats_other_purpose), ("D2".into(), Mechanism::Deny));
        assert_eq!(with(vec![not_shared], &nothing), ("D3".into(), Mechanism::Deny));
        assert_eq!(with(vec![field(Level::I, Pi::None)], &nothing), ("D5".into(), Mechanism::RequiresOfficerApproval));
        assert_eq!(with(vec![field(Level::C, Pi::None)], &nothing), ("D5".into(), Mechanism::RequiresOfficerApproval));
        assert_eq!(with(vec![field(Level::G3, Pi::Pi)], &nothing), ("D6".into(), Mechanism::RequiresOfficerApproval));
        let basis = |t: &mut Transfer| t.legal_basis = Some("PIPL Art. 34 duty".into());
        assert_eq!(with(vec![field(Level::G3, Pi::Pi)], &basis), ("D7".into(), Mechanism::Allow));
        let abroad = Transfer { access_from_outside_mainland: true, ..base.clone() };
        assert_eq!(abroad.direction(), Direction::Export);
    }

    #[test]
    fn x4_is_switched_off_only_by_an_applicable_competent_authority_approval() {
        let t = Transfer {
            recipient: Recipient {
                id: "fr-court".into(),
                kind: RecipientType::ForeignJudicialOrLe,
                region: Region::parse("FR").unwrap(),
            },
            fields: vec![field(Level::G2, Pi::None)],
            ..transfer()
        };
        let ca = Approval {
            id: "ca-1".into(),
            kind: ApprovalType::CompetentAuthority,
            exporter: "exp-a".into(),
            reference: String::new(),
            issued: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            expires: None,
            revoked: false,
            scope: Scope::default(),
        };
        let config = PolicyConfig::default();
        let d = assess(&t, WindowTotals::default(), std::slice::from_ref(&ca), &config);
        assert_eq!((rules(&d).as_str(), d.action), ("E1", Action::Pass));
        assert_eq!(d.approval.map(|a| (a.id, a.check)), Some(("ca-1".into(), ApprovalCheck::Valid)));

        let revoked = Approval { revoked: true, ..ca };
        let d = assess(&t, WindowTotals::default(), &[revoked], &config);
        assert_eq!((rules(&d).as_str(), d.action), ("X4 E1", Action::Block));
        assert_eq!(d.approval.map(|a| a.check), Some(ApprovalCheck::Revoked));
        let d = assess(&t, WindowTotals::default(), &[], &config);
        assert_eq!((rules(&d).as_str(), d.approval), ("X4 E1", None));
    }

    #[test]
    fn a_hold_says_what_an_approval_must_cover() {
        let t = Transfer {
            fields: vec![field(Level::G3, Pi::Pi)],
            persons: Persons { nonsensitive: 100_000, ..Persons::default() },
            ..transfer()
        };
        let d = assess(&t, WindowTotals { nonsensitive: 7, sensitive: 0 }, &[], &PolicyConfig::default());
        assert_eq!(d.action, Action::Hold);
        let hold = d.hold.as_ref().unwrap();
        assert_eq!(hold.mechanism, Mechanism::AllowWithSccFiling);
        assert_eq!(hold.satisfied_by, &[ApprovalType::SccFiling, ApprovalType::PiCertification, ApprovalType::CacSa]);
        assert_eq!(
            (hold.exporter.as_str(), hold.recipient.as_str(), hold.region.as_str(), hold.purpose.as_str()),
            ("exp-a", "r-ent", "DE", "research")
        );
        assert_eq!(hold.counts.nonsensitive_after, 100_007);
        assert_eq!(d.ledger_entry(), None);
    }

    #[test]
    fn a_passed_export_enters_the_ledger_and_a_domestic_one_does_not() {
        let t = Transfer {
            fields: vec![field(Level::G3, Pi::Pi)],
            persons: Persons { nonsensitive: 10, already_counted_nonsensitive: 4, ..Persons::default() },
            ..transfer()
        };
        let d = assess(&t, WindowTotals::default(), &[], &PolicyConfig::default());
        assert_eq!((d.action, d.ledger_entry()), (Action::Pass, Some((6, 0))));
        let home = Transfer {
            recipient: Recipient { region: Region::parse("CN").unwrap(), ..t.recipient.clone() },
            legal_basis: Some("duty".into()),
            ..t
        };
        let d = assess(&home, WindowTotals::default(), &[], &PolicyConfig::default());
        assert_eq!((d.action, d.ledger_entry()), (Action::Pass, None));
    }
}
