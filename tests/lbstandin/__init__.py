"""Labelbox stand-in: a strict local HTTP server that the *real* labelbox SDK 7.17 talks to.

Start it in-process::

    from tests.lbstandin import LabelboxStandIn, Feature
    s = LabelboxStandIn(api_key="test-key").start()
    s.add_project(pid, name="demo", media_type="IMAGE", ontology=[Feature("car", "bbox"), ...])
    s.add_data_rows(pid, [{"id": ..., "global_key": ..., "row_data": ..., "media_attributes": {...}}])
    client = s.client()            # lb.Client pointed at endpoint / rest_endpoint / app_url here

or as a process: ``python -m tests.lbstandin --port N --api-key K --setup setup.json``
(see ``tests/lbstandin/__main__.py`` for the setup.json format and the control endpoints).

Wire behaviour (SDK 7.17 / lbox-clients 1.1.2)
----------------------------------------------
* GraphQL is parsed (``graphql.py``) and answered by projecting in-memory objects onto the
  selection: every selected field is present; a field the stand-in does not model is a
  ``GRAPHQL_VALIDATION_FAILED`` error (SDK: ``InvalidQueryError``); so is an unknown root field
  ("stand-in: unsupported operation <first 80 chars of the query>").
* Auth: ``Authorization: Bearer <api_key>`` is required on ``/graphql``. A wrong key gets HTTP 401
  ``{"message": "Unauthorized", "errors": [{"extensions": {"code": "AUTHENTICATION_ERROR"}}]}``;
  the SDK maps the code to ``lbox.exceptions.AuthenticationError`` (a bare 401
  ``{"message": "Unauthorized"}`` would only give a generic ``LabelboxError("401 Unauthorized")``).
  File URLs (status / error / input files, export chunks) are unauthenticated "signed" URLs.
  Mask PNGs (``add_mask``; see ``masks.py``) need the API key too: without it HTTP 401.
* Not found (project, data row, label, model run, import by name, task) -> GraphQL error code
  ``RESOURCE_NOT_FOUND`` (the SDK then raises ``ResourceNotFoundError``). Creating an import or
  export in an unknown project / model run -> ``AUTHORIZATION_ERROR`` (SDK ``AuthorizationError``).
* Duplicate import name in the same project (per kind: label imports and MAL imports are
  separate namespaces) -> ``RESOURCE_CONFLICT`` (SDK ``ResourceConflict``).

Import semantics (pessimistic on purpose)
-----------------------------------------
* ``createLabelImport`` / ``createModelAssistedLabelingPredictionImport`` answer ``state:
  RUNNING`` with null status/error file URLs. The import is processed once
  ``set_import_duration`` seconds have passed, on the next request or inspection call (default
  0: FINISHED on the first poll). Validation is per line (see ``validate.py``); a body that is not
  NDJSON at all makes the import FAILED (SDK ``statuses``/``errors`` raise
  ``ValueError("Import failed.")``).
* Each finished LabelImport creates ONE NEW Label per data row that has at least one successful
  line, holding that row's successful lines, ``created_by`` = the API key's user, ``createdAt`` =
  processing time. It never replaces or merges with existing labels (re-importing the same uuids
  therefore yields a second label); delete old labels yourself (``Label.bulk_delete``).
* Relationship lines fail in a LabelImport ("Relationships are not supported for label
  import"); in MAL their source/target must be uuids of valid object lines on the same data row in
  the same import. MAL imports create no labels; their successful lines are kept as pre-labels
  (``prelabels()``).
* Deleting labels marks them deleted: they disappear from ``data_row.labels()``, ``labels()`` and
  generated project exports.

Exports
-------
``project.export()`` / ``model_run.export()`` create a task that is COMPLETE at once. The RESULT
stream is the registered rows (``set_project_export_rows`` / ``add_model_run(export_rows=)``) as
NDJSON, served in line-aligned chunks of at most ``export_chunk_bytes`` through
``exportFileFromOffset``. Without registered project rows, rows are generated from the stand-in's
data rows and labels. Model-run rows lose ``predictions`` unless ``params={"predictions": True}``.
An empty stream has a null metadata header (``has_result()`` / ``has_errors()`` are False).
``data_row_ids`` / ``global_keys`` filters are applied; other filters are ignored.

Models and model runs (``model_runs.py``): ``add_model``, ``add_model_run(created_at=)``,
``set_model_run_rows`` (moves ``updatedAt``), ``fail_export`` (a run export that breaks mid-stream),
``upsert_labels`` and custom-metric imports (``model_run.add_predictions``), ``model_run_state``.

Faults
------
``fail_next`` / ``fail_for`` with kinds "429" (HTTP 429 ``{"message": "You have exceeded ..."}``
-> SDK ``ApiLimitError``), "500"/"502"/"503" (-> ``InternalServerError``, retried by the SDK for
~120 s and then ``google.api_core.exceptions.RetryError``), "hang" (delay, then answer normally;
default 65 s, longer than the SDK's 60 s timeout), "drop" (close without answering -> SDK
``NetworkError``), "lost" (handle the request as usual, e.g. create the import, then close
without answering: the answer is lost on the way). ``go_down()`` / ``come_back()`` stop and
resume listening on the same port (connection refused -> ``lbox.exceptions.NetworkError``).

Inspection: ``calls`` counts served GraphQL operation names *and* root field names (e.g. both
``createLabelImportByFilePyApi`` and ``createLabelImport``) plus file downloads (``statusFile``,
``errorFile``, ``inputFile``, ``exportFile``, ``maskFile``); faulted or unauthorized requests are not counted
(see ``fault_log``).
"""

from .ontology import Feature, Option
from .server import LabelboxStandIn, new_cuid

__all__ = ["LabelboxStandIn", "Feature", "Option", "new_cuid"]
