//! The body of every record kind: the log's external format, as auditors and `audit verify` read it.

#[cfg(test)]
mod tests {
    //! Golden canonical bytes of every record kind. The literals were captured from the records
    //! as the use cases built them with `json!` (issue 10); a change here is a change of the log's
    //! external format.

    use std::collections::BTreeSet;

    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    use serde_json::{json, Value};

    use super::super::{NewRecord, RecordKind};
    use crate::domain::classification::{Classification, Level, Pi, Share};
    use crate::domain::dataset::{Dataset, FieldDef, FieldName, FieldType, VersionInfo};
    use crate::domain::grant::{Grant, GrantStatus, GrantedField, RowFilter};
    use crate::domain::hold::{Hold, HoldStatus};
    use crate::domain::ids::{DatasetId, ParticipantId};
    use crate::domain::mask::{DateGranularity, Mask};
    use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
    use crate::policy::{approvals::ScopeMiss, Field};
    use crate::policy::{
        Action, Approval, ApprovalCheck, ApprovalOutcome, ApprovalType, Counts, Decision, DecisionJson, Direction,
        Exemption, ExemptionClaim, Fired, HoldRequirement, Mechanism, Persons, RuleId, Ruleset, Scope,
    };

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::microseconds(123_456)
    }

    fn pid(s: &str) -> ParticipantId {
        ParticipantId::parse(s).unwrap()
    }

    fn did(s: &str) -> DatasetId {
        DatasetId::parse(s).unwrap()
    }

    fn field(s: &str) -> FieldName {
        FieldName::parse(s).unwrap()
    }

    fn class(level: Level, pi: Pi) -> Classification {
        Classification { level, pi, stat_micro: false, share: Share::Conditional, ftz_negative_list: false }
    }

    fn leaf(kind: RecordKind, actor: &str, body: Value) -> String {
        NewRecord::new(kind, actor, at(), body).leaf().unwrap()
    }

    fn participant() -> Participant {
        Participant {
            id: pid("hk-research"),
            display_name: "香港统计研究所 \"HKSR\"".into(),
            kind: ParticipantKind::Other,
            recipient_type: RecipientType::Research,
            region: Region::parse("HK").unwrap(),
            in_tianjin_ftz: false,
            roles: BTreeSet::from([Role::Consumer, Role::Publisher]),
            clearance: Level::G3,
            status: ParticipantStatus::Active,
        }
    }

    fn dataset() -> Dataset {
        let def = |name: &str, ty, class, default_mask| FieldDef {
            name: field(name),
            ty,
            class,
            default_mask,
            description: "not recorded".into(),
            nullable: true,
        };
        Dataset {
            id: did("survey"),
            owner: pid("tj-stats"),
            title: "not recorded".into(),
            description: "not recorded".into(),
            government_data: true,
            fields: vec![
                def("enterprise", FieldType::String, class(Level::G2, Pi::None), Mask::None),
                def(
                    "person_id",
                    FieldType::String,
                    Classification {
                        level: Level::G4,
                        pi: Pi::Spi,
                        stat_micro: true,
                        share: Share::NotShared,
                        ftz_negative_list: true,
                    },
                    Mask::Hash,
                ),
                def(
                    "contact",
                    FieldType::String,
                    class(Level::G3, Pi::Pi),
                    Mask::Partial { keep_first: 1, keep_last: 2 },
                ),
                def(
                    "founded",
                    FieldType::Date,
                    class(Level::G2, Pi::None),
                    Mask::GeneralizeDate { granularity: DateGranularity::Month },
                ),
                def("revenue", FieldType::Int64, class(Level::G3, Pi::None), Mask::Bucket { width: 1000 }),
            ],
            person_key_field: Some(field("person_id")),
            contributor_key_field: None,
            registered_at: at(),
        }
    }

    fn grant() -> Grant {
        Grant {
            id: "g-0123456789abcdef0123456789abcdef".into(),
            dataset: did("survey"),
            consumer: pid("tj-commerce"),
            fields: vec![
                GrantedField { name: field("enterprise"), mask: None },
                GrantedField { name: field("contact"), mask: Some(Mask::Redact) },
            ],
            purpose: "统计分析".into(),
            legal_basis: "统计法 第七条".into(),
            statistical_purpose: true,
            status: GrantStatus::Pending,
            requested_expiry: None,
            expires_at: None,
            row_filter: None,
            reason: String::new(),
            requested_at: at(),
            decided_at: None,
            exemption: Exemption::None,
            exemption_attested_by: None,
        }
    }

    /// A grant approved with everything optional set.
    fn approved_grant() -> Grant {
        Grant {
            status: GrantStatus::Approved,
            expires_at: Some(
                Utc.with_ymd_and_hms(2025, 12, 31, 16, 0, 0).unwrap() + chrono::Duration::milliseconds(500),
            ),
            row_filter: Some(RowFilter {
                field: field("enterprise"),
                values: vec!["a".into(), "b".into(), "c".into()],
            }),
            decided_at: Some(at()),
            exemption: Exemption::ForeignOriginTransit,
            ..grant()
        }
    }

    fn approval(expires: Option<NaiveDate>, scope: Scope) -> Approval {
        Approval {
            id: "a-cac-7".into(),
            kind: ApprovalType::CacSa,
            exporter: "tj-stats".into(),
            reference: "CAC-2025-017".into(),
            issued: NaiveDate::from_ymd_opt(2025, 1, 2).unwrap(),
            expires,
            revoked: false,
            scope,
        }
    }

    fn decision() -> Decision {
        let mut rules = Fired::default();
        rules.insert(RuleId::A2);
        rules.insert(RuleId::A3);
        Decision {
            direction: Direction::Export,
            ruleset: Ruleset::Cn2024,
            mechanism: Mechanism::RequiresSecurityAssessment,
            action: Action::Hold,
            rules,
            approval: Some(ApprovalOutcome {
                id: "a-cac-7".into(),
                kind: ApprovalType::CacSa,
                check: ApprovalCheck::OutOfScope,
                scope_miss: Some(ScopeMiss::Destination),
            }),
            authority: None,
            counts: Counts {
                window_start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                nonsensitive_before: 90_000,
                nonsensitive_after: 100_200,
                sensitive_before: 7_000,
                sensitive_after: 8_200,
            },
            hold: Some(HoldRequirement {
                mechanism: Mechanism::RequiresSecurityAssessment,
                satisfied_by: Mechanism::RequiresSecurityAssessment.satisfied_by(),
                exporter: "tj-stats".into(),
                recipient: "hk-research".into(),
                region: Region::parse("HK").unwrap(),
                purpose: "统计分析".into(),
                counts: Counts {
                    window_start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                    nonsensitive_before: 90_000,
                    nonsensitive_after: 100_200,
                    sensitive_before: 7_000,
                    sensitive_after: 8_200,
                },
            }),
        }
    }

    fn hold(status: HoldStatus, approval_id: Option<&str>, reason: &str) -> Hold {
        Hold {
            id: "h-00112233445566778899aabbccddeeff".into(),
            status,
            grant_id: "g-0123456789abcdef0123456789abcdef".into(),
            dataset: did("survey"),
            consumer: pid("hk-research"),
            exporter: pid("tj-stats"),
            mechanism: "REQUIRES_SECURITY_ASSESSMENT".into(),
            body: json!({}),
            created_at: at(),
            resolved_by: Some(pid("officer-1")),
            resolved_at: Some(at()),
            reason: reason.into(),
            approval_id: approval_id.map(str::to_owned),
        }
    }

    // --- participants ---------------------------------------------------------------------------

    #[test]
    fn participant_registered() {
        let p = participant();
        let body = json!({
            "participant": p.id.as_str(),
            "display_name": p.display_name,
            "kind": p.kind.as_str(),
            "recipient_type": p.recipient_type.as_str(),
            "region": p.region.as_str(),
            "in_tianjin_ftz": p.in_tianjin_ftz,
            "roles": p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "clearance": p.clearance.as_str(),
            "status": p.status.as_str(),
        });
        assert_eq!(
            leaf(RecordKind::ParticipantRegistered, "local:participants", body),
            r#"{"actor":"local:participants","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","clearance":"G3","display_name":"香港统计研究所 \"HKSR\"","in_tianjin_ftz":false,"kind":"OTHER","participant":"hk-research","recipient_type":"RESEARCH","region":"HK","roles":["publisher","consumer"],"schema":1,"status":"ACTIVE","type":"participant.registered"}"#
        );
    }

    #[test]
    fn participant_suspended() {
        let (id, reason) = (pid("hk-research"), "证书泄露\nticket 42");
        let body = json!({"participant": id.as_str(), "reason": reason});
        assert_eq!(
            leaf(RecordKind::ParticipantSuspended, "admin-1", body),
            r#"{"actor":"admin-1","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","participant":"hk-research","reason":"证书泄露\nticket 42","schema":1,"type":"participant.suspended"}"#
        );
    }

    // --- catalog and publishing -----------------------------------------------------------------

    #[test]
    fn dataset_registered() {
        let d = dataset();
        let body = json!({
            "dataset": d.id.as_str(),
            "owner": d.owner.as_str(),
            "government_data": d.government_data,
            "person_key_field": d.person_key_field.as_ref().map(|f| f.as_str()),
            "contributor_key_field": d.contributor_key_field.as_ref().map(|f| f.as_str()),
            "fields": d.fields.iter().map(|f| json!({
                "name": f.name.as_str(),
                "type": f.ty.as_str(),
                "level": f.class.level.as_str(),
                "pi": f.class.pi.as_str(),
                "stat_micro": f.class.stat_micro,
                "share": f.class.share.as_str(),
                "ftz_negative_list": f.class.ftz_negative_list,
                "default_mask": f.default_mask,
            })).collect::<Vec<_>>(),
        });
        assert_eq!(
            leaf(RecordKind::DatasetRegistered, "tj-stats", body),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","contributor_key_field":null,"dataset":"survey","fields":[{"default_mask":{"kind":"NONE"},"ftz_negative_list":false,"level":"G2","name":"enterprise","pi":"NONE","share":"CONDITIONAL","stat_micro":false,"type":"STRING"},{"default_mask":{"kind":"HASH"},"ftz_negative_list":true,"level":"G4","name":"person_id","pi":"SPI","share":"NOT_SHARED","stat_micro":true,"type":"STRING"},{"default_mask":{"keep_first":1,"keep_last":2,"kind":"PARTIAL"},"ftz_negative_list":false,"level":"G3","name":"contact","pi":"PI","share":"CONDITIONAL","stat_micro":false,"type":"STRING"},{"default_mask":{"granularity":"MONTH","kind":"GENERALIZE_DATE"},"ftz_negative_list":false,"level":"G2","name":"founded","pi":"NONE","share":"CONDITIONAL","stat_micro":false,"type":"DATE"},{"default_mask":{"kind":"BUCKET","width":1000},"ftz_negative_list":false,"level":"G3","name":"revenue","pi":"NONE","share":"CONDITIONAL","stat_micro":false,"type":"INT64"}],"government_data":true,"owner":"tj-stats","person_key_field":"person_id","schema":1,"type":"dataset.registered"}"#
        );
    }

    #[test]
    fn version_published() {
        let (dataset, rows, chunks, sha256, key) = (did("survey"), 1_200u64, 3u64, [0xabu8; 32], "upload-2025-03");
        let body = json!({
            "dataset": dataset.as_str(),
            "rows": rows,
            "chunks": chunks,
            "sha256": hex::encode(sha256),
            "idempotency_key": key,
        });
        assert_eq!(
            leaf(RecordKind::VersionPublished, "tj-stats", body),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","chunks":3,"dataset":"survey","idempotency_key":"upload-2025-03","rows":1200,"schema":1,"sha256":"abababababababababababababababababababababababababababababababab","type":"version.published"}"#
        );
    }

    // --- sharing --------------------------------------------------------------------------------

    fn grant_body(g: &Grant) -> Value {
        json!({
            "grant": g.id,
            "dataset": g.dataset.as_str(),
            "consumer": g.consumer.as_str(),
            "fields": g.fields.iter().map(|f| json!({"name": f.name.as_str(), "mask": f.mask})).collect::<Vec<_>>(),
            "purpose": g.purpose,
            "legal_basis": g.legal_basis,
            "statistical_purpose": g.statistical_purpose,
            "status": g.status.as_str(),
            "expires_at": g.expires_at.map(|t| t.to_rfc3339()),
            // The filter's field only: its values may be personal data.
            "row_filter_field": g.row_filter.as_ref().map(|f| f.field.as_str()),
            "row_filter_values": g.row_filter.as_ref().map(|f| f.values.len()),
            "reason": g.reason,
            "exemption": g.exemption.as_str(),
            "exemption_attested_by": g.exemption_attested_by.as_ref().map(|p| p.as_str()),
        })
    }

    #[test]
    fn grant_requested() {
        assert_eq!(
            leaf(RecordKind::GrantRequested, "tj-commerce", grant_body(&grant())),
            r#"{"actor":"tj-commerce","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"NONE","exemption_attested_by":null,"expires_at":null,"fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"","row_filter_field":null,"row_filter_values":null,"schema":1,"statistical_purpose":true,"status":"PENDING","type":"grant.requested"}"#
        );
    }

    #[test]
    fn grant_approved() {
        assert_eq!(
            leaf(RecordKind::GrantApproved, "tj-stats", grant_body(&approved_grant())),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":null,"expires_at":"2025-12-31T16:00:00.500+00:00","fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"","row_filter_field":"enterprise","row_filter_values":3,"schema":1,"statistical_purpose":true,"status":"APPROVED","type":"grant.approved"}"#
        );
    }

    #[test]
    fn grant_refused() {
        let g = Grant { status: GrantStatus::Refused, reason: "purpose too broad".into(), ..grant() };
        assert_eq!(
            leaf(RecordKind::GrantRefused, "tj-stats", grant_body(&g)),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"NONE","exemption_attested_by":null,"expires_at":null,"fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"purpose too broad","row_filter_field":null,"row_filter_values":null,"schema":1,"statistical_purpose":true,"status":"REFUSED","type":"grant.refused"}"#
        );
    }

    #[test]
    fn grant_revoked() {
        let g = Grant { status: GrantStatus::Revoked, reason: "contract ended".into(), ..approved_grant() };
        assert_eq!(
            leaf(RecordKind::GrantRevoked, "tj-stats", grant_body(&g)),
            r#"{"actor":"tj-stats","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":null,"expires_at":"2025-12-31T16:00:00.500+00:00","fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"contract ended","row_filter_field":"enterprise","row_filter_values":3,"schema":1,"statistical_purpose":true,"status":"REVOKED","type":"grant.revoked"}"#
        );
    }

    #[test]
    fn exemption_attested() {
        let g = Grant { exemption_attested_by: Some(pid("officer-1")), ..approved_grant() };
        assert_eq!(
            leaf(RecordKind::ExemptionAttested, "officer-1", grant_body(&g)),
            r#"{"actor":"officer-1","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"tj-commerce","dataset":"survey","exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":"officer-1","expires_at":"2025-12-31T16:00:00.500+00:00","fields":[{"mask":null,"name":"enterprise"},{"mask":{"kind":"REDACT"},"name":"contact"}],"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","purpose":"统计分析","reason":"","row_filter_field":"enterprise","row_filter_values":3,"schema":1,"statistical_purpose":true,"status":"APPROVED","type":"exemption.attested"}"#
        );
    }

    // --- exchange -------------------------------------------------------------------------------

    /// The decision record as `exchange::decision_record` builds it, from the plan's parts.
    fn decision_body(approval: Option<ApprovalOutcome>, dropped: &[&str], outcome: &str) -> Value {
        let caller =
            (pid("hk-research"), "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e".to_owned());
        let exporter = Participant {
            id: pid("tj-stats"),
            kind: ParticipantKind::StateOrgan,
            in_tianjin_ftz: true,
            region: Region::parse("CN-TJ").unwrap(),
            ..participant()
        };
        let recipient = participant();
        let access_from_outside_mainland = true;
        let dataset = dataset();
        let version = VersionInfo {
            dataset: did("survey"),
            version: 3,
            rows: 1_200,
            chunks: 3,
            sha256: [0xab; 32],
            publisher: pid("tj-stats"),
            published_at: at(),
            idempotency_key: "upload-2025-03".into(),
        };
        let grant = approved_grant();
        let exemption =
            ExemptionClaim { exemption: Exemption::ForeignOriginTransit, attested_by: Some("officer-1".into()) };
        let persons = Persons {
            nonsensitive: 1_200,
            sensitive: 1_200,
            already_counted_nonsensitive: 1_000,
            already_counted_sensitive: 0,
        };
        let delivered = [
            (field("enterprise"), class(Level::G2, Pi::None), Mask::None),
            (field("contact"), class(Level::G3, Pi::Pi), Mask::Partial { keep_first: 1, keep_last: 2 }),
            (
                field("founded"),
                Classification { stat_micro: true, ..class(Level::G2, Pi::None) },
                Mask::GeneralizeDate { granularity: DateGranularity::Year },
            ),
            (field("revenue"), class(Level::G3, Pi::None), Mask::Bucket { width: 1000 }),
            (field("person_id"), class(Level::G4, Pi::Spi), Mask::Hash),
            (field("phone"), class(Level::G4, Pi::Pi), Mask::Redact),
        ];
        let dropped: Vec<FieldName> = dropped.iter().map(|n| field(n)).collect();
        let d = Decision { approval, ..decision() };
        json!({
            "transfer": "t-0123456789abcdef",
            "caller": {"id": caller.0.as_str(), "cert_sha256": caller.1},
            "exporter": {"id": exporter.id.as_str(), "kind": exporter.kind.as_str(), "in_tianjin_ftz": exporter.in_tianjin_ftz},
            "recipient": {
                "id": recipient.id.as_str(),
                "type": recipient.recipient_type.as_str(),
                "region": recipient.region.as_str(),
                "access_from_outside_mainland": access_from_outside_mainland,
            },
            "dataset": dataset.id.as_str(),
            "version": version.version,
            "version_sha256": hex::encode(version.sha256),
            "government_data": dataset.government_data,
            "grant": grant.id,
            "purpose": grant.purpose,
            "legal_basis": grant.legal_basis,
            "exemption": exemption.exemption.as_str(),
            "exemption_attested_by": exemption.attested_by,
            "persons": {
                "nonsensitive": persons.nonsensitive,
                "sensitive": persons.sensitive,
                "already_counted_nonsensitive": persons.already_counted_nonsensitive,
                "already_counted_sensitive": persons.already_counted_sensitive,
            },
            "approval": d.approval.as_ref().map(|a| json!({
                "id": a.id, "type": a.kind.as_str(), "check": a.check.as_str(),
                "scope_miss": a.scope_miss.map(|m| m.as_str()),
            })),
            "fields": delivered.iter().map(|(name, class, mask)| json!({
                "name": name.as_str(),
                "level": class.level.as_str(),
                "pi": class.pi.as_str(),
                "stat_micro": class.stat_micro,
                "mask": mask,
            })).chain(dropped.iter().map(|n| json!({"name": n.as_str(), "mask": {"kind": "DROP"}}))).collect::<Vec<_>>(),
            "rows": version.rows,
            "from_batch": 2u64,
            "ruleset": d.ruleset.as_str(),
            "decision": DecisionJson::from(&d),
            "outcome": outcome,
        })
    }

    #[test]
    fn transfer_decision_held_with_the_closest_approval_and_a_dropped_field() {
        let body = decision_body(
            decision().approval,
            &["mobile"],
            "transfer held by rules A2, A3: requires REQUIRES_SECURITY_ASSESSMENT: no applicable approval (CAC_SA) is recorded (hold h-1)",
        );
        assert_eq!(
            leaf(RecordKind::TransferDecision, "hk-research", body),
            r#"{"actor":"hk-research","approval":{"check":"out_of_scope","id":"a-cac-7","scope_miss":"destination","type":"CAC_SA"},"at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","caller":{"cert_sha256":"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","id":"hk-research"},"dataset":"survey","decision":{"action":"HOLD","approval":{"check":"out_of_scope","id":"a-cac-7"},"counts":{"nonsensitive_after":100200,"nonsensitive_before":90000,"sensitive_after":8200,"sensitive_before":7000,"window_start":"2025-01-01"},"export":true,"mechanism":"REQUIRES_SECURITY_ASSESSMENT","rules":["A2","A3"]},"exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":"officer-1","exporter":{"id":"tj-stats","in_tianjin_ftz":true,"kind":"STATE_ORGAN"},"fields":[{"level":"G2","mask":{"kind":"NONE"},"name":"enterprise","pi":"NONE","stat_micro":false},{"level":"G3","mask":{"keep_first":1,"keep_last":2,"kind":"PARTIAL"},"name":"contact","pi":"PI","stat_micro":false},{"level":"G2","mask":{"granularity":"YEAR","kind":"GENERALIZE_DATE"},"name":"founded","pi":"NONE","stat_micro":true},{"level":"G3","mask":{"kind":"BUCKET","width":1000},"name":"revenue","pi":"NONE","stat_micro":false},{"level":"G4","mask":{"kind":"HASH"},"name":"person_id","pi":"SPI","stat_micro":false},{"level":"G4","mask":{"kind":"REDACT"},"name":"phone","pi":"PI","stat_micro":false},{"mask":{"kind":"DROP"},"name":"mobile"}],"from_batch":2,"government_data":true,"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","outcome":"transfer held by rules A2, A3: requires REQUIRES_SECURITY_ASSESSMENT: no applicable approval (CAC_SA) is recorded (hold h-1)","persons":{"already_counted_nonsensitive":1000,"already_counted_sensitive":0,"nonsensitive":1200,"sensitive":1200},"purpose":"统计分析","recipient":{"access_from_outside_mainland":true,"id":"hk-research","region":"HK","type":"RESEARCH"},"rows":1200,"ruleset":"CN2024","schema":1,"transfer":"t-0123456789abcdef","type":"transfer.decision","version":3,"version_sha256":"abababababababababababababababababababababababababababababababab"}"#
        );
    }

    #[test]
    fn transfer_decision_authorised_without_approval() {
        let body = decision_body(None, &[], "AUTHORISED");
        assert_eq!(
            leaf(RecordKind::TransferDecision, "hk-research", body),
            r#"{"actor":"hk-research","approval":null,"at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","caller":{"cert_sha256":"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e","id":"hk-research"},"dataset":"survey","decision":{"action":"HOLD","approval":null,"counts":{"nonsensitive_after":100200,"nonsensitive_before":90000,"sensitive_after":8200,"sensitive_before":7000,"window_start":"2025-01-01"},"export":true,"mechanism":"REQUIRES_SECURITY_ASSESSMENT","rules":["A2","A3"]},"exemption":"FOREIGN_ORIGIN_TRANSIT","exemption_attested_by":"officer-1","exporter":{"id":"tj-stats","in_tianjin_ftz":true,"kind":"STATE_ORGAN"},"fields":[{"level":"G2","mask":{"kind":"NONE"},"name":"enterprise","pi":"NONE","stat_micro":false},{"level":"G3","mask":{"keep_first":1,"keep_last":2,"kind":"PARTIAL"},"name":"contact","pi":"PI","stat_micro":false},{"level":"G2","mask":{"granularity":"YEAR","kind":"GENERALIZE_DATE"},"name":"founded","pi":"NONE","stat_micro":true},{"level":"G3","mask":{"kind":"BUCKET","width":1000},"name":"revenue","pi":"NONE","stat_micro":false},{"level":"G4","mask":{"kind":"HASH"},"name":"person_id","pi":"SPI","stat_micro":false},{"level":"G4","mask":{"kind":"REDACT"},"name":"phone","pi":"PI","stat_micro":false}],"from_batch":2,"government_data":true,"grant":"g-0123456789abcdef0123456789abcdef","legal_basis":"统计法 第七条","outcome":"AUTHORISED","persons":{"already_counted_nonsensitive":1000,"already_counted_sensitive":0,"nonsensitive":1200,"sensitive":1200},"purpose":"统计分析","recipient":{"access_from_outside_mainland":true,"id":"hk-research","region":"HK","type":"RESEARCH"},"rows":1200,"ruleset":"CN2024","schema":1,"transfer":"t-0123456789abcdef","type":"transfer.decision","version":3,"version_sha256":"abababababababababababababababababababababababababababababababab"}"#
        );
    }

    fn completed_body(rows: u64, batches: u64, bytes: u64, outcome: Option<&str>) -> Value {
        json!({
            "transfer": "t-0123456789abcdef",
            "dataset": did("survey").as_str(),
            "version": 3u64,
            "recipient": pid("hk-research").as_str(),
            "rows": rows,
            "batches": batches,
            "bytes": bytes,
            "sha256": hex::encode([0x5au8; 32]),
            "outcome": outcome.unwrap_or("COMPLETED"),
        })
    }

    #[test]
    fn transfer_completed() {
        let body = completed_body(1_200, 3, 65_536, None);
        assert_eq!(
            leaf(RecordKind::TransferCompleted, "hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","batches":3,"bytes":65536,"dataset":"survey","outcome":"COMPLETED","recipient":"hk-research","rows":1200,"schema":1,"sha256":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","transfer":"t-0123456789abcdef","type":"transfer.completed","version":3}"#
        );
    }

    #[test]
    fn transfer_completed_cut_by_a_revocation() {
        let body = completed_body(400, 1, 0, Some("REVOKED: grant g-1 was revoked"));
        assert_eq!(
            leaf(RecordKind::TransferCompleted, "hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","batches":1,"bytes":0,"dataset":"survey","outcome":"REVOKED: grant g-1 was revoked","recipient":"hk-research","rows":400,"schema":1,"sha256":"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","transfer":"t-0123456789abcdef","type":"transfer.completed","version":3}"#
        );
    }

    fn interrupted_body(version: Value) -> Value {
        json!({
            "transfer": "t-0123456789abcdef",
            "dataset": "survey",
            "version": version,
            "recipient": "hk-research",
            "decision_index": 41u64,
            "outcome": "INTERRUPTED: the gateway stopped while the pull was streaming; \
                        what was sent before is not known",
        })
    }

    #[test]
    fn transfer_interrupted() {
        assert_eq!(
            leaf(RecordKind::TransferCompleted, "local:maintenance", interrupted_body(json!(3))),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","dataset":"survey","decision_index":41,"outcome":"INTERRUPTED: the gateway stopped while the pull was streaming; what was sent before is not known","recipient":"hk-research","schema":1,"transfer":"t-0123456789abcdef","type":"transfer.completed","version":3}"#
        );
    }

    #[test]
    fn transfer_interrupted_whose_decision_does_not_parse() {
        assert_eq!(
            leaf(RecordKind::TransferCompleted, "local:maintenance", interrupted_body(Value::Null)),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","dataset":"survey","decision_index":41,"outcome":"INTERRUPTED: the gateway stopped while the pull was streaming; what was sent before is not known","recipient":"hk-research","schema":1,"transfer":"t-0123456789abcdef","type":"transfer.completed","version":null}"#
        );
    }

    // --- assessment and oversight ---------------------------------------------------------------

    /// `assessment::hold_body`.
    fn hold_body(transfer_id: &str, fields: &[Field], decision: &Decision) -> Value {
        let requirement = decision.hold.as_ref().map(|h| {
            json!({
                "mechanism": h.mechanism.as_str(),
                "satisfied_by": h.satisfied_by.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "exporter": h.exporter,
                "recipient": h.recipient,
                "region": h.region.as_str(),
                "purpose": h.purpose,
                "nonsensitive_after": h.counts.nonsensitive_after,
                "sensitive_after": h.counts.sensitive_after,
            })
        });
        json!({
            "transfer": transfer_id,
            "export": decision.is_export(),
            "rules": decision.rules.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "mechanism": decision.mechanism.as_str(),
            "fields": fields.iter().map(|f| json!({
                "name": f.name, "level": f.classification.level.as_str(), "pi": f.classification.pi.as_str(),
            })).collect::<Vec<_>>(),
            "requirement": requirement,
            "closest_approval": decision.approval.as_ref().map(|a| json!({"id": a.id, "check": a.check.as_str()})),
        })
    }

    /// `assessment::queue_hold`'s record.
    fn hold_queued(decision: &Decision) -> String {
        let fields = [
            Field { name: "contact".into(), classification: class(Level::G3, Pi::Pi) },
            Field { name: "person_id".into(), classification: class(Level::G4, Pi::Spi) },
        ];
        let mut body = hold_body("t-0123456789abcdef", &fields, decision);
        body["hold"] = "h-00112233445566778899aabbccddeeff".into();
        body["grant"] = "g-0123456789abcdef0123456789abcdef".into();
        body["dataset"] = did("survey").as_str().into();
        body["consumer"] = pid("hk-research").as_str().into();
        leaf(RecordKind::HoldQueued, "hk-research", body)
    }

    #[test]
    fn hold_queued_with_its_requirement_and_closest_approval() {
        assert_eq!(
            hold_queued(&decision()),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","closest_approval":{"check":"out_of_scope","id":"a-cac-7"},"consumer":"hk-research","dataset":"survey","export":true,"fields":[{"level":"G3","name":"contact","pi":"PI"},{"level":"G4","name":"person_id","pi":"SPI"}],"grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","mechanism":"REQUIRES_SECURITY_ASSESSMENT","requirement":{"exporter":"tj-stats","mechanism":"REQUIRES_SECURITY_ASSESSMENT","nonsensitive_after":100200,"purpose":"统计分析","recipient":"hk-research","region":"HK","satisfied_by":["CAC_SA"],"sensitive_after":8200},"rules":["A2","A3"],"schema":1,"transfer":"t-0123456789abcdef","type":"hold.queued"}"#
        );
    }

    #[test]
    fn hold_queued_without_requirement_or_approval() {
        assert_eq!(
            hold_queued(&Decision { hold: None, approval: None, ..decision() }),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","closest_approval":null,"consumer":"hk-research","dataset":"survey","export":true,"fields":[{"level":"G3","name":"contact","pi":"PI"},{"level":"G4","name":"person_id","pi":"SPI"}],"grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","mechanism":"REQUIRES_SECURITY_ASSESSMENT","requirement":null,"rules":["A2","A3"],"schema":1,"transfer":"t-0123456789abcdef","type":"hold.queued"}"#
        );
    }

    fn hold_resolved(hold: &Hold) -> Value {
        json!({
            "hold": hold.id,
            "status": hold.status.as_str(),
            "grant": hold.grant_id,
            "dataset": hold.dataset.as_str(),
            "consumer": hold.consumer.as_str(),
            "exporter": hold.exporter.as_str(),
            "approval": hold.approval_id,
            "reason": hold.reason,
        })
    }

    #[test]
    fn hold_resolved_released() {
        let body = hold_resolved(&hold(HoldStatus::Released, Some("a-cac-7"), ""));
        assert_eq!(
            leaf(RecordKind::HoldResolved, "officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"hk-research","dataset":"survey","exporter":"tj-stats","grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","reason":"","schema":1,"status":"RELEASED","type":"hold.resolved"}"#
        );
    }

    #[test]
    fn hold_resolved_refused() {
        let body = hold_resolved(&hold(HoldStatus::Refused, None, "no assessment on file"));
        assert_eq!(
            leaf(RecordKind::HoldResolved, "officer-1", body),
            r#"{"actor":"officer-1","approval":null,"at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","consumer":"hk-research","dataset":"survey","exporter":"tj-stats","grant":"g-0123456789abcdef0123456789abcdef","hold":"h-00112233445566778899aabbccddeeff","reason":"no assessment on file","schema":1,"status":"REFUSED","type":"hold.resolved"}"#
        );
    }

    /// `oversight::approval_body`.
    fn approval_body(a: &Approval) -> Value {
        json!({
            "approval": a.id,
            "approval_type": a.kind.as_str(),
            "exporter": a.exporter,
            "reference": a.reference,
            "issued": a.issued.to_string(),
            "expires": a.expires.map(|d| d.to_string()),
            "scope": {
                "recipients": a.scope.recipients,
                "destinations": a.scope.destinations.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "purposes": a.scope.purposes,
                "max_persons_nonsensitive": a.scope.max_persons_nonsensitive,
                "max_persons_sensitive": a.scope.max_persons_sensitive,
            },
        })
    }

    #[test]
    fn approval_recorded() {
        let scope = Scope {
            recipients: vec!["hk-research".into()],
            destinations: vec![Region::parse("HK").unwrap(), Region::parse("CN-TJ").unwrap()],
            purposes: vec!["统计分析".into()],
            max_persons_nonsensitive: Some(1_000_000),
            max_persons_sensitive: Some(10_000),
        };
        let body = approval_body(&approval(NaiveDate::from_ymd_opt(2027, 12, 31), scope));
        assert_eq!(
            leaf(RecordKind::ApprovalRecorded, "officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","approval_type":"CAC_SA","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","expires":"2027-12-31","exporter":"tj-stats","issued":"2025-01-02","reference":"CAC-2025-017","schema":1,"scope":{"destinations":["HK","CN-TJ"],"max_persons_nonsensitive":1000000,"max_persons_sensitive":10000,"purposes":["统计分析"],"recipients":["hk-research"]},"type":"approval.recorded"}"#
        );
    }

    #[test]
    fn approval_recorded_without_expiry_with_any_scope() {
        let body = approval_body(&approval(None, Scope::default()));
        assert_eq!(
            leaf(RecordKind::ApprovalRecorded, "officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","approval_type":"CAC_SA","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","expires":null,"exporter":"tj-stats","issued":"2025-01-02","reference":"CAC-2025-017","schema":1,"scope":{"destinations":[],"max_persons_nonsensitive":null,"max_persons_sensitive":null,"purposes":[],"recipients":[]},"type":"approval.recorded"}"#
        );
    }

    #[test]
    fn approval_revoked() {
        let mut body = json!({"approval": "a-cac-7", "reason": "scope exceeded"});
        body["exporter"] = "tj-stats".into();
        assert_eq!(
            leaf(RecordKind::ApprovalRevoked, "officer-1", body),
            r#"{"actor":"officer-1","approval":"a-cac-7","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","exporter":"tj-stats","reason":"scope exceeded","schema":1,"type":"approval.revoked"}"#
        );
    }

    #[test]
    fn approval_revoked_of_an_unknown_approval() {
        let body = json!({"approval": "a-none", "reason": "typo"});
        assert_eq!(
            leaf(RecordKind::ApprovalRevoked, "officer-1", body),
            r#"{"actor":"officer-1","approval":"a-none","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","reason":"typo","schema":1,"type":"approval.revoked"}"#
        );
    }

    // --- maintenance ----------------------------------------------------------------------------

    fn refused_body(participant: &str, dataset: &str, reason: &str, attempts: u64) -> Value {
        let first = Utc.with_ymd_and_hms(2025, 3, 4, 5, 5, 0).unwrap();
        let last = at();
        json!({
            "participant": participant,
            "dataset": dataset,
            "reason": reason,
            "attempts": attempts,
            "first_at": first.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "last_at": last.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
    }

    #[test]
    fn access_refused() {
        let body = refused_body("hk-research", "Survey 2025", "no grant", 17);
        assert_eq!(
            leaf(RecordKind::AccessRefused, "hk-research", body),
            r#"{"actor":"hk-research","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","attempts":17,"dataset":"Survey 2025","first_at":"2025-03-04T05:05:00.000000Z","last_at":"2025-03-04T05:06:07.123456Z","participant":"hk-research","reason":"no grant","schema":1,"type":"access.refused"}"#
        );
    }

    #[test]
    fn access_refused_counted_together() {
        let body = refused_body("", "", "", 10_001);
        assert_eq!(
            leaf(RecordKind::AccessRefused, "local:maintenance", body),
            r#"{"actor":"local:maintenance","at":"2025-03-04T05:06:07.123456Z","at_local":"2025-03-04T13:06:07.123456+08:00","attempts":10001,"dataset":"","first_at":"2025-03-04T05:05:00.000000Z","last_at":"2025-03-04T05:06:07.123456Z","participant":"","reason":"","schema":1,"type":"access.refused"}"#
        );
    }
}
