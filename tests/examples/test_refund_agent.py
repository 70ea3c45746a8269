"""examples/refund_agent.py: the agent looks up the order, checks the policy and issues a
refund below the threshold at once; above it, issue_refund waits (holding nothing) for a
person's decision and runs once if approved, never if rejected; a follow-up is scheduled 24
hours later. Offline a tool policy drives the loop, with an endpoint the model's tool
calls; as a script, with --auto-approve, it ends by itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from examples import refund_agent
from nerve import DeliveryState, Event, EventBus
from nerve.approvals import REQUESTED, decide, pending_approvals
from nerve.llm.classify import Classification
from nerve.llm.embedded import EmbeddedModel, load_model
from tests.conftest import eventually
from tests.llm.openai_server import OpenAIServer, completion, tool_call

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT_VARIABLES = (
    "NERVE_LLM_BASE_URL",
    "OPENAI_BASE_URL",
    "NERVE_LLM_API_KEY",
    "OPENAI_API_KEY",
)
SMALL, BIG = refund_agent.SAMPLES  # 24.90 and 480.00 EUR; the threshold is 100
#: Seconds a condition may take on a loaded shared machine (the model loads in the first).
DEADLINE = 60.0


@pytest.fixture(scope="session")
def model() -> EmbeddedModel:
    return load_model()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, model: EmbeddedModel) -> None:
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class Refunds:
    """The agent on a fresh ``memory://`` bus that records every event, and counts the
    drafts the model makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bus: EventBus = refund_agent.make_app("memory://")
        self.seen: list[Event[Any]] = []
        self.bus.subscribe("#", self._record, name="record")
        self.drafts: Counter[str] = Counter()
        monkeypatch.setattr(refund_agent, "PAYMENTS", [])
        classify = refund_agent.classifier.classify

        async def counting(text: str) -> Classification:
            self.drafts[text] += 1
            return await classify(text)

        monkeypatch.setattr(refund_agent.classifier, "classify", counting)

    async def _record(self, event: Event[Any]) -> None:
        self.seen.append(event)

    def paid(self, order_id: str) -> int:
        """Refunds issued on the order (``issue_refund`` runs)."""
        return sum(1 for p in refund_agent.PAYMENTS if p["order_id"] == order_id)

    def of(self, event_type: str) -> list[Event[Any]]:
        return [e for e in self.seen if e.event_type == event_type]

    def answer(self, refund_id: str) -> dict[str, Any] | None:
        answers = self.of("refund.answered")
        found = [e.payload for e in answers if e.payload["refund_id"] == refund_id]
        assert len(found) <= 1, found  # answered once, however often the handler ran
        return found[0] if found else None

    async def request(self, sample: dict[str, Any]) -> Event[Any]:
        return await self.bus.publish(Event(event_type="refund.requested", payload=sample))

    async def state(self, event: Event[Any]) -> DeliveryState | None:
        status = await self.bus.status(event.event_id)
        return status.subscriptions.get("examples.refund_agent.refund")

    async def until_state(self, event: Event[Any], state: DeliveryState) -> None:
        deadline = time.monotonic() + DEADLINE
        while (found := await self.state(event)) is not state:
            if time.monotonic() > deadline:
                pytest.fail(f"the run of {event.payload['id']} is {found}, not {state}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def refunds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Refunds]:
    agent = Refunds(monkeypatch)
    await agent.bus.start()
    yield agent
    await agent.bus.stop(grace=5)


async def test_below_the_threshold_at_once_above_it_after_approval(refunds: Refunds) -> None:
    small = await refunds.request(SMALL)
    big = await refunds.request(BIG)
    await eventually(lambda: refunds.answer(SMALL["id"]), timeout=DEADLINE)
    answered = refunds.answer(SMALL["id"])
    assert answered is not None
    assert (answered["status"], answered["decided_by"]) == ("approved", "policy")
    assert "24.90 EUR" in answered["reply"]
    assert "arrived damaged" in answered["reply"]  # the model filed it under "damaged"

    # The big one waits for a person, holding nothing: its delivery is settled as waiting.
    await refunds.until_state(big, DeliveryState.WAITING)
    [pending] = await pending_approvals(refunds.bus)
    assert pending.payload == {
        "agent": "refund-agent",
        "tool": "issue_refund",
        "arguments": {"order_id": BIG["order_id"], "amount": 480.0},
    }
    assert refunds.paid(BIG["order_id"]) == 0  # not before the decision
    assert refunds.paid(SMALL["order_id"]) == 1
    assert pending.expires_at is not None
    assert pending.expires_at - pending.requested_at == refund_agent.APPROVAL_TIMEOUT
    [asked] = refunds.of(REQUESTED)  # only the big one asked
    assert asked.payload["approval_id"] == pending.approval_id
    assert refunds.answer(BIG["id"]) is None

    approver = asyncio.create_task(refund_agent.auto_approve(refunds.bus, 0.1, poll=0.05))
    try:
        await eventually(lambda: refunds.answer(BIG["id"]), timeout=DEADLINE)
    finally:
        approver.cancel()
    answered = refunds.answer(BIG["id"])
    assert answered is not None
    assert (answered["status"], answered["decided_by"]) == ("approved", "a person")
    assert "480.00 EUR" in answered["reply"]
    assert "wrong charge" in answered["reply"]  # filed under "double_charge"
    await refunds.until_state(big, DeliveryState.DONE)
    assert await refunds.state(small) is DeliveryState.DONE
    # Tool calls are steps: the resumed run took the policy check from the store (the
    # embedded model filed each reason once) and issued each refund once.
    assert refunds.drafts == {SMALL["reason"]: 1, BIG["reason"]: 1}
    assert (refunds.paid(SMALL["order_id"]), refunds.paid(BIG["order_id"])) == (1, 1)
    assert await pending_approvals(refunds.bus) == []

    # A follow-up each, 24 hours after its answer, kept in the store until due.
    scheduled = {e.payload["refund_id"]: (e, due) for e, due in await refunds.bus.scheduled()}
    assert set(scheduled) == {SMALL["id"], BIG["id"]}
    now = datetime.now(UTC)
    for refund_id, trigger in ((SMALL["id"], small), (BIG["id"], big)):
        follow_up, due = scheduled[refund_id]
        assert follow_up.event_type == "refund.follow_up"
        assert follow_up.causation_id == trigger.event_id
        assert timedelta(hours=23, minutes=58) < due - now <= timedelta(hours=24)
        status = await refunds.bus.status(follow_up.event_id)
        assert status.subscriptions == {"record": DeliveryState.SCHEDULED}
    assert refunds.of("refund.follow_up") == []  # not before it is due


async def test_a_rejected_refund_is_answered_too(refunds: Refunds) -> None:
    big = await refunds.request(BIG)
    await refunds.until_state(big, DeliveryState.WAITING)
    [pending] = await pending_approvals(refunds.bus)
    await decide(refunds.bus, pending.approval_id, approved=False, by="carol", comment="fraud")
    await eventually(lambda: refunds.answer(BIG["id"]), timeout=DEADLINE)
    answered = refunds.answer(BIG["id"])
    assert answered is not None
    assert (answered["status"], answered["decided_by"]) == ("rejected", "carol")
    assert answered["reply"] == refund_agent.REJECTED.format(amount="480.00 EUR")
    assert "fraud" not in answered["reply"]  # the approver's comment stays internal
    assert refunds.paid(BIG["order_id"]) == 0  # rejected: the tool never ran
    [(follow_up, _due)] = await refunds.bus.scheduled()
    assert follow_up.payload == {
        "refund_id": BIG["id"],
        "customer": BIG["customer"],
        "status": "rejected",
    }


async def test_nobody_deciding_tells_the_customer_it_is_still_reviewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(refund_agent, "APPROVAL_TIMEOUT", timedelta(seconds=0.5))
    agent = Refunds(monkeypatch)
    async with agent.bus:
        await agent.request(BIG)
        await eventually(lambda: agent.answer(BIG["id"]), timeout=DEADLINE)
    answered = agent.answer(BIG["id"])
    assert answered is not None
    assert (answered["status"], answered["decided_by"]) == ("timed_out", "nobody")
    assert answered["reply"] == refund_agent.UNDER_REVIEW.format(amount="480.00 EUR")


async def test_a_withdrawn_request_ends_the_wait(refunds: Refunds) -> None:
    big = await refunds.request(BIG)
    await refunds.until_state(big, DeliveryState.WAITING)
    await refunds.bus.publish(Event(event_type="refund.withdrawn", payload={"id": BIG["id"]}))
    await refunds.until_state(big, DeliveryState.DONE)
    assert await pending_approvals(refunds.bus) == []
    assert refunds.answer(BIG["id"]) is None
    assert await refunds.bus.scheduled() == []


async def test_the_policy_refuses_a_late_change_of_mind(refunds: Refunds) -> None:
    late = {
        "id": "R-1003",
        "order_id": "O-8120",  # delivered 64 days ago
        "customer": "cy@example.com",
        "amount": 89.0,
        "reason": "I changed my mind, I don't want the jacket any more.",
    }
    await refunds.request(late)
    await eventually(lambda: refunds.answer("R-1003"), timeout=DEADLINE)
    answered = refunds.answer("R-1003")
    assert answered is not None
    assert (answered["status"], answered["decided_by"]) == ("refused", "policy")
    assert "within 30 days of delivery" in answered["reply"]
    assert refunds.paid("O-8120") == 0  # issue_refund was never called


async def test_with_an_endpoint_the_model_makes_the_tool_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = OpenAIServer()
    await server.start()
    monkeypatch.setenv("NERVE_LLM_BASE_URL", server.url)
    monkeypatch.setenv("NERVE_LLM_MODEL", "test-model")
    reply = "Your 24.90 EUR are on their way back to your card."
    order = SMALL["order_id"]
    server.then(
        completion(tool_calls=[tool_call("lookup_order", {"order_id": order}, "c1")]),
        completion(
            tool_calls=[
                tool_call(
                    "check_refund_policy",
                    {"order_id": order, "amount": 24.9, "reason": SMALL["reason"]},
                    "c2",
                )
            ]
        ),
        completion(
            tool_calls=[tool_call("issue_refund", {"order_id": order, "amount": 24.9}, "c3")]
        ),
        completion(json.dumps({"reply": reply})),
    )
    try:
        agent = Refunds(monkeypatch)
        async with agent.bus:
            await agent.request(SMALL)
            await eventually(lambda: agent.answer(SMALL["id"]), timeout=DEADLINE)
    finally:
        await server.stop()
    answered = agent.answer(SMALL["id"])
    assert answered is not None
    assert (answered["status"], answered["decided_by"], answered["reply"]) == (
        "approved",
        "policy",
        reply,
    )
    assert agent.paid(order) == 1
    first, *rest = server.chat_requests
    assert len(rest) == 3  # one model call per turn, four turns
    names = {t["function"]["name"] for t in first.body["tools"]}
    assert names == {"lookup_order", "check_refund_policy", "issue_refund"}
    messages = first.body["messages"]
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    user = " ".join(m["content"] for m in messages if m["role"] == "user")
    assert "broken into pieces" not in system  # the request is data, never instructions
    assert "broken into pieces" in user
    assert "<<<DATA" in user
    results = [m for m in rest[-1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["c1", "c2", "c3"]
    assert json.loads(results[1]["content"])["eligible"] is True


def script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NERVE_", "OPENAI_"))}
    return {**env, "PYTHONUNBUFFERED": "1"}


def test_the_script_with_auto_approve_ends_by_itself() -> None:
    started = time.monotonic()
    result = subprocess.run(  # our own interpreter on our own files
        [sys.executable, "examples/refund_agent.py", "--auto-approve", "1"],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("? approval ") == 1  # only the big one asked
    assert out.startswith("path: offline: the tool policy")
    assert "calls issue_refund(order_id='O-7702', amount=480.0)" in out
    assert f"refund {SMALL['id']} approved (by policy)" in out
    approved = out.index("[auto-approver] approved ")
    assert out.index(f"refund {BIG['id']} approved (by a person)") > approved
    assert "refunds paid: 2 " in out
    for refund_id in (SMALL["id"], BIG["id"]):
        assert f"follow-up refund.follow_up for {refund_id} due " in out
    assert out.count("(console.follow_ups: scheduled)") == 2
    assert time.monotonic() - started < 150


async def test_the_script_takes_a_decision_typed_in_its_terminal() -> None:
    """Without --auto-approve the run waits until someone types ``reject ID``."""
    script = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/refund_agent.py",
        cwd=ROOT,
        env=script_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert script.stdin is not None
    assert script.stdout is not None
    out: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not (approval_id := _asked(out)):
                line = await script.stdout.readline()
                assert line, "".join(out)
                out.append(line.decode())
            assert not any("refund R-1002 " in line and "(by " in line for line in out)
            script.stdin.write(f"reject {approval_id} not this time\n".encode())
            await script.stdin.drain()
            rest, errors = await script.communicate()
    finally:
        if script.returncode is None:
            script.kill()
            await script.wait()
    assert script.returncode == 0, errors.decode()
    text = "".join(out) + rest.decode()
    assert f"rejected {approval_id}" in text
    assert f"refund {BIG['id']} rejected (by " in text


def _asked(lines: list[str]) -> str | None:
    """The approval id once the script has said how to decide it."""
    for line in lines:
        if line.startswith("  decide here: type 'approve "):
            return line.split("'approve ", 1)[1].split("'", 1)[0]
    return None
