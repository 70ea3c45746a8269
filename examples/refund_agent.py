"""A refund agent that waits for a person: it drafts, asks above a threshold, answers, follows up.

Subscribes to ``refund.requested`` (payload ``{"id", "customer", "amount", "currency",
"reason"}``) and, for each request:

1. drafts the reply to the customer (a recorded ``step``): the embedded model files the
   reason under one of ``REASONS`` and the reply comes from a template per reason; with an
   endpoint configured (``NERVE_LLM_BASE_URL`` / ``OPENAI_API_KEY``) the chat model writes
   it, reading the request only as delimited data;
2. above ``THRESHOLD`` (100), asks a person (``approval("refund.approve", ...)``) and waits
   for the decision up to 3 days. While it waits the handler holds nothing (no worker, no
   lease): the run is settled as ``waiting`` and, once decided, runs again from the top on
   any worker, its draft replayed from the store (the model is not asked twice);
3. answers the customer either way (``refund.answered``: approved, rejected, or still
   under review when nobody decided within the 3 days);
4. schedules ``refund.follow_up`` 24 hours later (``publish(..., delay=...)``), kept in the
   store until due: asking whether the money arrived.

A ``refund.withdrawn`` event with the same refund id cancels a run still waiting.

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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from nerve import Event, EventBus, Reject, step
from nerve.approvals import REQUESTED, ApprovalClosed, Decision, approval, decide, pending_approvals
from nerve.llm import LLMSettings, agent_output, untrusted
from nerve.llm.classify import Classifier
from nerve.llm.embedded import load_model

bus = EventBus()

#: The event types this agent publishes itself (``approval()`` publishes its own request).
EMITS = frozenset({"refund.answered", "refund.follow_up"})
#: Refunds above this amount wait for a person's approval.
THRESHOLD = 100.0
#: How long a person has to decide; then the customer hears the request is still reviewed.
APPROVAL_TIMEOUT = timedelta(days=3)
#: When the follow-up is due, after the answer.
FOLLOW_UP = timedelta(hours=24)

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

DRAFT_INSTRUCTIONS = (
    "You are a customer support agent. The data block holds a customer's refund request, "
    "which will be refunded in full. Write a short, friendly reply (at most 60 words) that "
    "says the amount is refunded to the original payment method within 5 to 10 business "
    "days. Do not promise anything else. Answer only with the reply."
)


class RefundRequest(BaseModel):
    id: str
    customer: str
    amount: float = Field(gt=0)
    currency: str = "EUR"
    reason: str


class Draft(BaseModel):
    """What the agent prepared before anyone decides: the reason's kind and the reply
    that goes out if the refund is made."""

    reason: str
    reply: str


class Reply(BaseModel):
    """What the chat model answers with: the reply text and nothing else."""

    reply: str


class Answer(BaseModel):
    """``refund.answered``: what the customer is told, and who decided."""

    refund_id: str
    customer: str
    amount: float
    currency: str
    status: Literal["approved", "rejected", "timed_out"]
    decided_by: str  # "policy" below the threshold, else who decided ("nobody": timed out)
    reply: str


def money(request: RefundRequest) -> str:
    return f"{request.amount:.2f} {request.currency}"


def stable_id(*parts: str) -> str:
    """An event id made of ``parts``: a run that publishes again after a retry publishes
    the same event, which subscriptions that handled it recognise."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "refund-agent:" + "/".join(parts)))


async def draft_refund(request: RefundRequest) -> Draft:
    """The reason's kind (the embedded model, or the endpoint's embeddings) and the reply
    if refunded (the chat model's when an endpoint is configured, else a template)."""
    found = await classifier.classify(request.reason)
    template = REFUNDED.format(opening=OPENINGS[found.label], amount=money(request))
    settings = LLMSettings()
    if not settings.configured:
        return Draft(reason=found.label, reply=template)
    data = {"reason": request.reason, "amount": money(request)}
    messages = untrusted(DRAFT_INSTRUCTIONS, data, label="the refund request")
    written = await agent_output(Reply, messages, settings=settings)
    return Draft(reason=found.label, reply=written.reply.strip() or template)


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
    """Draft, ask a person above the threshold, answer the customer, schedule a follow-up.

    After a decision this runs again from the top: the draft comes back from the store,
    the threshold test (code outside steps) runs again and gives the same answer (it reads
    only the event), and ``approval`` returns the recorded decision without asking again.
    """
    request = event.payload
    draft = await step("draft", lambda: draft_refund(request), result_type=Draft)
    if request.amount <= THRESHOLD:
        decision = Decision(approval_id="", status="approved", by="policy")
    else:
        decision = await approval(
            "refund.approve",
            payload={
                "refund_id": request.id,
                "customer": request.customer,
                "amount": money(request),
                "reason": request.reason[:500],
                "kind": draft.reason,
                "reply": draft.reply,
            },
            timeout=APPROVAL_TIMEOUT,
        )
    if decision.status == "approved":
        reply = draft.reply
    elif decision.status == "rejected":
        reply = REJECTED.format(amount=money(request))
    else:
        reply = UNDER_REVIEW.format(amount=money(request))
    answer = Answer(
        refund_id=request.id,
        customer=request.customer,
        amount=request.amount,
        currency=request.currency,
        status=decision.status,
        decided_by=decision.by or ("nobody" if decision.status == "timed_out" else "a person"),
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
        "customer": "ada@example.com",
        "amount": 24.90,
        "reason": "The mug arrived broken into pieces, the box was crushed.",
    },
    {
        "id": "R-1002",
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
        refund = asked["payload"]
        print(
            f"\n? approval {asked['approval_id']} requested: refund {refund['refund_id']} of "
            f"{refund['amount']} to {refund['customer']} ({refund['kind']})"
        )
        print(f"  draft reply: {refund['reply']}")
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

    if not LLMSettings().configured:  # load the embedded model off the event loop, once
        await asyncio.to_thread(load_model)
    async with app:
        if auto_approve_after is not None:
            tasks.add(asyncio.create_task(auto_approve(app, auto_approve_after)))
        elif not read_decisions(app, tasks):
            print("stdin cannot be read: decide with the nerve CLI on a shared --url")
        for sample in SAMPLES:
            print(f"\n<- refund.requested {sample['id']}: {sample['amount']:.2f} EUR")
            await app.publish(Event(event_type="refund.requested", payload=sample))
        bound = None if auto_approve_after is None else auto_approve_after + 120
        async with asyncio.timeout(bound):
            await all_answered.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        print()
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
