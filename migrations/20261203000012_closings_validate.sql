-- Validates the checks the previous migration added NOT VALID, under a
-- SHARE UPDATE EXCLUSIVE lock: the ledger keeps writing while it scans.
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_event_check;
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_correction_details;
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_correction_delta;
