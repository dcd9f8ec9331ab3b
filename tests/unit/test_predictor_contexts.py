"""Every label config sent to /predict is a conversion context: the index keeps a bounded number
of them (the least recently used goes, with its predictions and losses), and the one a project
keeps using is never the one that goes."""

from __future__ import annotations

import sqlite3

import pytest

from labelbridge.labelstudio.mapping import Overrides
from labelbridge.predictions import predictor
from labelbridge.predictions.pg_store import PgPredictionStore
from labelbridge.predictions.predictor import Predictor

from tests.helpers import IMAGE_CONFIG
from tests.unit.test_predictor import store  # noqa: F401 (fixture: three indexed rows)

TASKS = [{"id": i, "data": {"global_key": f"k{i}"}} for i in range(3)]


def config(n: int) -> str:
    """A label config of its own (a client's): the same controls, another text."""
    return IMAGE_CONFIG.replace("<View>", f"<View><!-- client {n} -->", 1)


def stored(store) -> dict[str, int]:
    """context -> prepared predictions the index holds for it (the SQLite file, or the
    store's generation in PostgreSQL), read beside the store."""
    if isinstance(store, PgPredictionStore):
        with store.db.connection() as conn:
            return {r["context"]: r["n"] for r in conn.execute(
                "SELECT context, count(*) AS n FROM ix_prepared WHERE gen = %s GROUP BY context",
                [store.gen()])}
    with sqlite3.connect(store.path) as db:
        return dict(db.execute("SELECT context, count(*) FROM prepared GROUP BY context"))


def test_a_flood_of_label_configs_keeps_a_bounded_number_of_contexts(store):  # noqa: F811
    p = Predictor(store, Overrides(), "v1")
    first = p.predict(TASKS, config(0))
    for n in range(1, 40):
        assert p.predict(TASKS, config(n)) == first     # each answered all the same
    kept = [c["context"] for c in store.contexts()]
    assert len(kept) == 16                              # (was: one per config, 40)
    assert predictor.MAX_CONTEXTS == 16
    assert set(stored(store)) == set(kept) and set(stored(store).values()) == {3}
    assert p.context(config(39)).key in kept and p.context(config(0)).key not in kept
    assert p.predict(TASKS, config(0)) == first          # a dropped context comes back


def test_the_context_a_project_keeps_using_stays(store, monkeypatch):  # noqa: F811
    monkeypatch.setattr(predictor, "TOUCH_S", 0.0)     # (a minute in the service)
    p = Predictor(store, Overrides(), "v1", max_contexts=3)
    project = p.prepare(IMAGE_CONFIG)
    for n in range(10):
        p.predict(TASKS[:1], config(n))                  # a client's configs
        p.predict(TASKS, IMAGE_CONFIG)                   # the project's, in between
    kept = {c["context"]: c["complete"] for c in store.contexts()}
    assert len(kept) == 3 and kept[project.key] is True
    assert stored(store)[project.key] == 3               # its predictions were never dropped


@pytest.mark.parametrize("cap", [1, 2])
def test_a_context_being_prepared_is_not_dropped(store, cap):  # noqa: F811
    p = Predictor(store, Overrides(), "v1", max_contexts=cap)
    key = p.context(IMAGE_CONFIG).key
    p._preparing.add(key)                                # as prepare() marks it
    for n in range(4):
        p.context(config(n))
    assert key in {c["context"] for c in store.contexts()}
