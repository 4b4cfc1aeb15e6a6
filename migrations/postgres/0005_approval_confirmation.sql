-- Maker-checker: an approval of a type the policy names (`[policy] confirmed_approvals`) applies
-- only once a second officer, not the one who recorded it, has confirmed it.
ALTER TABLE approvals ADD COLUMN confirmed_by TEXT;
ALTER TABLE approvals ADD COLUMN confirmed_at BIGINT;
