-- Stock per (warehouse, product). `version` grows with every committed change
-- and lets the cache refuse to overwrite a newer value with an older one.
CREATE TABLE stock (
    warehouse_id uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    quantity     bigint      NOT NULL DEFAULT 0,
    version      bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (warehouse_id, product_id),
    -- The apply logic never lets stock go negative; this is the last line of
    -- defence, not the mechanism.
    CONSTRAINT stock_quantity_non_negative CHECK (quantity >= 0)
);

-- One row per movement_id. The row is also the lock that serializes the two
-- halves of a movement (and re-sends of either), so a batch creates it before
-- it decides anything; a row with neither half applied is not a movement yet.
CREATE TABLE movements (
    movement_id              uuid PRIMARY KEY,
    product_id               uuid,
    source_warehouse_id      uuid,
    departure_time           timestamptz,
    departure_quantity       integer,
    destination_warehouse_id uuid,
    arrival_time             timestamptz,
    arrival_quantity         integer,
    version                  bigint NOT NULL DEFAULT 0
);

-- The audit log: every applied and every rejected event, once. Duplicates of
-- an event are not stored again (the unique index on its content makes a
-- redelivery a no-op), which keeps a replayed topic from growing the log.
CREATE TABLE event_log (
    seq          bigserial   PRIMARY KEY,
    message_id   text        NOT NULL,
    source       text        NOT NULL,
    event_time   timestamptz,
    movement_id  uuid        NOT NULL,
    event        text        NOT NULL CHECK (event IN ('arrival', 'departure')),
    warehouse_id uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    quantity     integer     NOT NULL CHECK (quantity > 0),
    occurred_at  timestamptz NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    reason       text        CHECK ((outcome = 'rejected') = (reason IS NOT NULL)),
    received_at  timestamptz NOT NULL,
    attributes   jsonb       NOT NULL DEFAULT '{}'
);

CREATE UNIQUE INDEX event_log_content
    ON event_log (movement_id, event, warehouse_id, product_id, quantity, occurred_at);

CREATE INDEX event_log_rejections ON event_log (seq) WHERE outcome = 'rejected';
