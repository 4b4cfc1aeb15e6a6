//! `Review`: review before release.

use tonic::{Request, Response, Status};

use super::convert::{dataset_id_in, delivered_out, participant_id_in, receipt_record, receipt_text, time_out};
use super::identity::caller;
use crate::domain::participant::Region;
use crate::domain::review::{ReviewLevel, ReviewOutcome, ReviewPolicy, VersionStatus};
use crate::pb;
use crate::service::review::{self, Pending, ReviewFilter};
use crate::service::{Gateway, ServiceError};

/// The `bth.gateway.v1.Review` service.
#[derive(Debug, Clone)]
pub struct ReviewService(pub Gateway);

/// A policy from the wire; no levels: `None` (removed).
fn policy_in(levels: &[pb::ReviewLevel]) -> Result<Option<ReviewPolicy>, ServiceError> {
    if levels.is_empty() {
        return Ok(None);
    }
    let levels = levels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(ReviewLevel {
                jurisdiction: Region::parse(&l.jurisdiction)
                    .map_err(|e| ServiceError::invalid(format!("levels[{i}].jurisdiction"), e))?,
                reviewers: l
                    .reviewers
                    .iter()
                    .enumerate()
                    .map(|(j, r)| participant_id_in(&format!("levels[{i}].reviewers[{j}]"), r))
                    .collect::<Result<_, _>>()?,
                deadline_hours: l.deadline_hours,
            })
        })
        .collect::<Result<_, ServiceError>>()?;
    Ok(Some(ReviewPolicy { levels }))
}

/// A version under review to the wire.
fn reviewed_out(
    v: &crate::domain::dataset::VersionInfo,
    owner: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::ReviewedVersion {
    let review = v.review.as_ref();
    let level = review.map_or(0, |r| r.level());
    let current = review.and_then(|r| r.policy.levels.get(level as usize));
    let due = review.and_then(|r| r.due());
    pb::ReviewedVersion {
        dataset_id: v.dataset.to_string(),
        version: v.version,
        owner: owner.to_owned(),
        publisher: v.publisher.to_string(),
        published_at: Some(time_out(v.published_at)),
        status: v.status.to_string(),
        level,
        levels: review.map_or(0, |r| r.policy.levels.len() as u32),
        jurisdiction: current.map(|l| l.jurisdiction.to_string()).unwrap_or_default(),
        reviewers: current.map(|l| l.reviewers.iter().map(|r| r.to_string()).collect()).unwrap_or_default(),
        due: due.map(time_out),
        overdue: v.status == VersionStatus::InReview && due.is_some_and(|d| d <= now),
        steps: review
            .map(|r| {
                r.steps
                    .iter()
                    .map(|s| pb::ReviewStep {
                        level: s.level,
                        reviewer: s.reviewer.to_string(),
                        outcome: s.outcome.to_string(),
                        reasons: s.reasons.clone(),
                        at: Some(time_out(s.at)),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        receipt: String::new(),
        record: String::new(),
    }
}

impl ReviewService {
    async fn decide(
        &self,
        request: Request<pb::ReviewVersionRequest>,
        outcome: ReviewOutcome,
    ) -> Result<Response<pb::ReviewedVersion>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = dataset_id_in("dataset_id", &r.dataset_id)?;
        if r.version == 0 {
            return Err(ServiceError::invalid("version", "is required (versions start at 1)").into());
        }
        let (v, receipt) = review::decide(&self.0, &caller, &dataset, r.version, outcome, &r.reasons).await?;
        let owner = self.0.store.dataset(&dataset).await.map_err(ServiceError::from)?.map(|d| d.owner.to_string());
        let mut out = reviewed_out(&v, &owner.unwrap_or_default(), self.0.clock.now());
        out.receipt = receipt_text(receipt.as_ref());
        out.record = receipt_record(receipt.as_ref());
        Ok(Response::new(out))
    }
}

#[tonic::async_trait]
impl pb::review_server::Review for ReviewService {
    async fn set_review_policy(
        &self,
        request: Request<pb::SetReviewPolicyRequest>,
    ) -> Result<Response<pb::SetReviewPolicyResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = dataset_id_in("dataset_id", &r.dataset_id)?;
        let receipt = review::set_policy(&self.0, &caller, &dataset, policy_in(&r.levels)?).await?;
        Ok(Response::new(pb::SetReviewPolicyResponse {
            receipt: receipt_text(receipt.as_ref()),
            record: receipt_record(receipt.as_ref()),
        }))
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let filter = ReviewFilter {
            dataset: if r.dataset_id.is_empty() { None } else { Some(dataset_id_in("dataset_id", &r.dataset_id)?) },
            overdue_only: r.overdue_only,
        };
        let now = self.0.clock.now();
        let pending = review::list(&self.0, &caller, &filter).await?;
        let versions = pending.iter().map(|p: &Pending| reviewed_out(&p.version, p.owner.as_str(), now)).collect();
        Ok(Response::new(pb::ListReviewsResponse { versions }))
    }

    async fn approve_version(
        &self,
        request: Request<pb::ReviewVersionRequest>,
    ) -> Result<Response<pb::ReviewedVersion>, Status> {
        self.decide(request, ReviewOutcome::Approved).await
    }

    async fn return_version(
        &self,
        request: Request<pb::ReviewVersionRequest>,
    ) -> Result<Response<pb::ReviewedVersion>, Status> {
        self.decide(request, ReviewOutcome::Returned).await
    }

    async fn preview_version(
        &self,
        request: Request<pb::PreviewVersionRequest>,
    ) -> Result<Response<pb::VersionPreview>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let dataset = dataset_id_in("dataset_id", &r.dataset_id)?;
        if r.version == 0 {
            return Err(ServiceError::invalid("version", "is required (versions start at 1)").into());
        }
        let p = review::preview(&self.0, &caller, &dataset, r.version, r.max_rows).await?;
        Ok(Response::new(pb::VersionPreview {
            dataset_id: p.version.dataset.to_string(),
            version: p.version.version,
            status: p.version.status.to_string(),
            fields: p.shape.fields.iter().map(delivered_out).collect(),
            rows: p.rows,
            batches: p.batches,
            receipt: p.receipt.text(),
            record: p.receipt.record.clone(),
        }))
    }
}
