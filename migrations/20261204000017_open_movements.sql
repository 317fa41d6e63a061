-- The movements on the road now: departed, and not arrived, reversed or
-- written off. The audit log holds every movement ever, so finding the
-- few open ones there reads more of it as it grows; this table holds only
-- those, kept by the ledger's write statement in the batch's own
-- transaction (a departure that leaves its movement in transit adds its
-- row, whatever closes it removes the row). `GET /api/v1/movements?status=
-- in_transit` and a product's quantity in transit read it.
CREATE TABLE open_movements (
    movement_id  uuid        PRIMARY KEY,
    product_id   uuid        NOT NULL,
    -- Where it departed from, how much, and its departure's data.timestamp.
    warehouse_id uuid        NOT NULL,
    quantity     integer     NOT NULL CHECK (quantity > 0),
    departed_at  timestamptz NOT NULL
);

CREATE INDEX open_movements_product ON open_movements (product_id);

-- What is on the road as the log says today. SHARE mode lets readers on
-- and holds writers back until this commits, so no departure an older
-- instance applies meanwhile is missed; on a log of 10M entries it holds
-- them for seconds.
LOCK TABLE event_log IN SHARE MODE;

INSERT INTO open_movements (movement_id, product_id, warehouse_id, quantity, departed_at)
SELECT d.movement_id, d.product_id, d.warehouse_id, d.quantity, d.occurred_at
FROM event_log d
WHERE d.event = 'departure' AND d.outcome = 'applied'
  AND NOT EXISTS (
      SELECT 1 FROM event_log c
      WHERE c.movement_id = d.movement_id
        AND c.event IN ('arrival', 'reversal', 'write_off')
        AND c.outcome = 'applied'
        AND c.reason IS DISTINCT FROM 'conflicting_duplicate');
