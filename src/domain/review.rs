//! Review before release (the national, municipal and district three-level review, 国家、市、区
//! 三级审核): a dataset's review policy, a version's review, and the pure rules of one step.
//!
//! A version published under a policy is `IN_REVIEW`: invisible to consumers. Level by level,
//! one reviewer of that level approves it or returns it; it is `RELEASED` when the last level
//! approves, and a `RETURNED` version never becomes visible.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::classification::named_enum;
use super::ids::ParticipantId;
use super::participant::Region;

/// Most levels a policy may have.
pub const MAX_LEVELS: usize = 5;
/// Most reviewers one level may name.
pub const MAX_REVIEWERS: usize = 50;
/// Longest deadline of a level, in hours (90 days).
pub const MAX_DEADLINE_HOURS: u32 = 24 * 90;

named_enum! {
    /// Where a version stands.
    VersionStatus, "version status" {
        /// Visible to consumers (published without a policy, or approved by every level).
        Released = "RELEASED",
        /// Awaiting a level's review: visible only to its owner and its reviewers.
        InReview = "IN_REVIEW",
        /// Returned by a reviewer: never visible to consumers.
        Returned = "RETURNED",
    }
}

named_enum! {
    /// What a reviewer decided.
    ReviewOutcome, "review outcome" {
        /// The level approves; the next level reviews, or the version is released.
        Approved = "APPROVED",
        /// Returned with reasons: the publisher publishes a corrected version.
        Returned = "RETURNED",
    }
}

/// One level of a review policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewLevel {
    /// The level's jurisdiction: a district (`CN-TJ-…`), the municipality (`CN-TJ`) or the
    /// country (`CN`). Each of its reviewers is registered in it.
    pub jurisdiction: Region,
    /// Who may review at this level: participants with the `reviewer` role.
    pub reviewers: Vec<ParticipantId>,
    /// How long the level has, from when the version reached it, before it is overdue.
    pub deadline_hours: u32,
}

/// A dataset's review policy: its levels, in order (usually district, municipality, country).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewPolicy {
    /// At least one.
    pub levels: Vec<ReviewLevel>,
}

/// Why a review policy is refused; each names the offending member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No level, or more than [`MAX_LEVELS`].
    #[error("1 to {MAX_LEVELS} levels, got {0}")]
    Levels(usize),
    /// A level without reviewers, or with more than [`MAX_REVIEWERS`].
    #[error("1 to {MAX_REVIEWERS} reviewers, got {1}")]
    Reviewers(usize, usize),
    /// A deadline of 0 or above [`MAX_DEADLINE_HOURS`].
    #[error("1 to {MAX_DEADLINE_HOURS}, got {1}")]
    Deadline(usize, u32),
    /// A participant named at two levels (or twice in one): nobody approves at two levels.
    #[error("{1} is named twice; nobody reviews at two levels")]
    Twice(usize, ParticipantId),
    /// A jurisdiction outside mainland China.
    #[error("{1} is not a mainland jurisdiction (CN, CN-XX or CN-XX-YYY)")]
    Jurisdiction(usize, Region),
}

impl PolicyError {
    /// The request member at fault: `levels`, or `levels[i].<member>`.
    pub fn field(&self) -> String {
        match self {
            PolicyError::Levels(_) => "levels".to_owned(),
            PolicyError::Reviewers(i, _) | PolicyError::Twice(i, _) => format!("levels[{i}].reviewers"),
            PolicyError::Deadline(i, _) => format!("levels[{i}].deadline_hours"),
            PolicyError::Jurisdiction(i, _) => format!("levels[{i}].jurisdiction"),
        }
    }
}

impl ReviewPolicy {
    /// Checks the shape: levels, reviewers, deadlines, nobody at two levels. (That every
    /// reviewer is a registered `reviewer` of the level's jurisdiction is the use case's check.)
    ///
    /// # Errors
    /// The first [`PolicyError`].
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.levels.is_empty() || self.levels.len() > MAX_LEVELS {
            return Err(PolicyError::Levels(self.levels.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, level) in self.levels.iter().enumerate() {
            if !level.jurisdiction.is_mainland() {
                return Err(PolicyError::Jurisdiction(i, level.jurisdiction.clone()));
            }
            if level.reviewers.is_empty() || level.reviewers.len() > MAX_REVIEWERS {
                return Err(PolicyError::Reviewers(i, level.reviewers.len()));
            }
            if level.deadline_hours == 0 || level.deadline_hours > MAX_DEADLINE_HOURS {
                return Err(PolicyError::Deadline(i, level.deadline_hours));
            }
            for r in &level.reviewers {
                if !seen.insert(r) {
                    return Err(PolicyError::Twice(i, r.clone()));
                }
            }
        }
        Ok(())
    }
}

/// One review step taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewStep {
    /// The level (0 = the first).
    pub level: u32,
    /// Who reviewed.
    pub reviewer: ParticipantId,
    /// What they decided.
    pub outcome: ReviewOutcome,
    /// Why (required to return; may be empty to approve).
    pub reasons: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A version's review: the policy it was published under and the steps taken so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionReview {
    /// The dataset's policy when the version was published (a later change does not apply).
    pub policy: ReviewPolicy,
    /// Steps in order; the last one decides the status.
    pub steps: Vec<ReviewStep>,
    /// When the current level began (publication, or the previous level's approval).
    pub level_since: DateTime<Utc>,
}

/// Why a review step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The version is not awaiting review.
    #[error("the version is {0}, not IN_REVIEW")]
    NotInReview(VersionStatus),
    /// The caller is not a reviewer of the current level.
    #[error("{reviewer} is not a reviewer of level {level} ({jurisdiction})")]
    NotAReviewer {
        /// The caller.
        reviewer: ParticipantId,
        /// The current level.
        level: u32,
        /// Its jurisdiction.
        jurisdiction: Region,
    },
    /// The caller's organisation published the version.
    #[error("{0} published this version; nobody reviews their own organisation's version")]
    OwnVersion(ParticipantId),
    /// The caller already reviewed the version at another level.
    #[error("{0} already reviewed this version at level {1}; nobody reviews at two levels")]
    TwoLevels(ParticipantId, u32),
    /// Returning needs reasons.
    #[error("reasons: required to return a version")]
    NoReasons,
}

impl VersionReview {
    /// The level awaiting review: the number of approvals so far.
    pub fn level(&self) -> u32 {
        self.steps.iter().filter(|s| s.outcome == ReviewOutcome::Approved).count() as u32
    }

    /// The status the steps give.
    pub fn status(&self) -> VersionStatus {
        if self.steps.iter().any(|s| s.outcome == ReviewOutcome::Returned) {
            VersionStatus::Returned
        } else if self.level() as usize >= self.policy.levels.len() {
            VersionStatus::Released
        } else {
            VersionStatus::InReview
        }
    }

    /// When the current level is overdue; `None` once the review is over.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        if self.status() != VersionStatus::InReview {
            return None;
        }
        let level = &self.policy.levels[self.level() as usize];
        Some(self.level_since + Duration::hours(i64::from(level.deadline_hours)))
    }

    /// Takes one step: `reviewer` decides `outcome` at the current level of a version published
    /// by `publisher` (and owned by `owner`). Returns the review after the step.
    ///
    /// # Errors
    /// [`StepError`]: not in review, not a reviewer of the level, the owner's or publisher's own
    /// organisation, a second level for the same reviewer, or a return without reasons.
    pub fn step(
        &self,
        reviewer: &ParticipantId,
        publisher: &ParticipantId,
        owner: &ParticipantId,
        outcome: ReviewOutcome,
        reasons: &str,
        at: DateTime<Utc>,
    ) -> Result<VersionReview, StepError> {
        let status = self.status();
        if status != VersionStatus::InReview {
            return Err(StepError::NotInReview(status));
        }
        if reviewer == publisher || reviewer == owner {
            return Err(StepError::OwnVersion(reviewer.clone()));
        }
        let level = self.level();
        let current = &self.policy.levels[level as usize];
        if !current.reviewers.contains(reviewer) {
            return Err(StepError::NotAReviewer {
                reviewer: reviewer.clone(),
                level,
                jurisdiction: current.jurisdiction.clone(),
            });
        }
        if let Some(earlier) = self.steps.iter().find(|s| &s.reviewer == reviewer) {
            return Err(StepError::TwoLevels(reviewer.clone(), earlier.level));
        }
        if outcome == ReviewOutcome::Returned && reasons.trim().is_empty() {
            return Err(StepError::NoReasons);
        }
        let mut next = self.clone();
        next.steps.push(ReviewStep { level, reviewer: reviewer.clone(), outcome, reasons: reasons.to_owned(), at });
        if outcome == ReviewOutcome::Approved {
            next.level_since = at;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> ParticipantId {
        ParticipantId::parse(s).unwrap()
    }

    fn level(jurisdiction: &str, reviewers: &[&str]) -> ReviewLevel {
        ReviewLevel {
            jurisdiction: Region::parse(jurisdiction).unwrap(),
            reviewers: reviewers.iter().map(|r| pid(r)).collect(),
            deadline_hours: 48,
        }
    }

    fn three_levels() -> ReviewPolicy {
        ReviewPolicy {
            levels: vec![
                level("CN-TJ-HP", &["heping-1", "heping-2"]),
                level("CN-TJ", &["tianjin-1"]),
                level("CN", &["nbs-1"]),
            ],
        }
    }

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn policies_are_validated_member_by_member() {
        assert_eq!(three_levels().validate(), Ok(()));
        assert_eq!(ReviewPolicy { levels: vec![] }.validate(), Err(PolicyError::Levels(0)));
        let mut p = three_levels();
        p.levels[1].reviewers.clear();
        assert_eq!(p.validate(), Err(PolicyError::Reviewers(1, 0)));
        let mut p = three_levels();
        p.levels[2].deadline_hours = 0;
        assert_eq!(p.validate(), Err(PolicyError::Deadline(2, 0)));
        let mut p = three_levels();
        p.levels[2].reviewers.push(pid("heping-2"));
        assert_eq!(p.validate(), Err(PolicyError::Twice(2, pid("heping-2"))));
        let mut p = three_levels();
        p.levels[0].jurisdiction = Region::parse("HK").unwrap();
        assert!(matches!(p.validate(), Err(PolicyError::Jurisdiction(0, _))));
    }

    #[test]
    fn three_approvals_release_and_each_level_has_its_own_deadline() {
        let (publisher, owner) = (pid("tj-stats"), pid("tj-stats"));
        let r = VersionReview { policy: three_levels(), steps: vec![], level_since: t(0) };
        assert_eq!((r.status(), r.level(), r.due()), (VersionStatus::InReview, 0, Some(t(48))));
        let approve = |r: &VersionReview, who: &str, at| {
            r.step(&pid(who), &publisher, &owner, ReviewOutcome::Approved, "", at).unwrap()
        };
        let r = approve(&r, "heping-2", t(10));
        assert_eq!((r.status(), r.level(), r.due()), (VersionStatus::InReview, 1, Some(t(58))));
        let r = approve(&r, "tianjin-1", t(20));
        let r = approve(&r, "nbs-1", t(30));
        assert_eq!((r.status(), r.level(), r.due()), (VersionStatus::Released, 3, None));
        let again = r.step(&pid("nbs-1"), &publisher, &owner, ReviewOutcome::Approved, "", t(31));
        assert_eq!(again, Err(StepError::NotInReview(VersionStatus::Released)));
    }

    #[test]
    fn a_returned_version_stays_returned() {
        let p = pid("tj-stats");
        let r = VersionReview { policy: three_levels(), steps: vec![], level_since: t(0) };
        let r = r.step(&pid("heping-1"), &p, &p, ReviewOutcome::Approved, "", t(1)).unwrap();
        assert_eq!(r.step(&pid("tianjin-1"), &p, &p, ReviewOutcome::Returned, " ", t(2)), Err(StepError::NoReasons));
        let r = r.step(&pid("tianjin-1"), &p, &p, ReviewOutcome::Returned, "totals disagree", t(2)).unwrap();
        assert_eq!((r.status(), r.due()), (VersionStatus::Returned, None));
        let late = r.step(&pid("nbs-1"), &p, &p, ReviewOutcome::Approved, "", t(3));
        assert_eq!(late, Err(StepError::NotInReview(VersionStatus::Returned)));
    }

    #[test]
    fn separation_of_duties_holds_at_every_step() {
        let p = pid("tj-stats");
        let r = VersionReview { policy: three_levels(), steps: vec![], level_since: t(0) };
        // Not a reviewer of the current level (a later level's reviewer cannot jump ahead).
        assert!(matches!(
            r.step(&pid("tianjin-1"), &p, &p, ReviewOutcome::Approved, "", t(1)),
            Err(StepError::NotAReviewer { level: 0, .. })
        ));
        // The publisher's own organisation, even when named as a reviewer.
        let mut own = r.clone();
        own.policy.levels[0].reviewers.push(p.clone());
        assert_eq!(own.step(&p, &p, &p, ReviewOutcome::Approved, "", t(1)), Err(StepError::OwnVersion(p.clone())));
        // The same participant at two levels (a policy changed by hand could name it twice).
        let mut twice = r.clone();
        twice.policy.levels[1].reviewers.push(pid("heping-1"));
        let twice = twice.step(&pid("heping-1"), &p, &p, ReviewOutcome::Approved, "", t(1)).unwrap();
        assert_eq!(
            twice.step(&pid("heping-1"), &p, &p, ReviewOutcome::Approved, "", t(2)),
            Err(StepError::TwoLevels(pid("heping-1"), 0))
        );
    }
}
