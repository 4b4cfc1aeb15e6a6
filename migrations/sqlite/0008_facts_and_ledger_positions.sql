-- The fact a state record is about: `participant:<id>`, `dataset:<id>`, `grant:<id>`,
-- `approval:<id>` or `policy:<sha256>`. A transfer uses a fact's row only when the latest record
-- about it says what the row says, and its decision cites that record's leaf index.
ALTER TABLE records ADD COLUMN subject TEXT;
UPDATE records SET subject = 'participant:' || json_extract(json, '$.participant')
    WHERE kind IN ('participant.registered', 'participant.suspended');
UPDATE records SET subject = 'dataset:' || json_extract(json, '$.dataset') WHERE kind = 'dataset.registered';
UPDATE records SET subject = 'grant:' || json_extract(json, '$.grant')
    WHERE kind IN ('grant.requested', 'grant.approved', 'grant.refused', 'grant.revoked', 'exemption.attested');
UPDATE records SET subject = 'approval:' || json_extract(json, '$.approval')
    WHERE kind IN ('approval.recorded', 'approval.revoked', 'approval.confirmed');
CREATE INDEX records_by_subject ON records (subject, seq) WHERE subject IS NOT NULL;

DROP TRIGGER records_are_append_only_update;
CREATE TRIGGER records_are_append_only_update BEFORE UPDATE OF seq, at, kind, actor, json, transfer,
    dataset, recipient, exporter, region, export, mechanism, action, subject ON records
BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;

-- How many entries each exporter's person ledger has: a counted export takes the next position
-- under the ledger's lock, and its decision carries it, so the log orders an exporter's
-- decisions as they were counted whichever replica logged them first.
CREATE TABLE export_ledger_positions (
    exporter TEXT PRIMARY KEY NOT NULL,
    entries  INTEGER NOT NULL
) STRICT;
