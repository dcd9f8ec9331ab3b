"""The group-commit writer: async callers, concurrency, threads beside a worker."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from labelbridge.groundtruth.outbox import AppendResult, IncomingEvent

from tests.unit.outbox.builders import ign, up


def test_append_async_results_and_validation(ob):
    async def main():
        r1, r2 = await asyncio.gather(ob.append_async([up(1, 1), up(2, 1)]),
                                      ob.append_async([up(1, 1), ign(3, 1)]))
        with pytest.raises(ValueError):
            await ob.append_async([IncomingEvent("upsert", 9, 1, 9, "nope", b"", "webhook")])
        return r1, r2

    r1, r2 = asyncio.run(main())
    assert (r1.accepted + r2.accepted, r1.duplicates + r2.duplicates, r2.ignored) == (2, 1, 1)
    assert ob.status()["events_total"] == 3


def test_append_async_200_concurrent_callers(ob):
    callers, per_caller = 200, 10
    latencies: list[float] = []

    async def caller(k: int) -> list[AppendResult]:
        out = []
        for j in range(per_caller):
            aid = k * 1000 + j
            events = [up(aid, 1, task=aid, payload=b"p" * 1500)]
            if j == 0 and k > 0:
                events.append(up((k - 1) * 1000 + 5, 1, task=(k - 1) * 1000 + 5,
                                 payload=b"p" * 1500))  # one duplicate per caller
            t0 = time.perf_counter()
            out.append(await ob.append_async(events))
            latencies.append(time.perf_counter() - t0)
        return out

    async def main():
        return await asyncio.gather(*(caller(k) for k in range(callers)))

    t0 = time.perf_counter()
    results = [r for rs in asyncio.run(main()) for r in rs]
    elapsed = time.perf_counter() - t0
    unique = callers * per_caller
    assert sum(r.accepted for r in results) == unique
    assert sum(r.accepted + r.duplicates for r in results) == unique + callers - 1
    st_ = ob.status()
    assert st_["events_total"] == unique
    assert st_["counts"]["pending"] == unique
    assert st_["duplicates_total"] == callers - 1
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nappend_async closed loop: {callers} callers, {unique} events in {elapsed:.2f}s ="
          f" {unique / elapsed:,.0f} events/s; p50 {latencies[len(latencies) // 2] * 1000:.1f}"
          f" ms, p99 {p99 * 1000:.1f} ms")


def test_append_async_paced_1000_events_per_second(ob):
    """200 callers, each sending 5 events/s (1,000 events/s in all) for 2 s."""
    callers, rate, seconds = 200, 5.0, 2.0
    latencies: list[float] = []

    async def caller(k: int) -> int:
        loop = asyncio.get_running_loop()
        start = loop.time() + k / (callers * rate)  # spread the callers evenly
        n = 0
        while n < rate * seconds:
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            aid = k * 1000 + n
            t0 = time.perf_counter()
            await ob.append_async([up(aid, 1, task=aid, payload=b"p" * 1500)])
            latencies.append(time.perf_counter() - t0)
            n += 1
        return n

    async def main():
        return sum(await asyncio.gather(*(caller(k) for k in range(callers))))

    t0 = time.perf_counter()
    total = asyncio.run(main())
    elapsed = time.perf_counter() - t0
    assert total == callers * rate * seconds
    assert ob.status()["events_total"] == total
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nappend_async paced: {total} events in {elapsed:.2f}s = {total / elapsed:,.0f}"
          f" events/s; p50 {latencies[len(latencies) // 2] * 1000:.1f} ms,"
          f" p99 {p99 * 1000:.1f} ms")


def test_threads_append_while_a_worker_delivers(ob):
    """The HTTP server (sync appends here) and the delivery worker share one instance."""
    writers, per_writer = 8, 100
    stop = threading.Event()
    delivered: list[int] = []
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for j in range(per_writer):
                aid = w * 10_000 + j
                ob.append([up(aid, 1, task=j % 7), up(aid, 1, task=j % 7)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def worker() -> None:
        try:
            while True:
                b = ob.claim_batch(50)
                if b is None:
                    if stop.is_set():
                        return
                    time.sleep(0.001)
                    continue
                assert len({i.task_id for i in b.items}) == len(b.items)
                ob.mark_delivered([i.id for i in b.items], b.id)
                delivered.extend(i.annotation_id for i in b.items)
                ob.status()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    wt = threading.Thread(target=worker)
    wt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    wt.join()
    assert errors == []
    assert sorted(delivered) == sorted(w * 10_000 + j for w in range(writers)
                                       for j in range(per_writer))
    assert ob.status()["duplicates_total"] == writers * per_writer
