"""Fixtures for every test folder: the storage engines the outbox, delivery, reconciliation and
index suites run against (``engine``), and a real PostgreSQL server for the PostgreSQL ones.

The server (``tests/pg.py``) is started once per session, only when a test asks for it; each
test gets a fresh database copied from a template that already holds the bridge's tables
(``CREATE DATABASE ... TEMPLATE``: a few tens of milliseconds).

Every test under ``tests/e2e`` is marked ``e2e``, every one under ``tests/lsml`` ``lsml``
(``make unit`` deselects both; the marks are declared in pyproject.toml).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from labelbridge import compiled
from tests.pg import PgServer

ENGINES = ("sqlite", "postgresql")
TEMPLATE = "labelbridge_template"
_names = itertools.count(1)
_HERE = Path(__file__).resolve().parent
FOLDER_MARKS = {"e2e": pytest.mark.e2e, "lsml": pytest.mark.lsml}


def pytest_sessionstart(session):
    """A compiled module older than its source would test the old code: stop and say so."""
    stale = [m for m, state in compiled.status().items() if state == "stale"]
    if stale:
        pytest.exit(f"compiled modules older than their source: {', '.join(stale)}; rebuild "
                    "them with `make` (or `pip install --no-deps -e .`)", returncode=4)


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server) -> str:
    """The template database: the bridge's tables made by the bridge itself, as at a first
    start (then copied, so each test does not migrate again)."""
    from tests.helpers import create_bridge_tables
    create_bridge_tables(pg_server.create_database(TEMPLATE))
    return TEMPLATE


@pytest.fixture
def pg_url(pg_server, pg_template):
    """A fresh database of the bridge's own, dropped afterwards."""
    name = f"t{next(_names)}"
    url = pg_server.create_database(name, template=pg_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def outbox_location(engine, tmp_path, request):
    """Where a test's outbox lives: a SQLite file in tmp_path, or a fresh PostgreSQL
    database."""
    if engine == "sqlite":
        return tmp_path / "data" / "outbox.sqlite3"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def index_home(engine, request):
    """``index_home(path)``: where a prediction index lives, for one more process: the SQLite
    file ``path`` itself, or (PostgreSQL) a replica's home in the shared database, building
    in ``path``'s folder. Pools are closed afterwards."""
    if engine == "sqlite":
        yield lambda path: path
        return
    from labelbridge.postgres import Database, Once
    from labelbridge.predictions.homes import SharedHome
    from labelbridge.predictions.pg_store import PgIndex

    url, pools = request.getfixturevalue("pg_url"), []

    def home(path):
        db = Database(url, max_size=4)
        pools.append(db)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SharedHome(PgIndex(db, path.parent), Once(db, f"test-replica-{len(pools)}"))

    yield home
    for db in pools:
        db.close()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.path)).resolve()
        if _HERE in path.parents:
            mark = FOLDER_MARKS.get(path.relative_to(_HERE).parts[0])
            if mark is not None:
                item.add_marker(mark)
