-- Closings: a movement's reversal (recorded in error: an opposite entry
-- per applied half) and its write-off (lost on the road: an entry that
-- moves nothing). Both are corrections, with a delta and details.
--
-- A closing must meet, in the deciding index, what it may not commit
-- beside: a reversal of a movement with one half applied and that
-- movement's other half, and two reversals of one movement. Its entries
-- therefore key the index by a `claims` text in place of their event
-- (src/ledger/apply/plan.rs, `claim`), and so does a half refused
-- because its movement was reversed (the reversal may hold its key).
-- The column is nullable with no default: adding it rewrites nothing, and
-- every other entry keeps NULL. The index itself is rebuilt CONCURRENTLY
-- by the next migrations but one.
ALTER TABLE event_log ADD COLUMN claims text;

-- The checks are replaced NOT VALID, under a lock held only for the
-- catalog change; the next migration validates them while writes go on.
ALTER TABLE event_log DROP CONSTRAINT event_log_event_check;
ALTER TABLE event_log ADD CONSTRAINT event_log_event_check
    CHECK (event IN ('arrival', 'departure', 'count', 'adjustment', 'reversal', 'write_off'))
    NOT VALID;

ALTER TABLE event_log DROP CONSTRAINT event_log_correction_details;
ALTER TABLE event_log ADD CONSTRAINT event_log_correction_details
    CHECK ((event NOT IN ('arrival', 'departure')) = (correction IS NOT NULL)) NOT VALID;

ALTER TABLE event_log DROP CONSTRAINT event_log_correction_delta;
ALTER TABLE event_log ADD CONSTRAINT event_log_correction_delta
    CHECK ((event NOT IN ('arrival', 'departure') AND outcome = 'applied') = (delta IS NOT NULL))
    NOT VALID;
