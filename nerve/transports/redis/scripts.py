"""The transport's Lua scripts: read once from ``lua/``, registered on each client.

Each script is one file in ``lua/`` (its comment says what it does, its keys and
arguments); what needs to happen atomically on the server happens in one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib.resources import files
from typing import Self

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts, registered on one client (callable with ``client=`` a pipeline).

    Each field is the script ``lua/{field}.lua``.
    """

    #: Acknowledge an entry and requeue its event for one subscription, delayed or not.
    nack: AsyncScript
    #: Append a batch of events to the events stream in one command.
    publish: AsyncScript
    #: Move due retries from a delayed set to its direct stream.
    promote: AsyncScript
    #: Set the idle time of the entries this consumer still owns (keep or release them).
    touch: AsyncScript
    #: Trim the events stream below what any group still needs and the retention horizon.
    trim: AsyncScript
    #: Delete idle consumers that hold nothing.
    reap: AsyncScript
    #: Count a subscription's unsettled work in one consistent look.
    lag: AsyncScript

    @classmethod
    def register(cls, client: Redis) -> Self:
        return cls(**{name: client.register_script(source) for name, source in _SOURCES.items()})


def _source(name: str) -> str:
    return (files("nerve.transports.redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


#: The scripts' source, read once at import.
_SOURCES: dict[str, str] = {field.name: _source(field.name) for field in fields(Scripts)}
