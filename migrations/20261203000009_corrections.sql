-- Corrections: counts and adjustments people make are entries of the one
-- audit log, keyed by their own id in `movement_id` (the first entry of an
-- id opens it in `event_log_decisive`, so an id is decided once), and
-- applied in the same batches as movements.
--
-- A count's effect depends on the stock it found, so an applied correction
-- stores it in `delta` (a movement's half keeps NULL: its event and
-- quantity say it), and its details (reason, note, reference, basis,
-- expected quantity) in `correction`. Both columns are nullable and have no
-- default, so adding them rewrites nothing, and a half's entry pays only
-- two bits of its null bitmap.
ALTER TABLE event_log ADD COLUMN delta bigint;
ALTER TABLE event_log ADD COLUMN correction jsonb;

-- The checks are replaced NOT VALID here, under a lock held only for the
-- catalog change; the next migration validates them, which scans the log
-- while writes go on.
ALTER TABLE event_log DROP CONSTRAINT event_log_event_check;
ALTER TABLE event_log ADD CONSTRAINT event_log_event_check
    CHECK (event IN ('arrival', 'departure', 'count', 'adjustment')) NOT VALID;

-- A count may find 0, and an adjustment takes stock away with a negative
-- quantity; a half's quantity stays positive.
ALTER TABLE event_log DROP CONSTRAINT event_log_quantity_check;
ALTER TABLE event_log ADD CONSTRAINT event_log_quantity_check
    CHECK (quantity > 0 OR event IN ('count', 'adjustment')) NOT VALID;

-- Every correction carries its details, and every applied one its delta;
-- no half carries either.
ALTER TABLE event_log ADD CONSTRAINT event_log_correction_details
    CHECK ((event IN ('count', 'adjustment')) = (correction IS NOT NULL)) NOT VALID;
ALTER TABLE event_log ADD CONSTRAINT event_log_correction_delta
    CHECK ((event IN ('count', 'adjustment') AND outcome = 'applied') = (delta IS NOT NULL))
    NOT VALID;
