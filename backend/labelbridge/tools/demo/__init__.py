"""``make demo``: labelbridge working end to end on this machine, nothing from the internet.

``python -m labelbridge.tools.demo`` starts a local Label Studio (``tools/localls``, the same
harness the e2e tests use), ``labelbridge serve`` on ``configs/demo/labelbox-export.ndjson`` and
a file server for ``configs/demo/media``; creates one project per entry of
``configs/demo/demo.yaml``, imports its tasks, wires it with ``labelbridge connect``, runs
"Retrieve Predictions", and prints the URLs to open and what to try. Ctrl-C stops it all; a
second run reuses the Label Studio data, the projects and the tasks it made.

Modules: ``manifest`` (the YAML), ``media`` (the file server), ``projects`` (the idempotent
set-up in Label Studio), ``__main__`` (processes and what is printed).
"""
