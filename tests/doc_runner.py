"""Run one documentation snippet as a script, for ``tests/test_docs.py``.

``python tests/doc_runner.py SNIPPET.py`` runs the file as ``__main__`` (as ``python
SNIPPET.py`` would, its directory first on ``sys.path``) with the network cut down to
loopback: a name other than ``localhost`` or a loopback address fails to resolve, and a
socket cannot connect anywhere else, so a snippet reaches the brokers on 127.0.0.1 and
nothing beyond (no model endpoint, no download).

Handlers that fail fail the snippet, unless it raises that error itself (``raise Reject``
to show a dead letter): a failing handler is retried and dead-lettered, and the script
still exits 0. ``nerve.events`` logs every failed attempt (``retrying``, ``dead_lettered``);
exit 4 lists the unexpected ones.

Then it checks the names the snippet's functions read as globals: a snippet that defines a
handler and never calls it would otherwise pass with an undefined name in the handler
(``bus.on`` runs, the body does not). Exit 3 names them.
"""

from __future__ import annotations

import builtins
import dis
import ipaddress
import logging
import re
import runpy
import socket
import sys
from pathlib import Path
from types import CodeType
from typing import Any

#: The logger of every attempt's outcome (docs/observability.md, "Logs").
EVENTS_LOGGER = "nerve.events"
#: What the guard lets a snippet resolve and connect to.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: object) -> bool:
    """Whether ``host`` (a name, an address, or None for a local bind) is this machine."""
    if host is None or host in ("", b""):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def guard_network() -> None:
    """Refuse every name and address that is not loopback, in this process."""
    resolve = socket.getaddrinfo
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex

    def refuse(host: object) -> None:
        raise OSError(f"doc snippets reach 127.0.0.1 only, not {host!r} (tests/doc_runner.py)")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"{host!r}: only loopback in doc snippets")
        return resolve(host, *args, **kwargs)

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and not is_loopback(address[0]):
            refuse(address[0])
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        if isinstance(address, tuple) and not is_loopback(address[0]):
            refuse(address[0])
        return connect_ex(sock, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]


class Failures(logging.Handler):
    """The failed attempts ``nerve.events`` logs; warnings printed as without a handler."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.failed: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "outcome", None) in ("retrying", "dead_lettered"):
            self.failed.append(record)
        if record.levelno >= logging.WARNING and not logging.getLogger().handlers:
            print(self.format(record), file=sys.stderr)  # what logging.lastResort prints


def watch_handlers() -> Failures:
    failures = Failures()
    events = logging.getLogger(EVENTS_LOGGER)
    events.setLevel(logging.INFO)
    events.addHandler(failures)
    return failures


def global_reads(code: CodeType) -> set[str]:
    """Names read as globals by the functions (at any depth) that ``code`` defines."""
    names: set[str] = set()
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names.update(
                str(ins.argval)
                for ins in dis.get_instructions(const)
                if ins.opname == "LOAD_GLOBAL"
            )
            names.update(global_reads(const))
    return names


def main() -> None:
    path = Path(sys.argv[1]).resolve()
    sys.argv = [str(path)]
    sys.path[0] = str(path.parent)
    guard_network()
    failures = watch_handlers()
    namespace = runpy.run_path(str(path), run_name="__main__")
    source = path.read_text()
    missing = sorted(
        name
        for name in global_reads(compile(source, str(path), "exec"))
        if name not in namespace and not hasattr(builtins, name)
    )
    if missing:
        print(f"undefined names in the snippet's functions: {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(3)
    unexpected = [
        record.getMessage()
        for record in failures.failed
        if not re.search(rf"\braise {getattr(record, 'error_type', '?')}\b", source)
    ]
    if unexpected:
        print("handlers failed:", *unexpected, sep="\n  ", file=sys.stderr)
        raise SystemExit(4)


if __name__ == "__main__":
    main()
