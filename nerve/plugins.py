"""Plug-ins chosen by URL scheme (transports, stores): a table says where each class lives,
and it is imported only when asked for, so a missing client library names its extra."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping

from nerve.exceptions import ConfigurationError, MissingDependency

#: scheme -> (module, class, the extra that installs its client library or None)
Table = Mapping[str, tuple[str, str, str | None]]


def plugin_class(table: Table, scheme: str, kind: str) -> type[object]:
    """The class ``table`` names for ``scheme``, imported now.

    Raises:
        ConfigurationError: unknown scheme (with the nearest known one suggested).
        MissingDependency: the plug-in's client library is not installed: the message
            has the exact ``pip install 'nerve[extra]'`` line.
    """
    try:
        module_name, class_name, extra = table[scheme]
    except KeyError:
        close = difflib.get_close_matches(scheme, table, n=1)
        hint = f"; did you mean {close[0]}://?" if close else ""
        known = ", ".join(f"{s}://" for s in table)
        raise ConfigurationError(f"unknown {kind} {scheme}:// (known: {known}){hint}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or (exc.name or "").startswith(module_name):
            raise  # our own module is broken, not a missing extra
        raise MissingDependency(
            f"the {scheme}:// {kind} needs {exc.name}: pip install 'nerve[{extra}]'"
        ) from exc
    found: type[object] = getattr(module, class_name)
    return found
