-- The shared journal, version 3: per-minute counts of the entries, by destination and
-- outcome, with the sum and number of their calls' latencies, as in the file's version 6.
-- The writer adds each batch to them in the batch's transaction, so that the console's
-- overview and its charts read a few rows a minute rather than every entry of a day. Filled
-- here from the entries already written.
CREATE TABLE per_minute (
    minute         BIGINT NOT NULL,
    destination    TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    n              BIGINT NOT NULL,
    latency_ms_sum DOUBLE PRECISION NOT NULL,
    latency_n      BIGINT NOT NULL,
    PRIMARY KEY (minute, destination, outcome)
);
INSERT INTO per_minute (minute, destination, outcome, n, latency_ms_sum, latency_n)
    SELECT at - (at % 60000), destination, outcome, count(*), coalesce(sum(latency_ms), 0),
           count(latency_ms)
      FROM entries GROUP BY 1, 2, 3;
