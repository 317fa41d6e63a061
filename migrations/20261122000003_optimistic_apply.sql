-- The audit log's uniqueness, split by what it protects. The first entry
-- for a (movement_id, event) decides it (applied, or refused for a reason
-- of its own); every later entry with other content is a conflicting
-- duplicate. So one small index enforces "decided once", and a second,
-- almost empty one keeps each conflicting content to one entry. Together
-- they replace the six-column index on every row's content, which was the
-- largest structure the ledger wrote to.
CREATE UNIQUE INDEX event_log_decisive
    ON event_log (movement_id, event)
    WHERE reason IS DISTINCT FROM 'conflicting_duplicate';

CREATE UNIQUE INDEX event_log_conflicts
    ON event_log (movement_id, event, warehouse_id, product_id, quantity, occurred_at)
    WHERE reason = 'conflicting_duplicate';

DROP INDEX event_log_content;

-- Raised by the ledger's write statement when a row it checks was changed
-- by a concurrent batch after it was read. SQLSTATE 40001 tells the ledger
-- to run the batch again; nothing of the statement is written.
CREATE FUNCTION ledger_conflict() RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a concurrent batch changed rows this batch read'
        USING ERRCODE = 'serialization_failure';
END
$$;

-- A movement row is written twice, once per half, and the second write is
-- an update. Room on each page lets that update stay on the page (a HOT
-- update), so the primary key gets no second entry.
ALTER TABLE movements SET (fillfactor = 70);
