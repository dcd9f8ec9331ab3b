"""The files of one index build beside the index itself: the payload "parts" that worker
processes write (a SQLite file each, named in the index's meta and attached on open), and which
of them are stale (of a replaced build, or of a build whose process is gone)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Sequence

import orjson

PAYLOADS = "CREATE TABLE IF NOT EXISTS payloads (pk INTEGER PRIMARY KEY, payload BLOB NOT NULL)"
INSERT_PAYLOAD = "INSERT INTO payloads(pk, payload) VALUES (?,?)"


def part_path(index: Path, pid: int, build: str, n: int) -> Path:
    return index.with_name(f"{index.name}.part-{pid}-{build}-{n}")


def meta_parts(conn: sqlite3.Connection) -> list[str]:
    """The part file names an index's meta lists."""
    got = conn.execute("SELECT value FROM meta WHERE key = 'parts'").fetchone()
    return orjson.loads(got[0]) if got else []


def listed_parts(index: Path) -> list[str]:
    try:
        conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        try:
            return meta_parts(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def stale_parts(index: Path, keep: Sequence[str], replaced: Sequence[str]) -> list[Path]:
    """Parts of the index this build replaced, and of builds whose process is gone (not of a
    build still running beside this one)."""
    stale = []
    for p in index.parent.glob(f"{index.name}.part-*"):
        pid = p.name.rsplit(".part-", 1)[1].split("-", 1)[0]
        if p.name not in keep and (p.name in replaced or not pid.isdigit()
                                   or not alive(int(pid))):
            stale.append(p)
    return stale


def open_for_build(path: Path) -> sqlite3.Connection:
    """A fresh file written in one go: no journal, no fsync (a failed build is thrown away,
    not recovered); 64 KiB pages, as payloads are KBs (fewer overflow pages)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    return conn


class PayloadPart:
    """A payload file of one index build, written by one worker process."""

    def __init__(self, path: Path) -> None:
        self.conn = open_for_build(path)
        self.conn.execute(PAYLOADS)
        self.conn.execute("BEGIN")

    def add(self, payloads: Sequence[tuple[int, bytes]]) -> None:
        self.conn.executemany(INSERT_PAYLOAD, payloads)

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()
