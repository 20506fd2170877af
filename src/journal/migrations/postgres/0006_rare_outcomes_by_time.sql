-- The shared journal: an index by time of the entries of each outcome that is rare among
-- them, as in the SQLite file's version 9.
CREATE INDEX IF NOT EXISTS entries_dead_lettered ON entries (at) WHERE outcome = 'dead_lettered';
CREATE INDEX IF NOT EXISTS entries_duplicate ON entries (at) WHERE outcome = 'duplicate';
CREATE INDEX IF NOT EXISTS entries_superseded ON entries (at) WHERE outcome = 'superseded';
