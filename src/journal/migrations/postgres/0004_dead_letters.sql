-- The shared journal, version 4: the index of the dead letters, as in the SQLite file's
-- version 7 (a row per dead letter, its state, the letter as it is in the queue, and the
-- counts of waiting letters per destination and reason, kept as rows change).
CREATE TABLE dead_letters (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL,
    at          BIGINT NOT NULL,
    destination TEXT NOT NULL,
    reason      TEXT NOT NULL,
    event_id    TEXT,
    attempts    INTEGER NOT NULL,
    detail      TEXT NOT NULL,
    letter      TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'waiting',
    changed_at  BIGINT,
    changed_by  TEXT,
    result      TEXT,
    seen        BIGINT
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
    waiting     BIGINT NOT NULL,
    PRIMARY KEY (destination, reason)
);

CREATE FUNCTION dead_letters_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state = 'waiting'
       AND (TG_OP = 'DELETE' OR NEW.state <> 'waiting') THEN
        UPDATE dead_letter_counts SET waiting = waiting - 1
         WHERE destination = OLD.destination AND reason = OLD.reason;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.state = 'waiting'
       AND (TG_OP = 'INSERT' OR OLD.state <> 'waiting') THEN
        INSERT INTO dead_letter_counts (destination, reason, waiting)
            VALUES (NEW.destination, NEW.reason, 1)
            ON CONFLICT (destination, reason)
            DO UPDATE SET waiting = dead_letter_counts.waiting + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER dead_letters_count AFTER INSERT OR UPDATE OF state OR DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION dead_letters_count();
