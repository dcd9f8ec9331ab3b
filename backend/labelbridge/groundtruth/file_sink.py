"""The embedded default sink: NDJSON files instead of Labelbox (no keys needed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import orjson

from labelbridge.model.sink import ImportOutcome, LabelRef, LineStatus


class FileSink:
    """The embedded default: each batch becomes ``<name>.ndjson``; what goes away is appended to
    ``removals.ndjson``, one line per removal: the data row, the Label Studio annotation id
    and the uuids of its regions that go (``{"dataRow", "annotationId", "uuids", "at"}``).
    Files are meant to be applied in order, a later uuid replacing an earlier one."""

    replaces_by_uuid = True

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def import_lines(self, name: str, lines: list[dict], resume: bool = False) -> ImportOutcome:
        started = time.time()
        target = self.directory / f"{name}.ndjson"
        if not (resume and target.exists()):
            tmp = target.with_suffix(".part")
            tmp.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
            tmp.replace(target)
        return ImportOutcome(name, {line["uuid"]: LineStatus(line["uuid"], True)
                                    for line in lines}, started, time.time())

    def remove_labels(self, data_row: dict, choose: Callable[[list[LabelRef]], Iterable[str]],
                      annotation_id: int, uuids: list[str]) -> list[str]:
        line = {"dataRow": data_row, "annotationId": annotation_id, "uuids": list(uuids),
                "at": time.time()}
        with open(self.directory / "removals.ndjson", "ab") as fh:
            fh.write(orjson.dumps(line) + b"\n")
        return []
