"""Every test under ``tests/e2e`` is marked ``e2e``, every one under ``tests/lsml`` ``lsml``
(``make unit`` deselects both; the marks are declared in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
FOLDER_MARKS = {"e2e": pytest.mark.e2e, "lsml": pytest.mark.lsml}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.path)).resolve()
        if _HERE in path.parents:
            mark = FOLDER_MARKS.get(path.relative_to(_HERE).parts[0])
            if mark is not None:
                item.add_marker(mark)
