"""nerve's in-memory bus against the seed article's toy bus, side by side, in one run.

Usage::

    python -m bench.memory_bus            # every scenario at full size (toy of 1 reduced)
    python -m bench.memory_bus --full     # scenario 1's toy runs all 1,000 events (~50 s)
    python -m bench.memory_bus --quick    # a smoke run of a few seconds
    python -m bench.memory_bus --profile  # pyinstrument of nerve in scenario 2, no table
    python -m bench.memory_bus --profile 3b  # ... in scenario 3b

Scenarios (the issue's):

1. 1,000 events whose handler awaits ``asyncio.sleep(0.05)`` (an LLM call): wall time to
   handle them all. The toy handles one event at a time (~50 s), so by default it runs
   100 events and its time is extrapolated per event (it is strictly serial, so the
   extrapolation is linear); the output says so. nerve's subscription has
   ``concurrency=1000``. Target: nerve >= 100x.
2. 200,000 events, one trivial handler: events/s, publish-to-handler p50/p99, peak RSS.
   Target: nerve >= 3x.
3a. 10 subscriptions on one event type, 50,000 events: events/s. Target: nerve >= 3x.
3b. 1,000 event types, one subscription each, events round-robin: events/s, memory.
   Target: nerve >= 3x (the issue states 3x for 3a; 3b is held to the same bar).

nerve runs with default settings (``EventBus()``: memory://, the default store with
idempotency on, 3 retries). Each side of each scenario runs in a fresh process
(``python -m bench.workload``), so its peak RSS (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.workload import Side, SideResult, Workload, run_side

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Scenario:
    """One scenario: the workload both sides run, and the ratio nerve should reach."""

    key: str
    title: str
    events: int
    toy_events: int  # fewer than ``events`` only for scenario 1 (extrapolated)
    types: int = 1
    subscriptions: int = 1
    sleep: float = 0.0
    concurrency: int | None = None  # nerve's concurrency= (None: nerve's default)
    target: float = 3.0  # minimum nerve/toy events/s

    def workload(self, side: Side, time_limit: float, measure_rss: bool) -> Workload:
        return Workload(
            scenario=self.key,
            side=side,
            events=self.toy_events if side == "toy" else self.events,
            types=self.types,
            subscriptions=self.subscriptions,
            sleep=self.sleep,
            concurrency=self.concurrency if side == "nerve" else None,
            time_limit=time_limit,
            measure_rss=measure_rss,
        )


SCENARIO_KEYS = ("1", "2", "3a", "3b")
FULL = {"1": 1_000, "2": 200_000, "3a": 50_000, "3b": 100_000}
QUICK = {"1": 200, "2": 2_000, "3a": 500, "3b": 2_000}
TOY_S1_FULL, TOY_S1_QUICK = 100, 5


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.memory_bus",
        description="nerve's memory:// bus vs the seed article's toy bus, side by side.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--full", action="store_true", help="scenario 1: the toy runs every event")
    p.add_argument("--events", type=int, metavar="N", help="events in every scenario")
    for key in SCENARIO_KEYS:
        p.add_argument(f"--events-{key}", type=int, metavar="N", help=f"events in scenario {key}")
    p.add_argument(
        "--toy-events-1",
        type=int,
        metavar="N",
        help=f"scenario 1: events the toy runs unless --full (default {TOY_S1_FULL}, "
        f"quick {TOY_S1_QUICK}); its time is extrapolated to the full count",
    )
    p.add_argument("--sleep", type=float, default=0.05, help="scenario 1 handler sleep (s)")
    p.add_argument("--concurrency", type=int, default=1000, help="scenario 1: nerve concurrency=")
    p.add_argument("--subscriptions", type=int, default=10, help="scenario 3a: subscriptions")
    p.add_argument("--types", type=int, default=1000, help="scenario 3b: event types")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIO_KEYS), help="comma-separated, e.g. 2,3a"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per side (bound)")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the sides in this process (faster; no peak RSS, shared heap)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--profile",
        nargs="?",
        const="2",
        metavar="SCENARIO",
        help="instead of the table: profile nerve's side of a scenario (default 2) "
        "with pyinstrument",
    )
    return p


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    sizes = dict(QUICK if args.quick else FULL)
    for key in SCENARIO_KEYS:
        override = getattr(args, f"events_{key}") or args.events
        if override:
            sizes[key] = override
    toy1 = args.toy_events_1 or (TOY_S1_QUICK if args.quick else TOY_S1_FULL)
    toy1 = sizes["1"] if args.full else min(toy1, sizes["1"])
    all_ = {
        "1": Scenario(
            "1",
            f"handler sleeps {args.sleep * 1000:g} ms",
            sizes["1"],
            toy1,
            sleep=args.sleep,
            concurrency=args.concurrency,
            target=100.0,
        ),
        "2": Scenario("2", "1 trivial handler", sizes["2"], sizes["2"]),
        "3a": Scenario(
            "3a",
            f"{args.subscriptions} subs, 1 type",
            sizes["3a"],
            sizes["3a"],
            subscriptions=args.subscriptions,
        ),
        "3b": Scenario(
            "3b", f"{args.types} types, 1 sub each", sizes["3b"], sizes["3b"], types=args.types
        ),
    }
    wanted = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in all_]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIO_KEYS)}")
    return [all_[k] for k in wanted]


def _nerve_revision() -> str:
    """The commit nerve's code is at; ``+dirty.<hash of the diff>`` when nerve/ is edited."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(  # noqa: S603  # fixed arguments, no shell
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        diff = subprocess.run(  # noqa: S603
            [*git, "diff", "HEAD", "--", "nerve"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+dirty.{hashlib.sha256(diff).hexdigest()[:7]}" if diff else head


def machine_info() -> dict[str, Any]:
    """CPU, Python and library versions, and the load when the run started."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "nerve": metadata.version("nerve"),
        "nerve_revision": _nerve_revision(),
        "pydantic": metadata.version("pydantic"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _run_in_subprocess(w: Workload) -> SideResult:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "bench.workload", json.dumps(asdict(w))]
    failed = SideResult(scenario=w.scenario, side=w.side, events=w.events, handled=0)
    try:
        proc = subprocess.run(  # noqa: S603  # our own interpreter and module, no shell
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=w.time_limit + 60
        )
    except subprocess.TimeoutExpired:
        failed.error = f"process killed after {w.time_limit + 60:g}s"
        return failed
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        failed.error = f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return failed
    return SideResult(**json.loads(lines[-1]))


def _run(w: Workload, in_process: bool) -> SideResult:
    if in_process:
        return asyncio.run(run_side(w))
    return _run_in_subprocess(w)


def _ratio(nerve: float | None, toy: float | None) -> float | None:
    return nerve / toy if nerve and toy else None


def _compare(s: Scenario, toy: SideResult, nerve: SideResult) -> dict[str, Any]:
    ratio = _ratio(nerve.events_per_s, toy.events_per_s)
    toy_wall_full = s.events / toy.events_per_s if toy.events_per_s else None
    return {
        "key": s.key,
        "title": s.title,
        "events": s.events,
        "toy_events_run": s.toy_events,
        "toy_extrapolated": s.toy_events != s.events,
        "toy_wall_s_full": toy_wall_full,  # extrapolated when toy_extrapolated
        "nerve_concurrency": nerve.concurrency,
        "toy": asdict(toy),
        "nerve": asdict(nerve),
        "ratio": ratio,  # nerve events/s / toy events/s (= toy wall / nerve wall)
        "target": s.target,
        "met": None if ratio is None else ratio >= s.target,
        "rss_ratio": _ratio(nerve.peak_rss_mib, toy.peak_rss_mib),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, and return the results.

    Args:
        argv: command-line arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        ``{"machine": {...}, "config": {...}, "scenarios": {"1": {...}, "2": ..., ...},
        "ok": bool, "targets_met": bool}``. Each scenario holds ``ratio`` (nerve events/s
        over toy events/s), ``target``, ``met``, ``rss_ratio`` and the two sides' measures
        under ``"toy"`` / ``"nerve"`` (see :class:`bench.workload.SideResult`). ``ok`` is
        False when a side failed or timed out. With ``--profile``: ``{"profile": text}``
        (pyinstrument's report).

    Calls ``asyncio.run``: call it outside a running event loop.
    """
    args = _parser().parse_args(argv)
    if args.profile:
        return {"profile": profile(args)}
    scenarios = _scenarios(args)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": {
            "quick": args.quick,
            "full": args.full,
            "in_process": args.in_process,
            "timeout_s": args.timeout,
            "check": args.check,
            "nerve_settings": "EventBus() defaults: memory://, memory store, retries=3",
        },
        "scenarios": {},
    }
    _print_machine(results["machine"])
    for s in scenarios:
        pair = [
            _run(s.workload(side, args.timeout, not args.in_process), args.in_process)
            for side in ("toy", "nerve")
        ]
        results["scenarios"][s.key] = _compare(s, pair[0], pair[1])
        print(f"scenario {s.key} ({s.title}): done", file=sys.stderr, flush=True)
    compared = list(results["scenarios"].values())
    results["ok"] = all(not c["toy"]["error"] and not c["nerve"]["error"] for c in compared)
    results["targets_met"] = all(c["met"] for c in compared)
    print(report(results), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


# report


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """A markdown table: the first ``left`` columns flush left, numbers flush right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return [line(header), rule + "|", *(line(r) for r in rows)]


def _print_machine(m: dict[str, Any]) -> None:
    load = m["loadavg"]
    print(
        f"machine: {m['cpu_count']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}\n"
        f"python:  {m['python']} on {m['platform']}\n"
        f"nerve {m['nerve']} ({m['nerve_revision']}), pydantic {m['pydantic']}; load average: "
        f"{' '.join(f'{x:.2f}' for x in load) if load else '-'}\n",
        flush=True,
    )


def report(results: dict[str, Any]) -> str:
    """The two tables (per side; ratios) and the notes, as markdown-compatible text."""
    per_side: list[list[str]] = []
    ratios: list[list[str]] = []
    notes: list[str] = []
    for c in results["scenarios"].values():
        label = f"{c['key']}: {c['title']}"
        for side in ("toy", "nerve"):
            r = c[side]
            events = f"{r['events']:,}"
            wall = _f(r["wall_s"], ".3f")
            if side == "toy" and c["toy_extrapolated"]:
                events += f" (-> {c['events']:,}*)"
                wall += f" (-> {_f(c['toy_wall_s_full'], '.1f')}*)"
            grown = (
                r["peak_rss_mib"] - r["baseline_rss_mib"]
                if r["peak_rss_mib"] is not None and r["baseline_rss_mib"] is not None
                else None
            )
            per_side.append(
                [
                    label if side == "toy" else "",
                    side,
                    events,
                    wall,
                    _f(r["events_per_s"], ",.0f"),
                    _f(r["p50_ms"], ",.2f"),
                    _f(r["p99_ms"], ",.2f"),
                    _f(r["peak_rss_mib"], ".1f"),
                    _f(grown, ".1f"),
                    r["error"] or "ok",
                ]
            )
        ratio = c["ratio"]
        ratios.append(
            [
                label,
                _f(c["toy"]["events_per_s"], ",.0f"),
                _f(c["nerve"]["events_per_s"], ",.0f"),
                "-" if ratio is None else f"{ratio:,.2f}x",
                f">= {c['target']:g}x",
                {True: "yes", False: "NO", None: "-"}[c["met"]],
                "-" if c["rss_ratio"] is None else f"{c['rss_ratio']:.2f}x",
            ]
        )
        if c["toy_extrapolated"]:
            notes.append(
                f"* scenario {c['key']}: the toy ran {c['toy_events_run']:,} of "
                f"{c['events']:,} events; its wall time is extrapolated per event to "
                f"{c['events']:,} (it handles one event at a time, so time is linear in "
                "events). --full runs them all."
            )
        if c["nerve_concurrency"] is not None and c["key"] == "1":
            notes.append(f"scenario 1: nerve subscription concurrency={c['nerve_concurrency']}")
    lines = _table(
        [
            "scenario",
            "side",
            "events",
            "wall s",
            "events/s",
            "p50 ms",
            "p99 ms",
            "peak RSS MiB",
            "+RSS MiB",
            "status",
        ],
        per_side,
        left=2,
    )
    lines += [""]
    lines += _table(
        [
            "scenario",
            "toy events/s",
            "nerve events/s",
            "nerve/toy",
            "target",
            "met",
            "RSS nerve/toy",
        ],
        ratios,
    )
    if results["config"]["quick"]:
        notes.append(
            "--quick: a smoke run; the targets are for the full sizes (scenario 1's ratio "
            "cannot exceed its event count, since nerve still needs one 50 ms sleep)."
        )
    lines += ["", *notes]
    lines.append(
        "latency: publish (perf_counter before await publish) -> handler start. "
        "+RSS: peak minus the peak after imports and setup. 3a events/s counts events, "
        "not handler calls."
    )
    return "\n".join(lines)


# profile


def profile(args: argparse.Namespace) -> str:
    """pyinstrument over nerve's side of one scenario (a separate pass; no timing kept)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install -e '.[bench]'") from None
    scenario = _scenarios(argparse.Namespace(**{**vars(args), "scenarios": args.profile}))[0]
    w = scenario.workload("nerve", args.timeout, measure_rss=False)
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    result = asyncio.run(run_side(w))
    profiler.stop()
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    summary = (
        f"nerve, scenario {scenario.key} ({scenario.title}), {w.events:,} events under the "
        f"profiler: {_f(result.events_per_s, ',.0f')} events/s (slowed by sampling)\n"
    )
    print(summary + text)
    return summary + text


def _cli() -> int:
    results = main(sys.argv[1:])
    if "profile" in results:
        return 0
    if not results["ok"]:
        return 1
    return 1 if results["config"]["check"] and not results["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(_cli())
