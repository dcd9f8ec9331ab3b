"""An index worker process: reads export chunks for ``backend.indexer`` (the protocol is
described there). Run by the indexer as ``python -m backend.index_worker``, not by hand."""

from __future__ import annotations

import pickle
import sys
from collections import Counter

from backend.indexer import MESSAGE_BYTES, RowReader, gc_paused, send_message
from backend.labelbox.export import ExportError
from backend.store import IndexRow


def main() -> int:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    reader = RowReader(pickle.load(requests))
    with gc_paused():
        while True:
            try:
                chunk = pickle.load(requests)
            except EOFError:  # the indexer has no more chunks
                return 0
            reader.origins, reader.skipped = Counter(), 0
            batch: list[IndexRow] = []
            size = 0
            try:
                for row in reader.rows(chunk):
                    batch.append(row)
                    size += len(row.payload)
                    if size >= MESSAGE_BYTES:
                        send_message(answers, ("rows", batch))
                        batch, size = [], 0
            except ExportError as exc:
                send_message(answers, ("error", exc))
                return 1
            if batch:
                send_message(answers, ("rows", batch))
            send_message(answers, ("done", reader.tally()))


if __name__ == "__main__":
    sys.exit(main())
