"""Builds the prediction index from a Labelbox export, streaming (bounded memory).

Parsing rows is most of the work and holds the GIL, so a large export is cut into chunks of
whole lines (a gzip file is one chunk) that worker processes (``labelbridge.predictions.index_worker``), one
per CPU, read in parallel. Each writes the payloads it reads into a part file of its own and
sends back the keys, which this process writes into the index as they come.
A row's key is its place in the export (file number, byte offset), so the index holds the
rows in export order whichever worker read them and whenever. A small export is read here.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import pickle
import selectors
import struct
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, NamedTuple

import orjson

from labelbridge.labelbox import export
from labelbridge.predictions import store
from labelbridge.predictions.parts import part_path
from labelbridge.predictions.store import IndexRow, IndexTail, build_index

if TYPE_CHECKING:  # numpy, Pillow: imported only where masks are read
    from labelbridge.labelbox.masks import MaskSource

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 << 20
PARALLEL_MIN_BYTES = 32 << 20  # below this, starting workers costs more than it saves
_FILE_SHIFT = 40  # row pk = file number << 40 | byte offset of its line


@dataclass(frozen=True)
class IndexResult:
    rows: int
    skipped_rows: int
    origins: dict[str, int]
    model_version: str
    readers: int  # processes that read the export (``reader_count``)


class Chunk(NamedTuple):
    """Whole lines ``[start, end)`` of one export file; ``end`` None: to the end (gzip)."""
    file_no: int
    path: str
    start: int
    end: int | None


class Tally(NamedTuple):
    """What the rows read so far add up to, besides the rows."""
    origins: Counter
    skipped: int
    names: set[str]


def export_fingerprint(path: Path, selection: export.Selection,
                       masks: MaskSource | None = None) -> str:
    """Changes when the export files, the selection, how masks are read (fetched with a key or
    not) or the index format change (size + mtime, not content)."""
    h = hashlib.sha1(f"{store.FORMAT}:{selection!r}:{masks.describe() if masks else ''}".encode())
    for f in export.export_files(path):
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _model_version(origins: Counter, selection: export.Selection, fingerprint: str) -> str:
    if selection.source != "project_labels":
        if selection.model_run_id:
            return selection.model_run_id
        if len(origins) == 1:
            return next(iter(origins))
    elif len(origins) == 1:
        return f"labelbox-project-{next(iter(origins))}"
    return f"labelbox-export-{fingerprint[:12]}"


# ----- chunks -------------------------------------------------------------------------------

def plan_chunks(files: list[Path], chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut plain files at the first line start after every ``chunk_bytes``; gzip stays whole."""
    chunks: list[Chunk] = []
    for no, f in enumerate(files):
        if export.is_gzip(f):
            chunks.append(Chunk(no, str(f), 0, None))
            continue
        size = f.stat().st_size
        start = 0
        with open(f, "rb") as fh:
            while start < size:
                fh.seek(min(start + chunk_bytes, size))
                fh.readline()
                end = min(fh.tell(), size)
                chunks.append(Chunk(no, str(f), start, end))
                start = end
    return chunks


def _chunk_lines(chunk: Chunk) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of every non-blank line of ``chunk``."""
    with export.open_export(Path(chunk.path)) as fh:
        fh.seek(chunk.start)
        offset = chunk.start
        for line in fh:
            if chunk.end is not None and offset >= chunk.end:
                break
            if not line.isspace():  # same test as line.strip(), without copying the line
                yield offset, line
            offset += len(line)


def _line_number(path: str, offset: int) -> int:
    """The number of the line starting at ``offset`` (only for error messages: reads again)."""
    with export.open_export(Path(path)) as fh:
        return fh.read(offset).count(b"\n") + 1


# ----- rows ---------------------------------------------------------------------------------

class RowReader:
    """Export lines -> index rows, tallying origins, skipped rows and feature names."""

    def __init__(self, selection: export.Selection, masks: MaskSource | None = None,
                 base_dir: Path | None = None) -> None:
        self.selection = selection
        self.masks, self.base_dir = masks, base_dir  # masks: read into the payload, once
        self.origins: Counter[str] = Counter()
        self.skipped = 0
        self.names = export.FeatureNames()

    def tally(self) -> Tally:
        return Tally(self.origins, self.skipped, self.names.names)

    def rows(self, chunk: Chunk) -> Iterator[IndexRow]:
        """Index rows as plain tuples in ``IndexRow`` order (they pickle faster)."""
        dumps = orjson.dumps
        base = chunk.file_no << _FILE_SHIFT
        for offset, line in _chunk_lines(chunk):
            try:
                row = export.parse_line(line)
            except export.ExportError:  # parse again, naming file and line, to raise
                row = export.parse_line(line, Path(chunk.path).name,
                                        _line_number(chunk.path, offset))
            picked = export.compact_row(row, self.selection)
            if picked is None:
                self.skipped += 1
                continue
            origin, compact = picked
            if self.masks is not None:
                from labelbridge.labelbox.masks import resolve_row
                resolve_row(compact, self.masks, self.base_dir)
            if origin:
                self.origins[origin] += 1
            dr = compact["data_row"]
            payload = dumps(compact)
            # its data row and media hold no "name" key: the names read are the annotations'
            self.names.add(payload, compact["annotations"])
            yield (base | offset, dr.get("id"), dr.get("global_key"),  # type: ignore[misc]
                   dr.get("external_id"), dr.get("row_data"), origin, payload)


def reader_count(chunks: list[Chunk], wanted: int | None) -> int:
    """How many worker processes read the chunks; 1: none, this process reads them."""
    if wanted is None:
        size = sum(Path(p).stat().st_size for p in {c.path for c in chunks})
        wanted = len(os.sched_getaffinity(0)) if size >= PARALLEL_MIN_BYTES else 1
    return max(1, min(wanted, len(chunks)))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. Rows hold no cycles, but the many fresh dicts
    of each parsed row trigger collections that scan every live object: ~10% of a build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ----- worker processes ---------------------------------------------------------------------
# A worker reads the pickled (selection, part file, mask source, export folder) and then
# pickled chunks on stdin, and
# answers each chunk with framed messages on stdout: ("rows", [keys of IndexRow, ...]) as many
# as it takes, then ("done", Tally), or ("error", ExportError). It commits its part file and
# exits 0 when stdin closes. Processes of our own rather than multiprocessing,
# which would import the caller's main module (the whole CLI) again in every worker.

_LENGTH = struct.Struct("<Q")
MESSAGE_ROWS = 1000
CHUNKS_PER_WORKER = 2  # the next chunk waits in the pipe while the worker reads one


def send_message(stream: BinaryIO, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exact(raw: BinaryIO, size: int) -> bytearray:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = raw.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError
        got += n
    return buf


def send_object(proc: subprocess.Popen, obj: object) -> None:
    """Pickle ``obj`` onto a worker's (raw) stdin, which may take part of it at a time."""
    data = memoryview(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    while data:
        data = data[proc.stdin.write(data):]  # type: ignore[union-attr]


def read_message(proc: subprocess.Popen, what: str) -> tuple[str, Any]:
    """The next framed message of a worker; a worker that died is a RuntimeError."""
    try:
        size = _LENGTH.unpack(_read_exact(proc.stdout, _LENGTH.size))[0]  # type: ignore[arg-type]
        return pickle.loads(_read_exact(proc.stdout, size))  # type: ignore[arg-type]
    except EOFError:
        raise RuntimeError(f"{what} {proc.pid} exited with {proc.wait()} (its error is in the "
                           "log above)") from None


def start_worker(module: str, setup: object, env: dict[str, str] | None = None
                 ) -> subprocess.Popen:
    """A worker process (``python -m module``) on unbuffered pipes (so that ``select`` sees
    every byte not yet read), given its setup; ``env``: added to this process's environment."""
    proc = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0,
                            env={**os.environ, **env} if env else None)
    send_object(proc, setup)
    return proc


def worker_messages(busy: dict[subprocess.Popen, int], what: str
                    ) -> Iterator[tuple[subprocess.Popen, str, Any]]:
    """(worker, kind, body) of each message, from whichever worker is ready, while any is
    busy (the caller counts a worker down when it has answered)."""
    with selectors.DefaultSelector() as ready:
        for proc in busy:
            ready.register(proc.stdout, selectors.EVENT_READ, proc)  # type: ignore[arg-type]
        while any(busy.values()):
            for key, _ in ready.select():
                yield key.data, *read_message(key.data, what)


class _ReaderPool:
    """Worker processes reading chunks; each is given the next chunk as it finishes one, and
    their messages are taken from whichever is ready (unbuffered pipes, so that ``select``
    sees every byte not yet read)."""

    def __init__(self, reader: RowReader, chunks: list[Chunk], parts: list[Path]) -> None:
        self.todo = deque(chunks)
        self.busy: dict[subprocess.Popen, int] = {}
        self.parts = parts
        for part in parts:
            proc = start_worker("labelbridge.predictions.index_worker",
                                (reader.selection, str(part), reader.masks, reader.base_dir))
            self.busy[proc] = 0
            for _ in range(CHUNKS_PER_WORKER):
                self._give(proc)

    def _give(self, proc: subprocess.Popen) -> None:
        if self.todo:
            send_object(proc, self.todo.popleft())
            self.busy[proc] += 1

    def messages(self) -> Iterator[tuple[str, Any]]:
        """("rows", [...]) and ("done", Tally) messages until every chunk is read."""
        for proc, kind, body in worker_messages(self.busy, "index worker"):
            if kind == "error":
                raise body
            if kind == "done":
                self.busy[proc] -= 1
                self._give(proc)
            yield kind, body

    def close(self, abort: bool) -> None:
        """Let the workers commit their parts and exit (they do when stdin closes), or kill
        them and delete their parts on ``abort``."""
        for proc in self.busy:
            if abort:
                proc.kill()
            proc.stdin.close()  # type: ignore[union-attr]
        failed = [proc for proc in self.busy if proc.wait() != 0]
        for proc in self.busy:
            proc.stdout.close()  # type: ignore[union-attr]
        if abort or failed:
            for part in self.parts:
                part.unlink(missing_ok=True)
        if failed and not abort:
            raise RuntimeError(f"index worker {failed[0].pid} exited with "
                               f"{failed[0].returncode} (its error is in the log above)")


def index_export(export_path: Path, index_path: Path, selection: export.Selection,
                 progress: Callable[[int], None] | None = None, workers: int | None = None,
                 chunk_bytes: int = CHUNK_BYTES, masks: MaskSource | None = None) -> IndexResult:
    """Stream ``export_path`` into a fresh index at ``index_path``.

    ``workers``: processes that read the export (None: one per CPU for a large export;
    0 or 1: none, this process reads it). ``masks``: how mask PNGs are read (paths relative
    to the export's folder); None: masks are not read (each is a loss when converted).
    """
    fingerprint = export_fingerprint(export_path, selection, masks)
    base_dir = Path(export_path) if Path(export_path).is_dir() else Path(export_path).parent
    chunks = plan_chunks(export.export_files(export_path), chunk_bytes)
    origins: Counter[str] = Counter()
    names: set[str] = set()
    skipped = 0
    tallies: list[Tally] = []
    build = f"{time.time_ns():x}"
    parts: list[Path] = []
    readers = reader_count(chunks, workers)

    def rows() -> Iterator[IndexRow]:
        if readers < 2:  # this process reads the chunks itself
            here = RowReader(selection, masks, base_dir)
            for chunk in chunks:
                yield from here.rows(chunk)
            tallies.append(here.tally())
            return
        parts.extend(part_path(index_path, os.getpid(), build, n) for n in range(readers))
        pool = _ReaderPool(RowReader(selection, masks, base_dir), chunks, parts)
        done = False
        try:
            for kind, body in pool.messages():
                if kind == "rows":
                    yield from body
                else:
                    tallies.append(body)
            done = True
        finally:
            pool.close(abort=not done)

    meta = {"export": str(export_path), "fingerprint": fingerprint, "source": selection.source,
            "model_run_id": selection.model_run_id or "", "project_id": selection.project_id or ""}
    model_version = ""

    def finish() -> IndexTail:
        nonlocal model_version, skipped
        for tally in tallies:
            origins.update(tally.origins)
            names.update(tally.names)
            skipped += tally.skipped
        model_version = _model_version(origins, selection, fingerprint)
        return IndexTail({**meta, "model_version": model_version}, sorted(names), parts)

    try:
        with gc_paused():
            count = build_index(index_path, rows(), finish, progress=progress)
    except BaseException:
        for part in parts:  # a failed build leaves nothing behind
            part.unlink(missing_ok=True)
        raise
    if skipped:
        log.info("%d export rows carry no %s and were not indexed", skipped, selection.source)
    return IndexResult(count, skipped, dict(origins), model_version, readers)
