-- The delivery journal, version 5: an event's body is kept on the first entry that told of
-- it (`entries.body`), instead of in a table of its own. That table cost each event one more
-- row and two more index entries, its unique id among them: event ids come in any order, so
-- each insert dirtied a page somewhere in that index, for a body that only a recovery or an
-- operator reads, and that the entries' index by event id finds as well. Each event still
-- has its body once; a body is moved to a newer entry of its event when its own is pruned.
ALTER TABLE entries ADD COLUMN body TEXT;
UPDATE entries SET body = (SELECT ev.body FROM events ev WHERE ev.event_id = entries.event_id)
 WHERE id IN (SELECT min(id) FROM entries GROUP BY event_id);
DROP TABLE events;
