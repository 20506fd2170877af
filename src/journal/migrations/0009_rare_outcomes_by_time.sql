-- The delivery journal: an index by time of the entries of each outcome that is rare among
-- them (a dead letter, a duplicate, a superseded status), as for retries in version 8. The
-- console lists deliveries by outcome newest first; without these, finding a page of dead
-- letters read the entries by time (or a destination's) until the page was full, which on
-- a journal where little fails is most of them. Each takes only entries of its outcome.
CREATE INDEX entries_dead_lettered ON entries (at) WHERE outcome = 'dead_lettered';
CREATE INDEX entries_duplicate ON entries (at) WHERE outcome = 'duplicate';
CREATE INDEX entries_superseded ON entries (at) WHERE outcome = 'superseded';
