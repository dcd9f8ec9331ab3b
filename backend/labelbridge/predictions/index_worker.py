"""An index worker process: reads export chunks for ``labelbridge.predictions.indexer`` (the protocol is
described there). Run by the indexer as ``python -m labelbridge.predictions.index_worker``, not by hand."""

from __future__ import annotations

import pickle
import sys
from collections import Counter
from pathlib import Path

from labelbridge.labelbox.export import ExportError
from labelbridge.predictions.indexer import MESSAGE_ROWS, RowReader, gc_paused, send_message
from labelbridge.predictions.parts import PayloadPart


def main() -> int:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    selection, part_path, masks, base_dir = pickle.load(requests)
    reader = RowReader(selection, masks, base_dir)
    part = PayloadPart(Path(part_path))
    with gc_paused():
        while True:
            try:
                chunk = pickle.load(requests)
            except EOFError:  # the indexer has no more chunks
                part.close()
                return 0
            reader.origins, reader.skipped = Counter(), 0
            keys, payloads = [], []
            try:
                for row in reader.rows(chunk):
                    keys.append(row[:6])
                    payloads.append((row[0], row[6]))
                    if len(keys) >= MESSAGE_ROWS:
                        part.add(payloads)
                        send_message(answers, ("rows", keys))
                        keys, payloads = [], []
            except ExportError as exc:
                send_message(answers, ("error", exc))
                return 1
            part.add(payloads)
            send_message(answers, ("rows", keys))
            send_message(answers, ("done", reader.tally()))


if __name__ == "__main__":
    sys.exit(main())
