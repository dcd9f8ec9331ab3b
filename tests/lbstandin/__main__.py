"""Run the Labelbox stand-in as a process.

    python -m tests.lbstandin --host 127.0.0.1 --port N --api-key K --setup setup.json

Prints ``LISTENING http://HOST:PORT`` (flushed) once it accepts connections; stops on SIGTERM or
SIGINT.

setup.json (every key optional)::

    {
      "import_duration": 0,              # seconds an import stays RUNNING
      "export_chunk_bytes": 1048576,     # max bytes per export chunk
      "projects": [{
        "id": "<25-char project id>", "name": "demo", "media_type": "IMAGE",
        "ontology": [
          {"name": "car", "kind": "bbox",
           "nested": [{"name": "occluded", "kind": "radio", "options": ["yes", "no"]}]},
          {"name": "weather", "kind": "radio",
           "options": ["sunny", {"value": "rainy", "nested": [{"name": "amount", "kind": "text"}]}]},
          {"name": "tags", "kind": "checklist", "options": ["a", "b"],
           "nested": {"a": [{"name": "why", "kind": "text"}]}},
          {"name": "drives", "kind": "relationship"}
        ],                                # kinds: bbox polygon point polyline mask ner relationship
                                          #        radio checklist text
        "data_rows": [{"id": "<cuid>", "global_key": "img-1.jpg", "row_data": "http://...",
                       "external_id": null, "media_attributes": {"width": 640, "height": 480}}],
        "export_rows": [ ... ]            # optional: rows a project export returns verbatim
      }],
      "masks": [{"path": "/api/v1/tasks/<t>/masks/<m>/index/1", "png_file": "m.png"}],
                                          # served with the API key, see masks.py
      "model_runs": [{"model_id": "...", "run_id": "...", "name": "run",
                      "created_at": "2025-01-01T00:00:00.000Z",  # optional; default: now
                      "export_rows": [ ... ], "export_rows_file": "rows.ndjson"}]
    }

Control endpoints (unauthenticated): ``GET /_standin/health``, ``GET /_standin/state``
(imports, labels, prelabels, calls, faults), ``POST /_standin/reset-calls``,
``POST /_standin/setup`` (a setup.json document, applied additively) and ``POST /_standin/faults``
with any of ``{"clear": true, "fail_next": {"n": 1, "kind": "429", "operations": [...],
"seconds": null}, "fail_for": {"seconds": 2, "kind": "503", "operations": null,
"hang_seconds": null}, "import_duration": 3, "down_for": 2}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .server import LabelboxStandIn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lbstandin", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--api-key", default="test-key")
    ap.add_argument("--setup", help="setup.json path")
    ap.add_argument("--import-duration", type=float, default=None)
    ap.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    args = ap.parse_args(argv)

    s = LabelboxStandIn(api_key=args.api_key, host=args.host, port=args.port, verbose=args.verbose)
    if args.setup:
        with open(args.setup, encoding="utf-8") as fh:
            s.load_setup(json.load(fh))
    if args.import_duration is not None:
        s.set_import_duration(args.import_duration)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s.start()
    print(f"LISTENING {s.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
