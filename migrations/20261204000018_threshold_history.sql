-- Every change of a low-stock level, numbered from the audit log's own
-- sequence, so that an alert compares a stock change against the level in
-- force when the change was numbered (the latest level row numbered below
-- it), not the level when the relay happens to publish it: a level changed
-- while the feed is held back no longer rewrites the alerts of changes
-- made before it.
--
-- A level write takes its transaction id before its number, as a batch
-- does (src/ledger/horizon.rs), so once the feed's horizon passes a change
-- every level row numbered below it is visible.
--
-- `warehouse_id` is NULL for a product's default; `low` is NULL where a
-- level was removed. The current levels stay in `stock_thresholds` and
-- `product_thresholds` for the API and the console.
CREATE TABLE threshold_history (
    product_id   uuid   NOT NULL,
    warehouse_id uuid,
    low          bigint CHECK (low >= 0),
    from_seq     bigint NOT NULL
);

CREATE INDEX threshold_history_lookup
    ON threshold_history (product_id, warehouse_id, from_seq);

-- The levels set before this migration are in force for every change.
INSERT INTO threshold_history (product_id, warehouse_id, low, from_seq)
SELECT product_id, warehouse_id, low, 0 FROM stock_thresholds
UNION ALL
SELECT product_id, NULL, low, 0 FROM product_thresholds;
