"""What a flow control costs: events/s through one bus with no control and with each.

Usage::

    python -m bench.flow                      # every store, every control
    python -m bench.flow --stores memory,sqlite --events 500
    python -m bench.flow --quick              # a smoke run of a few seconds

What it measures, per store (``memory://``, ``sqlite:///`` a fresh file, ``redis://`` a
fresh key prefix; the bus's store is the transport's own) and per control, each in a
fresh bus:

none
    ``@bus.on("bench.flow", name="bench.flow")``, a trivial handler: the baseline.
concurrency
    ``concurrency=Concurrency(50, key="payload.customer")`` over 100 customers taken in
    turn: a slot taken and freed in the store per event. The handler returns at once, so
    the limit seldom binds; events deferred for a slot are counted.
throttle
    ``throttle=Throttle(10 * N, per=1, burst=N)``: a GCRA take per event that never binds.
rate_limit
    ``rate_limit=RateLimit(10 * N, per=1)``: the same take, never binding.
debounce
    Not a throughput control: it holds every event back on purpose. ``debounce=Debounce(
    0.05, key="payload.n")``, one key per event, so each event is deferred once (a timer
    written, found and handed back; ``timer_poll`` 0.02 s) and then runs: the figure is the
    cost of that round trip, p50 latency includes the 50 ms on purpose.

N events (``--events``; per store by default) are published in chunks of 500 with
``publish_many`` while the bus runs; each payload carries ``time.perf_counter()`` taken
just before its chunk is published. Events/s: from the first publish to the last handler
call. p50: publish to handler start. Each store first gets an unreported warm-up run
(imports, first connections). The ratio is each control's events/s over the
no-control run's on the same store. One run each: on a shared machine, read ratios
within ~10% of each other as equal.

A store that does not keep limits yet (an abstract :class:`nerve.stores.base.Limits`) is
reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from nerve import Event, EventBus, Settings
from nerve.flow import Concurrency, Debounce, RateLimit, Throttle
from nerve.flow.gate import PASSED_KEY

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
STORES = ("memory", "sqlite", "redis")
CONTROLS = ("none", "concurrency", "throttle", "rate_limit", "debounce")
EVENTS = {"memory": 20_000, "sqlite": 3_000, "redis": 10_000}
QUICK = {"memory": 500, "sqlite": 200, "redis": 300}
CHUNK = 500
CUSTOMERS = 100
TYPE = "bench.flow"


@dataclass(slots=True)
class Row:
    """One store and control's measures (None: not measured)."""

    store: str
    control: str
    events: int
    handled: int = 0
    deferred: int = 0
    seconds: float | None = None
    per_s: float | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    skipped: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.flow", description="Events/s with each flow control."
    )
    p.add_argument(
        "--stores", default=",".join(STORES), help="comma-separated: " + ",".join(STORES)
    )
    p.add_argument("--controls", default=",".join(CONTROLS), help=",".join(CONTROLS))
    p.add_argument("--events", type=int, default=None, help="events per run (all stores)")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (no prefix)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds a run may take")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, and return the results.

    Returns:
        ``{"config": {...}, "rows": [...], "ok": bool}``, each row's measures as
        :class:`Row` fields. ``ok`` is False when a run that was not skipped failed or
        did not handle every event.

    Calls ``asyncio.run``: call it outside a running event loop.
    """
    args = _parser().parse_args(argv)
    stores = [s for s in args.stores.split(",") if s]
    controls = [c for c in args.controls.split(",") if c]
    for name in stores:
        if name not in STORES:
            raise SystemExit(f"unknown store {name!r}: one of {', '.join(STORES)}")
    for name in controls:
        if name not in CONTROLS:
            raise SystemExit(f"unknown control {name!r}: one of {', '.join(CONTROLS)}")
    rows: list[Row] = []
    for store in stores:
        count = args.events or (QUICK if args.quick else EVENTS)[store]
        base: float | None = None
        asyncio.run(_run(store, "none", min(count, 200), args))  # warm-up, not reported
        for control in controls:
            row = asyncio.run(_run(store, control, count, args))
            if control == "none":
                base = row.per_s
            if base and row.per_s:
                row.ratio = row.per_s / base
            rows.append(row)
            print(f"{store} {control}: done", file=sys.stderr, flush=True)
    ok = all(r.skipped is not None or (r.error is None and r.handled == r.events) for r in rows)
    results = {"config": dict(vars(args)), "rows": [asdict(r) for r in rows], "ok": ok}
    print(report(results), flush=True)
    return results


def _controls(control: str, count: int) -> dict[str, Any]:
    """The ``bus.on`` arguments of ``control`` for a run of ``count`` events."""
    if control == "concurrency":
        return {"concurrency": Concurrency(50, key="payload.customer")}
    if control == "throttle":
        return {"throttle": Throttle(10 * count, per=1, burst=count)}
    if control == "rate_limit":
        return {"rate_limit": RateLimit(10 * count, per=1)}
    if control == "debounce":
        return {"debounce": Debounce(0.05, key="payload.n")}
    return {}


async def _run(store: str, control: str, count: int, args: argparse.Namespace) -> Row:
    row = Row(store=store, control=control, events=count)
    async with _place(store, args) as url:
        try:
            bus = EventBus(url, settings=Settings(timer_poll=0.02))
        except TypeError as exc:  # an abstract class: a contract not implemented yet
            row.skipped = f"the store does not keep limits yet ({exc})"
            return row
        latencies: list[float] = []
        last = [0.0]
        done = asyncio.Event()

        @bus.on(TYPE, name=TYPE, **_controls(control, count))
        async def handle(event: Event[Any]) -> None:
            now = time.perf_counter()
            latencies.append(now - event.payload["t"])
            if PASSED_KEY in event.metadata:
                row.deferred += 1
            last[0] = now
            if len(latencies) >= count:
                done.set()

        try:
            await bus.start()
        except TypeError as exc:
            row.skipped = f"the store does not keep limits yet ({exc})"
            return row
        try:
            t0 = time.perf_counter()
            for start in range(0, count, CHUNK):
                t = time.perf_counter()
                await bus.publish_many(
                    [
                        Event(event_type=TYPE, payload={"n": n, "customer": n % CUSTOMERS, "t": t})
                        for n in range(start, min(start + CHUNK, count))
                    ]
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), args.time_limit)
            row.handled = len(latencies)
            if row.handled < count:
                row.notes.append(f"{row.handled:,} of {count:,} handled in {args.time_limit:g}s")
            elif last[0] > t0:
                row.seconds = last[0] - t0
                row.per_s = count / row.seconds
            if latencies:
                row.p50_ms = statistics.median(latencies) * 1000
        except Exception as exc:  # noqa: BLE001  # reported in the table, not raised
            row.error = f"{type(exc).__name__}: {exc}"
        finally:
            await bus.stop()
    return row


@contextlib.asynccontextmanager
async def _place(store: str, args: argparse.Namespace) -> AsyncIterator[str]:
    """A fresh bus URL for ``store``, cleaned up after."""
    if store == "memory":
        yield "memory://"
        return
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="nerve-bench-flow-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'flow.db'}?poll=0.01"
        return
    prefix = f"nerve-bench-flow-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(args.redis)
    try:
        yield f"{args.redis}?prefix={prefix}"
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()


# report


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def report(results: dict[str, Any]) -> str:
    """The table of every run's measures, and notes, as markdown-compatible text."""
    header = ["store", "control", "events", "events/s", "vs none", "p50 ms", "deferred"]
    rows: list[list[str]] = []
    notes: list[str] = []
    for r in results["rows"]:
        where = f"{r['store']} {r['control']}"
        if r["skipped"]:
            rows.append([r["store"], r["control"], f"{r['events']:,}", *["-"] * 4])
            notes.append(f"{where}: skipped: {r['skipped']}")
            continue
        rows.append(
            [
                r["store"],
                r["control"],
                f"{r['events']:,}",
                _f(r["per_s"], ",.0f"),
                _f(r["ratio"], ".2f"),
                _f(r["p50_ms"], ".1f"),
                f"{r['deferred']:,}",
            ]
        )
        notes.extend(f"{where}: {n}" for n in r["notes"])
        if r["error"]:
            notes.append(f"{where}: error: {r['error']}")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
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
