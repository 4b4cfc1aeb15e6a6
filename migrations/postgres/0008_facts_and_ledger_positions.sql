-- The fact a state record is about: `participant:<id>`, `dataset:<id>`, `grant:<id>`,
-- `approval:<id>` or `policy:<sha256>`. A transfer uses a fact's row only when the latest record
-- about it says what the row says, and its decision cites that record's leaf index.
ALTER TABLE records ADD COLUMN subject TEXT;
UPDATE records SET subject = 'participant:' || (json::jsonb ->> 'participant')
    WHERE kind IN ('participant.registered', 'participant.suspended');
UPDATE records SET subject = 'dataset:' || (json::jsonb ->> 'dataset') WHERE kind = 'dataset.registered';
UPDATE records SET subject = 'grant:' || (json::jsonb ->> 'grant')
    WHERE kind IN ('grant.requested', 'grant.approved', 'grant.refused', 'grant.revoked', 'exemption.attested');
UPDATE records SET subject = 'approval:' || (json::jsonb ->> 'approval')
    WHERE kind IN ('approval.recorded', 'approval.revoked', 'approval.confirmed');
CREATE INDEX records_by_subject ON records (subject, seq) WHERE subject IS NOT NULL;

CREATE OR REPLACE FUNCTION records_are_append_only_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.seq, NEW.at, NEW.kind, NEW.actor, NEW.json, NEW.transfer, NEW.dataset, NEW.recipient,
        NEW.exporter, NEW.region, NEW.export, NEW.mechanism, NEW.action, NEW.subject)
       IS DISTINCT FROM
       (OLD.seq, OLD.at, OLD.kind, OLD.actor, OLD.json, OLD.transfer, OLD.dataset, OLD.recipient,
        OLD.exporter, OLD.region, OLD.export, OLD.mechanism, OLD.action, OLD.subject) THEN
        RAISE EXCEPTION 'records are append-only';
    END IF;
    IF OLD.leaf_index IS NOT NULL AND NEW.leaf_index IS DISTINCT FROM OLD.leaf_index THEN
        RAISE EXCEPTION 'a leaf index is assigned once';
    END IF;
    RETURN NEW;
END;
$$;

-- How many entries each exporter's person ledger has: a counted export takes the next position
-- under the ledger's lock, and its decision carries it, so the log orders an exporter's
-- decisions as they were counted whichever replica logged them first.
CREATE TABLE export_ledger_positions (
    exporter TEXT PRIMARY KEY,
    entries  BIGINT NOT NULL
);
