-- The delivery journal, version 7: an index of the dead letters, so that the console pages
-- them by a query instead of reading the dead-letter queue. The relay writes a row as each
-- dead letter is confirmed into the queue; a replay or a discard marks it (`state`), and the
-- row stays, with who and what came of it. The queue stays the hand-off: `seen` is the last
-- reindex (one read of the queue) that found the letter there. Each letter is kept as it is
-- in the queue (`letter`, JSON) for its page. Pages filter waiting letters only, so their
-- indexes hold waiting letters only; the counts per destination and reason are kept as rows
-- change, so that totals never count the letters.
CREATE TABLE dead_letters (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    at          INTEGER NOT NULL,
    destination TEXT NOT NULL,
    reason      TEXT NOT NULL,
    event_id    TEXT,
    attempts    INTEGER NOT NULL,
    detail      TEXT NOT NULL,
    letter      TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'waiting',
    changed_at  INTEGER,
    changed_by  TEXT,
    result      TEXT,
    seen        INTEGER
);
CREATE UNIQUE INDEX dead_letters_id ON dead_letters (id);
CREATE INDEX dead_letters_event ON dead_letters (event_id, destination, reason, at) WHERE event_id IS NOT NULL;
CREATE INDEX dead_letters_at ON dead_letters (at, destination, reason) WHERE state = 'waiting';
CREATE INDEX dead_letters_dest ON dead_letters (destination, at, reason) WHERE state = 'waiting';
CREATE INDEX dead_letters_dest_reason ON dead_letters (destination, reason, at) WHERE state = 'waiting';
CREATE INDEX dead_letters_reason ON dead_letters (reason, at, destination) WHERE state = 'waiting';
CREATE INDEX dead_letters_changed ON dead_letters (changed_at) WHERE state <> 'waiting';

CREATE TABLE dead_letter_counts (
    destination TEXT NOT NULL,
    reason      TEXT NOT NULL,
    waiting     INTEGER NOT NULL,
    PRIMARY KEY (destination, reason)
) WITHOUT ROWID;

CREATE TRIGGER dead_letters_added AFTER INSERT ON dead_letters WHEN NEW.state = 'waiting'
BEGIN
    INSERT INTO dead_letter_counts (destination, reason, waiting)
        VALUES (NEW.destination, NEW.reason, 1)
        ON CONFLICT (destination, reason) DO UPDATE SET waiting = waiting + 1;
END;
CREATE TRIGGER dead_letters_left AFTER UPDATE OF state ON dead_letters
    WHEN OLD.state = 'waiting' AND NEW.state <> 'waiting'
BEGIN
    UPDATE dead_letter_counts SET waiting = waiting - 1
     WHERE destination = OLD.destination AND reason = OLD.reason;
END;
CREATE TRIGGER dead_letters_back AFTER UPDATE OF state ON dead_letters
    WHEN OLD.state <> 'waiting' AND NEW.state = 'waiting'
BEGIN
    INSERT INTO dead_letter_counts (destination, reason, waiting)
        VALUES (NEW.destination, NEW.reason, 1)
        ON CONFLICT (destination, reason) DO UPDATE SET waiting = waiting + 1;
END;
CREATE TRIGGER dead_letters_removed AFTER DELETE ON dead_letters WHEN OLD.state = 'waiting'
BEGIN
    UPDATE dead_letter_counts SET waiting = waiting - 1
     WHERE destination = OLD.destination AND reason = OLD.reason;
END;
