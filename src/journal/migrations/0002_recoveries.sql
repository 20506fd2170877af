-- The delivery journal, version 2: recoveries (`postback-relay recover`), the events each
-- one has sent, and every operator action (a replay, a recovery) with its filter and count.
ALTER TABLE entries ADD COLUMN recovery TEXT;

CREATE TABLE recoveries (
    id          TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    since       INTEGER NOT NULL,
    until       INTEGER,
    outcome     TEXT NOT NULL,
    asked_by    TEXT NOT NULL,
    asked_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE recovered (
    recovery_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (recovery_id, event_id)
) WITHOUT ROWID;

CREATE TABLE actions (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    who     TEXT NOT NULL,
    action  TEXT NOT NULL,
    filter  TEXT NOT NULL,
    count   INTEGER NOT NULL
);
CREATE INDEX actions_at ON actions (at);
