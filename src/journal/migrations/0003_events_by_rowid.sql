-- The delivery journal, version 3: events kept in the order they came (a rowid table) with a
-- unique index on their id, instead of in a table ordered by the id itself. Event ids come in
-- any order, and each body written into the middle of that table dirtied a page of bodies
-- (and split it when full); now bodies are appended, and only the small id index takes
-- inserts in the middle. What the table holds, and every query, stay the same.
CREATE TABLE events_by_rowid (
    id         INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL,
    order_id   TEXT,
    event_type TEXT NOT NULL,
    body       TEXT NOT NULL,
    first_at   INTEGER NOT NULL
);
INSERT INTO events_by_rowid (event_id, order_id, event_type, body, first_at)
    SELECT event_id, order_id, event_type, body, first_at FROM events ORDER BY first_at;
DROP TABLE events;
ALTER TABLE events_by_rowid RENAME TO events;
CREATE UNIQUE INDEX events_id ON events (event_id);
CREATE INDEX events_order ON events (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX events_first_at ON events (first_at);
