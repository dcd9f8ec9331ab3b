"""Fixtures for the label-studio-ml framework tests (every test under tests/lsml is marked
``lsml``: ``tests/conftest.py``): ``lsml_env`` FAILS (never skips) when ``.venv-lsml`` is
missing."""

from __future__ import annotations

import pytest

from tests.lsml import harness


@pytest.fixture(scope="session")
def lsml_env():
    if not harness.installed():
        pytest.fail(f"label-studio-ml 1.0.9 is missing from {harness.VENV}: "
                    f"{harness.INSTALL_HINT}", pytrace=False)
    return harness
