-- Event hooks: each subscriber's cursor over the events table and its durable delivery queue.
-- Only archiver/store/deliveries.py reads or writes these tables.

-- One row per configured subscriber (webhook, command, Python hook, plugin), by name.
CREATE TABLE hook_subscribers (
    name              TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    -- every event with seq <= cursor_seq is queued in hook_deliveries, delivered, or filtered out
    cursor_seq        INTEGER NOT NULL,
    -- the subscriber's filters ({"types": [...], "accounts": [...], "sessions": [...]}), as last
    -- configured: replay applies them without the configuration file
    filters_json      TEXT NOT NULL DEFAULT '{}',
    -- set when the endpoint answered 410 Gone; cleared by `gws-archiver hooks enable`
    disabled_at       TEXT,
    disabled_reason   TEXT,
    delivered         INTEGER NOT NULL DEFAULT 0,
    failed_attempts   INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_error_at     TEXT,
    last_delivered_at TEXT,
    created_at        TEXT NOT NULL
);

-- Events queued for a subscriber: 'pending' until delivered (then the row is deleted), or
-- 'dead' (a dead letter) once the last attempt failed.
CREATE TABLE hook_deliveries (
    -- AUTOINCREMENT: an id is never reused after its row is deleted, so "rows after the last
    -- id loaded" finds every row queued since
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber      TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    session_id      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_attempt_at TEXT,
    last_error      TEXT,
    queued_at       TEXT NOT NULL,
    UNIQUE (subscriber, seq)
);
-- The dispatcher loads a subscriber's pending rows in queue (id) order.
CREATE INDEX hook_deliveries_queue ON hook_deliveries (subscriber, status, id);
