-- The outbox's tables (SQLite), version 2. ``sqlite.py`` applies it to a new file, and after
-- migrate_2.sql to a version 1 file. Every statement is idempotent.
--
-- events       the full event log: every accepted (non-duplicate) event, with received_at,
--              source, the opaque payload and what became of it (outcome). The unique
--              dedup_key makes appends idempotent.
-- items        work items for the delivery worker, one per accepted upsert/delete event:
--              pending -> in_flight -> delivered | failed, plus superseded and skipped.
-- annotations  the annotation index (annotation id -> project, task), the newest version
--              seen, deletion, and what the worker recorded on delivery (data row, label ids).
-- batches      claimed batches: their Labelbox import name (set before the import starts), the
--              worker holding them and until when (the lease), attempts, the last error.
-- annotation_imports, region_uuid  traceability of deliveries.
-- incarnations Label Studio annotation ids reused after a deletion (see model.INCARNATION_STEP).
-- label_configs, cursors, rejected, counters  small bookkeeping tables.
-- tallies      rows per item state, events (per outcome) and rejected bodies, kept by triggers
--              (status and /metrics read them instead of counting the history).
--
-- Retention (bookkeeping.prune) deletes delivered / superseded / skipped items with their
-- events, ignored events, closed batches and rejected bodies older than the retention. Never
-- pending, in-flight or failed work, nor annotations, annotation_imports, region_uuid,
-- incarnations: the id mapping.

CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  received_at REAL NOT NULL,
  source TEXT NOT NULL,
  kind TEXT NOT NULL,                  -- upsert | delete | ignored (as received)
  annotation_id INTEGER NOT NULL,
  project_id INTEGER,
  task_id INTEGER,
  updated_at TEXT,                     -- Label Studio's own string
  updated_us INTEGER,                  -- the same instant, microseconds since the epoch (UTC)
  dedup_key TEXT NOT NULL UNIQUE,
  outcome TEXT NOT NULL,               -- queued | superseded | skipped | ignored
  reason TEXT,
  label_config_hash TEXT,
  payload BLOB NOT NULL,
  ignored_at REAL                      -- received_at of an ignored event, else NULL
);
CREATE INDEX IF NOT EXISTS events_annotation ON events(annotation_id);
-- Partial indexes on "when it became X" columns, NULL otherwise: only those rows pay for the
-- index, and a query's "x < :cutoff" implies "x IS NOT NULL", so the planner uses them.
CREATE INDEX IF NOT EXISTS events_ignored_at ON events(ignored_at) WHERE ignored_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY,
  event_id INTEGER NOT NULL UNIQUE REFERENCES events(id),
  kind TEXT NOT NULL,                  -- upsert | delete
  annotation_id INTEGER NOT NULL,
  project_id INTEGER,
  task_id INTEGER,
  updated_at TEXT,
  updated_us INTEGER,
  label_config_hash TEXT,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL,
  batch_id INTEGER,
  last_error TEXT,
  superseded_by INTEGER,
  created_at REAL NOT NULL,
  changed_at REAL NOT NULL,
  done_at REAL                         -- when it became delivered, superseded or skipped
);
CREATE INDEX IF NOT EXISTS items_state ON items(state, id);
CREATE INDEX IF NOT EXISTS items_due ON items(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS items_done ON items(done_at) WHERE done_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_annotation ON items(annotation_id, state);
CREATE INDEX IF NOT EXISTS items_batch ON items(batch_id);

CREATE TABLE IF NOT EXISTS annotations (
  annotation_id INTEGER PRIMARY KEY,
  project_id INTEGER,
  task_id INTEGER,
  latest_updated_at TEXT,              -- newest upsert accepted (orders the work)
  latest_us INTEGER,
  latest_item_id INTEGER,
  seen_updated_at TEXT,                -- newest version seen, upsert or ignored (reconciliation)
  seen_us INTEGER,
  deleted_at REAL,
  delete_item_id INTEGER,
  delivered_at REAL,                   -- set once something of it reached Labelbox
  delivered_us INTEGER,                -- newest upsert version delivered
  data_row TEXT,                       -- JSON, recorded by the worker
  label_ids TEXT,                      -- JSON list
  first_seen_at REAL NOT NULL,
  changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_project ON annotations(project_id);
CREATE INDEX IF NOT EXISTS annotations_task ON annotations(task_id);

CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY,
  created_at REAL NOT NULL,            -- when it was claimed
  size INTEGER NOT NULL,
  import_name TEXT,
  import_set_at REAL,
  closed_at REAL,
  owner TEXT,                          -- the worker holding it; NULL: nobody
  lease_until REAL,                    -- no other worker takes it before; NULL: free now
  attempts INTEGER NOT NULL DEFAULT 1, -- claims and take-overs
  last_error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_import_name ON batches(import_name)
  WHERE import_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS batches_closed ON batches(closed_at);

CREATE TABLE IF NOT EXISTS annotation_imports (
  annotation_id INTEGER NOT NULL,
  import_name TEXT NOT NULL,
  recorded_at REAL NOT NULL,
  uuids TEXT NOT NULL,                 -- JSON list
  started_at REAL,                     -- when the import's name was stored (before the call)
  PRIMARY KEY (annotation_id, import_name)
);

CREATE TABLE IF NOT EXISTS region_uuid (
  annotation_id INTEGER NOT NULL,
  uuid TEXT NOT NULL,
  ls_region_id TEXT,
  data_row TEXT,                       -- JSON
  lb_feature_id TEXT,
  updated_at REAL NOT NULL,
  PRIMARY KEY (annotation_id, uuid)
);
CREATE INDEX IF NOT EXISTS region_uuid_uuid ON region_uuid(uuid);
CREATE INDEX IF NOT EXISTS region_uuid_region ON region_uuid(ls_region_id);

CREATE TABLE IF NOT EXISTS label_configs (
  hash TEXT PRIMARY KEY, xml TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
  name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
  id INTEGER PRIMARY KEY,
  received_at REAL NOT NULL,
  reason TEXT NOT NULL,
  headers TEXT NOT NULL,               -- JSON object
  body BLOB NOT NULL,                  -- at most REJECTED_BODY_CAP bytes
  body_size INTEGER NOT NULL,          -- size as received
  truncated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_received ON rejected(received_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS incarnations (
  key INTEGER PRIMARY KEY,             -- the annotation_id used everywhere else in this file
  ls_id INTEGER NOT NULL,              -- the Label Studio annotation id
  created_us INTEGER,                  -- its creation time, NULL when never told
  UNIQUE (ls_id, created_us)
);

-- Inserts of items and events happen only in the append transaction, which adds what it
-- inserted once per transaction (append.py, query add_tallies): a trigger per row would cost
-- the webhook's hot path a statement per event. Every other change is counted here.
CREATE TABLE IF NOT EXISTS tallies (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO tallies(name, n) VALUES
  ('items:pending', 0), ('items:in_flight', 0), ('items:delivered', 0), ('items:failed', 0),
  ('items:superseded', 0), ('items:skipped', 0), ('events', 0), ('events:queued', 0),
  ('events:superseded', 0), ('events:skipped', 0), ('events:ignored', 0), ('rejected', 0);

CREATE TRIGGER IF NOT EXISTS items_tally_update AFTER UPDATE OF state ON items
WHEN OLD.state IS NOT NEW.state BEGIN
  UPDATE tallies SET n = n - 1 WHERE name = 'items:' || OLD.state;
  UPDATE tallies SET n = n + 1 WHERE name = 'items:' || NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS items_tally_delete AFTER DELETE ON items BEGIN
  UPDATE tallies SET n = n - 1 WHERE name = 'items:' || OLD.state;
END;
CREATE TRIGGER IF NOT EXISTS events_tally_delete AFTER DELETE ON events BEGIN
  UPDATE tallies SET n = n - 1 WHERE name IN ('events', 'events:' || OLD.outcome);
END;
CREATE TRIGGER IF NOT EXISTS rejected_tally_insert AFTER INSERT ON rejected BEGIN
  UPDATE tallies SET n = n + 1 WHERE name = 'rejected';
END;
CREATE TRIGGER IF NOT EXISTS rejected_tally_delete AFTER DELETE ON rejected BEGIN
  UPDATE tallies SET n = n - 1 WHERE name = 'rejected';
END;

-- What the tallies count, from the rows (nothing on a new file; a migrated one's history).
UPDATE tallies SET n = (SELECT count(*) FROM items WHERE 'items:' || state = tallies.name)
WHERE name LIKE 'items:%';
UPDATE tallies SET n = (SELECT count(*) FROM events) WHERE name = 'events';
UPDATE tallies SET n = (SELECT count(*) FROM events WHERE 'events:' || outcome = tallies.name)
WHERE name LIKE 'events:%';
UPDATE tallies SET n = (SELECT count(*) FROM rejected) WHERE name = 'rejected';
