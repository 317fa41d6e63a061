-- The cache no longer compares row versions: it uses a generation counter
-- in Redis (see src/cache). The columns are dead weight on every write.
ALTER TABLE stock DROP COLUMN version;
ALTER TABLE movements DROP COLUMN version;
