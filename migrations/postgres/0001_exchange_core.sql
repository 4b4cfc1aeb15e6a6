-- Exchange core: participants, catalog, versions, grants, records (PostgreSQL dialect of
-- migrations/sqlite/0001_exchange_core.sql: same tables, same columns).
-- Times are microseconds since the Unix epoch (UTC). Ids that lists are ordered or paged by use
-- the "C" collation, so that order is bytewise, as in SQLite, whatever the database's locale.

CREATE TABLE participants (
    id             TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    display_name   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    recipient_type TEXT NOT NULL,
    region         TEXT NOT NULL,
    in_tianjin_ftz BOOLEAN NOT NULL,
    roles          TEXT NOT NULL,          -- JSON array of role names
    clearance      TEXT NOT NULL,
    status         TEXT NOT NULL,
    registered_at  BIGINT NOT NULL
);

CREATE TABLE datasets (
    id                    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    owner                 TEXT NOT NULL REFERENCES participants (id),
    title                 TEXT NOT NULL,
    description           TEXT NOT NULL,
    government_data       BOOLEAN NOT NULL,
    fields                TEXT NOT NULL,   -- JSON array of field definitions
    person_key_field      TEXT,
    contributor_key_field TEXT,
    registered_at         BIGINT NOT NULL
);

-- Chunks of uploads. An upload's chunks are invisible until a version row names the upload.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY NOT NULL,
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    started_at BIGINT NOT NULL
);

CREATE TABLE chunks (
    upload_id TEXT NOT NULL REFERENCES uploads (id),
    seq       BIGINT NOT NULL,
    rows      BIGINT NOT NULL,
    sha256    BYTEA NOT NULL,
    data      BYTEA NOT NULL,              -- encoded RowBatch fields
    PRIMARY KEY (upload_id, seq)
);

CREATE TABLE versions (
    dataset_id      TEXT NOT NULL REFERENCES datasets (id),
    version         BIGINT NOT NULL,
    upload_id       TEXT NOT NULL UNIQUE REFERENCES uploads (id),
    rows            BIGINT NOT NULL,
    chunks          BIGINT NOT NULL,
    sha256          BYTEA NOT NULL,
    publisher       TEXT NOT NULL,
    published_at    BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version),
    UNIQUE (dataset_id, idempotency_key)
);

CREATE TABLE grants (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    dataset_id   TEXT NOT NULL REFERENCES datasets (id),
    consumer     TEXT NOT NULL REFERENCES participants (id),
    status       TEXT NOT NULL,
    body         TEXT NOT NULL,            -- JSON of the whole grant
    requested_at BIGINT NOT NULL
);
CREATE INDEX grants_by_dataset ON grants (dataset_id, consumer);
CREATE INDEX grants_by_consumer ON grants (consumer);

-- Every state change and every transfer decision, in the order they were stored: the queue of
-- the transfer log. The sequencer assigns each record its leaf index (NULL until integrated).
-- Never deleted; only leaf_index is ever set, once.
CREATE TABLE records (
    seq        BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    json       TEXT NOT NULL,              -- RFC 8785 canonical JSON: the leaf
    leaf_index BIGINT UNIQUE,
    -- Facets of transfer records, for ListTransfers and for a participant's own records.
    transfer   TEXT,
    dataset    TEXT,
    recipient  TEXT,
    exporter   TEXT,
    region     TEXT,
    export     BOOLEAN,
    mechanism  TEXT,
    action     TEXT
);
CREATE INDEX records_queue ON records (seq) WHERE leaf_index IS NULL;
CREATE INDEX records_transfers ON records (kind, at) WHERE transfer IS NOT NULL;
CREATE INDEX records_by_transfer ON records (transfer) WHERE transfer IS NOT NULL;

CREATE FUNCTION records_are_append_only_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.seq, NEW.at, NEW.kind, NEW.actor, NEW.json, NEW.transfer, NEW.dataset, NEW.recipient,
        NEW.exporter, NEW.region, NEW.export, NEW.mechanism, NEW.action)
       IS DISTINCT FROM
       (OLD.seq, OLD.at, OLD.kind, OLD.actor, OLD.json, OLD.transfer, OLD.dataset, OLD.recipient,
        OLD.exporter, OLD.region, OLD.export, OLD.mechanism, OLD.action) THEN
        RAISE EXCEPTION 'records are append-only';
    END IF;
    IF OLD.leaf_index IS NOT NULL AND NEW.leaf_index IS DISTINCT FROM OLD.leaf_index THEN
        RAISE EXCEPTION 'a leaf index is assigned once';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER records_are_append_only_update BEFORE UPDATE ON records
    FOR EACH ROW EXECUTE FUNCTION records_are_append_only_update();

CREATE FUNCTION records_are_append_only_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'records are append-only';
END;
$$;
CREATE TRIGGER records_are_append_only_delete BEFORE DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION records_are_append_only_delete();
-- TRUNCATE bypasses row triggers; SQLite has no TRUNCATE.
CREATE TRIGGER records_are_append_only_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION records_are_append_only_delete();

-- The hash of every perfect subtree of the log: node (level, idx) covers leaves
-- [idx << level, (idx + 1) << level). Level 0 holds the leaf hashes. Proofs read O(log n) rows.
CREATE TABLE tree_nodes (
    level SMALLINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per integrated batch.
CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    at   BIGINT NOT NULL
);
