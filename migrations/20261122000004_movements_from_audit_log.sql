-- A movement is the applied entries of its movement_id in the audit log.
-- The movements table held the same halves a second time, and writing it
-- (an upsert per event, the second half an update of a random row) was the
-- largest part of every batch, and the part that grew slowest-first with
-- the table. It is replaced by reads of the audit log.
--
-- The table was also what serialized the two halves of one movement when
-- two batches decided them at the same time. That job moves into the
-- audit log's unique index: the entry that decides an event of a movement
-- nothing had been decided of yet "opens" the movement, and only one entry
-- may open each movement. Two batches that each decide a half without
-- seeing the other both open it, so the second to commit fails on the index
-- and is decided again on what the first wrote. Every other deciding entry
-- keeps the key (movement_id, event). src/ledger/apply.rs has the argument
-- that this one index keeps both rules: one deciding entry per
-- (movement_id, event), and no two applied halves that did not see each
-- other.
ALTER TABLE event_log ADD COLUMN opens_movement boolean NOT NULL DEFAULT false;

UPDATE event_log SET opens_movement = true
WHERE seq IN (SELECT min(seq) FROM event_log
              WHERE reason IS DISTINCT FROM 'conflicting_duplicate'
              GROUP BY movement_id);

DROP INDEX event_log_decisive;

CREATE UNIQUE INDEX event_log_decisive
    ON event_log (movement_id, (CASE WHEN opens_movement THEN 'open' ELSE event END))
    WHERE reason IS DISTINCT FROM 'conflicting_duplicate';

DROP TABLE movements;
