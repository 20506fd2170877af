-- The delivery journal, version 1: each event once, and one row per thing that happened to
-- a delivery (an event at one destination).
CREATE TABLE events (
    event_id   TEXT PRIMARY KEY,
    order_id   TEXT,
    event_type TEXT NOT NULL,
    body       TEXT NOT NULL,
    first_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_order ON events (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX events_first_at ON events (first_at);

CREATE TABLE entries (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL,
    order_id    TEXT,
    event_type  TEXT NOT NULL,
    destination TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    http_status INTEGER,
    error_class TEXT,
    latency_ms  REAL,
    request     TEXT,
    response    TEXT
);
CREATE INDEX entries_event ON entries (event_id, at);
CREATE INDEX entries_order ON entries (order_id, at) WHERE order_id IS NOT NULL;
CREATE INDEX entries_destination ON entries (destination, at);
CREATE INDEX entries_at ON entries (at);
