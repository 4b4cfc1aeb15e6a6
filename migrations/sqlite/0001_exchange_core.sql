-- Exchange core: participants, catalog, versions, grants, records.
-- Times are microseconds since the Unix epoch (UTC).

CREATE TABLE participants (
    id             TEXT PRIMARY KEY NOT NULL,
    display_name   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    recipient_type TEXT NOT NULL,
    region         TEXT NOT NULL,
    in_tianjin_ftz INTEGER NOT NULL,
    roles          TEXT NOT NULL,          -- JSON array of role names
    clearance      TEXT NOT NULL,
    status         TEXT NOT NULL,
    registered_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE datasets (
    id                    TEXT PRIMARY KEY NOT NULL,
    owner                 TEXT NOT NULL REFERENCES participants (id),
    title                 TEXT NOT NULL,
    description           TEXT NOT NULL,
    government_data       INTEGER NOT NULL,
    fields                TEXT NOT NULL,   -- JSON array of field definitions
    person_key_field      TEXT,
    contributor_key_field TEXT,
    registered_at         INTEGER NOT NULL
) STRICT;

-- Chunks of uploads. An upload's chunks are invisible until a version row names the upload.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY NOT NULL,
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    started_at INTEGER NOT NULL
) STRICT;

CREATE TABLE chunks (
    upload_id TEXT NOT NULL REFERENCES uploads (id),
    seq       INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    sha256    BLOB NOT NULL,
    data      BLOB NOT NULL,               -- encoded RowBatch fields
    PRIMARY KEY (upload_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE versions (
    dataset_id      TEXT NOT NULL REFERENCES datasets (id),
    version         INTEGER NOT NULL,
    upload_id       TEXT NOT NULL UNIQUE REFERENCES uploads (id),
    rows            INTEGER NOT NULL,
    chunks          INTEGER NOT NULL,
    sha256          BLOB NOT NULL,
    publisher       TEXT NOT NULL,
    published_at    INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version),
    UNIQUE (dataset_id, idempotency_key)
) STRICT;

CREATE TABLE grants (
    id           TEXT PRIMARY KEY NOT NULL,
    dataset_id   TEXT NOT NULL REFERENCES datasets (id),
    consumer     TEXT NOT NULL REFERENCES participants (id),
    status       TEXT NOT NULL,
    body         TEXT NOT NULL,            -- JSON of the whole grant
    requested_at INTEGER NOT NULL
) STRICT;
CREATE INDEX grants_by_dataset ON grants (dataset_id, consumer);
CREATE INDEX grants_by_consumer ON grants (consumer);

-- Every state change and every transfer decision, in the order they were stored: the queue of
-- the transfer log. The sequencer assigns each record its leaf index (NULL until integrated).
-- Never deleted; only leaf_index is ever set, once.
CREATE TABLE records (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    json       TEXT NOT NULL,              -- RFC 8785 canonical JSON: the leaf
    leaf_index INTEGER UNIQUE,
    -- Facets of transfer records, for ListTransfers and for a participant's own records.
    transfer   TEXT,
    dataset    TEXT,
    recipient  TEXT,
    exporter   TEXT,
    region     TEXT,
    export     INTEGER,
    mechanism  TEXT,
    action     TEXT
) STRICT;
CREATE INDEX records_queue ON records (seq) WHERE leaf_index IS NULL;
CREATE INDEX records_transfers ON records (kind, at) WHERE transfer IS NOT NULL;
CREATE INDEX records_by_transfer ON records (transfer) WHERE transfer IS NOT NULL;

CREATE TRIGGER records_are_append_only_update BEFORE UPDATE OF seq, at, kind, actor, json, transfer,
    dataset, recipient, exporter, region, export, mechanism, action ON records
BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
CREATE TRIGGER records_leaf_index_is_set_once BEFORE UPDATE OF leaf_index ON records
    WHEN OLD.leaf_index IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'a leaf index is assigned once'); END;
CREATE TRIGGER records_are_append_only_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;

-- The hash of every perfect subtree of the log: node (level, idx) covers leaves
-- [idx << level, (idx + 1) << level). Level 0 holds the leaf hashes. Proofs read O(log n) rows.
CREATE TABLE tree_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per integrated batch.
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    at   INTEGER NOT NULL
) STRICT;
