"""The labelbox SDK calls labelbridge makes, and how their failures are classified.

Transient (retry with backoff): rate limits (``ApiLimitError``), 5xx, timeouts, network errors.
Permanent (dead letter): everything else, with Labelbox's own message. ``ImportRejected``: the
import as a whole was refused before or by Labelbox (``FAILED``), so nothing of it exists.

Imports are looked up by (project, name): once an import may exist, every later step finds it
by its name. The SDK itself retries 5xx and timeouts (~2 min) on GraphQL calls but not a 429 on
polling (``refresh()``), and reads status files with ``requests.get`` without a timeout,
raising ``HTTPError`` on a 429: polling failures are retried here a few times, the status file
is read here with a timeout, and whatever still fails is transient (the batch resumes by name).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import labelbox as lb
import orjson
import requests
from google.api_core.exceptions import RetryError
from lbox import exceptions as lbx

from labelbridge.labelbox.ontology import Ontology
from labelbridge.model.sink import (ImportOutcome, ImportRejected, LabelRef, LineStatus,
                                    PermanentError, TransientError)

log = logging.getLogger(__name__)

# RetryError: the SDK's own 5xx retry loop gave up (about 80-120 s); not a LabelboxError.
TRANSIENT = (lbx.ApiLimitError, lbx.InternalServerError, lbx.TimeoutError, lbx.NetworkError,
             RetryError, requests.ConnectionError, requests.Timeout, ConnectionError,
             TimeoutError)
POLL_FAILURES = 3   # transient polling failures in a row before the batch is given back


def classify(exc: BaseException) -> RuntimeError:
    if isinstance(exc, (TransientError, PermanentError)):
        return exc
    message = f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, TRANSIENT):
        return TransientError(message)
    if isinstance(exc, lbx.LabelboxError) and any(code in str(exc) for code in
                                                  ("502", "503", "504", "Bad Gateway")):
        return TransientError(message)
    return PermanentError(message)


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


class LabelboxGateway:
    """One project, one import kind (ground truth or MAL)."""

    # Whether a second import of the same uuids replaces the label is not documented for
    # label imports: assume it may add one, and remove the earlier label ourselves.
    replaces_by_uuid = False

    def __init__(self, api_key: str, project_id: str, *, endpoint: str, rest_endpoint: str,
                 app_url: str, import_kind: str = "ground_truth", poll_interval: float = 2.0,
                 timeout: float = 1800.0, file_timeout: float = 60.0) -> None:
        self.client = lb.Client(api_key=api_key, endpoint=endpoint, rest_endpoint=rest_endpoint,
                                app_url=app_url)
        self.project_id = project_id
        self.kind = lb.MALPredictionImport if import_kind == "mal" else lb.LabelImport
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.file_timeout = file_timeout
        self._user_id: str | None = None

    # ----- imports ------------------------------------------------------------------------
    def import_lines(self, name: str, lines: list[dict], resume: bool = False) -> ImportOutcome:
        """Create the import (with ``resume``, continue with the one of that name if it exists)
        and wait for per-line statuses."""
        started = time.time()
        try:
            imp = self._find(name) if resume else None
            if imp is None:
                imp = self._create(name, lines)
            return self._wait(imp, name, started)
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def _create(self, name: str, lines: list[dict]):
        try:
            return self.kind.create_from_objects(self.client, self.project_id, name, lines)
        except lbx.ResourceConflict:
            imp = self._find(name)   # created by an earlier attempt whose answer was lost
            if imp is None:
                raise PermanentError(f"import {name} exists and cannot be found") from None
            return imp
        except ValueError as exc:    # the SDK refused the lines before sending anything
            raise ImportRejected(f"the labelbox SDK refused import {name}: {exc}") from exc

    def _find(self, name: str):
        try:
            return self.kind.from_name(self.client, self.project_id, name)
        except lbx.ResourceNotFoundError:
            return None

    def _wait(self, imp, name: str, started: float) -> ImportOutcome:
        interval = self.poll_interval
        deadline = time.monotonic() + self.timeout
        failures = 0
        while imp.state == lb.AnnotationImportState.RUNNING:
            if time.monotonic() > deadline:
                raise TransientError(f"import {name} still running after {self.timeout:.0f} s")
            time.sleep(interval)
            interval = min(interval * 1.5, 30.0)
            try:
                imp.refresh()
                failures = 0
            except Exception as exc:
                error = classify(exc)
                failures += 1
                if not isinstance(error, TransientError) or failures >= POLL_FAILURES:
                    raise error from exc
                log.info("import %s: polling failed (%s); polling again", name, error)
        if imp.state == lb.AnnotationImportState.FAILED:
            raise ImportRejected(f"Labelbox rejected import {name}: the file was not accepted")
        outcome = ImportOutcome(name, started_at=started, finished_at=time.time())
        for status in self._statuses(imp, name):
            uuid = status.get("uuid")
            errors = tuple(f"{e.get('name')}: {e.get('message')}" for e in status.get("errors")
                           or [])
            outcome.statuses[uuid] = LineStatus(uuid, status.get("status") == "SUCCESS", errors)
        return outcome

    def _statuses(self, imp, name: str) -> list[dict]:
        """The import's status file (a signed URL), read with a timeout. Any failure is
        transient: the import exists, and a later attempt finds it by name (with fresh URLs)."""
        if not imp.status_file_url:
            raise TransientError(f"import {name} finished without a status file yet")
        try:
            response = requests.get(imp.status_file_url, timeout=self.file_timeout)
            response.raise_for_status()
            return lb.parser.loads(response.text)
        except (requests.RequestException, ValueError) as exc:
            raise TransientError(f"import {name}: reading its status file failed: "
                                 f"{exc.__class__.__name__}: {exc}") from exc

    # ----- labels -------------------------------------------------------------------------
    def user_id(self) -> str:
        if self._user_id is None:
            self._user_id = self.client.get_user().uid
        return self._user_id

    def remove_labels(self, data_row: dict, choose: Callable[[list[LabelRef]], Iterable[str]],
                      annotation_id: int, uuids: list[str]) -> list[str]:
        """Delete the labels ``choose`` picks among those on a data row in our project that our
        API user created (given oldest first): Label Studio annotation ``annotation_id``'s.
        Returns the deleted label ids."""
        try:
            if data_row.get("id"):
                row = self.client.get_data_row(data_row["id"])
            else:
                row = self.client.get_data_row_by_global_key(data_row["globalKey"])
            me = self.user_id()
            ours = []
            for label in row.labels():
                if label.project().uid != self.project_id:
                    continue
                author = label.created_by()
                if author is not None and author.uid != me:
                    continue
                ours.append(label)
            ours.sort(key=lambda label: _timestamp(label.created_at))
            chosen = set(choose([LabelRef(l.uid, _timestamp(l.created_at)) for l in ours]))
            doomed = [l for l in ours if l.uid in chosen]
            if doomed:
                lb.Label.bulk_delete(doomed)
            return [l.uid for l in doomed]
        except lbx.ResourceNotFoundError:
            return []
        except Exception as exc:
            raise classify(exc) from exc

    # ----- reading from Labelbox ----------------------------------------------------------
    def ontology(self) -> Ontology:
        """The project's ontology (``project.ontology().normalized``); SDK failures are
        classified, a tree that is no ontology raises ``OntologyError``."""
        try:
            normalized = self.client.get_project(self.project_id).ontology().normalized
        except Exception as exc:
            raise classify(exc) from exc
        if isinstance(normalized, str):
            try:
                normalized = json.loads(normalized)
            except ValueError:
                pass
        return Ontology.from_normalized(normalized or {}, f"Labelbox project '{self.project_id}'")

    def export(self, dest: Path, model_run_id: str | None = None,
               progress: Callable[[int], None] | None = None) -> int:
        """Stream a model-run (with predictions) or project export to an NDJSON file."""
        try:
            if model_run_id:
                task = self.client.get_model_run(model_run_id).export(
                    params={"predictions": True, "data_row_details": True})
            else:
                task = self.client.get_project(self.project_id).export(
                    params={"label_details": True, "data_row_details": True})
            task.wait_till_done()
            if not task.has_result() and not task.has_errors():
                dest.write_bytes(b"")
                return 0
            if task.has_errors():
                errors = [e.json for e in task.get_buffered_stream(
                    stream_type=lb.StreamType.ERRORS)]
                raise PermanentError(f"Labelbox export failed: {errors[:3]}")
            count = 0
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as fh:
                for item in task.get_buffered_stream():
                    fh.write(orjson.dumps(item.json) + b"\n")
                    count += 1
                    if progress and count % 1000 == 0:
                        progress(count)
            tmp.replace(dest)
            return count
        except (TransientError, PermanentError):
            raise
        except Exception as exc:
            raise classify(exc) from exc
