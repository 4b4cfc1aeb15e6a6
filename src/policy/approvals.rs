//! Approvals (docs/rules.md §3.2): when one applies, how long it is valid, and which candidate a decision reports.

use std::cmp::Reverse;

use chrono::NaiveDate;

use super::calendar;
use super::config::PolicyConfig;
use super::counting::Counts;
use super::transfer::Transfer;
use crate::domain::classification::named_enum;
use crate::domain::participant::Region;

named_enum! {
    /// What an officer recorded.
    ApprovalType, "approval type" {
        /// The CAC security assessment was passed.
        CacSa = "CAC_SA",
        /// A standard contract was filed.
        SccFiling = "SCC_FILING",
        /// Personal-information protection certification.
        PiCertification = "PI_CERTIFICATION",
        /// The competent authority approved provision to a foreign judicial or law-enforcement body (X4).
        CompetentAuthority = "COMPETENT_AUTHORITY",
        /// The gateway's own officer approval (X6, D5, D6).
        OfficerApproval = "OFFICER_APPROVAL",
    }
}

named_enum! {
    /// Whether an approval applies to a transfer, or the first reason it does not.
    ///
    /// The derived order is the ranking of candidates: `Valid` is the closest to applying,
    /// `Revoked` the farthest (see [`closest`]).
    ApprovalCheck, "approval check" {
        /// It applies.
        Valid = "valid",
        /// Live and in time, but the transfer is outside its scope.
        OutOfScope = "out_of_scope",
        /// Its validity ended before the transfer's time.
        Expired = "expired",
        /// An officer revoked it.
        Revoked = "revoked",
    }
}

named_enum! {
    /// Which part of a scope a transfer falls outside (the first one checked, in this order).
    ScopeMiss, "scope miss" {
        /// The recipient id is not listed.
        Recipient = "recipient",
        /// The recipient region is not listed.
        Destination = "destination",
        /// The purpose is not listed.
        Purpose = "purpose",
        /// `nonsensitive_after` is above `max_persons_nonsensitive`.
        MaxPersonsNonsensitive = "max_persons_nonsensitive",
        /// `sensitive_after` is above `max_persons_sensitive`.
        MaxPersonsSensitive = "max_persons_sensitive",
    }
}

/// What an approval covers. An empty list means "any"; an absent maximum means "no maximum".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Recipient ids, compared exactly.
    pub recipients: Vec<String>,
    /// Recipient regions. A country code also covers its subdivisions (`CN` covers `CN-TJ`).
    pub destinations: Vec<Region>,
    /// Purposes, compared exactly.
    pub purposes: Vec<String>,
    /// Highest `nonsensitive_after` covered (inclusive).
    pub max_persons_nonsensitive: Option<u64>,
    /// Highest `sensitive_after` covered (inclusive).
    pub max_persons_sensitive: Option<u64>,
}

/// An approval recorded by an officer.
///
/// Days are calendar days in Asia/Shanghai. Invariant expected of the recorder (not relied on):
/// `expires`, when set, is not before `issued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approval's id, reported in decisions.
    pub id: String,
    /// What was approved.
    pub kind: ApprovalType,
    /// The exporter it was granted to; it never applies to another exporter.
    pub exporter: String,
    /// The authority's reference (e.g. the CAC file number); not used by the rules.
    pub reference: String,
    /// First valid day.
    pub issued: NaiveDate,
    /// Last valid day (through 23:59:59); `None` applies the defaults of [`Approval::last_day`].
    pub expires: Option<NaiveDate>,
    /// Revoked by an officer: never applies again.
    pub revoked: bool,
    /// What it covers.
    pub scope: Scope,
}

/// The approval a decision reports: the one used, or the closest candidate and why it did not
/// apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalOutcome {
    /// The approval's id.
    pub id: String,
    /// Its type.
    pub kind: ApprovalType,
    /// `Valid` when it was used; otherwise the reason it was not.
    pub check: ApprovalCheck,
    /// Set exactly when `check` is `OutOfScope`: the first part of the scope missed.
    pub scope_miss: Option<ScopeMiss>,
}

impl Approval {
    /// The last day of validity, `None` when it does not expire: `expires` when recorded;
    /// otherwise a `CAC_SA` issued on or after the configured cutoff (2024-03-22) lasts 3 years,
    /// one issued before lasts 2, ending on the same calendar day of the final year; other types
    /// do not expire.
    pub fn last_day(&self, config: &PolicyConfig) -> Option<NaiveDate> {
        match (self.expires, self.kind) {
            (Some(day), _) => Some(day),
            (None, ApprovalType::CacSa) => {
                let years = if self.issued >= config.security_assessment_cutoff {
                    config.security_assessment_years
                } else {
                    config.security_assessment_years_before_cutoff
                };
                Some(calendar::same_day_years_later(self.issued, years))
            }
            (None, _) => None,
        }
    }

    /// Whether this approval existed at the transfer's time (issued on or before its
    /// Asia/Shanghai day). One issued later is not a candidate at all.
    pub fn issued_by(&self, day: NaiveDate) -> bool {
        self.issued <= day
    }

    /// Checks this approval against a transfer whose exporter it belongs to and whose day it
    /// was issued by: revoked first, then expiry (valid through `last_day` 23:59:59 Asia/Shanghai
    /// inclusive), then scope.
    pub fn check(
        &self,
        transfer: &Transfer,
        counts: &Counts,
        config: &PolicyConfig,
    ) -> (ApprovalCheck, Option<ScopeMiss>) {
        if self.revoked {
            return (ApprovalCheck::Revoked, None);
        }
        let day = calendar::shanghai_date(transfer.at);
        if self.last_day(config).is_some_and(|last| day > last) {
            return (ApprovalCheck::Expired, None);
        }
        match self.scope.miss(transfer, counts) {
            Some(miss) => (ApprovalCheck::OutOfScope, Some(miss)),
            None => (ApprovalCheck::Valid, None),
        }
    }
}

impl Scope {
    /// The first part of this scope the transfer falls outside, `None` when it is inside.
    pub fn miss(&self, transfer: &Transfer, counts: &Counts) -> Option<ScopeMiss> {
        let recipient = &transfer.recipient;
        if !self.recipients.is_empty() && !self.recipients.contains(&recipient.id) {
            return Some(ScopeMiss::Recipient);
        }
        if !self.destinations.is_empty() && !self.destinations.iter().any(|d| covers(d, &recipient.region)) {
            return Some(ScopeMiss::Destination);
        }
        if !self.purposes.is_empty() && !self.purposes.contains(&transfer.purpose) {
            return Some(ScopeMiss::Purpose);
        }
        if self.max_persons_nonsensitive.is_some_and(|max| counts.nonsensitive_after > max) {
            return Some(ScopeMiss::MaxPersonsNonsensitive);
        }
        if self.max_persons_sensitive.is_some_and(|max| counts.sensitive_after > max) {
            return Some(ScopeMiss::MaxPersonsSensitive);
        }
        None
    }
}

/// A listed destination covers the same region and, when it is a bare country code, that
/// country's subdivisions.
fn covers(listed: &Region, region: &Region) -> bool {
    let (listed, region) = (listed.as_str(), region.as_str());
    listed == region || (!listed.contains('-') && region.strip_prefix(listed).is_some_and(|rest| rest.starts_with('-')))
}

/// The approval a decision reports among `approvals` for a transfer needing one of `types`.
///
/// Candidates are the approvals of the transfer's exporter, of one of `types`, issued by the
/// transfer's day. The best candidate is chosen by, in order:
/// 1. its check: `valid` > `out_of_scope` > `expired` > `revoked` (a live approval that misses
///    the scope is what an officer would extend; a revoked one was withdrawn on purpose);
/// 2. the later `issued` day (the most recent decision of the authority);
/// 3. the smaller id, so the choice never depends on the order of `approvals`.
///
/// `None` when there is no candidate. Allocates only the returned id.
pub fn closest(
    approvals: &[Approval],
    types: &[ApprovalType],
    transfer: &Transfer,
    counts: &Counts,
    config: &PolicyConfig,
) -> Option<ApprovalOutcome> {
    let day = calendar::shanghai_date(transfer.at);
    approvals
        .iter()
        .filter(|a| a.exporter == transfer.exporter.id && types.contains(&a.kind) && a.issued_by(day))
        .map(|a| (a, a.check(transfer, counts, config)))
        .min_by_key(|(a, (check, _))| (*check, Reverse(a.issued), a.id.as_str()))
        .map(|(a, (check, scope_miss))| ApprovalOutcome { id: a.id.clone(), kind: a.kind, check, scope_miss })
}

/// Why a recorded approval may not be given to the rules for a transfer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Recorded or confirmed by the transfer's exporter or recipient (separation of duties: an
    /// officer who is also a party could otherwise approve its own transfer with an "any
    /// recipient" scope).
    ByAParty,
    /// Of a type `confirmed_approvals` names, and not yet confirmed by a second officer.
    Unconfirmed,
}

/// Whether `approval`, recorded by `recorded_by` and confirmed by `confirmed_by`, may be given
/// to the rules for a transfer between `parties` (its exporter and its recipient; docs/rules.md
/// §3.2): the same test at use time, when an officer releases a hold with it, and on replay.
///
/// # Errors
/// The reason it may not.
pub fn usable(
    approval: &Approval,
    recorded_by: &str,
    confirmed_by: Option<&str>,
    parties: [&str; 2],
    config: &PolicyConfig,
) -> Result<(), Unusable> {
    let party = |who: &str| parties.contains(&who);
    if party(recorded_by) || confirmed_by.is_some_and(party) {
        return Err(Unusable::ByAParty);
    }
    if config.confirmed_approvals.contains(&approval.kind) && confirmed_by.is_none() {
        return Err(Unusable::Unconfirmed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::counting::{Persons, Window, WindowTotals};
    use crate::policy::engine::tests::transfer;

    fn day(text: &str) -> NaiveDate {
        calendar::parse_day(text).unwrap()
    }

    fn approval(id: &str, kind: ApprovalType, issued: &str, expires: Option<&str>) -> Approval {
        Approval {
            id: id.to_owned(),
            kind,
            exporter: "exp-a".to_owned(),
            reference: String::new(),
            issued: day(issued),
            expires: expires.map(day),
            revoked: false,
            scope: Scope::default(),
        }
    }

    fn counts_for(t: &Transfer) -> Counts {
        let window = Window::new(t.ruleset, t.at, &PolicyConfig::default());
        Counts::new(&window, WindowTotals::default(), &t.persons)
    }

    #[test]
    fn security_assessments_without_expiry_last_two_or_three_years() {
        let config = PolicyConfig::default();
        let cases = [
            (ApprovalType::CacSa, "2024-03-21", Some("2026-03-21")),
            (ApprovalType::CacSa, "2024-03-22", Some("2027-03-22")),
            (ApprovalType::SccFiling, "2020-01-01", None),
            (ApprovalType::OfficerApproval, "2020-01-01", None),
        ];
        for (kind, issued, last) in cases {
            let a = approval("a", kind, issued, None);
            assert_eq!(a.last_day(&config), last.map(day), "{kind} {issued}");
        }
    }

    #[test]
    fn validity_runs_through_the_last_day_in_shanghai() {
        let config = PolicyConfig::default();
        let a = approval("sa", ApprovalType::CacSa, "2022-10-10", Some("2024-10-10"));
        let cases = [
            ("2024-10-10T23:59:59+08:00", ApprovalCheck::Valid),
            ("2024-10-10T15:59:59Z", ApprovalCheck::Valid),
            ("2024-10-11T00:00:00+08:00", ApprovalCheck::Expired),
            ("2024-10-10T16:00:00Z", ApprovalCheck::Expired),
            ("2022-10-10T00:00:00+08:00", ApprovalCheck::Valid),
        ];
        for (at, expected) in cases {
            let mut t = transfer();
            t.at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
            assert_eq!(a.check(&t, &counts_for(&t), &config).0, expected, "{at}");
        }
    }

    #[test]
    fn scopes_are_checked_part_by_part() {
        let t = Transfer { persons: Persons { nonsensitive: 500, sensitive: 20, ..Persons::default() }, ..transfer() };
        let region = |r: &str| Region::parse(r).unwrap();
        let cases: [(Scope, Option<ScopeMiss>); 9] = [
            (Scope::default(), None),
            (Scope { recipients: vec!["other".into()], ..Scope::default() }, Some(ScopeMiss::Recipient)),
            (Scope { recipients: vec!["r-ent".into()], ..Scope::default() }, None),
            (Scope { destinations: vec![region("HK")], ..Scope::default() }, Some(ScopeMiss::Destination)),
            (Scope { destinations: vec![region("DE")], ..Scope::default() }, None),
            (Scope { purposes: vec!["audit".into()], ..Scope::default() }, Some(ScopeMiss::Purpose)),
            (
                Scope { max_persons_nonsensitive: Some(499), ..Scope::default() },
                Some(ScopeMiss::MaxPersonsNonsensitive),
            ),
            (Scope { max_persons_nonsensitive: Some(500), max_persons_sensitive: Some(20), ..Scope::default() }, None),
            (Scope { max_persons_sensitive: Some(19), ..Scope::default() }, Some(ScopeMiss::MaxPersonsSensitive)),
        ];
        for (scope, expected) in cases {
            assert_eq!(scope.miss(&t, &counts_for(&t)), expected, "{scope:?}");
        }
        assert!(covers(&region("CN"), &region("CN-TJ")));
        assert!(!covers(&region("CN-TJ"), &region("CN")));
        assert!(!covers(&region("CN-BJ"), &region("CN-TJ")));
    }

    #[test]
    fn the_closest_candidate_is_chosen_by_check_then_recency_then_id() {
        let config = PolicyConfig::default();
        let t = transfer(); // at 2025-06-01, exporter exp-a
        let counts = counts_for(&t);
        let revoked = Approval { revoked: true, ..approval("r", ApprovalType::CacSa, "2025-01-01", None) };
        let expired = approval("e", ApprovalType::CacSa, "2020-01-01", Some("2021-01-01"));
        let narrow = Approval {
            scope: Scope { purposes: vec!["other".into()], ..Scope::default() },
            ..approval("o", ApprovalType::CacSa, "2024-01-01", None)
        };
        let valid_old = approval("v2", ApprovalType::CacSa, "2024-06-01", None);
        let valid_new = approval("v1", ApprovalType::CacSa, "2025-01-01", None);
        let future = approval("f", ApprovalType::CacSa, "2025-06-02", None);
        let other_exporter = Approval { exporter: "exp-b".into(), ..valid_new.clone() };
        let other_type = approval("t", ApprovalType::OfficerApproval, "2025-01-01", None);
        let pick =
            |list: &[Approval]| closest(list, &[ApprovalType::CacSa], &t, &counts, &config).map(|o| (o.id, o.check));
        let all = [revoked.clone(), expired.clone(), narrow.clone(), valid_old.clone(), valid_new, future.clone()];
        assert_eq!(pick(&all), Some(("v1".into(), ApprovalCheck::Valid)));
        assert_eq!(pick(&[valid_old, revoked.clone(), expired.clone()]), Some(("v2".into(), ApprovalCheck::Valid)));
        assert_eq!(pick(&[revoked.clone(), expired.clone(), narrow]), Some(("o".into(), ApprovalCheck::OutOfScope)));
        assert_eq!(pick(&[revoked.clone(), expired]), Some(("e".into(), ApprovalCheck::Expired)));
        assert_eq!(pick(&[revoked]), Some(("r".into(), ApprovalCheck::Revoked)));
        assert_eq!(pick(&[future, other_exporter, other_type]), None);
    }
}
