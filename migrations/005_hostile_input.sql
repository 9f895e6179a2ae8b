-- Hostile input (issue 12): a malformed entry knows where it was found and is kept once, and
-- a purged session leaves a tombstone so that a session GWS still lists is not archived again.

-- the log position the entry occupies, where a one-message read pinned it (else NULL)
ALTER TABLE malformed ADD COLUMN message_index INTEGER;
-- the account whose read returned it
ALTER TABLE malformed ADD COLUMN account TEXT;
-- SHA-256 of raw_json: the same entry read again is not recorded again
ALTER TABLE malformed ADD COLUMN digest TEXT;
CREATE UNIQUE INDEX malformed_once ON malformed (session_id, digest);

CREATE TABLE purged_sessions (
    session_id TEXT PRIMARY KEY,
    purged_at  TEXT NOT NULL
);
