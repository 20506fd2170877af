-- The shared journal: an index of the entries that schedule a retry, by time, as in the
-- SQLite file: the console lists the deliveries waiting for a retry newest first, and
-- retries are few among the entries. Only a failed call writes to it.
CREATE INDEX IF NOT EXISTS entries_retry ON entries (at) WHERE outcome = 'retry_scheduled';
