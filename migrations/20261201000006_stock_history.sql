-- Stock over time: a pair's history, its stock as of a moment, and a
-- product across warehouses and in transit (GET .../history,
-- ?as_of=, /api/v1/products/{p}/stock).
--
-- Each applied entry records the pair's stock right after it. The ledger
-- decides that figure anyway (its rules compute it to refuse departures
-- that would go below zero), so storing it costs one bigint per entry, and
-- it turns "what was the stock then" into reading one row instead of
-- summing every earlier delta. Rejected entries changed nothing and keep
-- NULL. Entries written before this migration get their figure from the
-- sum of the deltas before them, which is what the ledger applied: stock
-- starts at 0 and only applied entries change it.
ALTER TABLE event_log ADD COLUMN stock_after bigint;

UPDATE event_log AS e
SET stock_after = h.stock_after
FROM (
    SELECT seq,
           sum(CASE WHEN event = 'arrival' THEN quantity ELSE -quantity END)
               OVER (PARTITION BY warehouse_id, product_id ORDER BY seq) AS stock_after
    FROM event_log
    WHERE outcome = 'applied'
) AS h
WHERE e.seq = h.seq;

ALTER TABLE event_log ADD CONSTRAINT event_log_stock_after_when_applied
    CHECK ((outcome = 'applied') = (stock_after IS NOT NULL));

-- A pair's applied entries in the ledger's order: history pages walk it
-- forwards, as-of walks it backwards from the newest entry.
CREATE INDEX event_log_pair_history
    ON event_log (warehouse_id, product_id, seq)
    WHERE outcome = 'applied';

-- Applied departures by product, for what is in transit: a departure whose
-- movement has no applied arrival (which the deciding index finds).
CREATE INDEX event_log_product_departures
    ON event_log (product_id, seq)
    WHERE outcome = 'applied' AND event = 'departure';

-- A product's rows across warehouses. Only key columns are indexed, so a
-- quantity update stays a heap-only (HOT) update.
CREATE INDEX stock_by_product ON stock (product_id, warehouse_id);
