"""The app the wait crash tests run in worker processes: a handler that waits, and dies.

``order`` runs step ``first``, waits for the ``wc.decided`` event of its order, then runs
step ``second``. Each step's body appends a line ``<step> <order id> <pid>`` to the file
``WAIT_EFFECTS`` names, so the test counts how often each body ran across processes.

``WAIT_KILL_AT`` names where the process kills itself with SIGKILL, once per test (the
file ``WAIT_KILL_MARKER`` is written first, and no process dies while it exists):

- ``first``: in step ``first``'s body, after its line is written, before it returns (so
  before the wait is registered, and before the step's result is recorded);
- ``registered``: in the ``waiting`` observer hook, once the wait is indexed and looked
  back for, before the suspended delivery is acknowledged;
- ``resumed``: in the resumed run, just after ``wait_for`` returned, before ``second``.

Run as a script (``python -m tests.crash.wait_app ORDER_ID``) it publishes the order's
``wc.decided`` event and dies while answering the wait: it wins the wait's answer timer
and is killed before recording the answer, so a worker's timer loop must finish the job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import nerve.waits
from nerve import Event, EventBus, step, wait_for
from nerve.context import HandlerContext
from nerve.observe.observer import Observer

EFFECTS = Path(os.environ["WAIT_EFFECTS"])
KILL_AT = os.environ.get("WAIT_KILL_AT", "")
MARKER = Path(os.environ.get("WAIT_KILL_MARKER", EFFECTS.with_suffix(".killed")))


def die_at(point: str) -> None:
    """SIGKILL this process if ``point`` is the kill point and no process died there yet."""
    if point == KILL_AT and not MARKER.exists():
        die(point)


def die(point: str) -> None:
    """Note the kill point in the marker file, then SIGKILL this process."""
    MARKER.write_text(f"{point} {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def ran(name: str, order: int) -> None:
    """Count one run of a step's body: a line appended and synced before going on."""
    with EFFECTS.open("a") as file:
        file.write(f"{name} {order} {os.getpid()}\n")
        file.flush()
        os.fsync(file.fileno())


class KillWhenWaiting(Observer):
    """Dies after the wait is registered, before the suspended delivery is acknowledged."""

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        die_at("registered")


bus = EventBus()
bus.observe(KillWhenWaiting())


@bus.on("wc.order", name="order", retries=5)
async def order(event: Event) -> None:
    order_id = int(event.payload["id"])

    async def first() -> int:
        ran("first", order_id)
        die_at("first")
        return order_id

    await step("first", first)
    decided = await wait_for("wc.decided", match={"payload.id": order_id}, timeout=60)
    if decided is None:
        raise AssertionError("the wait timed out")
    die_at("resumed")

    async def second() -> str:
        ran("second", order_id)
        return str(decided.payload["verdict"])

    await step("second", second)


async def publish_and_die_answering(order_id: int) -> None:
    """Publish the order's decision; die once this process won the wait's answer."""
    nerve.waits.ANSWER_LEASE = 1.0  # the answer timer a worker finishes comes due soon
    publisher = EventBus()
    store = await publisher._ready_store()  # the test's kill point
    record_step = store.record_step

    async def record_then_die(subscription: str, event_id: str, name: str, result: str) -> None:
        if name.startswith(nerve.waits.ANSWER_STEP):
            die("answering")
        await record_step(subscription, event_id, name, result)

    store.record_step = record_then_die  # type: ignore[method-assign,assignment]
    decided = Event(event_type="wc.decided", payload={"id": order_id, "verdict": "ok"})
    await publisher.publish(decided)
    await publisher.stop()  # flushes the event log, which answers the wait: and dies
    raise SystemExit("the publisher did not answer the wait")


if __name__ == "__main__":
    asyncio.run(publish_and_die_answering(int(sys.argv[1])))
