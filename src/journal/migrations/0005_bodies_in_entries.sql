-- The delivery journal, version 5: an event's body is kept on one entry of the event
-- (`entries.body`, with the time the journal first had it, `entries.first_at`), instead of in
-- a table of its own. That table cost each event one more row and two more index entries,
-- its unique id among them: event ids come in any order, so each insert dirtied a page
-- somewhere in that index, for a body that only a recovery or an operator reads, and that the
-- entries' index by event id finds as well. Each event still has its body once; when the
-- entry holding it is pruned, the body and its time move to another entry of the event.
ALTER TABLE entries ADD COLUMN body TEXT;
ALTER TABLE entries ADD COLUMN first_at INTEGER;
UPDATE entries SET (body, first_at) =
    (SELECT ev.body, ev.first_at FROM events ev WHERE ev.event_id = entries.event_id)
 WHERE id IN (SELECT min(id) FROM entries GROUP BY event_id);
-- Times only grow, so this index takes its inserts at its end.
CREATE INDEX entries_first_at ON entries (first_at) WHERE first_at IS NOT NULL;
DROP TABLE events;
