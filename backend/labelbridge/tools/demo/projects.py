"""The demo's projects in Label Studio: created once, tasks imported once, connected, predicted.

Everything here is idempotent, so a second ``make demo`` reuses what the first one made: a
project is found by its title, a task by its ``global_key``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from labelbridge.labelstudio.api import LabelStudioApi
from labelbridge.tools.demo.manifest import DemoProject, task_data


@dataclass
class ProjectState:
    title: str
    id: int
    created: bool
    imported: int
    tasks: list[dict] = field(default_factory=list)   # {"id", "data", "total_predictions"}
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> list[int]:
        return [t["id"] for t in self.tasks if t["total_predictions"]]


def set_up(api: LabelStudioApi, project: DemoProject, media_dir: Path, media_url: str,
           connect: Callable[[int], None]) -> ProjectState:
    """Make sure the project exists with its tasks, is connected, and has its predictions."""
    found = next((p for p in api.projects() if p.get("title") == project.title), None)
    created = found is None
    if found is None:
        found = api.create_project(project.title, project.label_config.read_text(encoding="utf-8"))
    state = ProjectState(project.title, int(found["id"]), created, imported=0)
    wanted = {t.global_key: task_data(t, media_dir, media_url) for t in project.tasks}
    have = {t["data"].get("global_key"): t for t in api.task_data(state.id)}
    for key, data in wanted.items():
        if key in have and have[key]["data"] != data:
            state.notes.append(f"task {have[key]['id']} ({key}) was imported with other data "
                               "(another --media-port?); remove the demo's data dir to start over")
    new = [data for key, data in wanted.items() if key not in have]
    if new:
        api.import_tasks(state.id, new)
        state.imported = len(new)
    connect(state.id)
    api.retrieve_predictions(state.id)
    state.tasks = api.task_data(state.id)
    return state
