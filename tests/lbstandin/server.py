"""A strict local stand-in for the Labelbox GraphQL API, driven by the real labelbox SDK 7.17.

See the package docstring (``tests/lbstandin/__init__.py``) for the semantics it implements.
"""

from __future__ import annotations

import collections
import copy
import email.parser
import json
import secrets
import socket
import threading
import time
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from . import model_runs
from .graphql import GQLError, Operation, parse, project
from .masks import MaskFiles
from .ontology import CompiledOntology, Feature
from .validate import MalformedImport, parse_body, validate_lines

FAULT_KINDS = ("429", "500", "502", "503", "hang", "drop", "lost")
RATE_LIMIT_MESSAGE = "You have exceeded the rate limit of requests per minute. Please try again later."
DEFAULT_HANG_SECONDS = 65.0  # longer than the SDK's 60 s request timeout


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_cuid_lock = threading.Lock()
_cuid_counter = [0]


def new_cuid() -> str:
    """A 25-character, lowercase alphanumeric id starting with "c" (cuid-like)."""
    with _cuid_lock:
        _cuid_counter[0] += 1
        n = _cuid_counter[0]
    t = int(time.time() * 1000)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

    def b36(v: int, width: int) -> str:
        s = ""
        while v:
            v, r = divmod(v, 36)
            s = alphabet[r] + s
        return s.rjust(width, "0")[-width:]

    rand = "".join(secrets.choice(alphabet) for _ in range(12))
    return "c" + b36(t, 8) + b36(n, 4) + rand


class _Upload:
    def __init__(self, filename: str | None, content_type: str, data: bytes):
        self.filename, self.content_type, self.data = filename, content_type, data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class LabelboxStandIn:
    """In-memory Labelbox stand-in. ``port=0`` picks a free port on ``host``."""

    def __init__(self, api_key: str = "test-key", host: str = "127.0.0.1", port: int = 0, *,
                 import_duration: float = 0.0, export_chunk_bytes: int = 1 << 20,
                 user_email: str = "standin@example.com", verbose: bool = False):
        self.api_key = api_key
        self.host = host
        self.port = port
        self.verbose = verbose
        self.export_chunk_bytes = export_chunk_bytes
        self._lock = threading.RLock()
        self._fault_lock = threading.Lock()
        self._wake = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._down = False
        self._import_duration = float(import_duration)
        self._fail_next: list[dict] = []
        self._fail_windows: list[dict] = []
        self.fault_log: list[dict] = []
        self.calls: collections.Counter = collections.Counter()
        self.request_log: list[dict] = []
        created = now_iso()
        self.user = {"id": new_cuid(), "email": user_email, "name": "Stand-in User",
                     "nickname": "standin", "created_at": created}
        self._projects: dict[str, dict] = {}
        self._data_rows: dict[str, dict] = {}
        self._gk_index: dict[str, str] = {}
        self._imports: list[dict] = []
        self._labels: dict[str, dict] = {}
        self._prelabels: list[dict] = []
        self._model_runs: dict[str, dict] = {}
        self._tasks: dict[str, dict] = {}
        self._gk_jobs: dict[str, dict] = {}
        self._files: dict[str, dict] = {}
        self._masks = MaskFiles()
        # models and model runs (model_runs.py)
        self._models: dict[str, dict] = {}
        self._export_faults: dict[str, dict] = {}
        self._registrations: dict[str, dict] = {}
        self._mea_imports: list[dict] = []

    # ------------------------------------------------------------------ setup
    def add_project(self, project_id: str, name: str = "project", media_type: str = "IMAGE",
                    ontology: Iterable[Feature] = (), description: str = "") -> None:
        features = [f if isinstance(f, Feature) else Feature.from_json(f) for f in ontology]
        with self._lock:
            if project_id in self._projects:
                raise ValueError(f"project {project_id} already exists")
            now = now_iso()
            self._projects[project_id] = {
                "id": project_id, "name": name, "media_type": media_type,
                "description": description, "created_at": now, "updated_at": now,
                "ontology": CompiledOntology(project_id, features), "ontology_name": f"{name} ontology",
                "data_row_ids": [], "export_rows": None}

    def add_data_rows(self, project_id: str, rows: Iterable[dict]) -> None:
        with self._lock:
            proj = self._project(project_id)
            for row in rows:
                rid = row["id"]
                gk = row.get("global_key")
                old = self._data_rows.get(rid)
                if old is not None and old["global_key"] != gk:
                    raise ValueError(f"data row {rid} already registered with global key {old['global_key']!r}")
                if gk is not None and self._gk_index.get(gk, rid) != rid:
                    raise ValueError(f"global key {gk!r} already belongs to data row {self._gk_index[gk]}")
                if old is None:
                    self._data_rows[rid] = {
                        "id": rid, "global_key": gk, "row_data": row.get("row_data"),
                        "external_id": row.get("external_id"),
                        "media_attributes": dict(row.get("media_attributes") or {}),
                        "created_at": now_iso()}
                    if gk is not None:
                        self._gk_index[gk] = rid
                if rid not in proj["data_row_ids"]:
                    proj["data_row_ids"].append(rid)

    def add_model_run(self, model_id: str, run_id: str, name: str = "run",
                      export_rows: Iterable[dict] = (), created_at: str | None = None) -> None:
        with self._lock:
            now = created_at or now_iso()
            self._model_runs[run_id] = {"id": run_id, "model_id": model_id, "name": name,
                                        "created_at": now, "updated_at": now,
                                        "export_rows": [copy.deepcopy(r) for r in export_rows]}
            if model_id not in self._models:
                model_runs.add_model(self, model_id)

    add_model = model_runs.add_model
    set_model_run_rows = model_runs.set_model_run_rows
    fail_export = model_runs.fail_export
    model_run_state = model_runs.model_run_state

    def set_project_export_rows(self, project_id: str, rows: Iterable[dict] | None) -> None:
        """Rows a project export returns verbatim; ``None`` = generate them from labels."""
        with self._lock:
            self._project(project_id)["export_rows"] = (
                None if rows is None else [copy.deepcopy(r) for r in rows])

    def load_setup(self, setup: dict) -> None:
        """Apply a setup.json document (see ``__main__``)."""
        if "import_duration" in setup:
            self.set_import_duration(setup["import_duration"])
        if "export_chunk_bytes" in setup:
            self.export_chunk_bytes = int(setup["export_chunk_bytes"])
        for p in setup.get("projects", []):
            self.add_project(p["id"], p.get("name", "project"), p.get("media_type", "IMAGE"),
                             [Feature.from_json(f) for f in p.get("ontology", [])],
                             p.get("description", ""))
            self.add_data_rows(p["id"], p.get("data_rows", []))
            if p.get("export_rows") is not None:
                self.set_project_export_rows(p["id"], p["export_rows"])
        for m in setup.get("masks", []):
            with open(m["png_file"], "rb") as fh:
                self._masks.add(m["path"], fh.read())
        for m in setup.get("model_runs", []):
            rows = list(m.get("export_rows", []))
            if m.get("export_rows_file"):
                with open(m["export_rows_file"], encoding="utf-8") as fh:
                    rows += [json.loads(line) for line in fh if line.strip()]
            self.add_model_run(m["model_id"], m["run_id"], m.get("name", "run"), rows,
                               m.get("created_at"))

    # -------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.url + "/graphql"

    @property
    def rest_endpoint(self) -> str:
        return self.url + "/api/v1"

    @property
    def app_url(self) -> str:
        return self.url

    @property
    def user_id(self) -> str:
        return self.user["id"]

    def client(self, api_key: str | None = None):
        import labelbox as lb
        return lb.Client(api_key=api_key or self.api_key, endpoint=self.endpoint,
                         rest_endpoint=self.rest_endpoint, app_url=self.app_url)

    def start(self) -> "LabelboxStandIn":
        self._listen()
        return self

    def stop(self) -> None:
        self._close()

    def __enter__(self) -> "LabelboxStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def go_down(self) -> None:
        """Stop listening: new connections are refused until ``come_back()``."""
        self._close()
        self._down = True

    def come_back(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self._listen()
        self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def _listen(self) -> None:
        if self._server is not None:
            return
        handler = type("Handler", (_Handler,), {"standin": self})
        last = None
        for _ in range(50):  # the old socket may linger briefly after go_down()
            try:
                self._server = _Server((self.host, self.port), handler)
                break
            except OSError as e:
                last = e
                time.sleep(0.05)
        else:
            raise last  # type: ignore[misc]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"lbstandin:{self.port}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        srv, self._server = self._server, None
        old_wake, self._wake = self._wake, threading.Event()
        old_wake.set()  # release hanging handlers
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ----------------------------------------------------------------- faults
    def fail_next(self, n: int, kind: str, operations: Iterable[str] | None = None,
                  seconds: float | None = None) -> None:
        """The next ``n`` matching requests fail with ``kind``.

        ``operations``: names matched against the GraphQL operation name (e.g.
        ``createLabelImportByFilePyApi``), its root fields (``createLabelImport``) and the file
        kinds (``statusFile``, ``errorFile``, ``inputFile``, ``exportFile``); None = any request
        except ``/_standin/*``. ``seconds`` is the delay for ``hang`` (default 65 s; after it the
        request is answered normally).
        """
        self._check_kind(kind)
        with self._fault_lock:
            self._fail_next.append({"remaining": int(n), "kind": kind, "seconds": seconds,
                                    "ops": None if operations is None else set(operations)})

    def fail_for(self, seconds: float, kind: str, operations: Iterable[str] | None = None,
                 hang_seconds: float | None = None) -> None:
        """Matching requests fail with ``kind`` for the next ``seconds``."""
        self._check_kind(kind)
        with self._fault_lock:
            self._fail_windows.append({"until": time.monotonic() + float(seconds), "kind": kind,
                                       "seconds": hang_seconds,
                                       "ops": None if operations is None else set(operations)})

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._fail_next.clear()
            self._fail_windows.clear()

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {kind!r}")

    def _take_fault(self, names: set) -> dict | None:
        with self._fault_lock:
            for rule in self._fail_next:
                if rule["remaining"] > 0 and (rule["ops"] is None or rule["ops"] & names):
                    rule["remaining"] -= 1
                    if rule["remaining"] == 0:
                        self._fail_next.remove(rule)
                    break
            else:
                now = time.monotonic()
                self._fail_windows = [w for w in self._fail_windows if w["until"] > now]
                for w in self._fail_windows:
                    if w["ops"] is None or w["ops"] & names:
                        rule = w
                        break
                else:
                    return None
            self.fault_log.append({"kind": rule["kind"], "operations": sorted(names),
                                   "at": now_iso()})
            return rule

    def set_import_duration(self, seconds: float) -> None:
        """Imports stay RUNNING this long after creation (0: FINISHED on the next request)."""
        with self._lock:
            self._import_duration = float(seconds)

    # ------------------------------------------------------------- inspection
    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.request_log.clear()
        with self._fault_lock:
            self.fault_log.clear()

    def imports(self, project_id: str | None = None, kind: str | None = None) -> list[dict]:
        with self._lock:
            self._advance()
            return [self._import_view(i) for i in self._imports
                    if (project_id is None or i["project_id"] == project_id)
                    and (kind is None or i["kind"] == kind)]

    def labels(self, project_id: str | None = None, include_deleted: bool = False) -> list[dict]:
        with self._lock:
            self._advance()
            return [self._label_view(lab) for lab in self._labels.values()
                    if (project_id is None or lab["project_id"] == project_id)
                    and (include_deleted or not lab["deleted"])]

    def prelabels(self, project_id: str | None = None) -> list[dict]:
        """Successful MAL lines per (import, data row), excluding deleted MAL imports."""
        with self._lock:
            self._advance()
            return [copy.deepcopy({k: v for k, v in p.items() if k != "deleted"})
                    for p in self._prelabels
                    if (project_id is None or p["project_id"] == project_id) and not p["deleted"]]

    def named(self, project_id: str, value: Any) -> Any:
        """``value`` (an import line, a label annotation) with every ``schemaId`` replaced by the
        ``name`` of that feature in the project's ontology, for tests that compare by name."""
        nodes = self._projects[project_id]["ontology"].by_schema_id
        if isinstance(value, dict):
            return {("name" if k == "schemaId" else k):
                    (nodes[v].name if k == "schemaId" and v in nodes else self.named(project_id, v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.named(project_id, v) for v in value]
        return value

    def state(self) -> dict:
        with self._lock:
            self._advance()
            return {"imports": self.imports(), "labels": self.labels(include_deleted=True),
                    "prelabels": self.prelabels(), "calls": dict(self.calls),
                    "faults": list(self.fault_log), "down": self._down,
                    "import_duration": self._import_duration, "user": dict(self.user)}

    def _import_view(self, i: dict) -> dict:
        return copy.deepcopy({
            "id": i["id"], "name": i["name"], "kind": i["kind"], "project_id": i["project_id"],
            "lines": i["lines"], "state": i["state"], "statuses": i["statuses"],
            "errors": i["errors"], "created_at": i["created_at"], "failure": i["failure"],
            "deleted": i["deleted"], "content_length": i["content_length"],
            "body_bytes": len(i["body"])})

    @staticmethod
    def _label_view(lab: dict) -> dict:
        return copy.deepcopy({k: lab[k] for k in (
            "id", "project_id", "data_row_id", "global_key", "created_at", "created_by",
            "annotations", "import_name", "import_id", "deleted")})

    # ---------------------------------------------------------------- helpers
    def _project(self, pid: str) -> dict:
        try:
            return self._projects[pid]
        except KeyError:
            raise KeyError(f"stand-in: unknown project {pid}") from None

    def add_mask(self, png: bytes, *, project_id: str | None = None,
                 feature_id: str | None = None, task_id: str | None = None) -> str:
        """Serve a mask PNG as Labelbox does (see ``masks.py``): a single-instance URL for a
        (project, feature), else a composite URL of a task. Returns its URL."""
        if feature_id is not None:
            path = f"/api/v1/projects/{project_id or new_cuid()}/annotations/{feature_id}/index/1/mask"
        else:
            path = f"/api/v1/tasks/{task_id or new_cuid()}/masks/{new_cuid()}/index/1"
        self._masks.add(path, png)
        return self.url + path

    def _mask_at(self, url: str) -> bytes | None:
        """A served mask by URL (for imports that reference one by ``instanceURI``)."""
        return self._masks.get(urlsplit(url).path) if url.startswith(self.url) else None

    def _add_file(self, kind: str, data: bytes, suffix: str = "ndjson") -> str:
        token = secrets.token_urlsafe(18)
        self._files[token] = {"kind": kind, "data": data}
        return f"{self.url}/files/{token}/{kind}.{suffix}"

    # ---------------------------------------------------------------- imports
    def _advance(self) -> None:
        now = time.monotonic()
        for imp in self._imports:
            if imp["state"] == "RUNNING" and now - imp["t0"] >= self._import_duration:
                self._finish_import(imp)

    def _finish_import(self, imp: dict) -> None:
        proj = self._projects[imp["project_id"]]
        try:
            lines = parse_body(imp["body"])
        except MalformedImport as e:
            imp["state"] = "FAILED"
            imp["failure"] = str(e)
            line = {"uuid": None, "dataRow": None, "status": "FAILURE",
                    "errors": [{"name": "InvalidNDJSON", "message": str(e), "additionalInfo": None}]}
            imp["statuses"] = [line]
            imp["errors"] = [line]
        else:
            imp["lines"] = lines
            rows = [self._data_rows[r] for r in proj["data_row_ids"]]
            results = validate_lines(lines, imp["kind"], proj["ontology"],
                                     {r["id"]: r for r in rows},
                                     {r["global_key"]: r for r in rows if r["global_key"] is not None},
                                     fetch=self._mask_at)
            imp["statuses"] = [r.status_line() for r in results]
            imp["errors"] = [s for s in imp["statuses"] if s["status"] == "FAILURE"]
            imp["state"] = "FINISHED"
            created = now_iso()
            by_row: dict[str, list] = collections.OrderedDict()
            for r in results:
                if r.ok:
                    by_row.setdefault(r.data_row_id, []).append(r)
            for rid, rs in by_row.items():
                rec = {"project_id": proj["id"], "data_row_id": rid,
                       "global_key": self._data_rows[rid]["global_key"],
                       "annotations": [copy.deepcopy(r.line) for r in rs],
                       "uuids": [r.canonical_uuid for r in rs],
                       "import_name": imp["name"], "import_id": imp["id"],
                       "created_at": created, "deleted": False}
                if imp["kind"] == "label":
                    rec.update({"id": new_cuid(), "created_by": self.user["id"], "updated_at": created,
                                "feature_ids": {u: new_cuid() for u in rec["uuids"]}})
                    self._labels[rec["id"]] = rec
                else:
                    self._prelabels.append(rec)
        body = "\n".join(json.dumps(s) for s in imp["statuses"]).encode()
        errs = "\n".join(json.dumps(s) for s in imp["errors"]).encode()
        imp["status_url"] = self._add_file("statusFile", body)
        imp["error_url"] = self._add_file("errorFile", errs)

    def _create_import(self, kind: str, data: dict) -> dict:
        pid, name = data.get("projectId"), data.get("name")
        if pid not in self._projects:
            raise GQLError(f"stand-in: project {pid} does not exist or you have no access to it",
                           "AUTHORIZATION_ERROR")
        if not isinstance(name, str) or not name:
            raise GQLError("stand-in: import name must be a non-empty string", "MALFORMED_REQUEST")
        for other in self._imports:
            if other["kind"] == kind and other["project_id"] == pid and other["name"] == name:
                raise GQLError(f"An import with the name '{name}' already exists in project {pid}",
                               "RESOURCE_CONFLICT")
        payload = data.get("filePayload")
        if payload is not None:
            upload = payload.get("file")
            if not isinstance(upload, _Upload):
                raise GQLError("stand-in: filePayload.file is not an uploaded file part", "MALFORMED_REQUEST")
            if not isinstance(payload.get("contentLength"), int):
                raise GQLError("stand-in: filePayload.contentLength must be an Int", "MALFORMED_REQUEST")
            body, content_length = upload.data, payload["contentLength"]
        elif data.get("fileUrl"):
            body = self._fetch_url(data["fileUrl"])
            content_length = len(body)
        else:
            raise GQLError("stand-in: import needs filePayload or fileUrl", "MALFORMED_REQUEST")
        imp = {"id": new_cuid(), "kind": kind, "project_id": pid, "name": name, "body": body,
               "content_length": content_length, "lines": [], "state": "RUNNING",
               "statuses": [], "errors": [], "failure": None, "created_at": now_iso(),
               "t0": time.monotonic(), "status_url": None, "error_url": None, "deleted": False}
        imp["input_url"] = self._add_file("inputFile", body)
        self._imports.append(imp)
        return imp

    def _fetch_url(self, url: str) -> bytes:
        own = self.url + "/files/"
        if url.startswith(own):  # one of our own files: no HTTP (we hold the state lock)
            entry = self._files.get(url[len(own):].split("/")[0])
            if entry is None:
                raise GQLError(f"stand-in: could not download fileUrl {url}: 404", "MALFORMED_REQUEST")
            return entry["data"]
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.read()
        except Exception as e:  # noqa: BLE001
            raise GQLError(f"stand-in: could not download fileUrl {url}: {e}", "MALFORMED_REQUEST")

    def _find_import(self, kind: str, where: dict) -> dict:
        pid, name = (where or {}).get("projectId"), (where or {}).get("name")
        for imp in self._imports:
            if imp["kind"] == kind and imp["project_id"] == pid and imp["name"] == name and not imp["deleted"]:
                return imp
        raise GQLError(f"stand-in: no {kind} import named {name!r} in project {pid}", "RESOURCE_NOT_FOUND")

    # --------------------------------------------------------------- entities
    def _user_obj(self) -> dict:
        u = self.user
        return {"__typename": "User", "id": u["id"], "email": u["email"], "name": u["name"],
                "nickname": u["nickname"], "picture": None, "createdAt": u["created_at"],
                "updatedAt": u["created_at"], "lastLoginAt": u["created_at"], "isViewer": False,
                "isExternalUser": False, "timezone": "UTC",
                "createdTasks": lambda a: self._page([self._task_obj(t) for t in self._tasks.values()], a)}

    def _project_obj(self, p: dict) -> dict:
        return {"__typename": "Project", "id": p["id"], "name": p["name"],
                "description": p["description"], "createdAt": p["created_at"],
                "updatedAt": p["updated_at"], "setupComplete": p["created_at"],
                "lastActivityTime": None, "autoAuditNumberOfLabels": 1, "autoAuditPercentage": 1.0,
                "allowedMediaType": p["media_type"], "editorTaskType": None,
                "dataRowCount": len(p["data_row_ids"]), "modelSetupComplete": False,
                "uploadType": None, "isBenchmarkEnabled": False, "isConsensusEnabled": False,
                "ontology": lambda a: self._ontology_obj(p),
                "createdBy": lambda a: self._user_obj(),
                "labels": lambda a: self._page(
                    [self._label_obj(lab) for lab in self._labels.values() if lab["project_id"] == p["id"]], a)}

    def _ontology_obj(self, p: dict) -> dict:
        onto: CompiledOntology = p["ontology"]
        return {"__typename": "Ontology", "id": onto.ontology_id, "name": p["ontology_name"],
                "description": "", "createdAt": p["created_at"], "updatedAt": p["updated_at"],
                "normalized": copy.deepcopy(onto.normalized),
                "objectSchemaCount": onto.object_count,
                "classificationSchemaCount": onto.classification_count,
                "mediaType": p["media_type"]}

    def _data_row_obj(self, r: dict) -> dict:
        return {"__typename": "DataRow", "id": r["id"], "externalId": r["external_id"],
                "globalKey": r["global_key"], "rowData": r["row_data"],
                "createdAt": r["created_at"], "updatedAt": r["created_at"],
                "mediaAttributes": copy.deepcopy(r["media_attributes"]),
                "metadataFields": [], "customMetadata": [],
                "labels": lambda a: self._page(
                    [self._label_obj(lab) for lab in self._labels.values() if lab["data_row_id"] == r["id"]], a)}

    def _label_obj(self, lab: dict) -> dict:
        return {"__typename": "Label", "id": lab["id"], "deleted": lab["deleted"],
                "label": json.dumps(lab["annotations"]), "secondsToLabel": 0.0, "agreement": None,
                "benchmarkAgreement": None, "isBenchmarkReference": False,
                "createdAt": lab["created_at"], "updatedAt": lab["updated_at"],
                "project": lambda a: self._project_obj(self._projects[lab["project_id"]]),
                "dataRow": lambda a: self._data_row_obj(self._data_rows[lab["data_row_id"]]),
                "createdBy": lambda a: self._user_obj(),
                "reviews": lambda a: self._page([], a)}

    def _import_obj(self, imp: dict) -> dict:
        return {"__typename": "LabelImport" if imp["kind"] == "label" else "ModelAssistedLabelingPredictionImport",
                "id": imp["id"], "name": imp["name"], "state": imp["state"],
                "progress": "0%" if imp["state"] == "RUNNING" else "100%",
                "inputFileUrl": imp["input_url"], "errorFileUrl": imp["error_url"],
                "statusFileUrl": imp["status_url"],
                "project": lambda a: self._project_obj(self._projects[imp["project_id"]]),
                "createdBy": lambda a: self._user_obj()}

    def _model_run_obj(self, m: dict) -> dict:
        return {"__typename": "ModelRun", "id": m["id"], "name": m["name"],
                "createdAt": m["created_at"], "updatedAt": m.get("updated_at", m["created_at"]),
                "createdBy": self.user["id"], "modelId": m["model_id"], "modelAppId": m["model_id"],
                "trainingMetadata": None}

    def _task_obj(self, t: dict) -> dict:
        return {"__typename": "Task", "id": t["id"], "name": t["name"], "status": "COMPLETE",
                "type": "export-data-rows", "createdAt": t["created_at"], "updatedAt": t["created_at"],
                "completionPercentage": 100.0, "errors": None, "result": None, "metadata": None,
                "exportMetadataHeader": lambda a: self._export_header(t, a),
                "exportFileFromOffset": lambda a: self._export_chunk(t, a)}

    @staticmethod
    def _page(items: list, args: dict) -> list:
        args = dict(args or {})
        where = args.pop("where", None) or {}
        skip, first = args.pop("skip", 0), args.pop("first", None)
        if args:
            raise GQLError(f"stand-in: unsupported list arguments {sorted(args)}")
        for key, val in where.items():
            if key not in ("id", "deleted"):
                raise GQLError(f"stand-in: unsupported where filter {key!r}")
            items = [i for i in items if i.get(key, False if key == "deleted" else None) == val]
        items = items[skip:]
        return items if first is None else items[:first]

    @staticmethod
    def _where_id(args: dict, what: str) -> str:
        where = (args or {}).get("where") or {}
        if set(where) != {"id"}:
            raise GQLError(f"stand-in: {what} needs where: {{id}}")
        return where["id"]

    # ---------------------------------------------------------------- exports
    def _make_task(self, name: str | None, rows: list, body: bytes | None = None) -> dict:
        if body is None:
            body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
        tid = new_cuid()
        self._tasks[tid] = {"id": tid, "name": name or f"export-{tid}", "created_at": now_iso(),
                            "streams": {"RESULT": body, "ERRORS": b""}}
        return {"taskId": tid, "isStreamable": True}

    def _export_header(self, t: dict, args: dict) -> dict | None:
        data = t["streams"].get(args.get("streamType"))
        if data is None:
            raise GQLError(f"stand-in: unknown streamType {args.get('streamType')!r}")
        if not data:
            return None
        return {"totalSize": len(data), "totalLines": data.count(b"\n")}

    def _export_chunk(self, t: dict, args: dict) -> dict | None:
        data = t["streams"].get(args.get("streamType"))
        if data is None:
            raise GQLError(f"stand-in: unknown streamType {args.get('streamType')!r}")
        if not data:
            return None
        try:
            offset = int(args.get("offset"))
        except (TypeError, ValueError):
            raise GQLError(f"stand-in: offset must be a UInt64, got {args.get('offset')!r}")
        if not 0 <= offset < len(data):
            raise GQLError(f"stand-in: offset {offset} out of range 0..{len(data) - 1}")
        lines_at = t.setdefault("lines_at", {})  # clients read on from the last end: O(n), not O(n^2)
        line_no = lines_at.get(offset)
        if line_no is None:
            line_no = data.count(b"\n", 0, offset)
        end = offset
        first_line, last_line = line_no, line_no
        while True:
            nl = data.find(b"\n", end)
            nl = len(data) - 1 if nl < 0 else nl
            end = nl + 1
            if end >= len(data) or end - offset >= self.export_chunk_bytes:
                break
            last_line += 1
        lines_at[end] = last_line + 1
        url = self._add_file("exportFile", data[offset:end])
        model_runs.on_export_chunk(self, t, url)
        return {"offsets": {"start": offset, "end": end - 1},
                "lines": {"start": first_line, "end": last_line}, "file": url}

    def _export_project(self, inp: dict) -> dict:
        filters = inp.get("filters") or {}
        pid = filters.get("projectId")
        if pid not in self._projects:
            raise GQLError(f"stand-in: project {pid} does not exist or you have no access to it",
                           "AUTHORIZATION_ERROR")
        p = self._projects[pid]
        params = inp.get("params") or {}
        rows = p["export_rows"]
        rows = copy.deepcopy(rows) if rows is not None else self._generate_project_rows(p, params)
        for q in ((filters.get("searchQuery") or {}).get("query") or []):
            if q.get("type") == "data_row_id":
                rows = [r for r in rows if r.get("data_row", {}).get("id") in q["ids"]]
            elif q.get("type") == "global_key":
                rows = [r for r in rows if r.get("data_row", {}).get("global_key") in q["ids"]]
        return self._make_task(inp.get("taskName"), rows)

    def _export_model_run(self, inp: dict) -> dict:
        rid = (inp.get("filters") or {}).get("modelRunId")
        if rid not in self._model_runs:
            raise GQLError(f"stand-in: model run {rid} does not exist or you have no access to it",
                           "AUTHORIZATION_ERROR")
        body = model_runs.export_body(self._model_runs[rid],
                                      bool((inp.get("params") or {}).get("includePredictions")))
        task = self._make_task(inp.get("taskName"), [], body)
        model_runs.on_export_task(self, task["taskId"], rid)
        return task

    def _generate_project_rows(self, p: dict, params: dict) -> list:
        """Export-v2 rows built from the stand-in's data rows and (non-deleted) labels."""
        onto: CompiledOntology = p["ontology"]
        out = []
        for rid in p["data_row_ids"]:
            dr = self._data_rows[rid]
            labels = []
            for lab in self._labels.values():
                if lab["deleted"] or lab["project_id"] != p["id"] or lab["data_row_id"] != rid:
                    continue
                entry: dict[str, Any] = {"id": lab["id"], "label_kind": "Default", "version": "1.0.0",
                                         "annotations": _export_annotations(onto, lab)}
                if params.get("includeLabelDetails"):
                    entry["label_details"] = {"created_at": lab["created_at"], "updated_at": lab["updated_at"],
                                              "created_by": self.user["email"],
                                              "content_last_updated_at": lab["updated_at"], "reviews": []}
                labels.append(entry)
            proj_entry: dict[str, Any] = {"name": p["name"], "labels": labels}
            if params.get("includeProjectDetails"):
                proj_entry["project_details"] = {"workflow_status": "DONE" if labels else "TO_LABEL"}
            row = {"data_row": {"id": dr["id"], "global_key": dr["global_key"],
                                "external_id": dr["external_id"], "row_data": dr["row_data"]},
                   "media_attributes": copy.deepcopy(dr["media_attributes"]),
                   "projects": {p["id"]: proj_entry}}
            out.append(row)
        return out

    # ---------------------------------------------------------------- GraphQL
    def _query_resolvers(self) -> dict[str, Callable[[dict], Any]]:
        def project_(a):
            pid = self._where_id(a, "project")
            if pid not in self._projects:
                raise GQLError(f"Resource not found: project {pid}", "RESOURCE_NOT_FOUND")
            return self._project_obj(self._projects[pid])

        def user(a):
            if a:
                uid = self._where_id(a, "user")
                if uid != self.user["id"]:
                    raise GQLError(f"Resource not found: user {uid}", "RESOURCE_NOT_FOUND")
            return self._user_obj()

        def data_row(a):
            rid = self._where_id(a, "dataRow")
            if rid not in self._data_rows:
                raise GQLError(f"Resource not found: data row {rid}", "RESOURCE_NOT_FOUND")
            return self._data_row_obj(self._data_rows[rid])

        def label(a):
            lid = self._where_id(a, "label")
            lab = self._labels.get(lid)
            if lab is None or lab["deleted"]:
                raise GQLError(f"Resource not found: label {lid}", "RESOURCE_NOT_FOUND")
            return self._label_obj(lab)

        def model_run(a):
            rid = self._where_id(a, "modelRun")
            if rid not in self._model_runs:
                raise GQLError(f"Resource not found: model run {rid}", "RESOURCE_NOT_FOUND")
            return self._model_run_obj(self._model_runs[rid])

        def task(a):
            tid = self._where_id(a, "task")
            if tid not in self._tasks:
                raise GQLError(f"Resource not found: task {tid}", "RESOURCE_NOT_FOUND")
            return self._task_obj(self._tasks[tid])

        def gk_job(a):
            keys = ((a.get("where") or {}).get("ids"))
            if not isinstance(keys, list):
                raise GQLError("stand-in: dataRowsForGlobalKeys needs where: {ids: [...]}")
            job = new_cuid()
            found = [self._gk_index[k] for k in keys if k in self._gk_index]
            self._gk_jobs[job] = {"fetchedDataRows": [{"__typename": "DataRow", "id": i} for i in found],
                                  "notFoundGlobalKeys": [k for k in keys if k not in self._gk_index],
                                  "accessDeniedGlobalKeys": []}
            return {"jobId": job}

        def gk_result(a):
            job = (a.get("jobId") or {}).get("id")
            if job not in self._gk_jobs:
                raise GQLError(f"Resource not found: job {job}", "RESOURCE_NOT_FOUND")
            return {"jobStatus": "COMPLETE", "data": self._gk_jobs[job]}

        return {
            "project": project_, "user": user, "dataRow": data_row, "label": label,
            "modelRun": model_run, "task": task,
            "labelImport": lambda a: self._import_obj(self._find_import("label", a.get("where"))),
            "modelAssistedLabelingPredictionImport":
                lambda a: self._import_obj(self._find_import("mal", a.get("where"))),
            "dataRowsForGlobalKeys": gk_job, "dataRowsForGlobalKeysResult": gk_result,
            "customMetadataOntology": lambda a: [],
            **model_runs.query_resolvers(self),
        }

    def _mutation_resolvers(self) -> dict[str, Callable[[dict], Any]]:
        def delete_labels(a):
            ids = a.get("labelIds")
            if not isinstance(ids, list):
                raise GQLError("stand-in: deleteLabels needs labelIds: [...]")
            out = []
            for lid in ids:
                lab = self._labels.get(lid)
                if lab is None:
                    raise GQLError(f"Resource not found: label {lid}", "RESOURCE_NOT_FOUND")
                lab["deleted"] = True
                lab["updated_at"] = now_iso()
                out.append({"id": lid})
            return out

        def delete_mal(a):
            iid = self._where_id(a, "deleteModelAssistedLabelingPredictionImport")
            for imp in self._imports:
                if imp["id"] == iid and imp["kind"] == "mal" and not imp["deleted"]:
                    imp["deleted"] = True
                    for p in self._prelabels:
                        if p["import_id"] == iid:
                            p["deleted"] = True
                    return {"id": iid}
            raise GQLError(f"Resource not found: MAL import {iid}", "RESOURCE_NOT_FOUND")

        return {
            "createLabelImport": lambda a: self._import_obj(self._create_import("label", a.get("data") or {})),
            "createModelAssistedLabelingPredictionImport":
                lambda a: self._import_obj(self._create_import("mal", a.get("data") or {})),
            "deleteModelAssistedLabelingPredictionImport": delete_mal,
            "deleteLabels": delete_labels,
            "exportDataRowsInProject": lambda a: self._export_project(a.get("input") or {}),
            "exportDataRowsInModelRun": lambda a: self._export_model_run(a.get("input") or {}),
            **model_runs.mutation_resolvers(self),
        }

    def _execute(self, op: Operation, query_text: str) -> dict:
        resolvers = self._query_resolvers() if op.kind == "query" else (
            self._mutation_resolvers() if op.kind == "mutation" else {})
        if any(f.name not in resolvers for f in op.fields):
            short = " ".join(query_text.split())[:80]
            return {"errors": [GQLError(f"stand-in: unsupported operation {short}").as_json()]}
        data: dict[str, Any] = {}
        errors = []
        for f in op.fields:
            try:
                data[f.key] = project(resolvers[f.name](f.args), f.selections, f.name)
            except GQLError as e:
                data[f.key] = None
                errors.append(e.as_json([f.key]))
        out: dict[str, Any] = {"data": data}
        if errors:
            out["errors"] = errors
        return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def _export_classification(onto: CompiledOntology, parent, item: dict) -> dict:
    node = onto.lookup(parent, item.get("name"), item.get("schemaId"))
    out = {"feature_id": new_cuid(), "feature_schema_id": node.schema_id, "name": node.name,
           "value": _slug(node.name)}
    ans = item["answer"]

    def option(a):
        opt = onto.lookup(node, a.get("name"), a.get("schemaId"))
        return {"feature_id": new_cuid(), "feature_schema_id": opt.schema_id, "name": opt.label,
                "value": opt.name,
                "classifications": [_export_classification(onto, opt, c) for c in a.get("classifications", [])]}

    if node.kind == "radio":
        out["radio_answer"] = option(ans)
    elif node.kind == "checklist":
        out["checklist_answers"] = [option(a) for a in ans]
    else:
        out["text_answer"] = {"content": ans}
        if item.get("classifications"):
            out["classifications"] = [_export_classification(onto, node, c) for c in item["classifications"]]
    return out


_KIND_EXPORT = {"bbox": ("ImageBoundingBox", "bbox", "bounding_box"), "polygon": ("ImagePolygon", "polygon", "polygon"),
                "point": ("ImagePoint", "point", "point"), "polyline": ("ImagePolyline", "line", "line"),
                "ner": ("TextEntity", "location", "location")}


def _export_annotations(onto: CompiledOntology, lab: dict) -> dict:
    objects, classifications = [], []
    for line, u in zip(lab["annotations"], lab["uuids"]):
        node = onto.lookup(onto.root, line.get("name"), line.get("schemaId"))
        if node is None:  # ontology changed after import; skip
            continue
        if node.is_tool and node.kind in _KIND_EXPORT:
            kind, src, dst = _KIND_EXPORT[node.kind]
            objects.append({"feature_id": lab["feature_ids"][u], "feature_schema_id": node.schema_id,
                            "name": node.name, "value": _slug(node.name), "annotation_kind": kind,
                            "classifications": [_export_classification(onto, node, c)
                                                for c in line.get("classifications", [])],
                            dst: copy.deepcopy(line[src])})
        elif not node.is_tool:
            c = _export_classification(onto, onto.root, line)
            c["feature_id"] = lab["feature_ids"][u]
            classifications.append(c)
    return {"objects": objects, "classifications": classifications, "relationships": []}


# --------------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    standin: LabelboxStandIn  # set on the per-server subclass
    server_version = "LabelboxStandIn/1.0"
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt: str, *args) -> None:  # noqa: D401
        if self.standin.verbose:
            super().log_message(fmt, *args)

    # -- plumbing
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _apply_fault(self, names: set) -> bool:
        """Apply a pending fault; True when the request has been fully handled."""
        rule = self.standin._take_fault(names)
        if rule is None:
            return False
        kind = rule["kind"]
        if kind == "hang":
            self.standin._wake.wait(rule["seconds"] if rule["seconds"] is not None else DEFAULT_HANG_SECONDS)
            return False  # then answer normally (the client may have given up)
        if kind == "drop":
            self._drop()
            return True
        if kind == "lost":
            self._lose_answer = True  # handled as usual, then the connection closes unanswered
            return False
        if kind == "429":
            self._send(429, {"message": RATE_LIMIT_MESSAGE})
        elif kind == "500":
            self._send(500, {"message": "Internal Server Error"})
        elif kind == "502":
            self._send(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        elif kind == "503":
            self._send(503, b"upstream connect error or disconnect/reset before headers. "
                            b"reset reason: connection failure", "text/plain")
        return True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _answer(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        """``_send``, unless a "lost" fault ate the answer."""
        if getattr(self, "_lose_answer", False):
            self._lose_answer = False
            return self._drop()
        self._send(status, payload, content_type)

    # -- verbs
    def do_GET(self) -> None:
        self._route_get()

    def do_HEAD(self) -> None:
        self._route_get()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path.startswith("/_standin/"):
            return self._control_post(path, body)
        if path != "/graphql":
            return self._send(404, {"message": f"stand-in: no route POST {path}"})
        try:
            query, variables = self._read_graphql(body)
            op = parse(query, variables)
        except GQLError as e:
            op, err = None, e
        except (ValueError, KeyError, TypeError) as e:
            op, err = None, GQLError(f"stand-in: bad request body: {e}", "GRAPHQL_PARSE_FAILED")
        names = set() if op is None else {f.name for f in op.fields} | ({op.name} if op.name else set())
        if self._apply_fault(names):
            return
        if self.headers.get("Authorization") != f"Bearer {self.standin.api_key}":
            with self.standin._lock:
                self.standin.calls["__unauthorized__"] += 1
            return self._send(401, {"message": "Unauthorized", "errors": [
                {"message": "Unauthorized: invalid API key",
                 "extensions": {"code": "AUTHENTICATION_ERROR"}}]})
        if op is None:
            return self._send(400, {"errors": [err.as_json()]})
        s = self.standin
        with s._lock:
            for n in names:
                s.calls[n] += 1
            s.request_log.append({"operation": op.name, "fields": [f.name for f in op.fields],
                                  "sdk_method": self.headers.get("X-SDK-Method"), "at": now_iso()})
            s._advance()
            result = s._execute(op, query)
        self._answer(200, result)

    def _read_graphql(self, body: bytes) -> tuple[str, dict]:
        ctype = self.headers.get("Content-Type") or ""
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser().parsebytes(
                b"MIME-Version: 1.0\r\nContent-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
            if not msg.is_multipart():
                raise ValueError("multipart body has no parts")
            parts = {}
            for part in msg.get_payload():
                name = part.get_param("name", header="content-disposition")
                parts[name] = _Upload(part.get_filename(), part.get_content_type(),
                                      part.get_payload(decode=True) or b"")
            ops = json.loads(parts.pop("operations").data)
            mapping = json.loads(parts.pop("map").data)
            for part_name, paths in mapping.items():
                upload = parts[part_name]
                for path in paths:
                    target = ops
                    keys = path.split(".")
                    for k in keys[:-1]:
                        target = target[k]
                    target[keys[-1]] = upload
            return ops["query"], ops.get("variables") or {}
        req = json.loads(body or b"{}")
        return req["query"], req.get("variables") or {}

    def _route_get(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_standin/"):
            return self._control_get(path)
        mask = self.standin._masks.get(path)
        if mask is not None:
            if self._apply_fault({"maskFile"}):
                return
            if self.headers.get("Authorization") != f"Bearer {self.standin.api_key}":
                with self.standin._lock:
                    self.standin.calls["__unauthorized__"] += 1
                return self._send(401, {"message": "Unauthorized"})
            with self.standin._lock:
                self.standin.calls["maskFile"] += 1
            return self._send(200, mask, "image/png")
        if path.startswith("/files/"):
            parts = path.split("/")
            entry = self.standin._files.get(parts[2]) if len(parts) > 3 else None
            if entry is None:
                return self._send(404, {"message": "stand-in: no such file"})
            if entry.get("fault"):  # an export chunk set to fail (model_runs.fail_export)
                self.standin.fail_next(1, entry.pop("fault"), [entry["kind"]])
            if self._apply_fault({entry["kind"]}):
                return
            with self.standin._lock:
                self.standin.calls[entry["kind"]] += 1
                if entry["kind"] == "exportFile":  # a chunk is fetched once: free it
                    self.standin._files.pop(parts[2], None)
            return self._answer(200, entry["data"], "application/x-ndjson")
        self._send(404, {"message": f"stand-in: no route GET {path}"})

    # -- control endpoints (unauthenticated, stand-in only)
    def _control_get(self, path: str) -> None:
        if path == "/_standin/health":
            return self._send(200, {"ok": True, "down": self.standin.is_down})
        if path == "/_standin/state":
            return self._send(200, self.standin.state())
        self._send(404, {"message": f"stand-in: no control route {path}"})

    def _control_post(self, path: str, body: bytes) -> None:
        s = self.standin
        try:
            doc = json.loads(body or b"{}")
            if path == "/_standin/reset-calls":
                s.reset_calls()
            elif path == "/_standin/faults":
                apply_fault_doc(s, doc)
            elif path == "/_standin/setup":
                s.load_setup(doc)
            else:
                return self._send(404, {"message": f"stand-in: no control route {path}"})
        except (ValueError, KeyError, TypeError) as e:
            return self._send(400, {"message": f"stand-in: {e}"})
        self._send(200, {"ok": True})


def apply_fault_doc(s: LabelboxStandIn, doc: dict) -> None:
    """Apply a ``POST /_standin/faults`` body.

    Keys (all optional, combinable): ``clear`` (bool), ``fail_next`` ({n, kind, operations?,
    seconds?}), ``fail_for`` ({seconds, kind, operations?, hang_seconds?}) - either may also be a
    list of such objects -, ``import_duration`` (seconds), ``down_for`` (seconds: stop listening,
    then listen again on the same port).
    """
    if doc.get("clear"):
        s.clear_faults()
    for spec in _as_list(doc.get("fail_next")):
        s.fail_next(spec.get("n", 1), spec["kind"], spec.get("operations"), spec.get("seconds"))
    for spec in _as_list(doc.get("fail_for")):
        s.fail_for(spec["seconds"], spec["kind"], spec.get("operations"), spec.get("hang_seconds"))
    if "import_duration" in doc:
        s.set_import_duration(doc["import_duration"])
    if doc.get("down_for"):
        seconds = float(doc["down_for"])

        def cycle():
            time.sleep(0.1)  # let the control response go out first
            s.go_down()
            time.sleep(seconds)
            s.come_back()
        threading.Thread(target=cycle, daemon=True).start()


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]
