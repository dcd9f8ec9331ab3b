-- Version 1 -> 2 (before schema.sql runs): leases and attempts on batches, when each delivering
-- import started (batches may be pruned now), tallies instead of counting the history.
ALTER TABLE batches ADD COLUMN owner TEXT;
ALTER TABLE batches ADD COLUMN lease_until REAL;
ALTER TABLE batches ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE batches ADD COLUMN last_error TEXT;
ALTER TABLE annotation_imports ADD COLUMN started_at REAL;
UPDATE annotation_imports SET started_at = (SELECT b.import_set_at FROM batches b
                                            WHERE b.import_name = annotation_imports.import_name);
ALTER TABLE items ADD COLUMN done_at REAL;
UPDATE items SET done_at = changed_at WHERE state IN ('delivered', 'superseded', 'skipped');
ALTER TABLE events ADD COLUMN ignored_at REAL;
UPDATE events SET ignored_at = received_at WHERE outcome = 'ignored';
DROP INDEX IF EXISTS events_ignored;
