-- Sessions as contact centres have them (issue 14): a session is seen by several accounts, one
-- after another or at once (its views), and is checked against Interaction History after it ends.

-- how many views the session has had (keeps the ids of ViewStarted/ViewEnded deterministic)
ALTER TABLE sessions ADD COLUMN view_count INTEGER NOT NULL DEFAULT 0;
-- how the end of the log is known: 'drained' (read to its end after a final state),
-- 'unverified' (the session left every view and could no longer be read), NULL while open
ALTER TABLE sessions ADD COLUMN tail TEXT;

-- One row per account's sight of a session, from when it appeared in that account's list until
-- it left it ('revoked', 'completed', 'gone' or 'ended'); left_at is NULL while it is in view.
CREATE TABLE session_views (
    session_id  TEXT NOT NULL,
    serial      INTEGER NOT NULL,
    account     TEXT NOT NULL,
    appeared_at TEXT NOT NULL,
    first_state TEXT,
    last_state  TEXT,
    left_at     TEXT,
    left_reason TEXT,
    PRIMARY KEY (session_id, serial)
);
CREATE INDEX session_views_account ON session_views (account, session_id);

-- Archives from before views: each session was seen by its one account.
INSERT INTO session_views
    (session_id, serial, account, appeared_at, first_state, last_state, left_at, left_reason)
SELECT session_id, 1, account, first_seen_at, state, state, ended_at,
       CASE WHEN ended_at IS NULL THEN NULL ELSE 'ended' END
FROM sessions;
UPDATE sessions SET view_count = 1;
UPDATE sessions SET tail = 'drained' WHERE ended_at IS NOT NULL;

-- where a message came from: NULL for a live read, 'history' when Interaction History
-- supplied a message the live reads missed
ALTER TABLE messages ADD COLUMN source TEXT;

-- The check of an ended session against Interaction History, one row per session checked or
-- waiting: status 'pending' (to be tried at next_attempt_at), 'verified' (every saved message
-- is archived, equal), 'filled' (saved messages the live reads missed were added),
-- 'different' (a saved message differs from the archived one: see conflicts), 'unchecked'
-- (Interaction History could not answer in time, or reconciliation is off).
CREATE TABLE reconciliations (
    session_id       TEXT PRIMARY KEY,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    checked_at       TEXT,
    history_messages INTEGER,
    filled           INTEGER NOT NULL DEFAULT 0,
    differing        INTEGER NOT NULL DEFAULT 0,
    detail           TEXT
);
CREATE INDEX reconciliations_due ON reconciliations (status, next_attempt_at);
