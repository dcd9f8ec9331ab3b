"""Fixtures for the end-to-end tests: one real Label Studio 1.23.2 per test session.

* every test under tests/e2e is marked ``e2e`` (``tests/conftest.py``);
* ``label_studio`` (session): a running :class:`~tests.e2e.lsharness.LabelStudioServer`,
  booted from the pre-migrated template in a temporary dir; FAILS (never skips) when
  ``.venv-ls`` is missing, so a missing dependency cannot hide behind a skip;
* ``ls_client`` (session): the real ``label_studio_sdk.LabelStudio`` client for it;
* ``ls_project`` (function): factory ``ls_project(label_config, title=...)`` creating a
  project through the SDK; every project it made is deleted at teardown.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e import lsharness


def pytest_terminal_summary(terminalreporter):
    if lsharness.TIMINGS:
        terminalreporter.write_sep("-", "Label Studio harness timings")
        for label, seconds in lsharness.TIMINGS:
            terminalreporter.write_line(f"{label}: {seconds:.2f} s")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    if not lsharness.ls_installed():
        pytest.fail(f"Label Studio {lsharness.LS_VERSION} is missing from {lsharness.LS_VENV}: "
                    f"run `make ls-env`", pytrace=False)
    work = tmp_path_factory.mktemp("label-studio")
    t0 = time.monotonic()
    try:
        server = lsharness.start_label_studio(work)
    except lsharness.ProcessStartError as e:
        pytest.fail(f"Label Studio did not start: {e}", pytrace=False)
    print(f"\nLabel Studio {server.url} ready in {server.boot_seconds:.1f} s "
          f"(fixture {time.monotonic() - t0:.1f} s), log {server.log_path}")
    try:
        yield server
    finally:
        lsharness.stop_label_studio(server)


@pytest.fixture(scope="session")
def ls_client(label_studio):
    return label_studio.client()


@pytest.fixture
def ls_project(label_studio):
    client = label_studio.client()
    created: list[int] = []

    def make(label_config: str, title: str | None = None, **kw):
        project = client.projects.create(
            title=title or f"e2e-{uuid.uuid4().hex[:8]}", label_config=label_config, **kw)
        created.append(project.id)
        return project

    yield make
    for pid in reversed(created):
        resp = label_studio.api("DELETE", f"/api/projects/{pid}/")
        assert resp.status_code in (204, 404), f"deleting project {pid}: {resp.status_code} {resp.text[:200]}"
