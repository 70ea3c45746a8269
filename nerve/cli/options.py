"""The arguments and options the ``nerve`` commands share, and reading JSON given in them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nerve.exceptions import ConfigurationError

AppArg = Annotated[
    str, typer.Argument(metavar="APP", help="module:attribute naming an EventBus, e.g. app:bus")
]
# the operator commands: a bus of the transport and store, no handlers needed

URLOption = Annotated[
    str | None, typer.Option("--url", "-u", help="transport URL (default: NERVE_URL)")
]
AppOption = Annotated[
    str | None,
    typer.Option("--app", "-a", help="module:attribute naming an EventBus, to use its store"),
]
#: ``--json`` of a command printing one object a result.
JSONLinesOption = Annotated[bool, typer.Option("--json", help="print JSON, one object a line")]
#: ``--json`` of a command printing one answer.
JSONObjectOption = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} is not JSON: {exc}") from exc
