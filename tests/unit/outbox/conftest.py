"""The outbox fixture: a real SQLite file in tmp_path, or a real PostgreSQL database (each
test runs against both engines)."""

from __future__ import annotations

import pytest

from labelbridge.groundtruth.outbox import Outbox


@pytest.fixture
def ob(outbox_location):
    box = Outbox(outbox_location)
    yield box
    box.close()
