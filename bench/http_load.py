"""Load generators for ``bench.http``: wrk when installed, else a Python one; same output.

Both keep ``connections`` HTTP/1.1 keep-alive connections busy with the same POST for
``duration`` seconds and report a :class:`LoadResult`. The same generator serves every
target of a run, so the ratios compare servers, not generators.

- **wrk** (``apt-get install wrk``) with one thread (``-t1``): on a 2-core machine the
  generator competes with the server for CPU, and wrk's one C thread takes far less than
  any Python client. Its Lua script sets the request, and with ``count_statuses`` counts
  responses by status and 503s carrying ``Retry-After`` (a ``response()`` callback, which
  costs wrk more CPU: used only where statuses matter, for both sides alike).
- **python**: ``python -m bench.http_load '<LoadSpec as JSON>'``, a separate process with
  raw asyncio streams (uvloop), a request written and its response read per connection in
  turn; it always counts statuses.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Generator = Literal["wrk", "python"]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load run: where, what, how many connections, how long."""

    port: int
    path: str  # with the query string
    body: str
    headers: dict[str, str]
    connections: int
    duration: float
    count_statuses: bool = False


@dataclass(slots=True)
class LoadResult:
    """What a load run measured (latency of completed requests, in milliseconds).

    ``by_status`` and ``retry_after`` (503 responses carrying ``Retry-After``) are None
    when statuses were not counted (wrk without ``count_statuses``).
    """

    generator: Generator
    requests: int
    duration_s: float
    ok: int  # 2xx responses
    non_2xx: int
    errors: int  # connect / read / write / timeout errors
    p50_ms: float | None
    p99_ms: float | None
    by_status: dict[str, int] | None = None
    retry_after: int | None = None
    error: str | None = None

    @property
    def rps(self) -> float:
        """Requests per second (every completed request, whatever its status)."""
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str | None:
    """The wrk executable, or None."""
    return shutil.which("wrk")


def run(spec: LoadSpec, generator: Generator) -> LoadResult:
    """Run ``spec`` with ``generator`` and return what it measured."""
    if generator == "wrk":
        return _run_wrk(spec)
    return _run_python(spec)


# wrk

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) by_status = {{}}; retry_after = 0 end
{response}
function done(summary, latency, requests)
  local statuses, retry = {{}}, 0
  for _, t in ipairs(threads) do
    local counts = t:get("by_status")
    for status, n in pairs(counts) do
      statuses[#statuses + 1] = string.format('"%d": %d', status, n)
    end
    retry = retry + t:get("retry_after")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "duration_us": %d, "non_2xx": %d, "errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "by_status": {{%s}}, "retry_after": %d}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(statuses, ", "), retry))
end
"""

_WRK_RESPONSE = """
function response(status, headers, body)
  by_status[status] = (by_status[status] or 0) + 1
  if status == 503 and (headers["retry-after"] or headers["Retry-After"]) then
    retry_after = retry_after + 1
  end
end
"""


def wrk_script(spec: LoadSpec) -> str:
    """The Lua script wrk runs for ``spec``."""
    if "]==]" in spec.body:
        raise ValueError("the body cannot contain ']==]' (Lua long bracket)")
    headers = "\n".join(
        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}"
        for name, value in spec.headers.items()
    )
    return _WRK_SCRIPT.format(
        body=spec.body,
        headers=headers,
        response=_WRK_RESPONSE if spec.count_statuses else "",
    )


def _run_wrk(spec: LoadSpec) -> LoadResult:
    exe = wrk_path()
    failed = LoadResult("wrk", 0, spec.duration, 0, 0, 0, None, None)
    if exe is None:
        failed.error = "wrk is not installed"
        return failed
    with tempfile.TemporaryDirectory(prefix="bench-http-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(spec))
        cmd = [
            exe,
            "-t1",
            f"-c{spec.connections}",
            f"-d{max(1, math.ceil(spec.duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{spec.port}{spec.path}",
        ]
        try:
            proc = subprocess.run(  # noqa: S603  # wrk, fixed arguments, no shell
                cmd, capture_output=True, text=True, timeout=spec.duration + 30
            )
        except subprocess.TimeoutExpired:
            failed.error = "wrk did not finish"
            return failed
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        failed.error = f"wrk exit {proc.returncode}: {(proc.stderr or proc.stdout)[-300:]}"
        return failed
    raw = json.loads(lines[-1].removeprefix("RESULT "))
    non_2xx = int(raw["non_2xx"])
    by_status = {str(k): int(v) for k, v in raw["by_status"].items()}
    if spec.count_statuses:
        # wrk's own "status error" counts only >= 400; count every non-2xx the same way
        # the Python generator does.
        non_2xx = sum(n for status, n in by_status.items() if not status.startswith("2"))
    requests = int(raw["requests"])
    return LoadResult(
        generator="wrk",
        requests=requests,
        duration_s=raw["duration_us"] / 1e6,
        ok=requests - non_2xx,
        non_2xx=non_2xx,
        errors=int(raw["errors"]),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        by_status=by_status if spec.count_statuses else None,
        retry_after=int(raw["retry_after"]) if spec.count_statuses else None,
    )


# python


def _run_python(spec: LoadSpec) -> LoadResult:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    failed = LoadResult("python", 0, spec.duration, 0, 0, 0, None, None)
    try:
        proc = subprocess.run(  # noqa: S603  # our own interpreter and module, no shell
            [sys.executable, "-m", "bench.http_load", json.dumps(asdict(spec))],
            capture_output=True,
            text=True,
            env=env,
            timeout=spec.duration + 30,
        )
    except subprocess.TimeoutExpired:
        failed.error = "the Python load generator did not finish"
        return failed
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        failed.error = f"generator exit {proc.returncode}: {proc.stderr[-300:]}"
        return failed
    return LoadResult(**json.loads(lines[-1]))


def _request_bytes(spec: LoadSpec) -> bytes:
    body = spec.body.encode()
    head = [
        f"POST {spec.path} HTTP/1.1",
        f"Host: 127.0.0.1:{spec.port}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in spec.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_status: dict[str, int] = {}
        self.retry_after = 0
        self.errors = 0


async def _connection(spec: LoadSpec, request: bytes, until: float, tally: _Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
    except OSError:
        tally.errors += 1
        return
    clock = time.perf_counter
    try:
        while clock() < until:
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)[1].decode()
            length = 0
            retry = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"retry-after":
                    retry = True
            if length:
                await reader.readexactly(length)
            tally.latencies.append(clock() - started)
            tally.by_status[status] = tally.by_status.get(status, 0) + 1
            if status == "503" and retry:
                tally.retry_after += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        tally.errors += 1
    finally:
        writer.close()


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def generate(spec: LoadSpec) -> LoadResult:
    """The Python generator: ``spec.connections`` keep-alive connections in this loop."""
    request = _request_bytes(spec)
    tally = _Tally()
    started = time.perf_counter()
    until = started + spec.duration
    await asyncio.gather(
        *(_connection(spec, request, until, tally) for _ in range(spec.connections))
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.latencies)
    non_2xx = sum(n for status, n in tally.by_status.items() if not status.startswith("2"))
    return LoadResult(
        generator="python",
        requests=len(ordered),
        duration_s=elapsed,
        ok=len(ordered) - non_2xx,
        non_2xx=non_2xx,
        errors=tally.errors,
        p50_ms=_percentile(ordered, 0.50),
        p99_ms=_percentile(ordered, 0.99),
        by_status=tally.by_status,
        retry_after=tally.retry_after,
    )


def _main() -> None:
    spec = LoadSpec(**json.loads(sys.argv[1]))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        result = asyncio.run(generate(spec))
    else:
        result = uvloop.run(generate(spec))
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    _main()
