-- The sequence number of the grant's latest record (grant.requested, .approved, .refused,
-- .revoked, exemption.attested), stored with each change: a transfer uses a grant only when that
-- record exists and says what the row says (a grant widened behind the gateway's back is not used).
ALTER TABLE grants ADD COLUMN record_seq BIGINT;
