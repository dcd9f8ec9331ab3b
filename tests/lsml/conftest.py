"""Fixtures for the label-studio-ml framework tests: every test under tests/lsml is marked
``lsml``; ``lsml_env`` FAILS (never skips) when ``.venv-lsml`` is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lsml import harness

_HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.lsml)


@pytest.fixture(scope="session")
def lsml_env():
    if not harness.installed():
        pytest.fail(f"label-studio-ml 1.0.9 is missing from {harness.VENV}: "
                    f"{harness.INSTALL_HINT}", pytrace=False)
    return harness
