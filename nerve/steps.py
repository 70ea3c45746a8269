"""Durable steps: a step's result is recorded, so a retry or replay does not redo it.

A core concept, not an LLM one: any handler's costly or side-effecting part (a model
call, a payment, an email) can be a step; waits that resume a handler replay its steps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from pydantic import TypeAdapter

from nerve.context import current

T = TypeVar("T")
#: What a step without ``result_type`` may return: JSON's own types.
J = TypeVar("J", bound=Mapping[str, Any] | Sequence[Any] | str | int | float | bool | None)


@overload
async def step(name: str, fn: Callable[[], Awaitable[J]]) -> J: ...


@overload
async def step(name: str, fn: Callable[[], Awaitable[T]], *, result_type: type[T]) -> T: ...


async def step(
    name: str, fn: Callable[[], Awaitable[Any]], *, result_type: type[Any] | None = None
) -> Any:
    """Run ``fn`` once per event: its result is recorded, and returned again from then on.

    Inside a handler the result is kept in the bus's store by ``(subscription, event_id,
    name)``: a retried attempt, a redelivery, or a replay from the dead letter queue gets
    the recorded result without calling ``fn`` (nor paying a model) again. A step that
    raises records nothing. Outside a handler ``fn`` simply runs.

    Results are JSON: without ``result_type`` the step returns what ``json`` makes of the
    result (a tuple comes back a list, the same on the first run as on a replay); with it
    (a pydantic model, a dataclass, ``list[Label]``...) pydantic encodes and validates it.
    Records are kept at least the store's window after they were written, and as long as
    the event has a dead letter.

    Example:
        ```python
        @bus.on("support.ticket.created")
        async def triage(event: Event) -> None:
            messages = untrusted("Triage this ticket.", event.payload)
            triage = await step(
                "triage", lambda: agent_output(Triage, messages), result_type=Triage
            )
            await bus.publish(...)  # if this fails, the retry does not call the model again
        ```
    """
    ctx = current()
    if ctx is None:
        return await fn()
    store, subscription, event_id = ctx.store, ctx.subscription, ctx.event.event_id
    adapter = TypeAdapter(result_type) if result_type is not None else None
    recorded = await store.step_result(subscription, event_id, name)
    if recorded is not None:
        return adapter.validate_json(recorded) if adapter else json.loads(recorded)
    result = await fn()
    if adapter is not None:
        await store.record_step(subscription, event_id, name, adapter.dump_json(result).decode())
        return result
    try:
        text = json.dumps(result)
    except TypeError as exc:
        raise TypeError(
            f"step {name!r} returned a {type(result).__name__}, not JSON: pass "
            f"result_type={type(result).__name__} to record it"
        ) from exc
    await store.record_step(subscription, event_id, name, text)
    return json.loads(text)
