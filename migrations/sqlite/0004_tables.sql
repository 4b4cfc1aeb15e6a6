-- The release ledger (docs/tables.md §5): every table cell published to a ledger scope (a
-- recipient, or the group an officer widened its ledger to), as its quantity (COUNT, SUM:measure),
-- its cell (canonical JSON of field -> categories) and its value. Written in the transaction
-- that stores the table's decision record.
CREATE TABLE release_ledger (
    scope TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    cell TEXT NOT NULL,
    value REAL NOT NULL,
    table_id TEXT NOT NULL,
    PRIMARY KEY (scope, dataset_id, version, quantity, cell)
) STRICT;

-- Officers' suppression reports: which rules made each primary cell of a table (never sent to
-- the recipient; the parameters are not in it).
CREATE TABLE table_reports (
    table_id TEXT PRIMARY KEY,
    dataset_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    report TEXT NOT NULL,
    at INTEGER NOT NULL
) STRICT;

-- A recipient whose ledger an officer widened to a group of recipients sharing data among
-- themselves; a recipient without a row is its own scope.
CREATE TABLE ledger_scopes (
    participant TEXT PRIMARY KEY,
    scope TEXT NOT NULL
) STRICT;

-- A dataset owner's table parameters (JSON per direction), each at least as strict as the
-- gateway's when set. Never returned to a client.
CREATE TABLE dataset_table_rules (
    dataset_id TEXT PRIMARY KEY,
    domestic TEXT NOT NULL,
    export TEXT NOT NULL
) STRICT;

-- A dataset's holding key (docs/tables.md): contributions of one holding are added together.
ALTER TABLE datasets ADD COLUMN holding_key_field TEXT;
