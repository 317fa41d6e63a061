-- no-transaction
-- The deciding index, keyed by an entry's claim where it has one
-- (migration 11). Built CONCURRENTLY, so writes go on while it scans the
-- log; that cannot run in a transaction, hence one statement in this
-- file. Until the next migration drops it, the old index enforces its
-- keys too, which every entry written before claims existed satisfies.
--
-- If this build fails (the service stopped mid-way, say), PostgreSQL
-- leaves an INVALID index of this name: drop it before starting again
-- (`DROP INDEX CONCURRENTLY event_log_decides;`).
CREATE UNIQUE INDEX CONCURRENTLY event_log_decides
    ON event_log (movement_id, (CASE WHEN opens_movement THEN 'open' ELSE coalesce(claims, event) END))
    WHERE reason IS DISTINCT FROM 'conflicting_duplicate';
