"""nerve's HTTP intake against the seed article's FastAPI endpoint, side by side, in one run.

Usage::

    python -m bench.http                      # every scenario, 10 s of load each (~4 min)
    python -m bench.http --quick              # a smoke run (1 s each)
    python -m bench.http --duration 20 --connections 64 --scenarios seed,nerve
    python -m bench.http --generator python   # the Python load generator, not wrk
    python -m bench.http --profile nerve      # that scenario's server under pyinstrument

Every server is its own process (``python -m bench.http_apps``: uvicorn, one worker,
``loop="uvloop"``, ``http="httptools"``, access log off) on 127.0.0.1 and a free port;
the load comes from wrk (one thread) when installed, else from a Python generator in a
separate process, the same for every scenario (:mod:`bench.http_load`). Scenarios:

- ``seed``: the article's endpoint (``POST /events?event_type=...``, the payload as the
  body) on its toy bus; the handler awaits ``asyncio.sleep(--sleep)`` (10 ms, an LLM
  call's wait). ``seed-trivial``: the same with a handler that only counts.
- ``nerve``: ``POST /events`` with nerve's JSON, an API key and validation, on
  ``memory://``, the same handler (``concurrency=1000``). ``nerve-trivial``: the trivial
  handler (default concurrency). ``nerve-seedform``: nerve receiving exactly the seed's
  request (plus the key).
- ``batch``: ``POST /events/batch`` with ``--batch`` (100) events per request: events/s.
- ``sqlite`` / ``sqlite-batch``: the same on ``sqlite:///<tmpfile>`` (durable).
- ``overload-seed`` / ``overload-nerve``: a handler of 50 ms; nerve with ``concurrency=10``
  (200 events/s at most), ``max_pending=200`` and ``publish_timeout=0.1``: the 503s (with
  ``Retry-After``) and memory, against the seed's queue, which only grows.

After the load stops, the driver polls ``GET /bench/stats`` until every accepted event is
handled or ``--drain`` seconds pass, and reports what was still unhandled.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bench.http_apps import EVENT_TYPE, AppConfig, System
from bench.http_load import Generator, LoadResult, LoadSpec, run, wrk_path
from bench.memory_bus import ROOT, _f, _print_machine, _table, machine_info

Form = Literal["seed", "nerve", "batch"]
API_KEY = "bench-key"
#: A support ticket, as the article's handlers get: ~300 bytes of JSON.
PAYLOAD: dict[str, Any] = {
    "ticket_id": 48213,
    "subject": "Cannot export invoices",
    "body": "Since this morning the export button returns an error for every invoice "
    "older than March. We need them for the quarterly close.",
    "customer": {"id": "cus_7Hq2", "plan": "pro", "region": "eu"},
    "tags": ["billing", "export"],
    "priority": "high",
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One server and the requests it gets."""

    key: str
    title: str
    system: System
    form: Form
    sleep: float
    storage: Literal["memory", "sqlite"] = "memory"
    concurrency: int | None = None
    max_pending: int = 1_000
    publish_timeout: float = 1.0
    overload: bool = False

    def app(self, port: int, tmp: Path) -> AppConfig:
        url = f"sqlite:///{tmp / 'bench.db'}" if self.storage == "sqlite" else "memory://"
        return AppConfig(
            system=self.system,
            port=port,
            sleep=self.sleep,
            url=url,
            concurrency=self.concurrency,
            max_pending=self.max_pending,
            publish_timeout=self.publish_timeout,
            api_key=API_KEY,
        )

    def load(self, port: int, batch: int, connections: int, duration: float) -> LoadSpec:
        headers = {"Content-Type": "application/json"}
        if self.system == "nerve":
            headers["Authorization"] = f"Bearer {API_KEY}"
        event = {"event_type": EVENT_TYPE, "payload": PAYLOAD}
        if self.form == "seed":
            path, body = f"/events?event_type={EVENT_TYPE}", json.dumps(PAYLOAD)
        elif self.form == "nerve":
            path, body = "/events", json.dumps(event)
        else:
            path, body = "/events/batch", json.dumps([event] * batch)
        return LoadSpec(
            port=port,
            path=path,
            body=body,
            headers=headers,
            connections=connections,
            duration=duration,
            count_statuses=self.overload,
        )

    def events_per_request(self, batch: int) -> int:
        return batch if self.form == "batch" else 1


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario, in the order they run."""
    s, slow = args.sleep, args.overload_sleep
    title = f"handler sleeps {s * 1000:g} ms"
    all_ = [
        Scenario("seed", f"seed, {title}", "seed", "seed", s),
        Scenario("nerve", f"nerve, {title}", "nerve", "nerve", s, concurrency=1000),
        Scenario("seed-trivial", "seed, trivial handler", "seed", "seed", 0.0),
        Scenario("nerve-trivial", "nerve, trivial handler", "nerve", "nerve", 0.0),
        Scenario(
            "nerve-seedform",
            f"nerve, seed's request, {title}",
            "nerve",
            "seed",
            s,
            concurrency=1000,
        ),
        Scenario(
            "batch", f"nerve batch of {args.batch}, {title}", "nerve", "batch", s, concurrency=1000
        ),
        Scenario(
            "sqlite", f"nerve on SQLite, {title}", "nerve", "nerve", s, "sqlite", concurrency=1000
        ),
        Scenario(
            "sqlite-batch",
            f"nerve on SQLite, batch of {args.batch}",
            "nerve",
            "batch",
            s,
            "sqlite",
            concurrency=1000,
        ),
        Scenario(
            "overload-seed",
            f"overload: seed, handler {slow * 1000:g} ms",
            "seed",
            "seed",
            slow,
            overload=True,
        ),
        Scenario(
            "overload-nerve",
            f"overload: nerve, handler {slow * 1000:g} ms, 10 at once, max_pending 200",
            "nerve",
            "nerve",
            slow,
            concurrency=10,
            max_pending=200,
            publish_timeout=0.1,
            overload=True,
        ),
    ]
    by_key = {sc.key: sc for sc in all_}
    wanted = [k.strip() for k in args.scenarios.split(",") if k.strip()] if args.scenarios else []
    unknown = [k for k in wanted if k not in by_key]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(by_key)}")
    return [by_key[k] for k in wanted] if wanted else all_


# the server process


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_status(pid: int, field_name: str) -> float | None:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _post(spec: LoadSpec) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=10)
    try:
        conn.request("POST", spec.path, spec.body.encode(), spec.headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def stats(port: int) -> dict[str, Any]:
    """The server's ``/bench/stats``."""
    status, body = _get(port, "/bench/stats")
    if status != 200:
        raise RuntimeError(f"/bench/stats answered {status}: {body[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


@dataclass(slots=True)
class Server:
    """A running server process."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-800:]
        except OSError:
            return ""


@contextmanager
def server(config: AppConfig, tmp: Path, *, prefix: Sequence[str] = ()) -> Iterator[Server]:
    """Start ``python -m bench.http_apps`` for ``config``; end it (by pid) on exit.

    ``prefix`` runs the module under another program (``pyinstrument``'s ``-m``), which is
    then ended with SIGINT: uvicorn re-raises the signal it shut down on, and pyinstrument
    writes its report on a KeyboardInterrupt but not on a SIGTERM.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = tmp / f"server-{config.system}-{config.port}.log"
    cmd = [sys.executable, *prefix, "-m", "bench.http_apps", json.dumps(asdict(config))]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603  # our own interpreter and module, no shell
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    srv = Server(proc, config.port, log)
    try:
        _wait_ready(srv)
        yield srv
    finally:
        stop(srv.proc, signal.SIGINT if prefix else signal.SIGTERM)


def stop(
    proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, grace: float = 15.0
) -> None:
    """``sig`` (uvicorn shuts down and runs the lifespan's exit), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(srv: Server, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({srv.proc.returncode}): {srv.tail()}")
        try:
            stats(srv.port)
        except (OSError, RuntimeError, http.client.HTTPException):
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"the server did not answer within {deadline_s:g}s: {srv.tail()}")


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        rss = _proc_status(self.pid, "VmRSS")
        if rss is not None and (self.peak is None or rss > self.peak):
            self.peak = rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)


# one scenario


@dataclass(slots=True)
class Outcome:
    """What one scenario measured."""

    key: str
    title: str
    system: System
    requests_per_s: float | None = None
    events_per_s: float | None = None  # accepted (2xx) events per second
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    non_2xx: int = 0
    errors: int = 0
    by_status: dict[str, int] | None = None
    retry_after: int | None = None
    rss_before_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_growth_mib: float | None = None
    accepted: int = 0
    handled: int = 0
    metrics_handled: int | None = None
    unhandled: int = 0  # at the drain deadline (or when everything was handled)
    drained_s: float | None = None  # seconds after the load until accepted == handled
    generator: str = ""
    error: str | None = None
    load: dict[str, Any] = field(default_factory=dict)


def _warm_up(spec: LoadSpec, generator: Generator, seconds: float) -> None:
    """A few requests one by one (and they must be accepted), then ``seconds`` of load."""
    for _ in range(20):
        status, body = _post(spec)
        if status != 202 and not (status == 200 and spec.path.startswith("/events?")):
            raise RuntimeError(f"POST {spec.path} answered {status}: {body[:300]!r}")
    if seconds > 0:
        run(replace(spec, duration=seconds, count_statuses=False), generator)


def _drain(port: int, deadline_s: float) -> tuple[dict[str, Any], float | None]:
    """Poll the stats until handled >= accepted (seconds taken) or the deadline (None)."""
    started = time.monotonic()
    while True:
        current = stats(port)
        elapsed = time.monotonic() - started
        if current["handled"] >= current["accepted"]:
            return current, elapsed
        if elapsed >= deadline_s:
            return current, None
        time.sleep(0.05)


def run_scenario(sc: Scenario, args: argparse.Namespace, generator: Generator) -> Outcome:
    """Start the scenario's server, load it, wait for the drain, measure, stop it."""
    out = Outcome(sc.key, sc.title, sc.system, generator=generator)
    with tempfile.TemporaryDirectory(prefix=f"bench-http-{sc.key}-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            port = free_port()
            with server(sc.app(port, tmp), tmp) as srv:
                spec = sc.load(port, args.batch, args.connections, args.duration)
                _warm_up(spec, generator, 0.0 if sc.overload else args.warmup)
                pid = srv.proc.pid
                out.rss_before_mib = _proc_status(pid, "VmRSS")
                with RssSampler(pid) as sampler:
                    result = run(spec, generator)
                _record_load(out, result, sc.events_per_request(args.batch))
                out.rss_peak_mib = sampler.peak
                if out.rss_peak_mib is not None and out.rss_before_mib is not None:
                    out.rss_growth_mib = out.rss_peak_mib - out.rss_before_mib
                final, out.drained_s = _drain(port, args.drain)
                out.accepted, out.handled = final["accepted"], final["handled"]
                out.metrics_handled = final.get("metrics_handled")
                out.unhandled = max(0, out.accepted - out.handled)
                if srv.proc.poll() is not None:
                    out.error = f"the server died: {srv.tail()}"
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            out.error = str(exc)[-500:]
    return out


def _record_load(out: Outcome, result: LoadResult, per_request: int) -> None:
    out.load = asdict(result)
    if result.error:
        out.error = result.error
        return
    out.requests, out.non_2xx, out.errors = result.requests, result.non_2xx, result.errors
    out.requests_per_s = result.rps
    out.events_per_s = result.ok * per_request / result.duration_s if result.duration_s else None
    out.p50_ms, out.p99_ms = result.p50_ms, result.p99_ms
    out.by_status, out.retry_after = result.by_status, result.retry_after


# targets


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def targets(o: dict[str, Outcome], drain_s: float) -> list[dict[str, Any]]:
    """The issue's targets, each with its measure and whether it is met (None: not run)."""
    rows: list[dict[str, Any]] = []

    def add(name: str, measure: str, met: bool | None, why: str = "") -> None:
        rows.append({"target": name, "measure": measure, "met": met, "why": why})

    for nerve, seed in (("nerve", "seed"), ("nerve-trivial", "seed-trivial")):
        if nerve in o and seed in o:
            r = _ratio(o[nerve].events_per_s, o[seed].events_per_s)
            add(
                f"{nerve} >= 1.5x {seed} req/s (auth + validation on)",
                "-" if r is None else f"{r:.2f}x",
                None if r is None else r >= 1.5,
            )
    for batch, single in (("batch", "nerve"), ("sqlite-batch", "sqlite")):
        if batch in o and single in o:
            r = _ratio(o[batch].events_per_s, o[single].events_per_s)
            add(
                f"{batch} events/s >= 20x {single}",
                "-" if r is None else f"{r:.1f}x",
                None if r is None else r >= 20,
            )
    nerves = [x for x in o.values() if x.system == "nerve" and not x.error]
    if nerves:
        late = [x.key for x in nerves if x.drained_s is None]
        slowest = max((x.drained_s or 0.0) for x in nerves)
        add(
            f"nerve: accepted == handled within {drain_s:g}s of the load's end",
            f"every scenario, slowest {slowest:.2f}s" if not late else f"late: {late}",
            not late,
        )
    if "overload-nerve" in o:
        n = o["overload-nerve"]
        got_503 = (n.by_status or {}).get("503", 0)
        other = n.non_2xx - got_503
        seed_growth = o["overload-seed"].rss_growth_mib if "overload-seed" in o else None
        bounded = n.rss_growth_mib is not None and (
            n.rss_growth_mib < 32
            or (seed_growth is not None and n.rss_growth_mib < seed_growth / 4)
        )
        add(
            "overload: 503 + Retry-After, memory bounded",
            f"{got_503:,} x 503 ({n.retry_after or 0:,} with Retry-After), other non-2xx "
            f"{other:,}; RSS +{_f(n.rss_growth_mib, '.1f')} MiB "
            f"(seed +{_f(seed_growth, '.1f')} MiB)",
            got_503 > 0 and n.retry_after == got_503 and other == 0 and bounded,
        )
    for key in ("sqlite", "sqlite-batch"):
        if key in o:
            x = o[key]
            add(
                f"{key}: durable rate reported",
                f"{_f(x.events_per_s, ',.0f')} events/s",
                x.error is None and x.events_per_s is not None and x.drained_s is not None,
            )
    return rows


# main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.http",
        description="nerve's HTTP intake vs the seed article's FastAPI endpoint, side by side.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 s of load each")
    p.add_argument("--duration", type=float, help="seconds of load per scenario (10; quick 1)")
    p.add_argument("--warmup", type=float, help="seconds of load before measuring (2; quick 0)")
    p.add_argument(
        "--drain", type=float, help="seconds to wait for accepted == handled (10; quick 2)"
    )
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    p.add_argument("--batch", type=int, default=100, help="events per batch request (100)")
    p.add_argument("--sleep", type=float, default=0.01, help="handler sleep, s (0.01)")
    p.add_argument("--overload-sleep", type=float, default=0.05, help="overload handler, s")
    p.add_argument("--scenarios", help="comma-separated keys (default: all)")
    p.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk if installed, else python)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--profile",
        metavar="SCENARIO",
        help="run that scenario's server under pyinstrument and print its profile",
    )
    return p


def _settle_args(args: argparse.Namespace) -> None:
    quick = args.quick
    if args.duration is None:
        args.duration = 1.0 if quick else 10.0
    if args.warmup is None:
        args.warmup = 0.0 if quick else 2.0
    if args.drain is None:
        args.drain = 2.0 if quick else 10.0
    if args.generator == "auto":
        args.generator = "wrk" if wrk_path() else "python"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, and return the results.

    Args:
        argv: command-line arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        ``{"machine", "config", "scenarios": {key: Outcome as a dict}, "targets": [...],
        "ok": bool, "targets_met": bool}``; ``ok`` is False when a scenario failed.
        With ``--profile``: ``{"profile": text}``.
    """
    args = _parser().parse_args(argv)
    _settle_args(args)
    if args.profile:
        return {"profile": profile(args)}
    chosen = scenarios(args)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": {
            k: getattr(args, k)
            for k in ("duration", "warmup", "drain", "connections", "batch", "sleep", "generator")
        }
        | {"overload_sleep": args.overload_sleep, "quick": args.quick, "check": args.check},
        "scenarios": {},
    }
    _print_machine(results["machine"])
    print(f"load generator: {args.generator}", flush=True)
    outcomes: dict[str, Outcome] = {}
    for sc in chosen:
        outcomes[sc.key] = run_scenario(sc, args, args.generator)
        state = outcomes[sc.key].error or "done"
        print(f"scenario {sc.key}: {state}", file=sys.stderr, flush=True)
    results["scenarios"] = {k: asdict(v) for k, v in outcomes.items()}
    results["targets"] = targets(outcomes, args.drain)
    results["ok"] = all(o.error is None for o in outcomes.values())
    results["targets_met"] = all(t["met"] for t in results["targets"])
    print(report(results), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def report(results: dict[str, Any]) -> str:
    """The figures, the ratios to the seed, and the targets, as markdown tables."""
    scen = results["scenarios"]
    drain = results["config"]["drain"]
    seed_rate = {
        "sleep": (scen.get("seed") or {}).get("events_per_s"),
        "trivial": (scen.get("seed-trivial") or {}).get("events_per_s"),
    }
    rows = []
    for key, o in scen.items():
        base = seed_rate["trivial" if "trivial" in key else "sleep"]
        ratio = _ratio(o["events_per_s"], base) if not key.startswith("overload") else None
        unhandled = f"{o['unhandled']:,}"
        if o["drained_s"] is None:
            unhandled += f" @{drain:g}s"
        rows.append(
            [
                key,
                _f(o["requests_per_s"], ",.0f"),
                _f(o["events_per_s"], ",.0f"),
                "-" if ratio is None else f"{ratio:.2f}x",
                _f(o["p50_ms"], ",.2f"),
                _f(o["p99_ms"], ",.2f"),
                f"{o['non_2xx']:,}" + (f" ({o['retry_after']:,} R-A)" if o["retry_after"] else ""),
                _f(o["rss_peak_mib"], ".1f"),
                _f(o["rss_growth_mib"], "+.1f"),
                f"{o['accepted']:,}",
                unhandled,
                _f(o["drained_s"], ".2f"),
                o["error"] or "ok",
            ]
        )
    header = [
        "scenario",
        "req/s",
        "events/s",
        "x seed",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "peak RSS MiB",
        "RSS growth",
        "accepted",
        "unhandled",
        "drained s",
        "state",
    ]
    lines = ["", *_table(header, rows), ""]
    lines += [f"{k}: {o['title']}" for k, o in scen.items()]
    lines += [
        "",
        *_table(
            ["target", "measure", "met"],
            [
                [t["target"], t["measure"], {True: "yes", False: "NO", None: "-"}[t["met"]]]
                for t in results["targets"]
            ],
        ),
    ]
    lines += [
        "",
        "events/s: accepted (2xx) events per second of load; x seed: over the seed's events/s "
        "with the same handler; unhandled: accepted but not handled when the drain ended "
        f"(@{drain:g}s: still unhandled {drain:g}s after the load); RSS growth: peak during "
        "the load over the RSS before it; R-A: 503s with Retry-After.",
    ]
    return "\n".join(lines)


# profile


def profile(args: argparse.Namespace) -> str:
    """One scenario's server under pyinstrument, loaded as in the benchmark; its profile."""
    chosen = scenarios(argparse.Namespace(**{**vars(args), "scenarios": args.profile}))[0]
    with tempfile.TemporaryDirectory(prefix="bench-http-profile-") as tmp_name:
        tmp = Path(tmp_name)
        report_path = tmp / "profile.txt"
        port = free_port()
        prefix = ["-m", "pyinstrument", "-r", "text", "-o", str(report_path), "--show-all"]
        with server(chosen.app(port, tmp), tmp, prefix=prefix):
            spec = chosen.load(port, args.batch, args.connections, args.duration)
            result = run(spec, args.generator)
        text = report_path.read_text() if report_path.exists() else "(no profile written)"
    summary = (
        f"{chosen.key} under pyinstrument: {result.rps:,.0f} req/s (slowed by sampling), "
        f"{result.ok:,} accepted\n"
    )
    print(summary + text)
    return summary + text


def _cli() -> int:
    results = main(sys.argv[1:])
    if "profile" in results:
        return 0
    if not results["ok"]:
        return 1
    return 1 if results["config"].get("check") and not results["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(_cli())
