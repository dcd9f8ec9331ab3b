-- The outbox's queries (PostgreSQL), by name: the same names and meaning as queries.sql (read
-- it for what each does). A list is one array parameter (``= ANY(%(ids)s::bigint[])``); the
-- webhook's bulk writes bind by position (%s, in the column orders of append.EventRow, ItemRow,
-- AnnotationRow). Claims and take-overs lock the rows they choose (FOR UPDATE SKIP LOCKED):
-- two replicas claiming at once get different items.

-- ============================================================== append (append.py)

-- seen_dedup_keys --
-- Which of these idempotency keys the event log already holds.
SELECT dedup_key FROM events WHERE dedup_key = ANY(%(keys)s::text[]);

-- annotations_by_id --
SELECT annotation_id, project_id, task_id, latest_updated_at, latest_us, latest_item_id,
       seen_updated_at, seen_us, deleted_at, delete_item_id, delivered_at
FROM annotations WHERE annotation_id = ANY(%(ids)s::bigint[]);

-- pending_upserts_of --
SELECT annotation_id, id FROM items
WHERE annotation_id = ANY(%(ids)s::bigint[]) AND state = %(pending)s AND kind = %(upsert)s;

-- in_flight_annotations_among --
SELECT DISTINCT annotation_id FROM items
WHERE annotation_id = ANY(%(ids)s::bigint[]) AND state = %(in_flight)s;

-- next_ids --
-- Ids are assigned by the append transaction (it holds the write lock, postgres.py).
SELECT (SELECT coalesce(max(id), 0) + 1 FROM events) AS event,
       (SELECT coalesce(max(id), 0) + 1 FROM items) AS item;

-- insert_event --
-- The hot path's bulk writes bind by position (append.EventRow, ItemRow, AnnotationRow, in
-- these column orders): a named parameter costs a dictionary per row.
INSERT INTO events(id, received_at, source, kind, annotation_id, project_id, task_id,
                   updated_at, updated_us, dedup_key, outcome, reason, label_config_hash, payload,
                   ignored_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- insert_item --
INSERT INTO items(id, event_id, kind, annotation_id, project_id, task_id, updated_at,
                  updated_us, label_config_hash, state, next_attempt_at, last_error,
                  superseded_by, created_at, changed_at, done_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- supersede_pending_item --
UPDATE items SET state = %(superseded)s, superseded_by = %(by)s, next_attempt_at = NULL,
                 changed_at = %(now)s, done_at = %(now)s
WHERE id = %(id)s AND state = %(pending)s;

-- update_annotation --
UPDATE annotations SET project_id = %s, task_id = %s, latest_updated_at = %s, latest_us = %s,
       latest_item_id = %s, seen_updated_at = %s, seen_us = %s, deleted_at = %s,
       delete_item_id = %s, changed_at = %s
WHERE annotation_id = %s;

-- insert_annotation --
-- (first_seen_at is changed_at: the driver copies it, positional parameters cannot repeat)
INSERT INTO annotations(project_id, task_id, latest_updated_at, latest_us, latest_item_id,
                        seen_updated_at, seen_us, deleted_at, delete_item_id, changed_at,
                        annotation_id, first_seen_at)
SELECT v.*, v.changed_at FROM (VALUES (%s::bigint, %s::bigint, %s::text, %s::bigint,
  %s::bigint, %s::text, %s::bigint, %s::double precision, %s::bigint, %s::double precision,
  %s::bigint)) AS v(project_id, task_id, latest_updated_at, latest_us, latest_item_id,
                    seen_updated_at, seen_us, deleted_at, delete_item_id, changed_at,
                    annotation_id);

-- add_tallies --
-- What one append transaction inserted (schema.sql: the only inserts no trigger counts).
UPDATE tallies SET n = n + %(n)s WHERE name = %(name)s;

-- add_to_counter --
INSERT INTO counters(name, value) VALUES (%(name)s, %(n)s)
ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value;

-- incarnations_of --
SELECT key, created_us FROM incarnations WHERE ls_id = %(ls_id)s ORDER BY key;

-- incarnations_among --
SELECT ls_id, key, created_us FROM incarnations
WHERE ls_id = ANY(%(ids)s::bigint[]) ORDER BY ls_id, key;

-- set_incarnation_created --
UPDATE incarnations SET created_us = %(created_us)s WHERE key = %(key)s;

-- insert_incarnation --
INSERT INTO incarnations(key, ls_id, created_us) VALUES (%(key)s, %(ls_id)s, %(created_us)s);

-- ============================================================== queue (queue.py)

-- supersede_pending_upserts_of_deleted --
-- Normalisation (queue.normalize) of the annotations :ids, in three statements.
UPDATE items SET state = %(superseded)s, next_attempt_at = NULL, changed_at = %(now)s, done_at = %(now)s,
       superseded_by = (SELECT a.delete_item_id FROM annotations a
                        WHERE a.annotation_id = items.annotation_id)
WHERE annotation_id IN (SELECT a.annotation_id FROM annotations a
                        WHERE a.annotation_id = ANY(%(ids)s::bigint[])
                          AND a.deleted_at IS NOT NULL)
  AND state = %(pending)s AND kind = %(upsert)s;

-- skip_pending_deletes_never_delivered --
UPDATE items SET state = %(skipped)s, next_attempt_at = NULL, last_error = %(reason)s,
                 changed_at = %(now)s, done_at = %(now)s
WHERE annotation_id IN (SELECT a.annotation_id FROM annotations a
                        WHERE a.annotation_id = ANY(%(ids)s::bigint[])
                          AND a.deleted_at IS NOT NULL AND a.delivered_at IS NULL
                          AND NOT EXISTS (SELECT 1 FROM items j
                                          WHERE j.annotation_id = a.annotation_id
                                            AND j.state = %(in_flight)s))
  AND state = %(pending)s AND kind = %(delete)s;

-- supersede_older_pending_upserts --
UPDATE items SET state = %(superseded)s, next_attempt_at = NULL, changed_at = %(now)s, done_at = %(now)s,
       superseded_by = (SELECT a.latest_item_id FROM annotations a
                        WHERE a.annotation_id = items.annotation_id)
WHERE annotation_id IN (SELECT a.annotation_id FROM annotations a
                        WHERE a.annotation_id = ANY(%(ids)s::bigint[])
                          AND a.deleted_at IS NULL AND a.latest_us IS NOT NULL)
  AND state = %(pending)s AND kind = %(upsert)s
  AND updated_us < (SELECT a.latest_us FROM annotations a
                    WHERE a.annotation_id = items.annotation_id);

-- claim_candidates --
-- Due pending items in arrival order after :after, none of an annotation that has an item in
-- flight; claim_batch pages through them keeping one per task.
SELECT i.id, i.task_id FROM items i
WHERE i.state = %(pending)s AND i.id > %(after)s AND i.next_attempt_at <= %(now)s
  AND NOT EXISTS (SELECT 1 FROM items j
                  WHERE j.annotation_id = i.annotation_id AND j.state = %(in_flight)s)
ORDER BY i.id LIMIT %(page)s
FOR UPDATE OF i SKIP LOCKED;

-- insert_batch --
INSERT INTO batches(created_at, size, owner, lease_until) VALUES (%(now)s, %(size)s, %(owner)s, %(lease_until)s)
RETURNING id;

-- claim_items --
UPDATE items SET state = %(in_flight)s, attempts = attempts + 1, batch_id = %(batch_id)s,
                 changed_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]);

-- batch_work_items --
SELECT i.id, i.kind, i.annotation_id, i.project_id, i.task_id, i.updated_at, e.payload,
       i.attempts, i.label_config_hash, a.data_row
FROM items i JOIN events e ON e.id = i.event_id
LEFT JOIN annotations a ON a.annotation_id = i.annotation_id
WHERE i.batch_id = %(batch_id)s AND i.state = %(in_flight)s
ORDER BY i.id;

-- set_import_name --
-- Only on an open batch, and (when :owner is given) only by the worker holding it.
UPDATE batches SET import_name = %(name)s, import_set_at = %(now)s
WHERE id = %(batch_id)s AND closed_at IS NULL AND (%(owner)s::text IS NULL OR owner = %(owner)s);

-- batch --
SELECT id, import_name, owner, lease_until, attempts, closed_at FROM batches WHERE id = %(batch_id)s;

-- abandoned_unnamed --
-- In-flight items of open batches never sent (no import name) whose lease ended: the worker
-- holding them died or gave them back.
SELECT i.id, i.annotation_id, i.batch_id FROM batches b JOIN items i ON i.batch_id = b.id
WHERE b.closed_at IS NULL AND b.import_name IS NULL AND coalesce(b.lease_until, 0) <= %(now)s
  AND i.state = %(in_flight)s;

-- abandoned_named --
-- Open batches with an import name whose lease ended (expired, or given back until :now).
-- A negative :limit: all of them.
SELECT id, import_name, attempts FROM batches
WHERE closed_at IS NULL AND import_name IS NOT NULL AND coalesce(lease_until, 0) <= %(now)s
ORDER BY coalesce(lease_until, 0), id
LIMIT CASE WHEN %(limit)s::int < 0 THEN NULL ELSE %(limit)s::int END
FOR UPDATE SKIP LOCKED;

-- any_abandoned --
SELECT 1 AS yes FROM batches
WHERE closed_at IS NULL AND coalesce(lease_until, 0) <= %(now)s LIMIT 1;

-- take_over_batch --
UPDATE batches SET owner = %(owner)s, lease_until = %(lease_until)s, attempts = attempts + 1
WHERE id = %(batch_id)s AND closed_at IS NULL AND coalesce(lease_until, 0) <= %(now)s;

-- renew_lease --
UPDATE batches SET lease_until = %(lease_until)s
WHERE id = %(batch_id)s AND owner = %(owner)s AND closed_at IS NULL;

-- postpone_batch --
-- Give a named batch back until :due (its items stay in flight: the import may exist).
UPDATE batches SET owner = NULL, lease_until = %(due)s, last_error = %(error)s
WHERE id = %(batch_id)s AND owner = %(owner)s AND closed_at IS NULL;

-- release_leases_of --
UPDATE batches SET owner = NULL, lease_until = %(now)s WHERE owner = %(owner)s AND closed_at IS NULL;

-- close_batch --
UPDATE batches SET closed_at = %(now)s, last_error = coalesce(%(error)s, last_error)
WHERE id = %(batch_id)s AND closed_at IS NULL;

-- move_item --
UPDATE items SET batch_id = %(batch_id)s, changed_at = %(now)s WHERE id = %(item_id)s AND state = %(in_flight)s;

-- in_flight_among --
-- These items, those in flight (in this batch, when :batch_id is not NULL).
SELECT id, kind, annotation_id, updated_us, batch_id FROM items
WHERE id = ANY(%(ids)s::bigint[]) AND state = %(in_flight)s
  AND (%(batch_id)s::bigint IS NULL OR batch_id = %(batch_id)s);

-- close_batch_if_done --
UPDATE batches SET closed_at = %(now)s
WHERE id = %(batch_id)s AND closed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM items WHERE batch_id = %(batch_id)s AND state = %(in_flight)s);

-- mark_items_delivered --
UPDATE items SET state = %(delivered)s, next_attempt_at = NULL, changed_at = %(now)s, done_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]);

-- note_upsert_delivered --
UPDATE annotations SET delivered_at = %(now)s,
       delivered_us = greatest(coalesce(delivered_us, %(us)s), %(us)s), changed_at = %(now)s
WHERE annotation_id = %(annotation_id)s;

-- release_items --
UPDATE items SET state = %(state)s, next_attempt_at = %(due)s, last_error = %(error)s, changed_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]);

-- skippable_among --
SELECT id, annotation_id, batch_id FROM items
WHERE id = ANY(%(ids)s::bigint[]) AND state IN (%(in_flight)s, %(pending)s);

-- skip_items --
UPDATE items SET state = %(skipped)s, next_attempt_at = NULL, last_error = %(reason)s,
                 changed_at = %(now)s, done_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]);

-- failed_items --
SELECT id, annotation_id FROM items WHERE state = %(failed)s;

-- failed_among --
SELECT id, annotation_id FROM items
WHERE id = ANY(%(ids)s::bigint[]) AND state = %(failed)s;

-- requeue_items --
UPDATE items SET state = %(pending)s, attempts = 0, next_attempt_at = %(now)s, changed_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]);

-- count_pending_among --
SELECT count(*) AS n FROM items
WHERE id = ANY(%(ids)s::bigint[]) AND state = %(pending)s;

-- close_finished_abandoned --
-- Abandoned batches with nothing left in flight.
UPDATE batches SET closed_at = %(now)s
WHERE closed_at IS NULL AND coalesce(lease_until, 0) <= %(now)s
  AND NOT EXISTS (SELECT 1 FROM items WHERE batch_id = batches.id AND state = %(in_flight)s);

-- ============================================================== annotation index (index.py)

-- ensure_annotation --
INSERT INTO annotations(annotation_id, first_seen_at, changed_at)
VALUES (%(annotation_id)s, %(now)s, %(now)s)
ON CONFLICT(annotation_id) DO NOTHING;

-- set_delivered_data_row --
UPDATE annotations SET data_row = %(data_row)s, delivered_at = %(now)s, changed_at = %(now)s
WHERE annotation_id = %(annotation_id)s;

-- record_annotation_import --
-- started_at: when the import's name was stored (its batch), else now.
INSERT INTO annotation_imports(annotation_id, import_name, recorded_at, uuids, started_at)
VALUES (%(annotation_id)s, %(import_name)s, %(now)s, %(uuids)s,
        coalesce((SELECT import_set_at FROM batches WHERE import_name = %(import_name)s), %(now)s))
ON CONFLICT(annotation_id, import_name) DO UPDATE SET uuids = excluded.uuids,
                                                      recorded_at = excluded.recorded_at;

-- record_region_data_row --
INSERT INTO region_uuid(annotation_id, uuid, data_row, updated_at)
VALUES (%(annotation_id)s, %(uuid)s, %(data_row)s, %(now)s)
ON CONFLICT(annotation_id, uuid) DO UPDATE SET data_row = excluded.data_row,
                                               updated_at = excluded.updated_at;

-- annotation_data_row --
SELECT data_row FROM annotations WHERE annotation_id = %(annotation_id)s;

-- record_region_ids --
-- A NULL feature id (or data row) keeps the one already known.
INSERT INTO region_uuid(annotation_id, uuid, ls_region_id, data_row, lb_feature_id, updated_at)
VALUES (%(annotation_id)s, %(uuid)s, %(ls_region_id)s, %(data_row)s, %(lb_feature_id)s, %(now)s)
ON CONFLICT(annotation_id, uuid) DO UPDATE SET
  ls_region_id = excluded.ls_region_id,
  data_row = coalesce(excluded.data_row, region_uuid.data_row),
  lb_feature_id = coalesce(excluded.lb_feature_id, region_uuid.lb_feature_id),
  updated_at = excluded.updated_at;

-- set_label_ids --
UPDATE annotations SET label_ids = %(label_ids)s, changed_at = %(now)s
WHERE annotation_id = %(annotation_id)s;

-- delivered_annotation --
SELECT data_row, label_ids, delivered_at FROM annotations WHERE annotation_id = %(annotation_id)s;

-- imports_of --
SELECT import_name, uuids FROM annotation_imports WHERE annotation_id = %(annotation_id)s
ORDER BY recorded_at, seq;

-- regions_of --
SELECT ls_region_id, uuid, lb_feature_id FROM region_uuid WHERE annotation_id = %(annotation_id)s
ORDER BY seq;

-- event_with_key --
SELECT 1 AS yes FROM events WHERE dedup_key = %(key)s;

-- annotation_versions --
-- The newest versions the index keeps (they outlive pruned events).
SELECT latest_us, seen_us FROM annotations WHERE annotation_id = %(annotation_id)s;

-- annotation_row --
SELECT project_id, task_id, deleted_at, delivered_at FROM annotations
WHERE annotation_id = %(annotation_id)s;

-- known_annotations --
SELECT annotation_id, seen_updated_at FROM annotations
WHERE project_id = %(project_id)s AND deleted_at IS NULL AND seen_updated_at IS NOT NULL;

-- projects --
SELECT DISTINCT project_id FROM annotations WHERE project_id IS NOT NULL ORDER BY project_id;

-- task_annotations --
SELECT annotation_id FROM annotations
WHERE task_id = %(task_id)s AND deleted_at IS NULL
  AND (%(project_id)s::bigint IS NULL OR project_id = %(project_id)s);

-- live_annotations --
SELECT annotation_id, task_id FROM annotations
WHERE project_id = %(project_id)s AND deleted_at IS NULL ORDER BY annotation_id;

-- import_windows --
-- From the moment the batch's import name was stored to the recorded delivery.
SELECT coalesce(started_at, recorded_at) AS start, recorded_at AS "end"
FROM annotation_imports WHERE annotation_id = %(annotation_id)s
ORDER BY recorded_at, seq;

-- other_delivered_on_task --
SELECT 1 AS yes FROM annotations
WHERE task_id = %(task_id)s AND annotation_id != %(annotation_id)s AND delivered_at IS NOT NULL
LIMIT 1;

-- ============================================================== bookkeeping (bookkeeping.py)

-- put_label_config --
INSERT INTO label_configs(hash, xml, created_at) VALUES (%(hash)s, %(xml)s, %(now)s)
ON CONFLICT(hash) DO NOTHING;

-- get_label_config --
SELECT xml FROM label_configs WHERE hash = %(hash)s;

-- get_cursor --
SELECT value FROM cursors WHERE name = %(name)s;

-- set_cursor --
INSERT INTO cursors(name, value, updated_at) VALUES (%(name)s, %(value)s, %(now)s)
ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at;

-- insert_rejected --
INSERT INTO rejected(received_at, reason, headers, body, body_size, truncated)
VALUES (%(now)s, %(reason)s, %(headers)s, %(body)s, %(body_size)s, %(truncated)s)
RETURNING id;

-- rejected_newest --
SELECT id, received_at, reason, headers, body, body_size, truncated FROM rejected
ORDER BY id DESC LIMIT %(limit)s;

-- tallies --
-- Rows per item state, per event outcome, rejected bodies (kept by triggers, schema.sql).
SELECT name, n FROM tallies;

-- due_upto --
-- How many items are due, counting at most :limit (the worker asks "a full batch yet?").
SELECT count(*) AS n FROM (SELECT 1 FROM items WHERE state = %(pending)s AND next_attempt_at <= %(now)s
                           LIMIT %(limit)s) AS due;

-- count_due --
SELECT count(*) AS n FROM items WHERE state = %(pending)s AND next_attempt_at <= %(now)s;

-- earliest_due --
SELECT min(next_attempt_at) AS at FROM items WHERE state = %(pending)s;

-- oldest_pending --
SELECT created_at FROM items WHERE state = %(pending)s ORDER BY id LIMIT 1;

-- next_retry_at --
SELECT min(next_attempt_at) AS at FROM items WHERE state = %(pending)s AND next_attempt_at > %(now)s;

-- open_batches --
-- Claimed batches not finished: who holds them, since when, until when, how many items.
SELECT b.id, b.import_name, b.owner, b.created_at, b.import_set_at, b.lease_until, b.attempts,
       b.last_error,
       (SELECT count(*) FROM items i WHERE i.batch_id = b.id AND i.state = %(in_flight)s) AS items
FROM batches b WHERE b.closed_at IS NULL ORDER BY b.id;

-- probe --
-- A write that changes nothing (health: can the outbox write now?).
UPDATE tallies SET n = n WHERE name = 'events';

-- counter --
SELECT value FROM counters WHERE name = %(name)s;

-- list_items --
SELECT i.id, i.kind, i.annotation_id, i.task_id, i.project_id, i.state, i.attempts,
       i.last_error, i.updated_at, i.created_at, i.changed_at, i.next_attempt_at, i.batch_id,
       i.event_id, i.superseded_by, e.source
FROM items i JOIN events e ON e.id = i.event_id
ORDER BY i.id DESC LIMIT %(limit)s;

-- list_items_in_state --
SELECT i.id, i.kind, i.annotation_id, i.task_id, i.project_id, i.state, i.attempts,
       i.last_error, i.updated_at, i.created_at, i.changed_at, i.next_attempt_at, i.batch_id,
       i.event_id, i.superseded_by, e.source
FROM items i JOIN events e ON e.id = i.event_id
WHERE i.state = %(state)s
ORDER BY i.id DESC LIMIT %(limit)s;

-- list_ignored_events --
-- Ignored events have no work item: id is NULL and last_error is the reason.
SELECT NULL AS id, kind, annotation_id, task_id, project_id, %(ignored)s::text AS state, 0 AS attempts,
       reason AS last_error, updated_at, received_at AS created_at, received_at AS changed_at,
       NULL AS next_attempt_at, NULL AS batch_id, id AS event_id, NULL AS superseded_by, source
FROM events WHERE ignored_at IS NOT NULL
ORDER BY ignored_at DESC, id DESC LIMIT %(limit)s;

-- ============================================================== retention (bookkeeping.py)

-- prunable_items --
-- Finished (delivered, superseded, skipped) before :cutoff; never pending, in flight, failed.
SELECT id, event_id FROM items WHERE done_at < %(cutoff)s LIMIT %(limit)s;

-- delete_items --
DELETE FROM items WHERE id = ANY(%(ids)s::bigint[]);

-- delete_events --
DELETE FROM events WHERE id = ANY(%(ids)s::bigint[]);

-- prune_ignored_events --
DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ignored_at < %(cutoff)s
                                LIMIT %(limit)s);

-- prune_batches --
DELETE FROM batches WHERE id IN (SELECT id FROM batches WHERE closed_at < %(cutoff)s LIMIT %(limit)s);

-- prune_rejected --
DELETE FROM rejected WHERE id IN (SELECT id FROM rejected WHERE received_at < %(cutoff)s
                                  LIMIT %(limit)s);
