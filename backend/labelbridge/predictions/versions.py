"""The model versions this bridge has served from a data dir, oldest first.

``labelbridge refresh-predictions`` removes Label Studio predictions of these versions (and only
these: Label Studio does not record which ML backend made a prediction, only its version).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

FILE = "model_versions.json"


def versions_file(data_dir: Path) -> Path:
    return Path(data_dir) / FILE


def known(data_dir: Path) -> list[str]:
    try:
        return list(orjson.loads(versions_file(data_dir).read_bytes()))
    except FileNotFoundError:
        return []


def remember(data_dir: Path, version: str) -> None:
    have = known(data_dir)
    if version in have:
        return
    path = versions_file(data_dir)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps([*have, version]))
    os.replace(tmp, path)
