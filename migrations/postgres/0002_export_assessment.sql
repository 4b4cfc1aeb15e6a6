-- Export assessment: approvals, the per-exporter person ledger, the officers' hold queue
-- (PostgreSQL dialect of migrations/sqlite/0002_export_assessment.sql).

-- Approvals recorded by officers (rules.md §3.2). Never deleted; revocation is a flag.
CREATE TABLE approvals (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL,
    exporter      TEXT NOT NULL,
    reference     TEXT NOT NULL,
    issued        TEXT NOT NULL,           -- YYYY-MM-DD, Asia/Shanghai
    expires       TEXT,                    -- YYYY-MM-DD inclusive; NULL: the rules' default
    revoked       BOOLEAN NOT NULL DEFAULT FALSE,
    scope         TEXT NOT NULL,           -- JSON
    recorded_by   TEXT NOT NULL,
    recorded_at   BIGINT NOT NULL,
    revoked_by    TEXT,
    revoked_at    BIGINT,
    revoke_reason TEXT
);
CREATE INDEX approvals_by_exporter ON approvals (exporter);

-- Distinct persons exported, per exporter, calendar year (Asia/Shanghai) and bucket
-- (N non-sensitive, S sensitive), as HMAC-SHA-256 of the person key with a gateway secret:
-- never the raw key.
CREATE TABLE export_persons (
    exporter TEXT NOT NULL,
    year     INTEGER NOT NULL,
    bucket   TEXT NOT NULL,
    person   BYTEA NOT NULL,
    PRIMARY KEY (exporter, year, bucket, person)
);

-- Running totals of export_persons, kept in the same transaction.
CREATE TABLE export_counts (
    exporter TEXT NOT NULL,
    year     INTEGER NOT NULL,
    bucket   TEXT NOT NULL,
    persons  BIGINT NOT NULL,
    PRIMARY KEY (exporter, year, bucket)
);

-- Held transfers: the officers' review queue.
CREATE TABLE holds (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    status      TEXT NOT NULL,             -- OPEN, RELEASED, REFUSED
    grant_id    TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    consumer    TEXT NOT NULL,
    exporter    TEXT NOT NULL,
    mechanism   TEXT NOT NULL,
    body        TEXT NOT NULL,             -- JSON: the transfer and what an approval must cover
    created_at  BIGINT NOT NULL,
    resolved_by TEXT,
    resolved_at BIGINT,
    reason      TEXT,
    approval_id TEXT
);
CREATE INDEX holds_open ON holds (status, created_at);
