-- Standing reports (docs/reports.md): a table produced for each recipient on a schedule from the
-- latest released version, kept for the recipient to fetch.
CREATE TABLE reports (
    id                   TEXT PRIMARY KEY NOT NULL,
    dataset_id           TEXT NOT NULL REFERENCES datasets (id),
    definer              TEXT NOT NULL,
    schedule             TEXT NOT NULL,          -- monthly:DAY, quarterly:DAY, on-release
    request              TEXT NOT NULL,          -- the table asked for (JSON of service::tables::TableRequest)
    recipients           TEXT NOT NULL,          -- JSON: [{participant, slice: {dimension, values} | null}]
    defined_at           BIGINT NOT NULL,
    latest_at_definition BIGINT,                -- on-release: the latest released version when defined
    last_period          TEXT NOT NULL DEFAULT '' -- the last period claimed ('' = none): the CAS key
);

-- One recipient's run of one period: claimed PENDING (with the report's last_period, in one
-- transaction: one replica claims a period), then PRODUCED or NOT_PRODUCED with why.
CREATE TABLE report_runs (
    report_id  TEXT NOT NULL REFERENCES reports (id),
    period     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    status     TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    missed     BIGINT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    table_id   TEXT,
    version    BIGINT,
    cells      TEXT,                             -- JSON of the cells as produced
    sha256     TEXT,
    record_seq BIGINT,
    PRIMARY KEY (report_id, period, recipient)
);
CREATE INDEX report_runs_pending ON report_runs (claimed_at) WHERE status = 'PENDING';
CREATE INDEX report_runs_by_recipient ON report_runs (recipient);
