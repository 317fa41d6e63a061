-- The relay's lease. Leadership is a session advisory lock, which a frozen
-- leader (a stopped process, a host that hangs) keeps for as long as its
-- session lives: hours, if no packet says it died. The leader now renews
-- a lease beside its position every few seconds, and a standby that finds
-- the lease expired ends the leader's session, which drops its lock.
-- Nullable, no default: adding them rewrites nothing (the table holds a
-- row per topic).
ALTER TABLE change_relay ADD COLUMN leader_pid integer;
ALTER TABLE change_relay ADD COLUMN renewed_at timestamptz;
