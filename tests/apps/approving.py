"""An app for CLI tests: each ``refund.requested`` waits for a person's approval.

``NERVE_URL`` names the transport; ``APPROVING_LOG`` is a file that gets a line
``<refund id> <status> <by> <comment>`` when a run resumes with its decision, so a test
can see that a decision made by another process reached the waiting run.
"""

from __future__ import annotations

import os

from nerve import Event, EventBus
from nerve.approvals import approval

bus = EventBus()
LOG = os.environ.get("APPROVING_LOG", os.devnull)


def note(line: str) -> None:
    with open(LOG, "a") as log:
        log.write(line + "\n")


@bus.on("refund.requested", name="refunds")
async def refund(event: Event) -> None:
    refund_id = event.payload["id"]
    decision = await approval(
        "refund.approve", payload={"refund_id": refund_id, "amount": event.payload["amount"]}
    )
    note(f"{refund_id} {decision.status} {decision.by} {decision.comment}")
