"""How the ``nerve`` commands read in ``--help`` and in usage lines.

Typer's help gives every option a value type, flags too (``--json <bool>``, when
``--json true`` is refused), and writes a required argument in usage lines as its Python
name in braces (``{target}``). nerve's commands show a flag bare (``--json``) and an
argument by its metavar, as the docs write them: ``nerve doctor [OPTIONS] [APP]``,
``nerve serve [OPTIONS] APP...``.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _bare_flags(params: list[Any]) -> None:
    """Flags take no value: their type is not shown (an empty metavar is shown instead)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


def usage_of(argument: TyperArgument) -> str:
    """``APP``, ``[APP]``, ``APP...``: an argument as usage lines write it."""
    name = argument.metavar or (argument.name or "").upper()
    if argument.nargs != 1:
        name += "..."
    return name if argument.required else f"[{name}]"


class Command(TyperCommand):
    """A ``nerve`` command: bare flags in ``--help``, arguments by metavar in usage."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [usage_of(p) for p in self.get_params(ctx) if isinstance(p, TyperArgument)]
        return pieces

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _bare_flags(self.get_params(ctx))
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    """A group of ``nerve`` commands (``nerve``, ``nerve dlq``): bare flags in ``--help``."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _bare_flags(self.get_params(ctx))
        super().format_help(ctx, formatter)
