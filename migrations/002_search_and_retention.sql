-- Full-text search, legal hold, and the indexes the read side needs.

-- An external-content FTS5 index over messages.text: the words are stored once, in messages;
-- the index maps tokens to messages.rowid. unicode61 with remove_diacritics 2 folds case and
-- accents, so "cafe" finds "Café". Every message has a row (NULL text indexes as empty), which
-- keeps the writer, the triggers below and the 'rebuild' command in exact agreement.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    content = 'messages',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- New messages are indexed by the writer, in the transaction that stores their page, with one
-- INSERT ... SELECT per page: a row-by-row insert trigger costs the writer half its throughput.

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;

-- Index the messages archived before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

-- 1 = under legal hold: retention never purges the session, whatever its age.
ALTER TABLE sessions ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;

-- When messages were sent: the since/until filters and the per-day counts. session_id makes
-- it covering for "which sessions were active between A and B".
CREATE INDEX messages_sent_at ON messages (sent_at, session_id);

-- Session listings, newest first (first_seen_at never changes, so the writer's per-page
-- UPDATE of a session does not touch this index).
CREATE INDEX sessions_first_seen ON sessions (first_seen_at, session_id);
