-- Review before release (docs/review.md): a dataset's review policy (JSON of
-- domain::review::ReviewPolicy; NULL: versions are released when published), and each version's
-- status and review (JSON of domain::review::VersionReview: the policy it was published under and
-- the steps taken; NULL: published without a policy). Consumers only ever see RELEASED versions.
ALTER TABLE datasets ADD COLUMN review_policy TEXT;
ALTER TABLE versions ADD COLUMN status TEXT NOT NULL DEFAULT 'RELEASED';
ALTER TABLE versions ADD COLUMN review TEXT;
CREATE INDEX versions_in_review ON versions (dataset_id, version) WHERE status = 'IN_REVIEW';
-- The release cadence a dataset's owner declared (a schedule: `monthly:5`, `quarterly:1`) and
-- when: monitoring lists the datasets whose next release is overdue. NULL: none declared.
ALTER TABLE datasets ADD COLUMN cadence TEXT;
ALTER TABLE datasets ADD COLUMN cadence_at BIGINT;

-- A version's records are about `version:<dataset>@<version>` (its publication, then each review
-- step): decisions cite the latest. Published versions recorded before are given their subject.
ALTER TABLE records DISABLE TRIGGER records_are_append_only_update;
UPDATE records SET subject = 'version:' || (json::jsonb ->> 'dataset') || '@' || (json::jsonb ->> 'version')
    WHERE kind = 'version.published';
ALTER TABLE records ENABLE TRIGGER records_are_append_only_update;
