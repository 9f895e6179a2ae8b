-- One row per daemon process (`gws-archiver run`): when it ran, how it ended, what it did.
-- Written at start and at stop; a row left 'running' by a process that is gone is marked
-- 'crashed' by the next start on the same host.
CREATE TABLE runs (
    run_id            INTEGER PRIMARY KEY,
    started_at        TEXT NOT NULL,
    stopped_at        TEXT,
    status            TEXT NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'clean', 'failed', 'crashed')),
    version           TEXT NOT NULL,
    -- digest of the effective configuration with secrets masked (gws-archiver config check)
    config_hash       TEXT NOT NULL,
    hostname          TEXT NOT NULL,
    pid               INTEGER NOT NULL,
    -- newest event seq when the run started, and when it stopped (or was found crashed)
    first_seq         INTEGER NOT NULL,
    last_seq          INTEGER,
    -- what the run did; a crashed run gets what its events tell (messages, sessions ended)
    messages_archived INTEGER,
    duplicates        INTEGER,
    conflicts         INTEGER,
    malformed         INTEGER,
    errors            INTEGER,
    sessions_ended    INTEGER,
    -- why a failed run stopped
    error             TEXT
);
CREATE INDEX runs_status ON runs (status);
