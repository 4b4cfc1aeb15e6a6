-- One row the health probe rewrites every few seconds: whether the store can still write (a
-- full disk, a read-only file) shows in health before a client's write fails.
CREATE TABLE liveness (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
