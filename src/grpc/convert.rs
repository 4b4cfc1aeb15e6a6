//! Conversions between protobuf messages and domain values. Inbound conversions parse (and
//! name the offending request field); outbound ones cannot fail.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::domain::classification::{Classification, Level, Pi, Share};
use crate::domain::dataset::{Dataset, FieldDef, FieldName, FieldType, VersionInfo};
use crate::domain::grant::{Grant, RowFilter};
use crate::domain::ids::{DatasetId, ParticipantId};
use crate::domain::mask::{DateGranularity, Mask};
use crate::domain::participant::{Participant, ParticipantKind, ParticipantStatus, RecipientType, Region, Role};
use crate::pb;
use crate::policy::Decision;
use crate::service::catalog::DatasetView;
use crate::service::exchange::PullPlan;
use crate::service::extract::DeliveredField;
use crate::service::ServiceError;

/// Declares the conversion of a proto enum to and from a domain enum with the same names
/// (after removing `strip` from the proto name).
macro_rules! enum_conversion {
    ($in:ident, $out:ident, $proto:ty, $domain:ty, $strip:literal) => {
        /// Parses the proto enum value of `field`; `UNSPECIFIED` (0, "not given") and unknown
        /// numbers are refused naming `field`: an unset enum never becomes a default.
        pub fn $in(field: &str, v: i32) -> Result<$domain, ServiceError> {
            let names: Vec<String> = <$domain>::ALL.iter().map(|d| format!("{}{}", $strip, d.as_str())).collect();
            let bad = || {
                let why = if v == 0 { "is required".to_owned() } else { format!("has no value {v}") };
                ServiceError::invalid(field, format!("{why}: one of {}", names.join(", ")))
            };
            let p = <$proto>::try_from(v).map_err(|_| bad())?;
            let name = p.as_str_name();
            let name = name.strip_prefix($strip).unwrap_or(name);
            name.parse::<$domain>().map_err(|_| bad())
        }

        /// The proto enum number of a domain value.
        pub fn $out(d: $domain) -> i32 {
            let name = format!("{}{}", $strip, d.as_str());
            <$proto>::from_str_name(&name).map_or(0, |p| p as i32)
        }
    };
}

enum_conversion!(level_in, level_out, pb::Level, Level, "");
enum_conversion!(pi_in, pi_out, pb::Pi, Pi, "PI_");
enum_conversion!(share_in, share_out, pb::Share, Share, "");
enum_conversion!(field_type_in, field_type_out, pb::FieldType, FieldType, "");
enum_conversion!(kind_in, kind_out, pb::ParticipantKind, ParticipantKind, "");
enum_conversion!(recipient_type_in, recipient_type_out, pb::RecipientType, RecipientType, "");
enum_conversion!(granularity_in, granularity_out, pb::DateGranularity, DateGranularity, "");
enum_conversion!(status_out_in, participant_status_out, pb::ParticipantStatus, ParticipantStatus, "");
enum_conversion!(grant_status_in, grant_status_out, pb::GrantStatus, crate::domain::grant::GrantStatus, "");
enum_conversion!(grant_use_in, grant_use_out, pb::GrantUse, crate::domain::grant::GrantUse, "");

/// A timestamp from the wire.
pub fn time_in(field: &str, t: &Timestamp) -> Result<DateTime<Utc>, ServiceError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| ServiceError::invalid(field, "is not a valid timestamp"))
}

/// A timestamp to the wire.
pub fn time_out(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// A participant id from the wire.
pub fn participant_id_in(field: &str, s: &str) -> Result<ParticipantId, ServiceError> {
    ParticipantId::parse(s).map_err(|e| ServiceError::invalid(field, e))
}

/// A dataset id from the wire.
pub fn dataset_id_in(field: &str, s: &str) -> Result<DatasetId, ServiceError> {
    DatasetId::parse(s).map_err(|e| ServiceError::invalid(field, e))
}

/// The id of a stored grant, hold or approval from the wire: required, and of the form the
/// gateway gives them (1-64 characters of `A-Z a-z 0-9 - _ .`), so that an empty or malformed
/// id answers `INVALID_ARGUMENT` naming `field` rather than `NOT_FOUND`.
pub fn record_id_in<'a>(field: &str, s: &'a str) -> Result<&'a str, ServiceError> {
    if s.is_empty() {
        return Err(ServiceError::invalid(field, "is required"));
    }
    let ok = s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(ServiceError::invalid(field, "must be 1-64 characters of A-Z a-z 0-9 - _ ."));
    }
    Ok(s)
}

/// A field name from the wire.
pub fn field_name_in(field: &str, s: &str) -> Result<FieldName, ServiceError> {
    FieldName::parse(s).map_err(|e| ServiceError::invalid(field, e))
}

/// A mask from the wire; an absent mask is `None` (no mask given). A mask that is given must
/// name its kind: `UNSPECIFIED` is refused rather than read as "no mask".
pub fn mask_in(field: &str, m: Option<&pb::Mask>) -> Result<Option<Mask>, ServiceError> {
    let Some(m) = m else { return Ok(None) };
    let kind = pb::MaskKind::try_from(m.kind)
        .map_err(|_| ServiceError::invalid(format!("{field}.kind"), "unknown mask kind"))?;
    Ok(Some(match kind {
        pb::MaskKind::Unspecified => {
            return Err(ServiceError::invalid(
                format!("{field}.kind"),
                "is required when a mask is given: one of NONE, REDACT, DROP, PARTIAL, HASH, GENERALIZE_DATE, BUCKET (leave the mask out for none)",
            ))
        }
        pb::MaskKind::None => Mask::None,
        pb::MaskKind::Redact => Mask::Redact,
        pb::MaskKind::Drop => Mask::Drop,
        pb::MaskKind::Partial => Mask::Partial { keep_first: m.keep_first, keep_last: m.keep_last },
        pb::MaskKind::Hash => Mask::Hash,
        pb::MaskKind::GeneralizeDate => {
            Mask::GeneralizeDate { granularity: granularity_in(&format!("{field}.granularity"), m.granularity)? }
        }
        pb::MaskKind::Bucket => {
            if m.bucket_width == 0 {
                return Err(ServiceError::invalid(format!("{field}.bucket_width"), "must be positive"));
            }
            Mask::Bucket { width: m.bucket_width }
        }
    }))
}

/// A mask to the wire.
pub fn mask_out(m: &Mask) -> pb::Mask {
    let mut out = pb::Mask::default();
    out.kind = match m {
        Mask::None => pb::MaskKind::None,
        Mask::Redact => pb::MaskKind::Redact,
        Mask::Drop => pb::MaskKind::Drop,
        Mask::Partial { keep_first, keep_last } => {
            out.keep_first = *keep_first;
            out.keep_last = *keep_last;
            pb::MaskKind::Partial
        }
        Mask::Hash => pb::MaskKind::Hash,
        Mask::GeneralizeDate { granularity } => {
            out.granularity = granularity_out(*granularity);
            pb::MaskKind::GeneralizeDate
        }
        Mask::Bucket { width } => {
            out.bucket_width = *width;
            pb::MaskKind::Bucket
        }
    } as i32;
    out
}

/// A field definition from the wire (`at` is its path in the request).
pub fn field_in(at: &str, f: &pb::Field) -> Result<FieldDef, ServiceError> {
    let name = field_name_in(&format!("{at}.name"), &f.name)?;
    let ty = field_type_in(&format!("{at}.type"), f.r#type)?;
    // Every field is classified by its owner (docs/rules.md §1): an unset level, `pi` or `share` is
    // refused, never read as "no personal information" or a default share attribute.
    let level = level_in(&format!("{at}.level"), f.level)?;
    let pi = pi_in(&format!("{at}.pi"), f.pi)?;
    let share = share_in(&format!("{at}.share"), f.share)?;
    Ok(FieldDef {
        name,
        ty,
        class: Classification::new(level, pi, f.stat_micro, share, f.ftz_negative_list),
        default_mask: mask_in(&format!("{at}.default_mask"), f.default_mask.as_ref())?.unwrap_or(Mask::None),
        description: f.description.clone(),
        nullable: f.nullable,
    })
}

/// A field definition to the wire: everything for the owner, the public entry (name, type,
/// level, description) for others.
pub fn field_out(f: &FieldDef, full: bool) -> pb::Field {
    let mut out = pb::Field {
        name: f.name.to_string(),
        r#type: field_type_out(f.ty),
        level: level_out(f.class.level),
        description: f.description.clone(),
        ..Default::default()
    };
    if full {
        out.pi = pi_out(f.class.pi);
        out.stat_micro = f.class.stat_micro;
        out.share = share_out(f.class.share);
        out.ftz_negative_list = Some(f.class.ftz_negative_list);
        out.default_mask = Some(mask_out(&f.default_mask));
        out.nullable = f.nullable;
    }
    out
}

/// A dataset registration from the wire. Owner and registration time are set by the use case.
pub fn dataset_in(owner: &ParticipantId, r: &pb::RegisterDatasetRequest) -> Result<Dataset, ServiceError> {
    let key = |at: &str, s: &str| if s.is_empty() { Ok(None) } else { field_name_in(at, s).map(Some) };
    Ok(Dataset {
        id: dataset_id_in("id", &r.id)?,
        owner: owner.clone(),
        title: r.title.clone(),
        description: r.description.clone(),
        government_data: r.government_data,
        fields: r
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| field_in(&format!("fields[{i}]"), f))
            .collect::<Result<_, _>>()?,
        person_key_field: key("person_key_field", &r.person_key_field)?,
        contributor_key_field: key("contributor_key_field", &r.contributor_key_field)?,
        holding_key_field: key("holding_key_field", &r.holding_key_field)?,
        registered_at: Utc::now(),
    })
}

/// A version to the wire.
pub fn version_out(v: &VersionInfo) -> pb::Version {
    pb::Version {
        version: v.version,
        rows: v.rows,
        sha256: hex::encode(v.sha256),
        publisher: v.publisher.to_string(),
        published_at: Some(time_out(v.published_at)),
        status: v.status.to_string(),
    }
}

/// A catalog entry to the wire, trimmed for non-owners.
pub fn dataset_out(v: &DatasetView) -> pb::Dataset {
    let d = &v.dataset;
    pb::Dataset {
        id: d.id.to_string(),
        owner: d.owner.to_string(),
        title: d.title.clone(),
        description: d.description.clone(),
        government_data: d.government_data,
        fields: d.fields.iter().map(|f| field_out(f, v.is_owner)).collect(),
        person_key_field: if v.is_owner {
            d.person_key_field.as_ref().map(|f| f.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
        contributor_key_field: if v.is_owner {
            d.contributor_key_field.as_ref().map(|f| f.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
        holding_key_field: if v.is_owner {
            d.holding_key_field.as_ref().map(|f| f.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
        registered_at: Some(time_out(d.registered_at)),
        versions: v.versions.iter().map(version_out).collect(),
        latest_version: v.latest_version,
    }
}

/// A participant from the wire (status is ignored: registration makes it active).
pub fn participant_in(p: Option<&pb::Participant>) -> Result<Participant, ServiceError> {
    let p = p.ok_or_else(|| ServiceError::invalid("participant", "is required"))?;
    let roles = p
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| r.parse::<Role>().map_err(|e| ServiceError::invalid(format!("participant.roles[{i}]"), e)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(Participant {
        id: participant_id_in("participant.id", &p.id)?,
        display_name: p.display_name.clone(),
        kind: kind_in("participant.kind", p.kind)?,
        recipient_type: recipient_type_in("participant.recipient_type", p.recipient_type)?,
        region: Region::parse(&p.region).map_err(|e| ServiceError::invalid("participant.region", e))?,
        in_tianjin_ftz: p.in_tianjin_ftz,
        roles,
        clearance: level_in("participant.clearance", p.clearance)?,
        status: ParticipantStatus::Active,
    })
}

/// A participant to the wire.
pub fn participant_out(p: &Participant) -> pb::Participant {
    pb::Participant {
        id: p.id.to_string(),
        display_name: p.display_name.clone(),
        kind: kind_out(p.kind),
        recipient_type: recipient_type_out(p.recipient_type),
        region: p.region.to_string(),
        in_tianjin_ftz: p.in_tianjin_ftz,
        roles: p.roles.iter().map(|r| r.to_string()).collect(),
        clearance: level_out(p.clearance),
        status: participant_status_out(p.status),
    }
}

/// Field names from the wire, `list[i]` naming a bad one.
pub fn names_in(list: &str, names: &[String]) -> Result<Vec<FieldName>, ServiceError> {
    names.iter().enumerate().map(|(i, f)| field_name_in(&format!("{list}[{i}]"), f)).collect()
}

/// A row filter from the wire.
pub fn row_filter_in(at: &str, f: Option<&pb::RowFilter>) -> Result<Option<RowFilter>, ServiceError> {
    f.map(|f| Ok(RowFilter { field: field_name_in(&format!("{at}.field"), &f.field)?, values: f.values.clone() }))
        .transpose()
}

/// A grant to the wire.
pub fn grant_out(g: &Grant) -> pb::Grant {
    pb::Grant {
        id: g.id.clone(),
        dataset_id: g.dataset.to_string(),
        consumer: g.consumer.to_string(),
        fields: g
            .fields
            .iter()
            .map(|f| pb::GrantedField { name: f.name.to_string(), mask: f.mask.as_ref().map(mask_out) })
            .collect(),
        purpose: g.purpose.clone(),
        legal_basis: g.legal_basis.clone(),
        statistical_purpose: g.statistical_purpose,
        status: grant_status_out(g.status),
        requested_expiry: g.requested_expiry.map(time_out),
        expires_at: g.expires_at.map(time_out),
        row_filter: g
            .row_filter
            .as_ref()
            .map(|f| pb::RowFilter { field: f.field.to_string(), values: f.values.clone() }),
        refusal_reason: g.reason.clone(),
        requested_at: Some(time_out(g.requested_at)),
        decided_at: g.decided_at.map(time_out),
        exemption: g.exemption.to_string(),
        exemption_attested_by: g.exemption_attested_by.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        receipt: String::new(),
        r#use: grant_use_out(g.usage),
        dimensions: g.dimensions.iter().map(|f| f.to_string()).collect(),
        measures: g.measures.iter().map(|f| f.to_string()).collect(),
        record: String::new(),
    }
}

/// A decision to the wire.
pub fn decision_out(d: &Decision) -> pb::Decision {
    let rules: Vec<String> = d.rules.iter().map(|r| r.to_string()).collect();
    pb::Decision {
        export: d.is_export(),
        mechanism: d.mechanism.to_string(),
        action: d.action.to_string(),
        reason: format!("{} by rules {}", d.mechanism, rules.join(", ")),
        rules,
    }
}

/// A delivered field to the wire.
pub fn delivered_out(f: &DeliveredField) -> pb::DeliveredField {
    pb::DeliveredField {
        name: f.name.to_string(),
        r#type: field_type_out(f.delivered_ty),
        level: level_out(f.class.level),
        pi: pi_out(f.class.pi),
        stat_micro: f.class.stat_micro,
        mask: Some(mask_out(&f.mask)),
    }
}

/// The header of a pull.
pub fn pull_header(plan: &PullPlan) -> pb::PullHeader {
    pb::PullHeader {
        transfer_id: plan.transfer_id.clone(),
        dataset_id: plan.dataset.id.to_string(),
        version: plan.version.version,
        fields: plan.shape.fields.iter().map(delivered_out).collect(),
        decision: Some(decision_out(&plan.decision)),
        total_batches: plan.version.chunks,
        from_batch: plan.from_batch,
        decision_index: plan.receipt.as_ref().map_or(0, |r| r.index),
        decision_receipt: plan.receipt.as_ref().map(|r| r.text()).unwrap_or_default(),
        decision_record: receipt_record(plan.receipt.as_ref()),
    }
}

/// A receipt's C2SP tlog-proof text; empty when there is none.
pub fn receipt_text(receipt: Option<&crate::log::sequencer::Receipt>) -> String {
    receipt.map(|r| r.text()).unwrap_or_default()
}

/// The record a receipt proves (canonical JSON); empty when there is no receipt.
pub fn receipt_record(receipt: Option<&crate::log::sequencer::Receipt>) -> String {
    receipt.map(|r| r.record.clone()).unwrap_or_default()
}
