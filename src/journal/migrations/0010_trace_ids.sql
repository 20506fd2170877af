-- The delivery journal, version 10: the trace each entry's delivery was in (a W3C trace id,
-- 32 hex digits), when the relay traces ([tracing]), so that a person reading what happened
-- to a conversion can open its trace. Not indexed: it is read with its entry, never searched
-- by.
ALTER TABLE entries ADD COLUMN trace_id TEXT;
