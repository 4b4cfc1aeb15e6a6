//! Participants: who may call the gateway, in which roles, from which region.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::classification::{named_enum, Level, UnknownName};
use super::ids::ParticipantId;

named_enum! {
    /// What kind of organisation a participant is (the exporter kind of docs/rules.md §3).
    ParticipantKind, "kind" {
        /// A state organ (国家机关).
        StateOrgan = "STATE_ORGAN",
        /// A critical information infrastructure operator.
        Ciio = "CIIO",
        /// Anything else.
        Other = "OTHER",
    }
}

named_enum! {
    /// The recipient type of docs/rules.md §3.
    RecipientType, "recipient type" {
        /// A government department.
        GovDept = "GOV_DEPT",
        /// A statistics agency (may receive microdata domestically for statistical purposes).
        StatisticsAgency = "STATISTICS_AGENCY",
        /// An enterprise.
        Enterprise = "ENTERPRISE",
        /// A research institution.
        Research = "RESEARCH",
        /// An international organisation.
        IntlOrg = "INTL_ORG",
        /// A natural person.
        Individual = "INDIVIDUAL",
        /// A foreign judicial or law-enforcement body.
        ForeignJudicialOrLe = "FOREIGN_JUDICIAL_OR_LE",
    }
}

named_enum! {
    /// A participant's role; a participant may hold several.
    Role, "role" {
        /// Owns datasets and publishes versions.
        Publisher = "publisher",
        /// Requests grants and pulls.
        Consumer = "consumer",
        /// Security officer: approvals, holds, full log access.
        Officer = "officer",
        /// Read-only log access.
        Auditor = "auditor",
        /// Registers and suspends participants.
        Admin = "admin",
        /// Reviews versions before their release, at the level of its region (its jurisdiction).
        Reviewer = "reviewer",
    }
}

named_enum! {
    /// Whether a participant may call the gateway.
    ParticipantStatus, "status" {
        /// May call.
        Active = "ACTIVE",
        /// Refused with `PERMISSION_DENIED` on its next call.
        Suspended = "SUSPENDED",
    }
}

/// A region: an ISO 3166-1 alpha-2 code, `CN-XX` for a mainland subdivision, or `CN-XX-YYY` for a
/// district of one (`CN-TJ-HP`, Heping district of Tianjin).
///
/// Invariant: two upper-case ASCII letters, optionally followed by `-` and one to three
/// upper-case ASCII letters or digits, and after `CN-XX` optionally by `-` and one to six more.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// Parses a region code. Subdivisions are accepted for any country (ISO 3166-2), but only
    /// `CN` and `CN-*` count as mainland China.
    pub fn parse(s: &str) -> Result<Region, UnknownName> {
        let bad = || UnknownName { kind: "region", value: s.to_owned() };
        let (country, sub) = match s.split_once('-') {
            Some((c, sub)) => (c, Some(sub)),
            None => (s, None),
        };
        // A district: only below a mainland subdivision.
        let (sub, district) = match sub.and_then(|sub| sub.split_once('-')) {
            Some((sub, district)) => (Some(sub), Some(district)),
            None => (sub, None),
        };
        if let Some(district) = district {
            let code = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
            if country != "CN" || district.is_empty() || district.len() > 6 || !district.bytes().all(code) {
                return Err(bad());
            }
        }
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        if let Some(sub) = sub {
            if sub.is_empty() || sub.len() > 3 || !sub.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                return Err(bad());
            }
        }
        Ok(Region(s.to_owned()))
    }

    /// Mainland China: `CN` and every `CN-*`. `HK`, `MO` and `TW` are outside (docs/rules.md §2).
    pub fn is_mainland(&self) -> bool {
        self.0 == "CN" || self.0.starts_with("CN-")
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this region or lies inside it (`CN` contains `CN-TJ` and `CN-TJ-HP`).
    pub fn contains(&self, other: &Region) -> bool {
        other.0 == self.0 || other.0.strip_prefix(self.0.as_str()).is_some_and(|rest| rest.starts_with('-'))
    }
}

impl FromStr for Region {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Region::parse(s)
    }
}

impl TryFrom<String> for Region {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        Region::parse(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registered participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Identity; equals the common name of its client certificate.
    pub id: ParticipantId,
    /// Human-readable name.
    pub display_name: String,
    /// Organisation kind (exporter kind in the export rules).
    pub kind: ParticipantKind,
    /// Recipient type when it receives data.
    pub recipient_type: RecipientType,
    /// Where it is.
    pub region: Region,
    /// In the Tianjin free-trade zone (rule E4).
    pub in_tianjin_ftz: bool,
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// The highest level it may receive unmasked.
    pub clearance: Level,
    /// Active or suspended.
    pub status: ParticipantStatus,
}

impl Participant {
    /// Whether it holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hong_kong_macau_and_taiwan_are_outside_mainland() {
        for r in ["HK", "MO", "TW", "SG"] {
            assert!(!Region::parse(r).unwrap().is_mainland(), "{r}");
        }
        for r in ["CN", "CN-TJ", "CN-BJ", "CN-HE"] {
            assert!(Region::parse(r).unwrap().is_mainland(), "{r}");
        }
    }

    #[test]
    fn malformed_regions_are_refused() {
        for r in [
            "",
            "cn",
            "CHN",
            "CN-",
            "CN-tj",
            "CN-ABCD",
            "C1",
            "CN-TJ-",
            "CN-TJ-hp",
            "CN-TJ-ABCDEFG",
            "US-CA-LA",
            "CN-TJ-HP-1",
        ] {
            assert!(Region::parse(r).is_err(), "{r}");
        }
    }

    #[test]
    fn districts_lie_inside_their_municipality_inside_the_country() {
        let r = |s: &str| Region::parse(s).unwrap();
        assert!(r("CN-TJ-HP").is_mainland());
        assert!(r("CN").contains(&r("CN-TJ-HP")) && r("CN-TJ").contains(&r("CN-TJ-HP")));
        assert!(r("CN-TJ-HP").contains(&r("CN-TJ-HP")));
        assert!(!r("CN-TJ-HP").contains(&r("CN-TJ")) && !r("CN-TJ").contains(&r("CN-TJX")));
        assert!(!r("CN-BJ").contains(&r("CN-TJ-HP")) && !r("CN").contains(&r("HK")));
    }
}
