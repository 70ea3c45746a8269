"""100,000 runs suspended in ``wait_for``: store size, resume latency, time to time out all.

Usage::

    python -m bench.waits                        # 100,000 runs, SQLite and Redis
    python -m bench.waits --runs 10000 --store sqlite
    python -m bench.waits --runs 200 --resumes 5 # a smoke run of a few seconds

What it measures (issue 13's), per store:

setup
    N waiting runs written at the store level, as a handler's ``wait_for`` would leave
    them: for run ``i``, the wait of subscription ``bench.refund`` on a
    ``refund.requested`` event with payload ``{"id": i}``, awaiting ``refund.decided``
    matching ``{"payload.id": i}``, named ``wait:1`` (:func:`nerve.waits.wait_id`), with
    its timeout timer (:func:`nerve.waits.timeout_timer_id`) due at a common time ``T``
    an hour ahead. Chunks of ``--chunk`` concurrent writes under ``asyncio.gather``.
size
    What the store grew by, per wait (wait + its timeout timer): SQLite, the file (after
    a WAL checkpoint) over the empty store's; Redis, ``INFO memory`` ``used_memory``.
lookup
    ``store.waits_for([event])`` for a matching ``refund.decided`` with all N waits in
    place, p50/p99 over ``--lookups`` calls: an index lookup does not grow with N.
resume
    An ``EventBus`` on the same store runs subscription ``bench.refund``, whose handler
    calls ``wait_for("refund.decided", match={"payload.id": ...})``. ``--resumes``
    random runs are answered one at a time by publishing their ``refund.decided``;
    latency from just before ``publish`` to the resumed handler's ``wait_for`` returning.
timeout
    The bus's clock (:mod:`nerve.clock`) is moved to ``T`` (no waiting an hour), and the
    time is taken until every remaining run's ``wait_for`` has returned None (each timed
    out run resumed by its timer and its handler run again), bounded by
    ``--time-limit``; runs/s. ``settings.timer_poll`` is 0.05 s.

Each store gets a fresh place: a new SQLite file in a temporary directory (deleted
afterwards), a Redis key prefix ``nerve-bench-waits-<random>`` whose keys are deleted
afterwards. A store that does not keep waits yet is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from nerve import EventBus, Settings, clock, waits
from nerve.events import Event
from nerve.records import Timer, WaitRecord
from nerve.stores import store_from_url
from nerve.stores.base import Store
from nerve.waits import wait_for

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
SUBSCRIPTION = "bench.refund"
RUN_TYPE = "refund.requested"
AWAITED = "refund.decided"
WAIT_NAME = "wait:1"
AHEAD = 3600.0  # T: the waits' common deadline, this many seconds after the setup starts


@dataclass(slots=True)
class StoreResult:
    """The measures of one store (None: not measured)."""

    store: str
    runs: int
    skipped: str | None = None
    setup_s: float | None = None
    setup_per_s: float | None = None
    bytes_per_wait: float | None = None
    lookup_p50_ms: float | None = None
    lookup_p99_ms: float | None = None
    lookup_found: int | None = None
    resumes: int = 0
    resume_p50_ms: float | None = None
    resume_p99_ms: float | None = None
    resume_max_ms: float | None = None
    timed_out: int = 0
    timeout_expected: int = 0
    timeout_s: float | None = None
    timeout_per_s: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class Ahead(clock.Clock):
    """The system clock, ``offset`` seconds later (to bring ``T`` to now)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.waits",
        description="Runs suspended in wait_for: store size, resume latency, timeouts.",
    )
    p.add_argument("--runs", type=int, default=100_000, metavar="N", help="waiting runs")
    p.add_argument("--store", choices=("sqlite", "redis", "both"), default="both")
    p.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (no prefix)")
    p.add_argument("--chunk", type=int, default=1000, help="concurrent writes per gather")
    p.add_argument("--resumes", type=int, default=20, help="runs resumed one at a time")
    p.add_argument("--lookups", type=int, default=100, help="waits_for calls timed")
    p.add_argument(
        "--time-limit", type=float, default=300.0, help="seconds the timeout phase may take"
    )
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, and return the results.

    Returns:
        ``{"config": {...}, "stores": {"sqlite": {...}, "redis": {...}}, "ok": bool}``,
        each store's measures as :class:`StoreResult` fields. ``ok`` is False when a
        store that ran failed or left runs neither resumed nor timed out.

    Calls ``asyncio.run``: call it outside a running event loop.
    """
    args = _parser().parse_args(argv)
    names = ["sqlite", "redis"] if args.store == "both" else [args.store]
    config = dict(vars(args))
    print(f"{args.runs:,} waiting runs; stores: {', '.join(names)}", flush=True)
    stores: dict[str, Any] = {}
    for name in names:
        result = asyncio.run(_bench(name, args))
        stores[name] = asdict(result)
        print(f"{name}: done", file=sys.stderr, flush=True)
    ok = all(
        s["skipped"] is not None or (s["error"] is None and s["timed_out"] == s["timeout_expected"])
        for s in stores.values()
    )
    results = {"config": config, "stores": stores, "ok": ok}
    print(report(results), flush=True)
    return results


async def _bench(name: str, args: argparse.Namespace) -> StoreResult:
    result = StoreResult(store=name, runs=args.runs)
    async with _place(name, args) as (store_url, bus_url, size):
        settings = Settings(timer_poll=0.05)
        try:
            store = store_from_url(store_url, settings)
        except TypeError as exc:  # an abstract class: a contract not implemented yet
            result.skipped = f"the store does not keep waits and timers yet ({exc})"
            return result
        await store.open()
        try:
            before = await size()
            await _setup(store, args.runs, args.chunk, result)
            result.bytes_per_wait = (await size() - before) / max(args.runs, 1)
            await _lookups(store, args, result)
        finally:
            await store.close()
        try:
            await _run_bus(bus_url, store_url, settings, args, result)
        except Exception as exc:  # noqa: BLE001  # reported in the table, not raised
            result.error = f"{type(exc).__name__}: {exc}"
    return result


@contextlib.asynccontextmanager
async def _place(name: str, args: argparse.Namespace) -> AsyncIterator[tuple[str, str, Any]]:
    """A fresh store place: (store URL, bus URL, an async () -> bytes used), cleaned after."""
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="nerve-bench-waits-") as tmp:
            path = Path(tmp) / "waits.db"

            async def file_size() -> int:
                return await asyncio.to_thread(_file_size, path)

            url = f"sqlite:///{path}"
            yield url, url, file_size
        return
    prefix = f"nerve-bench-waits-{uuid.uuid4().hex[:8]}"
    url = f"{args.redis}?prefix={prefix}"
    client = Redis.from_url(args.redis)

    async def used_memory() -> int:
        info = await client.info("memory")
        return int(info["used_memory"])

    try:
        yield url, url, used_memory
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()


def _file_size(path: Path) -> int:
    """The SQLite file's size with its WAL checkpointed into it (the WAL, if left)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _run_event(i: int) -> Event[Any]:
    return Event(event_type=RUN_TYPE, payload={"id": i})


async def _setup(store: Store, runs: int, chunk: int, result: StoreResult) -> None:
    t0 = time.perf_counter()
    now = clock.time()
    due = now + AHEAD
    for start in range(0, runs, chunk):
        writes: list[Awaitable[object]] = []
        for i in range(start, min(start + chunk, runs)):
            event = _run_event(i)
            wait = WaitRecord(
                wait_id=waits.wait_id(SUBSCRIPTION, event.event_id, WAIT_NAME),
                subscription=SUBSCRIPTION,
                name=WAIT_NAME,
                event=event,
                event_type=AWAITED,
                match={"payload.id": i},
                since=now - waits.CLOCK_SKEW,
                deadline=due,
                created_at=now,
            )
            writes.append(store.add_wait(wait))
            timer = Timer(timer_id=waits.timeout_timer_id(wait.wait_id), due=due, body="{}")
            writes.append(store.add_timer(timer))
        await asyncio.gather(*writes)
    result.setup_s = time.perf_counter() - t0
    result.setup_per_s = runs / result.setup_s if result.setup_s else None


async def _lookups(store: Store, args: argparse.Namespace, result: StoreResult) -> None:
    timings: list[float] = []
    found = 0
    for _ in range(args.lookups):
        event = Event(event_type=AWAITED, payload={"id": random.randrange(args.runs)})
        t0 = time.perf_counter()
        matched = await store.waits_for([event])
        timings.append((time.perf_counter() - t0) * 1000)
        found += len(matched)
    result.lookup_p50_ms, result.lookup_p99_ms = _p50_p99(timings)
    result.lookup_found = found


async def _run_bus(
    bus_url: str, store_url: str, settings: Settings, args: argparse.Namespace, r: StoreResult
) -> None:
    bus = EventBus(bus_url, store=store_url, settings=settings)
    resumed: dict[int, float] = {}  # run id -> perf_counter when its wait_for returned
    timed_out: set[int] = set()
    changed = asyncio.Event()

    @bus.on(RUN_TYPE, name=SUBSCRIPTION)
    async def refund(event: Event[Any]) -> None:
        i = event.payload["id"]
        decided = await wait_for(AWAITED, match={"payload.id": i})
        if decided is None:
            timed_out.add(i)
        else:
            resumed[i] = time.perf_counter()
        changed.set()

    async def until(done: Any, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        return True

    await bus.start()
    try:
        chosen = random.sample(range(args.runs), min(args.resumes, args.runs))
        latencies: list[float] = []
        for i in chosen:
            t0 = time.perf_counter()
            await bus.publish(Event(event_type=AWAITED, payload={"id": i}))
            if not await until(lambda i=i: i in resumed, 30.0):
                r.notes.append(f"run {i} was not resumed within 30 s")
                break
            latencies.append((resumed[i] - t0) * 1000)
        r.resumes = len(latencies)
        r.resume_p50_ms, r.resume_p99_ms = _p50_p99(latencies)
        r.resume_max_ms = max(latencies) if latencies else None

        r.timeout_expected = args.runs - len(resumed)
        jump = AHEAD + 1.0
        previous = clock.use(Ahead(jump))
        try:
            t0 = time.perf_counter()
            finished = await until(lambda: len(timed_out) >= r.timeout_expected, args.time_limit)
            elapsed = time.perf_counter() - t0
        finally:
            clock.use(previous)
        r.timed_out = len(timed_out)
        r.timeout_s = elapsed
        r.timeout_per_s = r.timed_out / elapsed if elapsed else None
        if not finished:
            r.notes.append(
                f"timeout phase stopped at --time-limit {args.time_limit:g}s: "
                f"{r.timed_out:,} of {r.timeout_expected:,} runs timed out"
            )
    finally:
        await bus.stop()


def _p50_p99(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


# report


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def report(results: dict[str, Any]) -> str:
    """The table of every store's measures, and notes, as markdown-compatible text."""
    header = [
        "store",
        "runs",
        "setup runs/s",
        "bytes/wait",
        "lookup p50 ms",
        "lookup p99 ms",
        "resume p50 ms",
        "resume p99 ms",
        "timed out",
        "timeout s",
        "timeouts/s",
    ]
    rows: list[list[str]] = []
    notes: list[str] = []
    for s in results["stores"].values():
        if s["skipped"]:
            rows.append([s["store"], f"{s['runs']:,}", *["-"] * (len(header) - 2)])
            notes.append(f"{s['store']}: skipped: {s['skipped']}")
            continue
        rows.append(
            [
                s["store"],
                f"{s['runs']:,}",
                _f(s["setup_per_s"], ",.0f"),
                _f(s["bytes_per_wait"], ",.0f"),
                _f(s["lookup_p50_ms"], ".3f"),
                _f(s["lookup_p99_ms"], ".3f"),
                _f(s["resume_p50_ms"], ".2f"),
                _f(s["resume_p99_ms"], ".2f"),
                f"{s['timed_out']:,}/{s['timeout_expected']:,}",
                _f(s["timeout_s"], ".1f"),
                _f(s["timeout_per_s"], ",.0f"),
            ]
        )
        notes.extend(f"{s['store']}: {n}" for n in s["notes"])
        if s["error"]:
            notes.append(f"{s['store']}: error: {s['error']}")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *(
            "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
            for row in rows
        ),
    ]
    return "\n".join(["", *lines, *(["", *notes] if notes else [])])


if __name__ == "__main__":
    main()
