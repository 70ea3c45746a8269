"""Human approval, built on durable waits: a handler asks, a person decides, the run goes on.

Inside a handler, ``decision = await approval("refund.approve", payload={...},
timeout=timedelta(days=3))`` publishes ``approval.requested`` (its payload holds the
approval id, the name, what to decide on and until when), then waits (``wait_for``) for
``approval.decided`` with that approval id. A person decides over HTTP
(``POST /approvals/{id}``), the CLI (``nerve approvals approve ID``) or the dashboard,
all of which call :func:`decide`; the run resumes with a :class:`Decision`: approved,
rejected or timed out, by whom, with a comment.

- The approval id is made of the run (subscription, event) and the name, so a resumed
  or retried run asks for the same approval, and its request event has the same id
  (subscriptions that handled it once do not handle it again).
- The first decision wins: :func:`decide` refuses an approval that is not pending (decided
  or timed out) with :class:`ApprovalClosed`, and the wait takes the first matching
  decision event if two race.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nerve.context import current
from nerve.events import Event
from nerve.exceptions import NerveError
from nerve.waits import ANSWER_STEP, wait_for

if TYPE_CHECKING:
    from nerve.bus import EventBus
    from nerve.records import WaitRecord

__all__ = [
    "DECIDED",
    "REQUESTED",
    "ApprovalClosed",
    "Decision",
    "PendingApproval",
    "approval",
    "decide",
    "pending_approvals",
]

#: The event a handler publishes to ask for a decision.
REQUESTED = "approval.requested"
#: The event a decision is, which resumes the waiting handler.
DECIDED = "approval.decided"


class ApprovalClosed(NerveError):
    """The approval is not pending: decided already, timed out, or unknown."""


class Decision(BaseModel):
    """What became of an approval."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    status: Literal["approved", "rejected", "timed_out"]
    by: str | None = None
    comment: str | None = None
    decided_at: str | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"


class PendingApproval(BaseModel):
    """An approval a run is waiting for (for lists: CLI, HTTP, dashboard)."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    name: str
    payload: Any = None
    subscription: str
    event_id: str = Field(description="the waiting run's event")
    requested_at: datetime
    expires_at: datetime | None = None


def approval_id(subscription: str, event_id: str, name: str) -> str:
    """The id of a run's approval: stable across its resumes and retries."""
    return _uuid(f"nerve-approval:{subscription}/{event_id}/{name}")


def _uuid(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


async def approval(
    name: str, *, payload: Any = None, timeout: timedelta | float | None = None
) -> Decision:
    """Inside a handler: ask a person to decide on ``payload``; wait durably for it.

    Args:
        name: what is to be approved (``refund.approve``); one approval per name per run.
        payload: what the person decides on (shown to them).
        timeout: how long to wait; then the decision is ``timed_out``.

    Raises:
        NerveError: called outside a handler.
        RunCancelled: the run was cancelled while it waited.
    """
    ctx = current()
    if ctx is None or ctx.waiter is None:
        raise NerveError("approval works only inside a handler run by a bus")
    aid = approval_id(ctx.subscription, ctx.event.event_id, name)
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    request = Event(
        event_type=REQUESTED,
        event_id=_uuid(f"nerve-approval-request:{aid}"),
        payload={"approval_id": aid, "name": name, "payload": payload},
    )
    answer = f"{ANSWER_STEP}approval:{name}"
    if await ctx.store.step_result(ctx.subscription, ctx.event.event_id, answer) is None:
        await ctx.waiter.publish(request)  # asked again by a retry: the same event id
    decided = await wait_for(
        DECIDED,
        match={"payload.approval_id": aid},
        timeout=seconds,
        name=f"approval:{name}",
        info={"approval_id": aid, "approval": name, "payload": payload},
    )
    if decided is None:
        return Decision(approval_id=aid, status="timed_out")
    return Decision.model_validate({**decided.payload, "approval_id": aid})


async def pending_approvals(bus: EventBus, limit: int = 100) -> list[PendingApproval]:
    """The approvals runs wait for, oldest first."""
    return [_pending(w) for w in await bus.waits(event_type=DECIDED, limit=limit)]


def _pending(wait: WaitRecord) -> PendingApproval:
    info = wait.info
    return PendingApproval(
        approval_id=str(info.get("approval_id", "")),
        name=str(info.get("approval", wait.name)),
        payload=info.get("payload"),
        subscription=wait.subscription,
        event_id=wait.event.event_id,
        requested_at=datetime.fromtimestamp(wait.created_at, UTC),
        expires_at=None if wait.deadline is None else datetime.fromtimestamp(wait.deadline, UTC),
    )


async def decide(
    bus: EventBus,
    approval_id: str,
    *,
    approved: bool,
    by: str | None = None,
    comment: str | None = None,
) -> Decision:
    """Decide a pending approval: publish ``approval.decided``, which resumes its run.

    Raises:
        ApprovalClosed: no run waits for this approval (decided already, timed out,
            cancelled, or never asked).
    """
    pending = [
        w
        for w in await bus.waits(event_type=DECIDED, limit=None)
        if w.info.get("approval_id") == approval_id
    ]
    decision_id = _uuid(f"nerve-approval-decision:{approval_id}")
    if not pending or (await bus.status(decision_id)).event_type is not None:
        raise ApprovalClosed(
            f"approval {approval_id} is not pending (decided, timed out or unknown)"
        )
    decision = Decision(
        approval_id=approval_id,
        status="approved" if approved else "rejected",
        by=by,
        comment=comment,
        decided_at=datetime.now(UTC).isoformat(),
    )
    await bus.publish(
        Event(
            event_type=DECIDED,
            event_id=decision_id,
            payload=decision.model_dump(mode="json"),
        )
    )
    return decision
