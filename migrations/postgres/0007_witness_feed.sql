-- The witnesses the gateway feeds its checkpoints to (C2SP tlog-witness): per witness (its key
-- name), the latest size it holds of this log (the `old` of the next add-checkpoint, kept across
-- restarts; learnt again from a 409) and the largest size it cosigned for this gateway. The
-- cosignature lines themselves are appended to the checkpoint's note in `checkpoints`.
CREATE TABLE witness_feed (
    witness  TEXT PRIMARY KEY NOT NULL,
    size     BIGINT NOT NULL CHECK (size >= 0),
    cosigned BIGINT NOT NULL CHECK (cosigned >= 0)
);
