"""``configs/demo/demo.yaml``: which projects the demo creates, with which tasks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml


class DemoError(ValueError):
    """The manifest or its media is wrong; the message names the file, entry and field."""


@dataclass(frozen=True)
class DemoTask:
    global_key: str
    data: dict[str, Any]   # as written: plain values, {"media": FILE} or {"inline": FILE}


@dataclass(frozen=True)
class DemoProject:
    title: str
    label_config: Path
    tasks: tuple[DemoTask, ...]


def load(path: Path) -> list[DemoProject]:
    """Read and check the manifest: label configs and media files must exist."""
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"{where}: {exc}") from exc
    entries = doc.get("projects") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DemoError(f"{where}: projects: a non-empty list is required")
    configs, media = path.parent.parent, path.parent / "media"
    projects, titles = [], set()
    for i, entry in enumerate(entries):
        loc = f"{where}: projects[{i}]"
        if not isinstance(entry, dict):
            raise DemoError(f"{loc}: a mapping is required")
        title, config = entry.get("title"), entry.get("label_config")
        if not isinstance(title, str) or not title or title in titles:
            raise DemoError(f"{loc}.title: a unique non-empty string is required, got {title!r}")
        titles.add(title)
        if not isinstance(config, str) or not (configs / config).is_file():
            raise DemoError(f"{loc}.label_config: no such file in {configs}: {config!r}")
        tasks = entry.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise DemoError(f"{loc}.tasks: a non-empty list is required")
        projects.append(DemoProject(title, configs / config, tuple(
            _task(t, f"{loc}.tasks[{j}]", media) for j, t in enumerate(tasks))))
    return projects


def _task(entry: Any, loc: str, media: Path) -> DemoTask:
    if not isinstance(entry, dict) or not isinstance(entry.get("global_key"), str):
        raise DemoError(f"{loc}.global_key: a string is required")
    data = entry.get("data")
    if not isinstance(data, dict) or not data:
        raise DemoError(f"{loc}.data: a non-empty mapping is required")
    for key, value in data.items():
        if isinstance(value, dict):
            kind, name = next(iter(value.items())) if len(value) == 1 else (None, None)
            if kind not in ("media", "inline") or not isinstance(name, str):
                raise DemoError(f"{loc}.data.{key}: use {{media: FILE}} or {{inline: FILE}}")
            if not (media / name).is_file():
                raise DemoError(f"{loc}.data.{key}: no such file in {media}: {name!r}")
    return DemoTask(entry["global_key"], data)


def task_data(task: DemoTask, media_dir: Path, media_url: str) -> dict[str, Any]:
    """The Label Studio task data: media as URLs of the file server, inline files as text."""
    out: dict[str, Any] = {}
    for key, value in task.data.items():
        if isinstance(value, dict) and "media" in value:
            out[key] = f"{media_url.rstrip('/')}/{quote(value['media'])}"
        elif isinstance(value, dict):
            out[key] = (media_dir / value["inline"]).read_text(encoding="utf-8")
        else:
            out[key] = value
    out["global_key"] = task.global_key
    return out
