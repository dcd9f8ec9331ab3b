"""Group commit: one writer thread commits what many async callers queued, in one transaction.

Label Studio gives a webhook 1 s. One fsync per event caps the webhook at a few hundred events
a second on an ordinary disk; one fsync per *group* does not. A caller's future resolves only
after the commit that holds its events; a request that fails does not fail the others (the
group is retried one transaction per caller).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Callable

from labelbridge.groundtruth.outbox.errors import OutboxClosed
from labelbridge.groundtruth.outbox.storage import Storage, Tx

Apply = Callable[[Tx, list[Any], float], list[Any]]   # (tx, requests, now) -> one result each
_STOP = object()


class _Request:
    __slots__ = ("work", "loop", "future")

    def __init__(self, work: Any, loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future) -> None:
        self.work = work
        self.loop = loop
        self.future = future


def _resolve_all(answers: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, exc in answers:
        if future.done():  # the caller was cancelled; its events are written all the same
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class GroupWriter:
    """Started by the first ``submit``; ``close`` finishes what is queued."""

    def __init__(self, storage: Storage, apply: Apply, max_group: int,
                 size: Callable[[Any], int] = len) -> None:
        self._db = storage
        self._apply = apply
        self._max_group = max_group
        self._size = size
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = False

    def submit(self, work: Any, loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
        with self._lock:
            if self._closing:
                raise OutboxClosed("outbox is closed")
            if self._thread is None:
                self._db.background_maintenance()
                self._thread = threading.Thread(target=self._loop, name="outbox-writer",
                                                daemon=True)
                self._thread.start()
            self._queue.put(_Request(work, loop, future))

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True  # no new request is queued after the stop mark
            thread = self._thread
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            size = self._size(first.work)
            idle = 0
            while size < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    # Callers woken by the previous commit may still be queueing: give them
                    # the GIL once before committing, or groups alternate large and small.
                    if idle >= 2:
                        break
                    idle += 1
                    time.sleep(0)
                    continue
                idle = 0
                if nxt is _STOP:
                    stop = True
                    break
                group.append(nxt)
                size += self._size(nxt.work)
            self._commit(group)

    def _commit(self, group: list[_Request]) -> None:
        outcomes: list[tuple[_Request, Any, BaseException | None]]
        try:
            with self._db.transaction() as tx:
                results = self._apply(tx, [r.work for r in group], time.time())
            outcomes = [(r, res, None) for r, res in zip(group, results)]
        except Exception as exc:
            if len(group) == 1:
                outcomes = [(group[0], None, exc)]
            else:  # nothing committed: retry one transaction per caller, so one bad request
                outcomes = []  # cannot fail the others
                for r in group:
                    try:
                        with self._db.transaction() as tx:
                            res = self._apply(tx, [r.work], time.time())[0]
                        outcomes.append((r, res, None))
                    except Exception as exc1:
                        outcomes.append((r, None, exc1))
        except BaseException as exc:  # never leave a caller waiting forever
            outcomes = [(r, None, exc) for r in group]
        # one wake-up per event loop, not one per caller
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for req, result, error in outcomes:
            by_loop.setdefault(req.loop, []).append((req.future, result, error))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, answers)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass
