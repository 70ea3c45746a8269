"""Where an app's state lives, as ``nerve worker``, ``nerve serve`` and ``nerve doctor``
check it.

The store holds the done marks, dead letters and step results. A memory store on a
durable transport keeps them in one process: several processes (``--workers N``) would
each keep their own, so a redelivered event would run again in another and a dead letter
would be seen by one only; that is refused. One process may use it when it was asked for
explicitly (``store=memory://``), warned that they die with it. A SQLite store on a
broker that is not that same file (RabbitMQ's and Kafka's default, the state directory's
file) is shared by the processes of one host only: the commands say so.
"""

from __future__ import annotations

from nerve.bus import EventBus
from nerve.exceptions import ConfigurationError
from nerve.urls import redact, scheme_of

__all__ = ["check_processes", "host_local_store", "memory_store_warning"]

#: The schemes of stores given as instances (``store_url`` is their class name then).
_STORE_CLASSES = {"MemoryStore": "memory", "SQLiteStore": "sqlite"}


def _store_scheme(bus: EventBus) -> str:
    url = bus.store_url
    return url.partition("://")[0] if "://" in url else _STORE_CLASSES.get(url, "")


def _in_memory(bus: EventBus) -> bool:
    """A memory store on a durable transport: state that dies with the process."""
    return bus.transport.durable and _store_scheme(bus) == "memory"


def _fix(bus: EventBus) -> str:
    """How to give the bus a store that lasts, in words."""
    fix = (
        "give a shared store: NERVE_STORE_URL=redis://... or postgresql://... (or the bus's store=)"
    )
    default = bus.transport.own_store_url()
    if default:
        fix += f", or leave it unset for the transport's default ({redact(default)})"
    return fix


def check_processes(bus: EventBus, processes: int, command: str) -> None:
    """Refuse ``processes`` > 1 processes of ``command`` on a memory store.

    Raises:
        ConfigurationError: several processes and a memory store on a durable transport.
    """
    if processes > 1 and _in_memory(bus):
        raise ConfigurationError(
            f"{command} --workers {processes}: a memory store cannot be shared by "
            f"{processes} processes on {scheme_of(bus.url)}:// (each would keep its own done "
            f"marks and dead letters, and run again what another did): {_fix(bus)}"
        )


def memory_store_warning(bus: EventBus) -> str | None:
    """The warning for one process on a memory store with a durable transport, if so."""
    if not _in_memory(bus):
        return None
    return (
        f"the store is in this process's memory, on {scheme_of(bus.url)}://: dead "
        "letters, done marks and step results die with it, and other processes (nerve dlq, "
        f"status) do not see them; for a store that lasts, {_fix(bus)}"
    )


def host_local_store(bus: EventBus) -> str | None:
    """A note when the store is a SQLite file apart from the transport (RabbitMQ's and
    Kafka's default): processes on other hosts do not share it."""
    if not bus.transport.durable or _store_scheme(bus) != "sqlite":
        return None
    if scheme_of(bus.url) == "sqlite":
        return None  # the transport is a file of this host too: nothing more to say
    return (
        f"the store {bus.store_url} is a file of this host: workers on other hosts do not "
        "share it (their done marks and dead letters would be apart); for several hosts, "
        "give a shared store: NERVE_STORE_URL=redis://... or postgresql://... (or the bus's "
        "store=)"
    )
