"""The storage seam: named static queries, one driver that knows sqlite3, errors translated."""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest

from labelbridge.groundtruth import outbox
from labelbridge.groundtruth.outbox import OutboxBusy, OutboxClosed, OutboxUnavailable
from labelbridge.groundtruth.outbox.errors import StorageError, UniqueViolation
from labelbridge.groundtruth.outbox.sqlite import translate
from labelbridge.groundtruth.outbox.storage import load_queries

PACKAGE = Path(outbox.__file__).resolve().parent
MODULES = sorted(PACKAGE.glob("*.py"))


def test_queries_load_by_name_without_their_comments(tmp_path):
    sql = tmp_path / "q.sql"
    sql.write_text("-- header --\n-- what it does\nSELECT 1\n  -- a note\nFROM t;\n\n"
                   "-- other --\nDELETE FROM t WHERE id IN (SELECT value FROM json_each(:ids));\n")
    assert load_queries(sql) == {"header": "SELECT 1\nFROM t",
                                 "other": "DELETE FROM t WHERE id IN "
                                          "(SELECT value FROM json_each(:ids))"}
    sql.write_text("-- a --\nSELECT 1;\n-- a --\nSELECT 2;\n")
    with pytest.raises(ValueError, match="'a' is defined twice"):
        load_queries(sql)


def test_both_drivers_define_the_same_queries():
    assert set(load_queries(PACKAGE / "pg_queries.sql")) == set(load_queries(PACKAGE /
                                                                             "queries.sql"))


def test_every_query_is_used_and_every_used_query_exists():
    queries = set(load_queries(PACKAGE / "queries.sql"))
    used: set[str] = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("run", "one", "all", "many") and node.args
                    and isinstance(node.args[0], ast.Constant)):
                used.add(node.args[0].value)
    assert used - queries == set(), "queries called but not in queries.sql"
    assert queries - used == set(), "queries in queries.sql nobody calls"


def test_only_the_driver_knows_sqlite3_and_no_module_builds_sql():
    for path in MODULES:
        tree = ast.parse(path.read_text())
        imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        if path.name != "sqlite.py":
            assert "sqlite3" not in imports, f"{path.name} imports sqlite3"
        if path.name != "postgres.py":
            assert not {i for i in imports if i and i.startswith("psycopg")}, \
                f"{path.name} imports psycopg"
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if re.search(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE)\b", text):
                    pytest.fail(f"{path.name}:{node.lineno}: SQL built by an f-string")


@pytest.mark.parametrize("exc, expected", [
    (sqlite3.OperationalError("database or disk is full"), OutboxUnavailable),
    (sqlite3.OperationalError("disk I/O error"), OutboxUnavailable),
    (sqlite3.OperationalError("attempt to write a readonly database"), OutboxUnavailable),
    (sqlite3.OperationalError("database is locked"), OutboxBusy),
    (sqlite3.ProgrammingError("Cannot operate on a closed database."), OutboxClosed),
    (sqlite3.IntegrityError("UNIQUE constraint failed: batches.import_name"), UniqueViolation),
    (sqlite3.OperationalError("no such column: x"), StorageError),
])
def test_sqlite_errors_become_outbox_errors(exc, expected, tmp_path):
    got = translate(exc, tmp_path / "o.sqlite3")
    assert type(got) is expected
    assert str(exc) in str(got) or expected is OutboxClosed


def test_real_sqlite_errors_are_translated_by_their_result_code(tmp_path):
    """What SQLite itself raises carries a result code (``sqlite_errorname``)."""
    path = tmp_path / "ro.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t(x UNIQUE)")
    raw.execute("INSERT INTO t VALUES (1)")
    raw.commit()
    with pytest.raises(sqlite3.IntegrityError) as unique:
        raw.execute("INSERT INTO t VALUES (1)")
    raw.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (2)")
    ro.close()
    assert readonly.value.sqlite_errorname.startswith("SQLITE_READONLY")
    assert type(translate(readonly.value, path)) is OutboxUnavailable
    assert translate(unique.value, path).constraint == "t.x"


def test_a_unique_violation_names_its_constraint(tmp_path):
    got = translate(sqlite3.IntegrityError("UNIQUE constraint failed: batches.import_name"),
                    tmp_path)
    assert got.constraint == "batches.import_name"


@pytest.mark.parametrize("query, row", [("insert_event", "EventRow"), ("insert_item", "ItemRow"),
                                        ("insert_annotation", "AnnotationRow")])
def test_positional_rows_follow_their_query_column_order(query, row):
    """The hot path's bulk inserts bind by position: the NamedTuple spells the columns."""
    from labelbridge.groundtruth.outbox import append

    text = load_queries(PACKAGE / "queries.sql")[query]
    columns = [c.strip() for c in text[text.index("(") + 1:text.index(")")].split(",")]
    assert columns[:len(getattr(append, row)._fields)] == list(getattr(append, row)._fields)


def test_the_annotation_update_binds_the_same_row_by_position():
    from labelbridge.groundtruth.outbox import append

    text = load_queries(PACKAGE / "queries.sql")["update_annotation"]
    pairs = re.findall(r"(\w+) = \?(\d+)", text)
    assert [(int(n) - 1, col) for col, n in pairs] == [
        (append.AnnotationRow._fields.index(col), col) for col, _ in pairs]
