-- The stock-change feed (src/feed): every applied audit entry is a change,
-- so the feed needs no table of its own and costs the ledger no row. What
-- it needs is here: the low-stock levels the alerts compare against, and
-- the relay's position.

-- A pair's own low-stock level; it wins over its product's default.
CREATE TABLE stock_thresholds (
    warehouse_id uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    low          bigint      NOT NULL CHECK (low >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, warehouse_id)
);

-- A product's default level in every warehouse.
CREATE TABLE product_thresholds (
    product_id uuid        PRIMARY KEY,
    low        bigint      NOT NULL CHECK (low >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- How far the relay has published: every change with seq <= position is
-- acknowledged by the broker. One row per topic, so pointing the relay at
-- a new topic publishes the whole feed there from the start. The row is
-- written only by the relay that holds the feed's advisory lock.
CREATE TABLE change_relay (
    topic      text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
