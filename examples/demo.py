"""The main job: a refund waiting for approval, then the agents served over HTTP, offline.

``bash scripts/demo`` runs this. First the refund agent (``examples/refund_agent.py
--auto-approve 2`` on ``memory://``): a small refund is answered at once, a large one waits
for a person's approval, which a companion task gives after 2 seconds, and each customer
gets a follow-up scheduled 24 hours later. Then it starts ``nerve serve`` with the support
triage, deployment analyst and refund agents on a SQLite file (``nerve.db``) and the
embedded local model (no key, no network), sends a support ticket and a failed deployment
over HTTP as any system would, and prints what the agents emitted. ``--serve`` keeps the
server up afterwards and prints every answer as it comes (approval requests included),
until Ctrl-C.

The answers are read by a third party on the same durable transport: this script's own
bus subscribes to the agents' events, as any other agent or worker would.

The server takes ``--port`` (8000) even while the last run's connections linger there in
TIME_WAIT, and never outlives this script, however it ends (Ctrl-C, SIGTERM, SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nerve import Event, EventBus

ROOT = Path(__file__).resolve().parent.parent
APPS = ["examples.support_triage", "examples.deployment_analyst", "examples.refund_agent"]
#: Seconds the refund agent's companion task waits before approving a large refund.
AUTO_APPROVE = 2
ANSWERS = ("support.ticket.classified", "deployment.fix.suggested")
TICKET = {"id": 4521, "body": "I was charged twice for my subscription this month, please refund"}
DEPLOYMENT = {
    "service": "checkout-api",
    "status": "failed",
    "logs": 'Traceback (most recent call last):\n  File "app.py", line 3\n'
    "ModuleNotFoundError: No module named 'stripe'",
}


def free_port(preferred: int) -> int:
    """``preferred`` if it is free, else any free port (0 asks for any).

    The probe binds as the server will, with SO_REUSEADDR (uvicorn sets it): a port whose
    last connections linger in TIME_WAIT (the previous run's, for a minute) is free to it.
    """
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


#: The server process runs ``nerve`` with a lifeline: a thread reads its stdin, a pipe
#: from the demo, to the end, then stops the server as SIGTERM does. The pipe ends when
#: the demo does, however it ends (Ctrl-C, SIGTERM, SIGKILL): the server never outlives it.
LIFELINE = """\
import os, signal, sys, threading

def lifeline():
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=lifeline, daemon=True).start()
from nerve.cli import main
main()
"""


def run_refund_agent() -> None:
    """``examples/refund_agent.py --auto-approve 2`` on ``memory://``; it ends by itself."""
    print(
        f"== The refund agent (examples/refund_agent.py --auto-approve {AUTO_APPROVE}) ==",
        flush=True,  # before the script's own output
    )
    command = [sys.executable, "examples/refund_agent.py", "--url", "memory://"]
    command += ["--auto-approve", str(AUTO_APPROVE)]
    # memory:// for every bus of the script, its module's own included.
    env = {k: v for k, v in os.environ.items() if k not in ("NERVE_URL", "NERVE_STORE_URL")}
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=300)  # noqa: S603
    print("\n== The support and deployment agents, served over HTTP ==", flush=True)


def start_server(apps: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``nerve serve APPS --port PORT`` on the lifeline; stop it with :func:`stop_server`."""
    command = [sys.executable, "-c", LIFELINE, "serve", *apps, "--port", str(port)]
    command += ["--log-level", "warning"]
    # Popen returns at once: the server outlives many awaits without blocking the loop.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE)  # noqa: S603


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """End the lifeline: the server drains and exits."""
    if server.stdin is not None:
        server.stdin.close()
    server.wait(timeout=60)


def show(event: Event[Any]) -> None:
    print(f"\n<- {event.event_type} (caused by {event.causation_id})")
    print(json.dumps(event.payload, indent=2, ensure_ascii=False))


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One request with the standard library (the demo needs no HTTP client package)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310  # our own server on 127.0.0.1
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"nerve serve exited with {server.returncode}")
        try:
            status, _ = await asyncio.to_thread(http, "GET", f"{base}/readyz")
            if status == 200:
                return
        except OSError:  # not listening yet
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"nerve serve was not ready within {timeout}s")


async def post_event(base: str, event_type: str, payload: dict[str, Any]) -> None:
    print(f"\n-> POST {base}/events {event_type} {json.dumps(payload)[:80]}")
    body = {"event_type": event_type, "payload": payload}
    status, answer = await asyncio.to_thread(http, "POST", f"{base}/events", body)
    print(f"   {status} {answer}")


async def run(keep_serving: bool, port: int) -> int:  # one linear script
    url = os.environ.setdefault("NERVE_URL", f"sqlite:///{ROOT / 'nerve.db'}")
    base = f"http://127.0.0.1:{port}"
    # Our own subscription to the agents' answers, declared before anything is sent.
    watcher = EventBus(url)
    answers: asyncio.Queue[Event[Any]] = asyncio.Queue()

    @watcher.on("support.ticket.classified", name="demo.console.triage", start_from="latest")
    async def on_triage(event: Event[Any]) -> None:
        await answers.put(event)

    @watcher.on("deployment.fix.suggested", name="demo.console.deploy", start_from="latest")
    async def on_deploy(event: Event[Any]) -> None:
        await answers.put(event)

    # With --serve: the refund agent's requests for approval and its answers, as they come.
    @watcher.on("approval.requested", name="demo.console.approvals", start_from="latest")
    async def on_approval(event: Event[Any]) -> None:
        await answers.put(event)

    @watcher.on("refund.answered", name="demo.console.refunds", start_from="latest")
    async def on_refund(event: Event[Any]) -> None:
        await answers.put(event)

    await watcher.start()
    env = {**os.environ, "NERVE_URL": url, "NERVE_LOG_LEVEL": "WARNING"}  # answers print here
    server = start_server(APPS, port, env)
    try:
        await wait_ready(base, server)
        await post_event(base, "deployment.completed", DEPLOYMENT)
        await post_event(base, "support.ticket.created", TICKET)
        got: dict[str, Event[Any]] = {}
        async with asyncio.timeout(60):
            while not all(answer in got for answer in ANSWERS):
                event = await answers.get()
                got[event.event_type] = event
        show(got["deployment.fix.suggested"])
        db = url.removeprefix("sqlite:///")
        print(
            "\nSend your own while it runs (bash scripts/demo --serve), answers print here:\n"
            f"  curl -X POST {base}/events -H 'content-type: application/json' \\\n"
            '    -d \'{"event_type": "support.ticket.created", '
            '"payload": {"id": 1, "body": "the app crashes when I export"}}\'\n'
            f"  .venv/bin/nerve publish support.ticket.created --url {url} \\\n"
            '    --payload \'{"id": 2, "body": "please add a dark mode"}\'\n'
            "Ask for a refund above 100 EUR; it waits until you approve it (the id prints here):\n"
            f"  .venv/bin/nerve publish refund.requested --url {url} \\\n"
            '    --payload \'{"id": "R-7", "customer": "you@example.com", "amount": 250, '
            '"reason": "the parcel never arrived"}\'\n'
            f"  .venv/bin/nerve approvals approve APPROVAL_ID --url {url}\n"
            f"Watch every event: .venv/bin/nerve tail --url {url}\n"
            f"Dashboard: {base}/ui   API docs: {base}/docs   (the events live in {db})"
        )
        show(got["support.ticket.classified"])
        if keep_serving:
            print("\nServing until Ctrl-C.")
            while True:
                show(await answers.get())
        return 0
    finally:
        await asyncio.to_thread(stop_server, server)
        await watcher.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep serving after the sample")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        run_refund_agent()
        raise SystemExit(asyncio.run(run(args.serve, free_port(args.port))))
    except KeyboardInterrupt:
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
