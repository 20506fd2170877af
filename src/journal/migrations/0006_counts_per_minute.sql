-- The delivery journal, version 6: per-minute counts of the entries, by destination and
-- outcome, with the sum and number of their calls' latencies. The writer adds each batch to
-- them in the batch's transaction, so that the console's overview and its charts read a few
-- rows a minute rather than every entry of a day. Keyed by the minute first: new rows go at
-- the end, and a time range (the overview, pruning) is one range of the key. Filled here
-- from the entries already written.
CREATE TABLE per_minute (
    minute         INTEGER NOT NULL,
    destination    TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    n              INTEGER NOT NULL,
    latency_ms_sum REAL NOT NULL,
    latency_n      INTEGER NOT NULL,
    PRIMARY KEY (minute, destination, outcome)
) WITHOUT ROWID;
INSERT INTO per_minute (minute, destination, outcome, n, latency_ms_sum, latency_n)
    SELECT at - (at % 60000), destination, outcome, count(*), total(latency_ms), count(latency_ms)
      FROM entries GROUP BY 1, 2, 3;
