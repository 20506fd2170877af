-- The delivery journal: an index of the entries that schedule a retry, by time. The console
-- lists the deliveries waiting for a retry newest first; without it, finding them read every
-- entry by time until a page was full, and retries are few among the entries (1.2 s at 1M
-- entries with one retry in 10,000). Only a failed call writes to it.
CREATE INDEX entries_retry ON entries (at) WHERE outcome = 'retry_scheduled';
