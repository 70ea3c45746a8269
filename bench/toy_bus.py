"""The seed article's toy event bus, copied so the benchmark can run it beside nerve.

Source: "Building Event-Driven AI Agents: Architecture for Reactive Agent Systems"
(/work/shared/seed/event-driven-agents-article.txt, section "Building the Event Bus").

Behaviour is the article's, line for line: one unbounded ``asyncio.Queue``; ``publish``
puts; ``start_processing`` takes one event at a time, runs all of its handlers with
``asyncio.gather(..., return_exceptions=True)``, waits for them, then ``task_done``.
The only changes are type hints (``Callable`` from ``collections.abc``, return types) and
import order, which ruff asks for and which do not change what runs.

``datetime.utcnow()`` is kept as the article has it: it is deprecated from Python 3.12
(a ``DeprecationWarning``) but is what the toy bus pays per event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ToyHandler = Callable[["Event"], Awaitable[Any]]


@dataclass
class Event:
    event_type: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = field(default_factory=lambda: datetime.utcnow().isoformat())


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[ToyHandler]] = {}
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def subscribe(self, event_type: str, handler: ToyHandler) -> None:
        if event_type not in self._handlers:
            self._handlers[event_type] = []
        self._handlers[event_type].append(handler)

    async def publish(self, event: Event) -> None:
        await self._queue.put(event)

    async def start_processing(self) -> None:
        while True:
            event = await self._queue.get()
            handlers = self._handlers.get(event.event_type, [])
            tasks = [handler(event) for handler in handlers]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._queue.task_done()
