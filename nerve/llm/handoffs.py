"""Hand-offs: an agent passes the work on by publishing an event another agent handles.

``await handoff("billing.requested", payload)`` inside a handler publishes through the
bus running it, so the event carries ``causation_id`` and ``correlation_id`` of the
handled event: the chain limit and ``nerve trace`` cover the whole multi-agent
conversation. An agent declared with ``handoffs=[...]`` gets a ``handoff`` tool the
model may call, restricted to those event types.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from nerve.context import current
from nerve.events import Event
from nerve.exceptions import NerveError
from nerve.llm.tools import Tool, _InvalidArguments
from nerve.waits import request_id

if TYPE_CHECKING:
    from nerve.bus import EventBus

__all__ = ["handoff", "handoff_tool"]


async def handoff(to: str, payload: Any = None, *, bus: EventBus | None = None) -> Event[Any]:
    """Publish a ``to`` event with ``payload``: the next agent's work. Returns it.

    Inside a handler it goes through the handler's bus (stamped with causation and
    correlation) with an id made of the run and its content, so a retried or resumed
    run that hands off the same thing again publishes the same event (handled once).
    Outside a handler, pass ``bus``.

    Raises:
        NerveError: outside a handler, without ``bus``.
    """
    ctx = current()
    if ctx is not None and ctx.waiter is not None:
        content = json.dumps(payload, sort_keys=True, default=str)
        event_id = request_id("handoff", ctx.subscription, ctx.event.event_id, to, content)
        return await ctx.waiter.publish(Event(event_type=to, event_id=event_id, payload=payload))
    if bus is None:
        raise NerveError("handoff outside a handler needs the bus to publish on (bus=...)")
    return await bus.publish(Event(event_type=to, payload=payload))


def handoff_tool(agent: str, types: list[str]) -> Tool:
    """The ``handoff`` tool of an agent that may hand off to ``types`` (and nothing else)."""
    allowed = sorted(set(types))

    async def call(arguments: dict[str, Any]) -> Any:
        to, message = arguments.get("to"), arguments.get("message")
        if to not in allowed:
            raise _InvalidArguments(f"'to' must be one of {allowed}, not {to!r}")
        if not isinstance(message, str):
            raise _InvalidArguments("'message' must be a string")
        event = await handoff(str(to), {"message": message, "from_agent": agent})
        return {"handed_off_to": to, "event_id": event.event_id}

    return Tool(
        name="handoff",
        description=(
            "Hand the work on to another agent by publishing an event it handles. "
            "Say in 'message' what it needs to know."
        ),
        parameters={
            "type": "object",
            "properties": {
                "to": {"type": "string", "enum": allowed, "description": "the event type"},
                "message": {"type": "string", "description": "what the next agent needs"},
            },
            "required": ["to", "message"],
            "additionalProperties": False,
        },
        call=call,
    )
