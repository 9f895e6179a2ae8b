-- The first archive schema. Stable tables and columns are documented in the README.

CREATE TABLE sessions (
    session_id        TEXT PRIMARY KEY,
    account           TEXT NOT NULL,
    state             TEXT,
    participants_json TEXT NOT NULL DEFAULT '[]',
    user_data_json    TEXT NOT NULL DEFAULT '{}',
    first_seen_at     TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    ended_at          TEXT,
    -- the next message index to read: advanced only in the transaction that stores the page
    next_index        INTEGER NOT NULL DEFAULT 1,
    -- how many SessionUpdated events this session has had (keeps their ids deterministic)
    update_count      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_account ON sessions (account, first_seen_at);

CREATE TABLE messages (
    session_id          TEXT NOT NULL REFERENCES sessions (session_id),
    message_index       INTEGER NOT NULL,
    type                TEXT NOT NULL,
    text                TEXT,
    url                 TEXT,
    from_type           TEXT,
    from_nickname       TEXT,
    from_participant_id TEXT,
    visibility          TEXT,
    sent_at             TEXT,
    raw_json            TEXT NOT NULL,
    archived_at         TEXT NOT NULL,
    PRIMARY KEY (session_id, message_index)
);

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    message_index INTEGER,
    occurred_at   TEXT NOT NULL,
    payload_json  TEXT NOT NULL
);
CREATE INDEX events_session ON events (session_id, seq);

-- A message index GWS returned again with different content: the first version stays in
-- messages, every later differing version lands here.
CREATE TABLE conflicts (
    id            INTEGER PRIMARY KEY,
    session_id    TEXT NOT NULL,
    message_index INTEGER NOT NULL,
    raw_json      TEXT NOT NULL,
    detected_at   TEXT NOT NULL
);
CREATE INDEX conflicts_session ON conflicts (session_id, message_index);

-- Messages GWS sent that cannot be keyed (no usable index or type): kept, not dropped.
CREATE TABLE malformed (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL,
    problem     TEXT NOT NULL,
    raw_json    TEXT NOT NULL,
    received_at TEXT NOT NULL
);
