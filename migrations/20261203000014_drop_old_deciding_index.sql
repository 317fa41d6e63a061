-- no-transaction
-- The deciding index without claims, replaced by `event_log_decides`
-- (migration 13), which holds every key it held.
DROP INDEX CONCURRENTLY event_log_decisive;
