-- Validates the checks the previous migration added NOT VALID. Validation
-- takes a SHARE UPDATE EXCLUSIVE lock, so the ledger keeps writing while
-- it scans the log; every existing entry is a half and passes.
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_event_check;
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_quantity_check;
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_correction_details;
ALTER TABLE event_log VALIDATE CONSTRAINT event_log_correction_delta;
