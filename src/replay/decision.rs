//! One `transfer.decision` against the state at its leaf: its inputs and cited facts checked,
//! and what the engine needs to run it again once the whole ledger is known.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike};

use super::records::{Fact, FactKind, Ledger, TransferDecision, Verdict};
use super::state::State;
use crate::domain::classification::{Classification, Pi, SetSummary};
use crate::domain::grant::GrantStatus;
use crate::domain::mask::Mask;
use crate::domain::record::shanghai;
use crate::policy::approvals::{self, Unusable};
use crate::policy::{self, Action, Approval, Direction, PolicyConfig, Ruleset, Transfer, WindowTotals};

/// A decision ready to be run again: everything but the ledger totals, which need the whole log.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub leaf: u64,
    pub transfer_id: String,
    pub transfer: Transfer,
    pub approvals: Vec<Approval>,
    pub config: PolicyConfig,
    pub ledger: Option<Ledger>,
    /// The record's `decision.counts.*_before`.
    pub recorded_before: WindowTotals,
    /// The record's `decision`.
    pub recorded: serde_json::Value,
}

impl Pending {
    /// How many years before the decision's own its counting window starts.
    pub fn years_back(&self) -> u32 {
        match self.transfer.ruleset {
            Ruleset::Cn2024 => self.config.cn2024_window_years_back,
            Ruleset::Cn2022 => self.config.cn2022_window_years_back,
        }
    }

    /// Runs the engine with `totals` and compares its verdict with the record's; the members
    /// that differ, or `None`.
    pub fn rerun(&self, totals: WindowTotals) -> Option<String> {
        let decision = policy::assess(&self.transfer, totals, &self.approvals, &self.config);
        let replayed = match serde_json::to_value(policy::DecisionJson::from(&decision)) {
            Ok(v) => v,
            Err(e) => return Some(format!("the replayed decision cannot be rendered: {e}")),
        };
        (replayed != self.recorded).then(|| {
            let empty = serde_json::Map::new();
            let (got, want) = (replayed.as_object().unwrap_or(&empty), self.recorded.as_object().unwrap_or(&empty));
            let mut keys: Vec<&String> = got.keys().chain(want.keys()).collect();
            keys.sort();
            keys.dedup();
            let diffs: Vec<String> = keys
                .into_iter()
                .filter(|k| got.get(*k) != want.get(*k))
                .map(|k| format!("{k}: recorded {}, replayed {}", show(want.get(k)), show(got.get(k))))
                .collect();
            format!("the rules do not give the recorded decision: {}", diffs.join("; "))
        })
    }
}

fn show(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "nothing".to_owned(), serde_json::Value::to_string)
}

/// A counted ledger entry a decision claims.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub leaf: u64,
    pub exporter: String,
    pub position: u64,
    pub year: i32,
    pub added: WindowTotals,
    /// Counted with a one-year window: `added` is exactly what the year's bucket gained.
    pub one_year: bool,
}

/// What checking one decision found: the problems, the entry it adds to its exporter's ledger,
/// and the re-run to do at the end (`None` when the decision cannot be run again).
#[derive(Debug, Default)]
pub(super) struct Checked {
    pub problems: Vec<String>,
    pub entry: Option<Entry>,
    pub pending: Option<Pending>,
}

/// Checks the decision recorded at `leaf` against `state` (the log before it).
pub(super) fn check(state: &State, leaf: u64, at: &str, json: &str) -> Checked {
    let mut out = Checked::default();
    let d: TransferDecision = match super::state::parse(json) {
        Ok(d) => d,
        Err(e) => {
            out.problems.push(e);
            return out;
        }
    };
    let (Some(facts), Some(ledger), Some(statistical_purpose)) = (&d.facts, d.ledger, d.statistical_purpose) else {
        let missing = [("facts", d.facts.is_none()), ("ledger", d.ledger.is_none())]
            .into_iter()
            .chain([("statistical_purpose", d.statistical_purpose.is_none())])
            .find(|(_, absent)| *absent)
            .map_or("", |(name, _)| name);
        out.problems.push(format!("not replayable: no `{missing}` member"));
        return out;
    };
    let p = &mut out.problems;
    let at = match DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.with_timezone(&shanghai()),
        Err(e) => {
            p.push(format!("`at` is not RFC 3339: {e}"));
            return out;
        }
    };
    let verdict: Verdict = match serde_json::from_value(d.decision.clone()) {
        Ok(v) => v,
        Err(e) => {
            p.push(format!("`decision` not readable: {e}"));
            return out;
        }
    };

    // The cited facts, by kind and id.
    let mut cited: BTreeMap<(FactKind, &str), u64> = BTreeMap::new();
    for f in facts {
        if cited.insert((f.fact, f.id.as_str()), f.leaf).is_some() {
            p.push(format!("cites {} {} twice", f.fact.as_str(), f.id));
        }
        if f.leaf >= leaf {
            p.push(format!("cites {} {} at leaf {}, not before the decision", f.fact.as_str(), f.id, f.leaf));
        }
    }
    // What the engine must have read, with the leaf of the latest record about each.
    let version_id = format!("{}@{}", d.dataset, d.version);
    let mut expected: BTreeMap<(FactKind, &str), u64> = BTreeMap::new();

    // The policy.
    let policy_cited: Vec<&Fact> = facts.iter().filter(|f| f.fact == FactKind::Policy).collect();
    let config = match policy_cited.as_slice() {
        [] => PolicyConfig::default(),
        [f] => match state.policies.get(&f.id) {
            Some(policy) => {
                expected.insert((FactKind::Policy, &f.id), policy.leaf);
                policy.config.clone()
            }
            None => {
                p.push(format!("cites policy {}, which no policy.applied before it records", f.id));
                return out;
            }
        },
        _ => {
            p.push("cites more than one policy".to_owned());
            return out;
        }
    };

    // The participants.
    if d.recipient.id != d.caller.id {
        p.push(format!("the recipient {} is not the caller {}", d.recipient.id, d.caller.id));
    }
    let exporter = state.participants.get(&d.exporter.id);
    let recipient = state.participants.get(&d.recipient.id);
    for (role, id, found) in [("exporter", &d.exporter.id, exporter), ("recipient", &d.recipient.id, recipient)] {
        match found {
            None => p.push(format!("the {role} {id} is not registered")),
            Some(s) => {
                if s.suspended {
                    p.push(format!("the {role} {id} was suspended (leaf {})", s.leaf));
                }
                expected.insert((FactKind::Participant, id), s.leaf);
            }
        }
    }
    if let Some(e) = exporter {
        if (e.record.kind, e.record.in_tianjin_ftz) != (d.exporter.kind, d.exporter.in_tianjin_ftz) {
            p.push(format!(
                "exporter {}: kind {} in_tianjin_ftz {}, its participant record says {} {}",
                d.exporter.id, d.exporter.kind, d.exporter.in_tianjin_ftz, e.record.kind, e.record.in_tianjin_ftz
            ));
        }
    }
    if let Some(r) = recipient {
        if (r.record.recipient_type, &r.record.region) != (d.recipient.kind, &d.recipient.region) {
            p.push(format!(
                "recipient {}: type {} region {}, its participant record says {} {}",
                d.recipient.id, d.recipient.kind, d.recipient.region, r.record.recipient_type, r.record.region
            ));
        }
    }

    // The dataset and version.
    let dataset = state.datasets.get(&d.dataset);
    match dataset {
        None => p.push(format!("dataset {} is not registered", d.dataset)),
        Some(ds) => {
            expected.insert((FactKind::Dataset, &d.dataset), ds.leaf);
            if ds.record.owner != d.exporter.id {
                p.push(format!(
                    "the exporter {} is not the owner {} of dataset {}",
                    d.exporter.id, ds.record.owner, d.dataset
                ));
            }
            if ds.record.government_data != d.government_data {
                p.push(format!(
                    "government_data {}, dataset {} says {}",
                    d.government_data, d.dataset, ds.record.government_data
                ));
            }
            let published =
                usize::try_from(d.version).ok().and_then(|n| n.checked_sub(1)).and_then(|i| ds.versions.get(i));
            match published {
                None => p.push(format!("version {} of dataset {} was not published", d.version, d.dataset)),
                Some(v) => {
                    expected.insert((FactKind::Version, version_id.as_str()), v.leaf);
                    if v.sha256 != d.version_sha256 {
                        p.push(format!(
                            "version_sha256 {} is not the digest {} of version {} of dataset {}",
                            d.version_sha256, v.sha256, d.version, d.dataset
                        ));
                    }
                    if v.status != "RELEASED" {
                        p.push(format!("version {version_id} is {}, not released, at the decision", v.status));
                    }
                }
            }
        }
    }

    // The grant.
    let grant = state.grants.get(&d.grant);
    match grant {
        None => p.push(format!("grant {} has no grant record before the decision", d.grant)),
        Some(g) => {
            expected.insert((FactKind::Grant, &d.grant), g.leaf);
            let r = &g.record;
            let mut differs = |what: &str, recorded: String, granted: String| {
                if recorded != granted {
                    p.push(format!("{what} {recorded}, the grant's latest record (leaf {}) says {granted}", g.leaf));
                }
            };
            differs("consumer", d.recipient.id.clone(), r.consumer.clone());
            differs("dataset", d.dataset.clone(), r.dataset.clone());
            differs("purpose", format!("{:?}", d.purpose), format!("{:?}", r.purpose));
            differs("legal_basis", format!("{:?}", d.legal_basis), format!("{:?}", r.legal_basis));
            differs("statistical_purpose", statistical_purpose.to_string(), r.statistical_purpose.to_string());
            differs("exemption", d.exemption.to_string(), r.exemption.to_string());
            differs(
                "exemption_attested_by",
                format!("{:?}", d.exemption_attested_by),
                format!("{:?}", r.exemption_attested_by),
            );
            if r.status != GrantStatus::Approved {
                p.push(format!("grant {} is {} (leaf {})", d.grant, r.status, g.leaf));
            }
            match r.expires_at.as_deref().map(DateTime::parse_from_rfc3339) {
                Some(Ok(expires)) if at >= expires => {
                    p.push(format!("grant {} expired at {} (leaf {})", d.grant, expires.to_rfc3339(), g.leaf))
                }
                Some(Err(e)) => p.push(format!("grant {}: expires_at not readable: {e}", d.grant)),
                _ => {}
            }
        }
    }

    // The fields: granted, classified as the dataset says, masked as the grant and the
    // recipient's clearance say; those delivered neither REDACT nor DROP are the transfer's.
    let mut fields = Vec::new();
    for f in &d.fields {
        let granted = grant.and_then(|g| g.record.fields.iter().find(|gf| gf.name == f.name));
        let schema = dataset.and_then(|ds| ds.record.fields.iter().find(|sf| sf.name == f.name));
        if grant.is_some() && granted.is_none() {
            p.push(format!("field {} is not granted", f.name));
        }
        if dataset.is_some() && schema.is_none() {
            p.push(format!("field {} is not in dataset {}", f.name, d.dataset));
        }
        let classification = match (f.level, f.pi, f.stat_micro, f.share, f.ftz_negative_list) {
            (None, ..) => None,
            (Some(level), Some(pi), Some(stat_micro), Some(share), Some(ftz)) => {
                Some(Classification { level, pi, stat_micro, share, ftz_negative_list: ftz })
            }
            _ => {
                p.push(format!("delivered field {} lacks pi, stat_micro, share or ftz_negative_list", f.name));
                continue;
            }
        };
        if let (Some(sf), Some(c)) = (schema, classification) {
            let registered = Classification {
                level: sf.level,
                pi: sf.pi,
                stat_micro: sf.stat_micro,
                share: sf.share,
                ftz_negative_list: sf.ftz_negative_list,
            };
            if c != registered {
                p.push(format!("field {}: classification {c:?}, dataset {} says {registered:?}", f.name, d.dataset));
            }
        }
        if let (Some(gf), Some(sf), Some(r)) = (granted, schema, recipient) {
            let applied = crate::masking::mask_for(gf.mask, sf.default_mask, sf.level, r.record.clearance);
            if applied != f.mask {
                p.push(format!(
                    "field {}: mask {}, the grant and clearance give {}",
                    f.name,
                    f.mask.kind_name(),
                    applied.kind_name()
                ));
            }
        }
        match classification {
            None if f.mask != Mask::Drop => p.push(format!("field {} has no classification but is not DROP", f.name)),
            Some(_) if f.mask == Mask::Drop => p.push(format!("field {} is DROP but listed as delivered", f.name)),
            Some(c) if !f.mask.removes_field() => {
                fields.push(policy::Field { name: f.name.clone(), classification: c })
            }
            _ => {}
        }
    }

    let transfer = Transfer {
        ruleset: d.ruleset,
        at,
        exporter: policy::Exporter {
            id: d.exporter.id.clone(),
            kind: d.exporter.kind,
            in_tianjin_ftz: d.exporter.in_tianjin_ftz,
        },
        recipient: policy::Recipient {
            id: d.recipient.id.clone(),
            kind: d.recipient.kind,
            region: d.recipient.region.clone(),
        },
        access_from_outside_mainland: d.recipient.access_from_outside_mainland,
        government_data: d.government_data,
        purpose: d.purpose.clone(),
        legal_basis: Some(d.legal_basis.clone()).filter(|l| !l.trim().is_empty()),
        statistical_purpose,
        exemption: policy::ExemptionClaim { exemption: d.exemption, attested_by: d.exemption_attested_by.clone() },
        fields,
        persons: policy::Persons {
            nonsensitive: d.persons.nonsensitive,
            sensitive: d.persons.sensitive,
            already_counted_nonsensitive: d.persons.already_counted_nonsensitive,
            already_counted_sensitive: d.persons.already_counted_sensitive,
        },
    };

    // The ledger: persons are counted exactly for an export carrying PI or SPI.
    let set = SetSummary::of(transfer.fields.iter().map(|f| &f.classification));
    let counts_persons = transfer.direction() == Direction::Export && set.pi != Pi::None;
    match (ledger, counts_persons) {
        (None, true) => p.push("`ledger` is null, but the transfer exports personal information".to_owned()),
        (Some(_), false) => p.push("`ledger` is set, but the transfer counts no persons".to_owned()),
        _ => {}
    }
    let c = &verdict.counts;
    if let Some(l) = ledger {
        let year = at.year();
        if l.year != year {
            p.push(format!("ledger year {}, the decision's Asia/Shanghai year is {year}", l.year));
        }
        let pass = verdict.action == Action::Pass;
        if l.counted != pass {
            p.push(format!("ledger.counted is {}, the recorded action is {}", l.counted, verdict.action));
        }
        if l.counted {
            match (
                c.nonsensitive_after.checked_sub(c.nonsensitive_before),
                c.sensitive_after.checked_sub(c.sensitive_before),
            ) {
                (Some(nonsensitive), Some(sensitive)) => {
                    out.entry = Some(Entry {
                        leaf,
                        exporter: d.exporter.id.clone(),
                        position: l.position,
                        year: l.year,
                        added: WindowTotals { nonsensitive, sensitive },
                        one_year: match transfer.ruleset {
                            Ruleset::Cn2024 => config.cn2024_window_years_back == 0,
                            Ruleset::Cn2022 => config.cn2022_window_years_back == 0,
                        },
                    })
                }
                _ => p.push("counts after are below counts before".to_owned()),
            }
        }
    }

    // The approvals the engine is given: the exporter's logged, usable ones (a revoked one too:
    // the rules report it as the closest candidate, `revoked`).
    let mut given = Vec::new();
    for a in state.approvals.values().filter(|a| a.approval.exporter == d.exporter.id) {
        if approvals::usable(
            &a.approval,
            &a.recorded_by,
            a.confirmed_by.as_deref(),
            [&transfer.exporter.id, &transfer.recipient.id],
            &config,
        )
        .is_ok()
        {
            expected.insert((FactKind::Approval, &a.approval.id), a.leaf);
            given.push(a.approval.clone());
        }
    }
    for (&(kind, id), &cited_leaf) in &cited {
        match expected.get(&(kind, id)) {
            Some(&latest) if latest != cited_leaf => p.push(format!(
                "cites {} {id} at leaf {cited_leaf}, its latest record before the decision is at leaf {latest}",
                kind.as_str()
            )),
            Some(_) => {}
            None if kind == FactKind::Approval => p.push(why_not_given(state, id, &d.exporter.id, &transfer, &config)),
            None => p.push(format!("cites {} {id}, which the rules do not read", kind.as_str())),
        }
    }
    for (&(kind, id), &latest) in &expected {
        if !cited.contains_key(&(kind, id)) {
            p.push(format!(
                "does not cite {} {id} (latest record at leaf {latest}), which the rules read",
                kind.as_str()
            ));
        }
    }

    out.pending = Some(Pending {
        leaf,
        transfer_id: d.transfer,
        transfer,
        approvals: given,
        config,
        ledger,
        recorded_before: WindowTotals { nonsensitive: c.nonsensitive_before, sensitive: c.sensitive_before },
        recorded: d.decision,
    });
    out
}

/// Why a cited approval is not one the engine may be given.
fn why_not_given(state: &State, id: &str, exporter: &str, transfer: &Transfer, config: &PolicyConfig) -> String {
    let Some(a) = state.approvals.get(id) else {
        return format!("cites approval {id}, which has no approval.recorded record before the decision");
    };
    if a.approval.exporter != exporter {
        return format!("cites approval {id}, which is exporter {}'s, not {exporter}'s", a.approval.exporter);
    }
    match approvals::usable(
        &a.approval,
        &a.recorded_by,
        a.confirmed_by.as_deref(),
        [&transfer.exporter.id, &transfer.recipient.id],
        config,
    ) {
        Err(Unusable::ByAParty) => {
            format!("cites approval {id}, recorded or confirmed by a party to the transfer (separation of duties)")
        }
        Err(Unusable::Unconfirmed) => format!("cites approval {id}, which no second officer confirmed"),
        Ok(()) => format!("cites approval {id}, which the rules do not read"),
    }
}
