"""Finding an app's bus from the command line: ``module:attribute``, as uvicorn names apps."""

from __future__ import annotations

import importlib
import os
import sys

from nerve.bus import EventBus
from nerve.exceptions import ConfigurationError


def load_bus(target: str) -> EventBus:
    """Import ``module[:attribute]`` (from the current directory too) and return the bus.

    The attribute defaults to ``bus``; ``examples/triage.py`` is taken as
    ``examples.triage``.

    Raises:
        ConfigurationError: the module or attribute is missing (the module's EventBus
            attributes are named), or the attribute is not an EventBus.
    """
    module_name, _, attribute = target.partition(":")
    module_name = module_name.removesuffix(".py").replace("/", ".")
    attribute = attribute or "bus"
    if not module_name:
        raise ConfigurationError(f"{target!r}: expected module:attribute, e.g. app:bus")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(f"{target}: no module named {exc.name!r}") from exc
        raise
    if not hasattr(module, attribute):
        buses = [name for name, value in vars(module).items() if isinstance(value, EventBus)]
        there = f"its EventBus: {', '.join(buses)}" if buses else "it has no EventBus"
        raise ConfigurationError(
            f"{target}: module {module_name!r} has no attribute {attribute!r} ({there})"
        )
    bus = getattr(module, attribute)
    if not isinstance(bus, EventBus):
        raise ConfigurationError(f"{target}: {attribute} is not an EventBus ({type(bus).__name__})")
    return bus
