"""A refund agent that acts: it looks up the order, checks the policy, issues the refund.

Subscribes to ``refund.requested`` (payload ``{"id", "order_id", "customer", "amount",
"currency", "reason"}``) and runs an :class:`~nerve.llm.agent.Agent` with three tools:

- ``lookup_order``: the order (what was bought, what was paid, when it arrived);
- ``check_refund_policy``: whether the policy allows this refund: the embedded model files
  the reason under one of ``REASONS``, and rules decide (not more than was paid; a change
  of mind only within 30 days of delivery);
- ``issue_refund``: pays the money back. Above ``THRESHOLD`` (100) it needs a person's
  approval: the run waits durably for the decision, holding nothing (no worker, no
  lease), up to 3 days; a rejection is the tool's result, and the agent answers with it.

Every model call and every tool call is a durable step: once the approval is decided, the
run resumes on any worker and nothing that completed runs again (the order is not looked
up twice, the model is not paid twice, the refund is never issued twice).

Which "model" drives the tools:

- with an endpoint configured (``NERVE_LLM_BASE_URL`` / ``OPENAI_API_KEY``, see
  ``nerve.llm.LLMSettings``) the chat model chooses the tool calls and writes the reply,
  reading the request only as delimited data;
- offline (the default) a deterministic tool policy (``refund_policy``) chooses them, the
  same tools run through the same durable path, and the reply comes from a template per
  reason. The script says which path ran.

Then it answers the customer (``refund.answered``: approved, rejected, refused by the
policy, or still under review when nobody decided within the 3 days) and schedules
``refund.follow_up`` 24 hours later (``publish(..., delay=...)``), kept in the store until
due. A ``refund.withdrawn`` event with the same refund id cancels a run still waiting.

Run it: ``python examples/refund_agent.py --auto-approve 2`` (two sample requests on
``memory://``; a companion task approves what waits for a person after 2 seconds, so it
ends by itself). Without ``--auto-approve`` it prints each approval's id and waits for a
decision: type ``approve ID`` or ``reject ID`` in this terminal, or, on a URL other
processes share (``--url sqlite:///refunds.db``), decide from another terminal with
``nerve approvals approve ID --url sqlite:///refunds.db``. Serve it with ``nerve serve
examples.refund_agent:bus``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from examples.offline_model import MODEL as OFFLINE_MODEL
from examples.offline_model import Conversation, Move, answer, call, offline_client
from nerve import Event, EventBus, Reject
from nerve.approvals import REQUESTED, ApprovalClosed, decide, pending_approvals
from nerve.llm import LLMSettings, tool, untrusted
from nerve.llm.agent import Agent, AgentResult
from nerve.llm.classify import Classifier
from nerve.llm.embedded import load_model

bus = EventBus()

#: The event types this agent publishes itself (approvals publish their own requests).
EMITS = frozenset({"refund.answered", "refund.follow_up"})
#: Refunds above this amount wait for a person's approval.
THRESHOLD = 100.0
#: How long a person has to decide; then the customer hears the request is still reviewed.
APPROVAL_TIMEOUT = timedelta(days=3)
#: When the follow-up is due, after the answer.
FOLLOW_UP = timedelta(hours=24)
#: A change of mind is refunded only this long after delivery.
RETURN_WINDOW_DAYS = 30

#: Why a refund is asked for: a description, then generic examples.
REASONS: dict[str, list[str]] = {
    "damaged": [
        "the item arrived damaged, broken or defective",
        "the package was crushed and the product is broken",
        "it stopped working after a day",
    ],
    "not_received": [
        "the order never arrived",
        "my parcel is lost, tracking has not moved for weeks",
        "I paid but never received anything",
    ],
    "double_charge": [
        "I was charged twice or billed the wrong amount",
        "there are two identical payments on my card statement",
        "you billed me after I cancelled my subscription",
    ],
    "not_as_described": [
        "the product is not what was advertised",
        "wrong size, wrong colour or a different model than the one I ordered",
        "the quality is much worse than the description said",
    ],
    "changed_mind": [
        "I changed my mind and no longer want it",
        "I ordered by mistake",
        "I found it cheaper elsewhere and want to return it",
    ],
}

#: Embeds the reasons once, on first use (the embedded model, or the endpoint's).
classifier = Classifier(REASONS)

OPENINGS = {
    "damaged": "Sorry that your order arrived damaged; there is no need to send it back.",
    "not_received": "Sorry that your order never reached you.",
    "double_charge": "Sorry for the wrong charge on your account.",
    "not_as_described": "Sorry that the product was not what you expected.",
    "changed_mind": "Thanks for letting us know you changed your mind.",
}

REFUNDED = (
    "{opening} We have refunded {amount} to your original payment method; it usually "
    "arrives within 5 to 10 business days."
)
REJECTED = (
    "We looked carefully at your refund request for {amount} and cannot refund it this "
    "time. Reply to this message with any details we may have missed, and a colleague will "
    "look at it again."
)
UNDER_REVIEW = (
    "Your refund request for {amount} is taking longer to review than usual. A colleague "
    "will get back to you personally; you do not need to do anything meanwhile."
)
REFUSED = (
    "We cannot refund {amount} for this order: {why}. Reply to this message if we "
    "misunderstood your request."
)

INSTRUCTIONS = (
    "You are a refund agent for an online shop. The data block holds a customer's refund "
    "request. Look up the order, check the refund policy for the amount and reason asked, "
    "and issue the refund only if the policy allows it (refunds above "
    f"{THRESHOLD:g} wait for a person's approval: if the tool answers that it was "
    "rejected or not decided, do not call it again). Then answer with the reply to the "
    "customer: short and friendly (at most 60 words), saying what was done; promise "
    "nothing else."
)

#: The task next to the request's data block (the instructions are the agent's).
TASK = "Resolve the refund request in the data block."


@dataclass(frozen=True)
class Order:
    order_id: str
    customer: str
    item: str
    paid: float
    currency: str
    days_since_delivery: int | None  # None: not delivered


#: The shop's orders (a stand-in for its database).
ORDERS = {
    order.order_id: order
    for order in (
        Order("O-5531", "ada@example.com", "stoneware mug", 24.90, "EUR", 3),
        Order("O-7702", "bob@example.com", "annual plan, charged twice", 960.00, "EUR", None),
        Order("O-8120", "cy@example.com", "rain jacket", 89.00, "EUR", 64),
    )
}

#: The refunds paid out, in order (a stand-in for the payment provider): each ``issue_refund``
#: that ran appends one, so tests count them.
PAYMENTS: list[dict[str, Any]] = []


@tool
async def lookup_order(order_id: str) -> dict[str, Any]:
    """The order: its customer, the item, what was paid (amount and currency) and how many
    days ago it was delivered (null: not delivered)."""
    order = ORDERS.get(order_id)
    if order is None:
        return {"error": f"no order {order_id}"}
    return {
        "order_id": order.order_id,
        "customer": order.customer,
        "item": order.item,
        "paid": order.paid,
        "currency": order.currency,
        "days_since_delivery": order.days_since_delivery,
    }


@tool
async def check_refund_policy(order_id: str, amount: float, reason: str) -> dict[str, Any]:
    """Whether the refund policy allows refunding ``amount`` on this order for this reason:
    ``eligible``, ``why``, the reason's ``kind``, and whether a person must approve it."""
    found = await classifier.classify(reason[:1000])
    order = ORDERS.get(order_id)
    verdict: dict[str, Any] = {"kind": found.label, "needs_approval": amount > THRESHOLD}
    if order is None:
        return {**verdict, "eligible": False, "why": f"there is no order {order_id}"}
    if amount <= 0 or amount > order.paid:
        why = f"the amount must be above 0 and at most the {order.paid:.2f} paid"
        return {**verdict, "eligible": False, "why": why}
    late = (order.days_since_delivery or 0) > RETURN_WINDOW_DAYS
    if found.label == "changed_mind" and late:
        why = f"a change of mind is refunded within {RETURN_WINDOW_DAYS} days of delivery"
        return {**verdict, "eligible": False, "why": why}
    return {**verdict, "eligible": True, "why": f"{found.label.replace('_', ' ')} is covered"}


@tool(needs_approval=lambda arguments: float(arguments["amount"]) > THRESHOLD)
async def issue_refund(order_id: str, amount: float) -> dict[str, Any]:
    """Refund ``amount`` of the order to the customer's original payment method. Refunds
    above the threshold wait for a person's approval first."""
    payment = {"order_id": order_id, "amount": amount, "status": "refunded"}
    PAYMENTS.append(payment)
    return payment


TOOLS = [lookup_order, check_refund_policy, issue_refund]


class RefundRequest(BaseModel):
    id: str
    order_id: str
    customer: str
    amount: float = Field(gt=0)
    currency: str = "EUR"
    reason: str


class Reply(BaseModel):
    """What the agent answers with: the reply to the customer and nothing else."""

    reply: str


Status = Literal["approved", "rejected", "timed_out", "refused"]


class Answer(BaseModel):
    """``refund.answered``: what the customer is told, and who decided."""

    refund_id: str
    customer: str
    amount: float
    currency: str
    status: Status
    # "policy" below the threshold or when the policy refused, else who decided
    # ("nobody": timed out)
    decided_by: str
    reply: str


def money(request: RefundRequest | dict[str, Any]) -> str:
    if isinstance(request, RefundRequest):
        request = request.model_dump()
    return f"{float(request['amount']):.2f} {request.get('currency', 'EUR')}"


def refund_policy(seen: Conversation) -> Move:
    """The offline "model": the next tool call, or the reply, from what the tools said.

    Look up the order, check the policy, issue the refund if eligible, then answer with the
    template for the outcome (a rejection or a timeout comes back as ``issue_refund``'s
    result, as it would to a chat model).
    """
    request = seen.data
    if "lookup_order" not in seen.results:
        return call("lookup_order", order_id=request["order_id"])
    order = seen.results["lookup_order"]
    if "error" in order:
        return answer({"reply": REFUSED.format(amount=money(request), why=order["error"])})
    if "check_refund_policy" not in seen.results:
        return call(
            "check_refund_policy",
            order_id=request["order_id"],
            amount=request["amount"],
            reason=request["reason"],
        )
    verdict = seen.results["check_refund_policy"]
    if not verdict["eligible"]:
        return answer({"reply": REFUSED.format(amount=money(request), why=verdict["why"])})
    if "issue_refund" not in seen.results:
        return call("issue_refund", order_id=request["order_id"], amount=request["amount"])
    issued = seen.results["issue_refund"]
    if isinstance(issued, dict) and issued.get("status") == "refunded":
        opening = OPENINGS[verdict["kind"]]
        return answer({"reply": REFUNDED.format(opening=opening, amount=money(request))})
    if "timed out" in str(issued).lower():
        return answer({"reply": UNDER_REVIEW.format(amount=money(request))})
    return answer({"reply": REJECTED.format(amount=money(request))})


def path() -> str:
    """Which path runs: the endpoint's model or the offline tool policy."""
    settings = LLMSettings()
    if settings.configured:
        where = settings.base_url or "api.openai.com"
        return f"endpoint: {settings.model} at {where} chooses the tool calls"
    return (
        f"offline: the tool policy ({OFFLINE_MODEL}) and the embedded model choose the tool calls"
    )


def make_agent() -> Agent[Reply]:
    """The agent: on the endpoint when one is configured, else on the tool policy."""
    offline = not LLMSettings().configured
    return Agent(
        name="refund-agent",
        instructions=INSTRUCTIONS,
        tools=TOOLS,
        max_turns=8,
        output=Reply,
        approval_timeout=APPROVAL_TIMEOUT,
        client=offline_client(refund_policy) if offline else None,
        model=OFFLINE_MODEL if offline else None,
    )


def outcome(request: RefundRequest, result: AgentResult[Reply]) -> tuple[Status, str]:
    """The status and who decided, from what the tools did (never from the model's say):
    ``issue_refund`` ran (approved), was rejected or timed out waiting for a person, or
    was never called (the policy refused)."""
    issued = [c for c in result.tool_calls if c.name == "issue_refund"]
    if any(c.status == "ok" for c in issued):
        return "approved", "policy" if request.amount <= THRESHOLD else "a person"
    for found in issued:
        if found.status == "rejected" and found.result.startswith("rejected by "):
            return "rejected", found.result.removeprefix("rejected by ").split(":", 1)[0]
        if found.status == "rejected":
            return "timed_out", "nobody"
    return "refused", "policy"


def stable_id(*parts: str) -> str:
    """An event id made of ``parts``: a run that publishes again after a retry publishes
    the same event, which subscriptions that handled it recognise."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "refund-agent:" + "/".join(parts)))


async def emit(event: Event[Any], *, delay: timedelta | None = None) -> None:
    """Publish, if its type is one this agent declared in ``EMITS``.

    Raises:
        Reject: any other event type (the event dead-letters; nothing is published).
    """
    if event.event_type not in EMITS:
        raise Reject(f"the refund agent may emit only {sorted(EMITS)}, not {event.event_type!r}")
    await bus.publish(event, delay=delay)


@bus.on(
    "refund.requested",
    retries=2,
    timeout=120,
    cancel_on=[("refund.withdrawn", "payload.id")],
)
async def refund(event: Event[RefundRequest]) -> None:
    """Run the agent on the request, answer the customer, schedule a follow-up.

    After an approval is decided this runs again from the top: the agent's completed model
    calls and tool calls come back from the store, and the loop goes on from the call that
    waited.
    """
    request = event.payload
    messages = untrusted(TASK, request.model_dump(), label="the refund request")
    result = await make_agent().run(messages)
    status, decided_by = outcome(request, result)
    reply = result.output.reply if isinstance(result.output, Reply) else result.output
    answer = Answer(
        refund_id=request.id,
        customer=request.customer,
        amount=request.amount,
        currency=request.currency,
        status=status,
        decided_by=decided_by,
        reply=reply,
    )
    await emit(
        Event(
            event_type="refund.answered",
            event_id=stable_id("answered", event.event_id),
            payload=answer.model_dump(),
        )
    )
    follow_up = {"refund_id": request.id, "customer": request.customer, "status": answer.status}
    await emit(
        Event(
            event_type="refund.follow_up",
            event_id=stable_id("follow_up", event.event_id),
            payload=follow_up,
        ),
        delay=FOLLOW_UP,
    )


# Running it as a script: the samples, a console, and who decides.

SAMPLES: list[dict[str, Any]] = [
    {
        "id": "R-1001",
        "order_id": "O-5531",
        "customer": "ada@example.com",
        "amount": 24.90,
        "reason": "The mug arrived broken into pieces, the box was crushed.",
    },
    {
        "id": "R-1002",
        "order_id": "O-7702",
        "customer": "bob@example.com",
        "amount": 480.00,
        "reason": "I was charged twice for my annual plan this month.",
    },
]


def make_app(url: str) -> EventBus:
    """A bus on ``url`` running this agent (its module's ``bus`` included)."""
    app = EventBus(url)
    app.include(bus)
    return app


async def auto_approve(app: EventBus, after: float, *, poll: float = 0.2) -> None:
    """Approve every pending approval once it has waited ``after`` seconds; runs until
    cancelled (the demo's stand-in for a person)."""
    while True:
        now = datetime.now(UTC)
        for pending in await pending_approvals(app):
            if (now - pending.requested_at).total_seconds() < after:
                continue
            with contextlib.suppress(ApprovalClosed):  # decided meanwhile
                comment = f"approved automatically after {after:g}s (--auto-approve)"
                await decide(
                    app, pending.approval_id, approved=True, by="auto-approver", comment=comment
                )
                print(f"\n[auto-approver] approved {pending.approval_id}")
        await asyncio.sleep(poll)


async def decide_from_line(app: EventBus, line: str) -> None:
    """``approve [ID] [comment]`` or ``reject [ID] [comment]``, typed in this terminal
    (without an id: the oldest pending approval)."""
    words = line.split()
    if not words:
        return
    verb, rest = words[0].lower(), words[1:]
    if verb not in ("approve", "reject"):
        print(f"type 'approve ID' or 'reject ID', not {line.strip()!r}")
        return
    pending = await pending_approvals(app)
    ids = {p.approval_id for p in pending}
    if rest and rest[0] in ids:
        approval_id, rest = rest[0], rest[1:]
    elif pending:
        approval_id = pending[0].approval_id
    else:
        print("no approval is pending")
        return
    try:
        decision = await decide(
            app,
            approval_id,
            approved=verb == "approve",
            by=os.environ.get("USER", "terminal"),
            comment=" ".join(rest) or None,
        )
    except ApprovalClosed as exc:
        print(exc)
        return
    print(f"{decision.status} {approval_id}")


def read_decisions(app: EventBus, tasks: set[asyncio.Task[None]]) -> bool:
    """Take decisions typed in this terminal; False if stdin cannot be watched."""
    loop = asyncio.get_running_loop()
    stdin = sys.stdin

    def on_line() -> None:
        line = stdin.readline()
        if not line:  # end of input
            loop.remove_reader(stdin.fileno())
            return
        task = loop.create_task(decide_from_line(app, line))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_reader(stdin.fileno(), on_line)
    except (OSError, ValueError):  # a regular file, or no stdin at all
        return False
    return True


def how_to_decide(url: str, approval_id: str) -> str:
    here = f"  decide here: type 'approve {approval_id}' or 'reject {approval_id}'"
    if url.startswith("memory:"):
        return here + (
            "\n  (memory:// lives in this process; with --url sqlite:///refunds.db decide "
            "from another terminal:\n   nerve approvals approve ID --url sqlite:///refunds.db "
            "--by NAME)"
        )
    return here + (
        f"\n  or from another terminal: nerve approvals approve {approval_id} --url {url} --by NAME"
    )


async def run(url: str, auto_approve_after: float | None) -> dict[str, dict[str, Any]]:
    """Send the samples, show each approval and answer, until every sample is answered;
    return the answers by refund id."""
    app = make_app(url)
    answers: dict[str, dict[str, Any]] = {}
    all_answered = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    @app.on(REQUESTED, name="console.approvals", start_from="latest")
    async def show_request(event: Event[Any]) -> None:
        asked = event.payload
        call = asked["payload"]
        arguments = call["arguments"]
        print(
            f"\n? approval {asked['approval_id']} requested: {call['agent']} calls "
            f"{call['tool']}(order_id={arguments['order_id']!r}, amount={arguments['amount']})"
        )
        if auto_approve_after is not None:
            print(f"  auto-approving in {auto_approve_after:g}s (--auto-approve)")
        else:
            print(how_to_decide(url, asked["approval_id"]))

    @app.on("refund.answered", name="console.answers", start_from="latest")
    async def show_answer(event: Event[Any]) -> None:
        answer = event.payload
        print(
            f"\n-> {answer['customer']}: refund {answer['refund_id']} {answer['status']} "
            f"(by {answer['decided_by']})\n   {answer['reply']}"
        )
        answers[answer["refund_id"]] = answer
        if len(answers) == len(SAMPLES):
            all_answered.set()

    @app.on("refund.follow_up", name="console.follow_ups", start_from="latest")
    async def show_follow_up(event: Event[Any]) -> None:
        follow_up = event.payload
        print(f"\n-> {follow_up['customer']}: did the refund {follow_up['refund_id']} arrive?")

    print(f"path: {path()}")
    if not LLMSettings().configured:  # load the embedded model off the event loop, once
        await asyncio.to_thread(load_model)
    async with app:
        if auto_approve_after is not None:
            tasks.add(asyncio.create_task(auto_approve(app, auto_approve_after)))
        elif not read_decisions(app, tasks):
            print("stdin cannot be read: decide with the nerve CLI on a shared --url")
        for sample in SAMPLES:
            print(
                f"\n<- refund.requested {sample['id']} (order {sample['order_id']}): "
                f"{sample['amount']:.2f} EUR"
            )
            await app.publish(Event(event_type="refund.requested", payload=sample))
        bound = None if auto_approve_after is None else auto_approve_after + 120
        async with asyncio.timeout(bound):
            await all_answered.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        print(f"\nrefunds paid: {len(PAYMENTS)} (path: {path()})")
        for follow_up, due in await app.scheduled():
            status = await app.status(follow_up.event_id)
            states = ", ".join(f"{n}: {s.value}" for n, s in status.subscriptions.items())
            hours = (due - datetime.now(UTC)).total_seconds() / 3600
            print(
                f"follow-up {follow_up.event_type} for {follow_up.payload['refund_id']} due "
                f"{due:%Y-%m-%d %H:%M} UTC, in {hours:.1f} h ({states})"
            )
        if url.startswith("memory:"):
            print("(memory:// keeps the follow-ups only while this process runs)")
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--auto-approve",
        type=float,
        metavar="SECONDS",
        help="approve what waits for a person after SECONDS (the demo ends by itself)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("NERVE_URL", "memory://"),
        help="the bus (default $NERVE_URL or memory://); a shared one lets the nerve CLI decide",
    )
    args = parser.parse_args()
    try:
        asyncio.run(run(args.url, args.auto_approve))
    except KeyboardInterrupt:
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
