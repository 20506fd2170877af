-- The shared journal: the trace each entry's delivery was in, as in the SQLite file's
-- version 10.
ALTER TABLE entries ADD COLUMN IF NOT EXISTS trace_id TEXT;
