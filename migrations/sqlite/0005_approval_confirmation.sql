-- Maker-checker: an approval of a type the policy names (`[policy] confirmed_approvals`) applies
-- only once a second officer, not the one who recorded it, has confirmed it.
ALTER TABLE approvals ADD COLUMN confirmed_by TEXT;
ALTER TABLE approvals ADD COLUMN confirmed_at INTEGER;
-- The sequence number of the approval.recorded record stored with the row: a decision uses an
-- approval only when that record exists and says what the row says (a row inserted or altered
-- behind the gateway's back is not used).
ALTER TABLE approvals ADD COLUMN record_seq INTEGER;
