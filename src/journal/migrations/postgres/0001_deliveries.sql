-- The delivery journal on PostgreSQL, version 1: the same tables as the SQLite file's
-- versions 1 and 2 (each event once, one row per thing that happened to a delivery,
-- recoveries, the events each one sent, and operator actions). Times are milliseconds
-- since the Unix epoch, as in the file.
CREATE TABLE events (
    event_id   TEXT PRIMARY KEY,
    order_id   TEXT,
    event_type TEXT NOT NULL,
    body       TEXT NOT NULL,
    first_at   BIGINT NOT NULL
);
CREATE INDEX events_order ON events (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX events_first_at ON events (first_at);

CREATE TABLE entries (
    id          BIGSERIAL PRIMARY KEY,
    event_id    TEXT NOT NULL,
    order_id    TEXT,
    event_type  TEXT NOT NULL,
    destination TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    http_status INTEGER,
    error_class TEXT,
    latency_ms  DOUBLE PRECISION,
    request     TEXT,
    response    TEXT,
    recovery    TEXT
);
CREATE INDEX entries_event ON entries (event_id, at);
CREATE INDEX entries_order ON entries (order_id, at) WHERE order_id IS NOT NULL;
CREATE INDEX entries_destination ON entries (destination, at);
CREATE INDEX entries_at ON entries (at);

CREATE TABLE recoveries (
    id          TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    since       BIGINT NOT NULL,
    until       BIGINT,
    outcome     TEXT NOT NULL,
    asked_by    TEXT NOT NULL,
    asked_at    BIGINT NOT NULL
);

CREATE TABLE recovered (
    recovery_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    sent_at     BIGINT NOT NULL,
    PRIMARY KEY (recovery_id, event_id)
);

CREATE TABLE actions (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    who     TEXT NOT NULL,
    action  TEXT NOT NULL,
    filter  TEXT NOT NULL,
    count   BIGINT NOT NULL
);
CREATE INDEX actions_at ON actions (at);
