-- The delivery journal, version 4: no index of events by order id. Every look-up by order id
-- reads the entries (`entries_order`), never the events, so the index was one more B-tree
-- written for each event and never read.
DROP INDEX events_order;
