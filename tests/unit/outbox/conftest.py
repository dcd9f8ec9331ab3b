"""The outbox fixture: a real SQLite file in tmp_path."""

from __future__ import annotations

import pytest

from labelbridge.groundtruth.outbox import Outbox


@pytest.fixture
def ob(tmp_path):
    box = Outbox(tmp_path / "data" / "outbox.sqlite3")
    yield box
    box.close()
