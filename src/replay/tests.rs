//! Replay scenarios: each builds a small log as JSON and checks what replay reports.

use serde_json::{json, Value};

use super::{Replay, Report};

const SHA: &str = "abababababababababababababababababababababababababababababababab";
const AT: &str = "2025-03-04T05:06:07.123456Z";

/// A log being written: the leaves in order.
#[derive(Default)]
struct Log {
    leaves: Vec<String>,
}

impl Log {
    /// Appends a record of `kind` by `actor` with `body`'s members; its leaf index.
    fn push(&mut self, kind: &str, actor: &str, at: &str, body: Value) -> u64 {
        let mut record = body;
        let m = record.as_object_mut().expect("an object");
        m.insert("type".into(), kind.into());
        m.insert("schema".into(), 1.into());
        m.insert("at".into(), at.into());
        m.insert("at_local".into(), "not read".into());
        m.insert("actor".into(), actor.into());
        self.leaves.push(crate::translog::canonical::to_canonical_json(&record).expect("canonical"));
        self.leaves.len() as u64 - 1
    }

    fn participant(&mut self, id: &str, kind: &str, recipient_type: &str, region: &str) -> u64 {
        let body = json!({
            "participant": id, "display_name": id, "kind": kind, "recipient_type": recipient_type,
            "region": region, "in_tianjin_ftz": false, "roles": ["publisher", "consumer"],
            "clearance": "G4", "status": "ACTIVE",
        });
        self.push("participant.registered", "local:init", AT, body)
    }

    /// A dataset of `owner` with a `PI` field `name` and a plain field `region`.
    fn dataset(&mut self, id: &str, owner: &str) -> u64 {
        let field = |name: &str, level: &str, pi: &str| {
            json!({"name": name, "type": "STRING", "level": level, "pi": pi, "stat_micro": false,
                   "share": "CONDITIONAL", "ftz_negative_list": pi != "NONE", "default_mask": {"kind": "NONE"}})
        };
        let body = json!({
            "dataset": id, "owner": owner, "government_data": false, "person_key_field": "name",
            "contributor_key_field": null,
            "fields": [field("name", "G3", "PI"), field("region", "G2", "NONE"), field("phone", "G3", "PI")],
        });
        self.push("dataset.registered", owner, AT, body)
    }

    fn version(&mut self, dataset: &str, owner: &str) -> u64 {
        let body =
            json!({"dataset": dataset, "sha256": SHA, "rows": 10, "chunks": 1, "idempotency_key": "k", "version": 1});
        self.push("version.published", owner, AT, body)
    }

    /// An approved grant of `name` and `region` to `consumer`, for research.
    fn grant(&mut self, id: &str, dataset: &str, consumer: &str, owner: &str) -> u64 {
        let body = json!({
            "grant": id, "dataset": dataset, "consumer": consumer,
            "fields": [{"name": "name", "mask": null}, {"name": "region", "mask": null}],
            "purpose": "research", "legal_basis": "", "statistical_purpose": false, "status": "APPROVED",
            "expires_at": null, "row_filter_field": null, "row_filter_values": null, "reason": "",
            "exemption": "NONE", "exemption_attested_by": null,
        });
        self.push("grant.approved", owner, AT, body)
    }

    fn approval(&mut self, id: &str, exporter: &str) -> u64 {
        let body = json!({
            "approval": id, "approval_type": "SCC_FILING", "exporter": exporter, "reference": "ref",
            "issued": "2025-01-02", "expires": null,
            "scope": {"recipients": [], "destinations": [], "purposes": [], "max_persons_nonsensitive": null, "max_persons_sensitive": null},
        });
        self.push("approval.recorded", "officer-1", AT, body)
    }

    fn replay(&self) -> Report {
        let mut replay = Replay::new();
        for (i, leaf) in self.leaves.iter().enumerate() {
            replay.feed(i as u64, leaf);
        }
        replay.finish()
    }
}

/// A pull of `name` (PI) and `region` from `exporter` to `hk-r`, an export to Hong Kong: V1,
/// ALLOW, PASS, counted.
struct Pull {
    id: &'static str,
    at: &'static str,
    exporter: &'static str,
    dataset: &'static str,
    grant: &'static str,
    purpose: &'static str,
    fields: Value,
    persons: u64,
    before: u64,
    position: u64,
    verdict: Option<Value>,
    facts: Vec<Value>,
    version: u64,
}

impl Pull {
    fn new(id: &'static str, exporter: &'static str, facts: Vec<Value>) -> Pull {
        let field = |name: &str, level: &str, pi: &str| {
            json!({"name": name, "level": level, "pi": pi, "stat_micro": false, "share": "CONDITIONAL",
                   "ftz_negative_list": pi != "NONE", "mask": {"kind": "NONE"}})
        };
        let (dataset, grant) = if exporter == "exp-a" { ("ds-a", "g-a") } else { ("ds-b", "g-b") };
        Pull {
            id,
            at: "2025-06-01T02:00:00.000000Z",
            exporter,
            dataset,
            grant,
            purpose: "research",
            fields: json!([field("name", "G3", "PI"), field("region", "G2", "NONE")]),
            persons: 100,
            before: 0,
            position: 0,
            verdict: None,
            facts,
            version: 1,
        }
    }

    fn push(&self, log: &mut Log) -> u64 {
        let verdict = self.verdict.clone().unwrap_or_else(|| {
            json!({"action": "PASS", "approval": null, "export": true, "mechanism": "ALLOW", "rules": ["V1"],
                   "counts": {"window_start": "2025-01-01", "nonsensitive_before": self.before,
                              "nonsensitive_after": self.before + self.persons, "sensitive_before": 0, "sensitive_after": 0}})
        });
        let counted = verdict["action"] == "PASS";
        let body = json!({
            "transfer": self.id,
            "caller": {"id": "hk-r", "cert_sha256": SHA},
            "exporter": {"id": self.exporter, "kind": "OTHER", "in_tianjin_ftz": false},
            "recipient": {"id": "hk-r", "type": "RESEARCH", "region": "HK", "access_from_outside_mainland": false},
            "dataset": self.dataset, "version": self.version, "version_sha256": SHA, "government_data": false,
            "grant": self.grant, "purpose": self.purpose, "legal_basis": "", "statistical_purpose": false,
            "exemption": "NONE", "exemption_attested_by": null,
            "persons": {"nonsensitive": self.persons, "sensitive": 0, "already_counted_nonsensitive": 0, "already_counted_sensitive": 0},
            "approval": null, "fields": self.fields, "rows": 10, "from_batch": 0, "ruleset": "CN2024",
            "decision": verdict, "outcome": "AUTHORISED",
            "ledger": {"position": self.position, "counted": counted, "year": 2025},
            "facts": self.facts,
        });
        log.push("transfer.decision", "hk-r", self.at, body)
    }
}

fn fact(kind: &str, id: &str, leaf: u64) -> Value {
    json!({"fact": kind, "id": id, "leaf": leaf})
}

/// The leaves of the facts of exporter `exp-a`'s pulls.
struct World {
    log: Log,
    exp_a: u64,
    hk_r: u64,
    ds_a: u64,
    v_a: u64,
    g_a: u64,
}

impl World {
    /// Participants `exp-a`, `exp-b` (exporters in Tianjin) and `hk-r` (research, Hong Kong);
    /// `exp-a`'s dataset `ds-a`, version 1 and grant `g-a` to `hk-r`.
    fn new() -> World {
        let mut log = Log::default();
        let exp_a = log.participant("exp-a", "OTHER", "GOV_DEPT", "CN-TJ");
        log.participant("exp-b", "OTHER", "GOV_DEPT", "CN-TJ");
        let hk_r = log.participant("hk-r", "OTHER", "RESEARCH", "HK");
        let ds_a = log.dataset("ds-a", "exp-a");
        let v_a = log.version("ds-a", "exp-a");
        let g_a = log.grant("g-a", "ds-a", "hk-r", "exp-a");
        World { log, exp_a, hk_r, ds_a, v_a, g_a }
    }

    /// The facts every pull from `exp-a` cites.
    fn facts_a(&self) -> Vec<Value> {
        vec![
            fact("participant", "exp-a", self.exp_a),
            fact("participant", "hk-r", self.hk_r),
            fact("dataset", "ds-a", self.ds_a),
            fact("version", "ds-a@1", self.v_a),
            fact("grant", "g-a", self.g_a),
        ]
    }

    fn pull(&self, id: &'static str) -> Pull {
        Pull::new(id, "exp-a", self.facts_a())
    }
}

fn whats(report: &Report) -> Vec<String> {
    report.divergences.iter().map(|d| format!("{} {}: {}", d.leaf, d.kind, d.what)).collect()
}

fn assert_diverges(report: &Report, leaf: u64, needle: &str) {
    assert!(
        report.divergences.iter().any(|d| d.leaf == leaf && d.what.contains(needle)),
        "expected `{needle}` at leaf {leaf}, got {:#?}",
        whats(report)
    );
}

#[test]
fn a_clean_log_of_two_exporters_replays_with_decisions_out_of_ledger_order() {
    let mut w = World::new();
    let exp_b = 1;
    let ds_b = w.log.dataset("ds-b", "exp-b");
    let v_b = w.log.version("ds-b", "exp-b");
    let g_b = w.log.grant("g-b", "ds-b", "hk-r", "exp-b");
    let scc = w.log.approval("a-scc", "exp-b");
    let facts_b = vec![
        fact("participant", "exp-b", exp_b),
        fact("participant", "hk-r", w.hk_r),
        fact("dataset", "ds-b", ds_b),
        fact("version", "ds-b@1", v_b),
        fact("grant", "g-b", g_b),
        fact("approval", "a-scc", scc),
    ];
    // exp-a: entries 1, 3 (logged before 2), 2; exp-b: entry 1.
    Pull { persons: 100, before: 0, position: 0, ..w.pull("t-a1") }.push(&mut w.log);
    Pull { persons: 50, ..Pull::new("t-b1", "exp-b", facts_b) }.push(&mut w.log);
    Pull { persons: 7, before: 130, position: 2, ..w.pull("t-a3") }.push(&mut w.log);
    Pull { persons: 30, before: 100, position: 1, ..w.pull("t-a2") }.push(&mut w.log);
    // A hold queued and released with a recorded approval.
    w.log.push("hold.queued", "hk-r", AT, json!({"hold": "h-1"}));
    w.log.push("hold.resolved", "officer-1", AT, json!({"hold": "h-1", "status": "RELEASED", "approval": "a-scc"}));

    let mut replay = Replay::new();
    for (i, leaf) in w.log.leaves.iter().enumerate() {
        replay.feed(i as u64, leaf);
    }
    let report = replay.finish();
    assert_eq!(whats(&report), Vec::<String>::new());
    assert_eq!(report.decisions, 4);
    let totals = |exporter: &str| replay.state().ledger.get(&(exporter.to_owned(), 2025)).map(|t| t.nonsensitive);
    assert_eq!((totals("exp-a"), totals("exp-b")), (Some(137), Some(50)));
}

#[test]
fn a_pass_the_fields_make_a_hold_diverges() {
    let mut w = World::new();
    // 2 000 000 persons make A4 (REQUIRES_SECURITY_ASSESSMENT) and, with no approval, HOLD.
    let leaf = Pull { persons: 2_000_000, ..w.pull("t-1") }.push(&mut w.log);
    let report = w.log.replay();
    assert_diverges(&report, leaf, "the rules do not give the recorded decision");
    assert_diverges(&report, leaf, r#"action: recorded "PASS", replayed "HOLD""#);
}

#[test]
fn a_decision_citing_an_approval_never_recorded_diverges() {
    let mut w = World::new();
    let mut facts = w.facts_a();
    facts.push(fact("approval", "a-ghost", 2));
    let leaf = Pull { facts, ..w.pull("t-1") }.push(&mut w.log);
    assert_diverges(&w.log.replay(), leaf, "cites approval a-ghost, which has no approval.recorded record");
}

#[test]
fn a_decision_using_an_approval_revoked_earlier_diverges() {
    let mut w = World::new();
    w.log.approval("a-scc", "exp-a");
    let revoked = w.log.push(
        "approval.revoked",
        "officer-1",
        AT,
        json!({"approval": "a-scc", "reason": "r", "exporter": "exp-a"}),
    );
    let mut facts = w.facts_a();
    facts.push(fact("approval", "a-scc", revoked));
    // 100 000 persons need a standard contract; the record says the revoked filing was used.
    let passed = json!({"action": "PASS", "approval": {"check": "valid", "id": "a-scc"}, "export": true,
                        "mechanism": "ALLOW_WITH_SCC_FILING", "rules": ["C2"],
                        "counts": {"window_start": "2025-01-01", "nonsensitive_before": 0, "nonsensitive_after": 100000,
                                   "sensitive_before": 0, "sensitive_after": 0}});
    let leaf = Pull { facts, persons: 100_000, verdict: Some(passed), ..w.pull("t-1") }.push(&mut w.log);
    let report = w.log.replay();
    assert_diverges(&report, leaf, "the rules do not give the recorded decision");
    assert_diverges(&report, leaf, r#"approval: recorded {"check":"valid","id":"a-scc"}"#);
}

#[test]
fn an_unrevoked_usable_approval_left_uncited_diverges() {
    let mut w = World::new();
    let scc = w.log.approval("a-scc", "exp-a");
    let leaf = w.pull("t-1").push(&mut w.log);
    assert_diverges(&w.log.replay(), leaf, &format!("does not cite approval a-scc (latest record at leaf {scc})"));
}

#[test]
fn counts_before_that_disagree_with_the_rebuilt_ledger_diverge() {
    let mut w = World::new();
    Pull { persons: 100, ..w.pull("t-1") }.push(&mut w.log);
    let leaf = Pull { persons: 30, before: 50, position: 1, ..w.pull("t-2") }.push(&mut w.log);
    let report = w.log.replay();
    assert_diverges(&report, leaf, "counts before (non-sensitive 50, sensitive 0) disagree");
    assert_eq!(report.divergences.iter().filter(|d| d.leaf != leaf).count(), 0, "{:#?}", whats(&report));
}

#[test]
fn a_gap_in_an_exporters_ledger_positions_diverges() {
    let mut w = World::new();
    Pull { persons: 100, ..w.pull("t-1") }.push(&mut w.log);
    let leaf = Pull { persons: 30, before: 100, position: 2, ..w.pull("t-3") }.push(&mut w.log);
    assert_diverges(
        &w.log.replay(),
        leaf,
        "ledger has a gap: this decision counts entry 3, but no counted decision in the log is entry 2",
    );
}

#[test]
fn two_decisions_claiming_one_ledger_entry_diverge() {
    let mut w = World::new();
    let first = Pull { persons: 100, ..w.pull("t-1") }.push(&mut w.log);
    let leaf = Pull { persons: 30, ..w.pull("t-2") }.push(&mut w.log);
    assert_diverges(&w.log.replay(), leaf, &format!("entry 1 is claimed by two decisions (leaves {first} and {leaf})"));
}

#[test]
fn a_decision_whose_purpose_differs_from_the_grant_diverges() {
    let mut w = World::new();
    let leaf = Pull { purpose: "marketing", ..w.pull("t-1") }.push(&mut w.log);
    let report = w.log.replay();
    assert_diverges(&report, leaf, r#"purpose "marketing", the grant's latest record"#);
}

#[test]
fn a_decision_delivering_a_field_the_grant_does_not_name_diverges() {
    let mut w = World::new();
    let phone = json!({"name": "phone", "level": "G3", "pi": "PI", "stat_micro": false, "share": "CONDITIONAL",
                       "ftz_negative_list": true, "mask": {"kind": "NONE"}});
    let mut pull = w.pull("t-1");
    pull.fields.as_array_mut().expect("array").push(phone);
    let leaf = pull.push(&mut w.log);
    assert_diverges(&w.log.replay(), leaf, "field phone is not granted");
}

#[test]
fn a_decision_citing_an_older_grant_record_diverges() {
    let mut w = World::new();
    let narrowed = w.log.grant("g-a", "ds-a", "hk-r", "exp-a");
    let leaf = w.pull("t-1").push(&mut w.log);
    let stale = w.g_a;
    assert_diverges(
        &w.log.replay(),
        leaf,
        &format!("cites grant g-a at leaf {stale}, its latest record before the decision is at leaf {narrowed}"),
    );
}

#[test]
fn a_decision_without_facts_is_not_replayable() {
    let mut w = World::new();
    let mut log_record: Value = {
        let leaf = w.pull("t-1").push(&mut w.log);
        serde_json::from_str(&w.log.leaves[leaf as usize]).expect("json")
    };
    log_record.as_object_mut().expect("object").remove("facts");
    let last = w.log.leaves.len() - 1;
    w.log.leaves[last] = log_record.to_string();
    assert_diverges(&w.log.replay(), last as u64, "not replayable: no `facts` member");
}

#[test]
fn a_decision_citing_an_unlogged_policy_diverges_and_a_logged_one_is_used() {
    let mut w = World::new();
    // scc_nonsensitive 50: 100 persons make C2 (ALLOW_WITH_SCC_FILING), held without an approval.
    let policy = json!({"scc_nonsensitive": 50});
    let sha = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        crate::translog::canonical::to_canonical_json(&policy).expect("canonical").as_bytes(),
    ));
    let applied = w.log.push("policy.applied", "local:serve", AT, json!({"policy": policy, "sha256": sha}));
    let mut facts = w.facts_a();
    facts.push(fact("policy", &sha, applied));
    let held = json!({"action": "HOLD", "approval": null, "export": true, "mechanism": "ALLOW_WITH_SCC_FILING", "rules": ["C2"],
                      "counts": {"window_start": "2025-01-01", "nonsensitive_before": 0, "nonsensitive_after": 100, "sensitive_before": 0, "sensitive_after": 0}});
    Pull { verdict: Some(held), facts, ..w.pull("t-1") }.push(&mut w.log);
    let mut unknown = w.facts_a();
    unknown.push(fact("policy", "0000", applied));
    let leaf = Pull { facts: unknown, ..w.pull("t-2") }.push(&mut w.log);
    let report = w.log.replay();
    assert_eq!(whats(&report).len(), 1, "{:#?}", whats(&report));
    assert_diverges(&report, leaf, "cites policy 0000, which no policy.applied before it records");
}

#[test]
fn a_hold_resolved_twice_or_never_queued_diverges() {
    let mut log = Log::default();
    log.push("hold.queued", "hk-r", AT, json!({"hold": "h-1"}));
    log.push("hold.resolved", "officer-1", AT, json!({"hold": "h-1", "status": "REFUSED", "approval": null}));
    let twice =
        log.push("hold.resolved", "officer-1", AT, json!({"hold": "h-1", "status": "REFUSED", "approval": null}));
    let never =
        log.push("hold.resolved", "officer-1", AT, json!({"hold": "h-2", "status": "REFUSED", "approval": null}));
    let report = log.replay();
    assert_diverges(&report, twice, "already REFUSED");
    assert_diverges(&report, never, "no hold.queued before it queued");
}

#[test]
fn a_decision_on_a_version_still_in_review_diverges() {
    let mut w = World::new();
    let body = json!({"dataset": "ds-a", "sha256": SHA, "rows": 10, "chunks": 1, "idempotency_key": "k2",
                      "version": 2, "status": "IN_REVIEW"});
    let v2 = w.log.push("version.published", "exp-a", AT, body);
    let mut facts = w.facts_a();
    facts.retain(|f| f["fact"] != "version");
    facts.push(fact("version", "ds-a@2", v2));
    let mut pull = Pull { facts, ..w.pull("t-1") };
    pull.version = 2;
    let leaf = pull.push(&mut w.log);
    assert_diverges(&w.log.replay(), leaf, "version ds-a@2 is IN_REVIEW, not released, at the decision");
    // Released by its last review step, the same decision replays.
    let mut w2 = World::new();
    w2.log.push(
        "review_policy.set",
        "exp-a",
        AT,
        json!({"dataset": "ds-a", "levels": [{"jurisdiction": "CN", "reviewers": ["nbs"], "deadline_hours": 24}]}),
    );
    let body = json!({"dataset": "ds-a", "sha256": SHA, "rows": 10, "chunks": 1, "idempotency_key": "k2",
                      "version": 2, "status": "IN_REVIEW"});
    w2.log.push("version.published", "exp-a", AT, body);
    let released = w2.log.push(
        "version.reviewed",
        "nbs",
        AT,
        json!({"dataset": "ds-a", "version": 2, "level": 0, "jurisdiction": "CN", "outcome": "APPROVED",
               "reasons": "", "status": "RELEASED"}),
    );
    let mut facts = w2.facts_a();
    facts.retain(|f| f["fact"] != "version");
    facts.push(fact("version", "ds-a@2", released));
    let mut pull = Pull { facts, ..w2.pull("t-1") };
    pull.version = 2;
    pull.push(&mut w2.log);
    let report = w2.log.replay();
    assert!(report.divergences.is_empty(), "{:#?}", whats(&report));
}

#[test]
fn review_steps_must_follow_from_the_logged_policy() {
    let mut w = World::new();
    // Published in review with no logged policy (a policy set only in the database).
    let body = json!({"dataset": "ds-a", "sha256": SHA, "rows": 10, "chunks": 1, "idempotency_key": "k2",
                      "version": 2, "status": "RELEASED"});
    w.log.push(
        "review_policy.set",
        "exp-a",
        AT,
        json!({"dataset": "ds-a", "levels": [{"jurisdiction": "CN-TJ", "reviewers": ["tj"], "deadline_hours": 24},
                                             {"jurisdiction": "CN", "reviewers": ["nbs"], "deadline_hours": 24}]}),
    );
    let released_anyway = w.log.push("version.published", "exp-a", AT, body);
    let report = w.log.replay();
    assert_diverges(&report, released_anyway, "its logged review policy makes it IN_REVIEW");

    let mut w = World::new();
    w.log.push(
        "review_policy.set",
        "exp-a",
        AT,
        json!({"dataset": "ds-a", "levels": [{"jurisdiction": "CN-TJ", "reviewers": ["tj"], "deadline_hours": 24},
                                             {"jurisdiction": "CN", "reviewers": ["nbs"], "deadline_hours": 24}]}),
    );
    let body = json!({"dataset": "ds-a", "sha256": SHA, "rows": 10, "chunks": 1, "idempotency_key": "k2",
                      "version": 2, "status": "IN_REVIEW"});
    w.log.push("version.published", "exp-a", AT, body);
    let step = |level: u32, status: &str| {
        json!({"dataset": "ds-a", "version": 2, "level": level, "jurisdiction": "CN", "outcome": "APPROVED",
               "reasons": "", "status": status})
    };
    // A colluder not named at level 0; then the real one releasing after one level of two.
    let colluder = w.log.push("version.reviewed", "mallory", AT, step(0, "IN_REVIEW"));
    let early = w.log.push("version.reviewed", "tj", AT, step(0, "RELEASED"));
    let report = w.log.replay();
    assert_diverges(&report, colluder, "mallory is not a reviewer of level 0");
    assert_diverges(&report, early, "the steps make it IN_REVIEW");
}
