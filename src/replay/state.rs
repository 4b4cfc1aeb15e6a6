//! The state rebuilt from the log alone: participants, datasets and versions, grants, approvals,
//! holds, export policies and the exporters' person-ledger totals.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::records::{self, DatasetRegistered, GrantRecord, ParticipantRegistered};
use crate::domain::hold::HoldStatus;
use crate::policy::{Approval, PolicyConfig};

/// A participant as its records leave it.
#[derive(Debug, Clone)]
pub struct ParticipantState {
    pub(super) record: ParticipantRegistered,
    /// Its `participant.registered` record, as JSON (compared with the database's row).
    pub registered: Map<String, Value>,
    /// A `participant.suspended` came after its registration.
    pub suspended: bool,
    /// Leaf of the latest record about it (registration or suspension).
    pub leaf: u64,
}

/// A published version as its records say.
#[derive(Debug, Clone)]
pub struct VersionState {
    /// Its `sha256`.
    pub sha256: String,
    /// `RELEASED`, `IN_REVIEW` or `RETURNED`.
    pub status: String,
    /// Leaf of the latest record about it (its publication or its last review step).
    pub leaf: u64,
    /// The review levels it was published under (each level's reviewers), if any.
    pub levels: Option<Vec<Vec<String>>>,
    /// Its review steps: `(level, reviewer)` of each approval.
    pub approvals: Vec<(u32, String)>,
}

/// A dataset: its schema and its versions, version 1 first.
#[derive(Debug, Clone)]
pub struct DatasetState {
    pub(super) record: DatasetRegistered,
    /// Each `version.published`, in log order: index 0 is version 1.
    pub versions: Vec<VersionState>,
    /// Its review policy as last logged (each level's reviewers); `None`: released on publication.
    pub review_policy: Option<Vec<Vec<String>>>,
    /// Leaf of its `dataset.registered`.
    pub leaf: u64,
}

/// A grant as its latest grant-kind record says.
#[derive(Debug, Clone)]
pub struct GrantState {
    pub(super) record: GrantRecord,
    /// The latest record, as JSON (compared member for member with the database's row).
    pub latest: Map<String, Value>,
    /// Its leaf.
    pub leaf: u64,
}

/// An approval with who recorded, confirmed and revoked it.
#[derive(Debug, Clone)]
pub struct ApprovalState {
    /// As the rules read it; `revoked` is set once an `approval.revoked` was logged.
    pub approval: Approval,
    /// The `actor` of its `approval.recorded`.
    pub recorded_by: String,
    /// The `actor` of its `approval.confirmed`, once logged.
    pub confirmed_by: Option<String>,
    /// Leaf of its `approval.revoked`, once logged.
    pub revoked_at: Option<u64>,
    /// Its `approval.recorded` record, as JSON.
    pub recorded: Map<String, Value>,
    /// Leaf of the latest `approval.*` record about it.
    pub leaf: u64,
}

/// A hold of the review queue.
#[derive(Debug, Clone, Copy)]
pub struct HoldState {
    /// `OPEN` until a `hold.resolved` names it.
    pub status: HoldStatus,
    /// Leaf of its latest record.
    pub leaf: u64,
}

/// An export policy a gateway started with.
#[derive(Debug, Clone)]
pub struct PolicyState {
    /// The policy (its `tables` member at the default: not logged).
    pub config: PolicyConfig,
    /// Leaf of the latest `policy.applied` with this digest.
    pub leaf: u64,
}

/// Persons a ledger bucket holds, summed over the counted decisions of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Non-sensitive persons added.
    pub nonsensitive: u64,
    /// Sensitive persons added.
    pub sensitive: u64,
    /// Some of them were counted with a window of several years: the bucket holds the year's
    /// distinct persons, which can exceed the persons new to those windows.
    pub multi_year: bool,
}

/// Everything rebuilt from the log, as of the last record fed.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// By participant id.
    pub participants: BTreeMap<String, ParticipantState>,
    /// By dataset id.
    pub datasets: BTreeMap<String, DatasetState>,
    /// By grant id.
    pub grants: BTreeMap<String, GrantState>,
    /// By approval id.
    pub approvals: BTreeMap<String, ApprovalState>,
    /// By hold id.
    pub holds: BTreeMap<String, HoldState>,
    /// By the `sha256` of their `policy.applied`.
    pub policies: BTreeMap<String, PolicyState>,
    /// Per (exporter, Asia/Shanghai year): the persons the counted decisions added
    /// (`decision.counts.*_after − *_before`). Equal to the ledger's distinct persons of that
    /// year when the counting window is one year (`cn2024_window_years_back` 0).
    pub ledger: BTreeMap<(String, i32), LedgerTotals>,
}

/// Reads a record as `T`, or says which record could not be read.
pub(super) fn parse<'a, T: serde::Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("unreadable record: {e}"))
}

fn object(json: &str) -> Result<Map<String, Value>, String> {
    parse(json)
}

impl State {
    /// Applies one state record (any kind but `transfer.decision`); returns what is wrong with it.
    pub(super) fn apply(&mut self, leaf: u64, kind: &str, actor: &str, json: &str) -> Result<(), String> {
        use records::kind::*;
        match kind {
            PARTICIPANT_REGISTERED => {
                let record: ParticipantRegistered = parse(json)?;
                let suspended = record.status == crate::domain::participant::ParticipantStatus::Suspended;
                let state = ParticipantState { registered: object(json)?, suspended, leaf, record };
                self.participants.insert(state.record.participant.clone(), state);
            }
            PARTICIPANT_SUSPENDED => {
                let r: records::ParticipantSuspended = parse(json)?;
                let p = self
                    .participants
                    .get_mut(&r.participant)
                    .ok_or_else(|| format!("suspends participant {}, which is not registered", r.participant))?;
                p.suspended = true;
                p.leaf = leaf;
            }
            DATASET_REGISTERED => {
                let record: DatasetRegistered = parse(json)?;
                let state = DatasetState { versions: Vec::new(), review_policy: None, leaf, record };
                self.datasets.insert(state.record.dataset.clone(), state);
            }
            VERSION_PUBLISHED => {
                let r: records::VersionPublished = parse(json)?;
                let d = self
                    .datasets
                    .get_mut(&r.dataset)
                    .ok_or_else(|| format!("publishes a version of dataset {}, which is not registered", r.dataset))?;
                let status = r.status.unwrap_or_else(|| "RELEASED".to_owned());
                // Published under the policy the log last set: in review exactly when there is one.
                let expected = if d.review_policy.is_some() { "IN_REVIEW" } else { "RELEASED" };
                let levels = d.review_policy.clone();
                d.versions.push(VersionState {
                    sha256: r.sha256,
                    status: status.clone(),
                    leaf,
                    levels,
                    approvals: Vec::new(),
                });
                if status != expected {
                    return Err(format!(
                        "publishes version {} of dataset {} as {status}, but its logged review policy makes it {expected}",
                        d.versions.len(),
                        r.dataset
                    ));
                }
            }
            REVIEW_POLICY_SET => {
                let r: records::ReviewPolicySet = parse(json)?;
                let d = self.datasets.get_mut(&r.dataset).ok_or_else(|| {
                    format!("sets the review policy of dataset {}, which is not registered", r.dataset)
                })?;
                d.review_policy =
                    Some(r.levels.into_iter().map(|l| l.reviewers).collect::<Vec<_>>()).filter(|l| !l.is_empty());
            }
            VERSION_REVIEWED => {
                let r: records::VersionReviewed = parse(json)?;
                let v = usize::try_from(r.version)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| self.datasets.get_mut(&r.dataset)?.versions.get_mut(i))
                    .ok_or_else(|| {
                        format!("reviews version {} of dataset {}, which was not published", r.version, r.dataset)
                    })?;
                // The step follows from the logged policy: a reviewer of the level awaiting it,
                // not one who decided at another level, and the status it leaves follows.
                let Some(levels) = &v.levels else {
                    return Err(format!(
                        "reviews version {} of dataset {}, published without review",
                        r.version, r.dataset
                    ));
                };
                let level = v.approvals.len() as u32;
                if v.status != "IN_REVIEW" || r.level != level {
                    return Err(format!(
                        "reviews version {} of dataset {} at level {} while it is {} awaiting level {level}",
                        r.version, r.dataset, r.level, v.status
                    ));
                }
                let named = levels.get(level as usize).is_some_and(|l| l.iter().any(|x| x == actor));
                if !named || v.approvals.iter().any(|(_, who)| who == actor) {
                    return Err(format!(
                        "{actor} is not a reviewer of level {level} of version {} of dataset {} under its logged policy, or already decided at another level",
                        r.version, r.dataset
                    ));
                }
                let follows = match r.outcome.as_str() {
                    "RETURNED" => "RETURNED",
                    _ if level as usize + 1 == levels.len() => "RELEASED",
                    _ => "IN_REVIEW",
                };
                if r.status != follows {
                    return Err(format!(
                        "leaves version {} of dataset {} {}, the steps make it {follows}",
                        r.version, r.dataset, r.status
                    ));
                }
                if r.outcome == "APPROVED" {
                    v.approvals.push((level, actor.to_owned()));
                }
                v.status = r.status;
                v.leaf = leaf;
            }
            k if GRANT_KINDS.contains(&k) => {
                let record: GrantRecord = parse(json)?;
                let state = GrantState { latest: object(json)?, leaf, record };
                self.grants.insert(state.record.grant.clone(), state);
            }
            APPROVAL_RECORDED => {
                let r: records::ApprovalRecorded = parse(json)?;
                let day = |text: &str| {
                    crate::policy::calendar::parse_day(text).map_err(|e| format!("approval day `{text}`: {e}"))
                };
                let approval = Approval {
                    issued: day(&r.issued)?,
                    expires: r.expires.as_deref().map(day).transpose()?,
                    id: r.approval,
                    kind: r.approval_type,
                    exporter: r.exporter,
                    reference: r.reference,
                    revoked: false,
                    scope: crate::policy::Scope {
                        recipients: r.scope.recipients,
                        destinations: r.scope.destinations,
                        purposes: r.scope.purposes,
                        max_persons_nonsensitive: r.scope.max_persons_nonsensitive,
                        max_persons_sensitive: r.scope.max_persons_sensitive,
                    },
                };
                if self.approvals.contains_key(&approval.id) {
                    return Err(format!("records approval {} a second time", approval.id));
                }
                let state = ApprovalState {
                    recorded_by: actor.to_owned(),
                    confirmed_by: None,
                    revoked_at: None,
                    recorded: object(json)?,
                    leaf,
                    approval,
                };
                self.approvals.insert(state.approval.id.clone(), state);
            }
            APPROVAL_REVOKED => {
                let r: records::ApprovalRevoked = parse(json)?;
                match (self.approvals.get_mut(&r.approval), r.exporter) {
                    (Some(a), _) => {
                        a.approval.revoked = true;
                        a.revoked_at.get_or_insert(leaf);
                        a.leaf = leaf;
                    }
                    // The gateway found no such approval and recorded the attempt.
                    (None, None) => {}
                    (None, Some(_)) => {
                        return Err(format!("revokes approval {}, which has no approval.recorded record", r.approval))
                    }
                }
            }
            APPROVAL_CONFIRMED => {
                let r: records::ApprovalConfirmed = parse(json)?;
                let a = self.approvals.get_mut(&r.approval).ok_or_else(|| {
                    format!("confirms approval {}, which has no approval.recorded record", r.approval)
                })?;
                a.confirmed_by = Some(actor.to_owned());
                a.leaf = leaf;
            }
            HOLD_QUEUED => {
                let r: records::HoldQueued = parse(json)?;
                if self.holds.insert(r.hold.clone(), HoldState { status: HoldStatus::Open, leaf }).is_some() {
                    return Err(format!("queues hold {} a second time", r.hold));
                }
            }
            HOLD_RESOLVED => {
                let r: records::HoldResolved = parse(json)?;
                let hold = self
                    .holds
                    .get_mut(&r.hold)
                    .ok_or_else(|| format!("resolves hold {}, which no hold.queued before it queued", r.hold))?;
                if hold.status != HoldStatus::Open {
                    return Err(format!("resolves hold {}, already {} at leaf {}", r.hold, hold.status, hold.leaf));
                }
                hold.status = r.status;
                hold.leaf = leaf;
                if r.status == HoldStatus::Released {
                    match r.approval {
                        None => return Err(format!("releases hold {} without an approval", r.hold)),
                        Some(a) if !self.approvals.contains_key(&a) => {
                            return Err(format!(
                                "releases hold {} with approval {a}, which has no approval.recorded record before it",
                                r.hold
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
            POLICY_APPLIED => {
                let r: records::PolicyApplied = parse(json)?;
                let canonical = crate::translog::canonical::to_canonical_json(&r.policy)
                    .map_err(|e| format!("policy not canonicalisable: {e}"))?;
                let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()));
                if digest != r.sha256 {
                    return Err(format!("sha256 {} is not the digest of its policy ({digest})", r.sha256));
                }
                let config: PolicyConfig =
                    serde_json::from_value(r.policy).map_err(|e| format!("policy not readable: {e}"))?;
                self.policies.insert(r.sha256, PolicyState { config, leaf });
            }
            // Other kinds (completions, tables, refused attempts, ledger scopes) change nothing replay reads.
            _ => {}
        }
        Ok(())
    }
}
