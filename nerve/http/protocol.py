"""The HTTP/1.1 connections ``nerve serve`` runs: uvicorn's httptools protocol, bounded.

uvicorn's httptools protocol reads a request's line and headers for as long and as far as
the client sends them: a 64 MiB header is buffered whole (never answered), and a client
that sends one byte a second, or nothing at all, holds its connection for good. (h11's
``h11_max_incomplete_event_size`` bounds the size, but h11 parses in Python, and neither
protocol has a time limit.) :class:`BoundedHttpToolsProtocol` adds the bounds:

- a request whose line and headers pass ``max_header_bytes`` is answered 431;
- a request whose line and headers are not all there ``header_timeout`` seconds after
  the connection was made, or after the request's first byte, is answered 408;
- a request body still arriving ``body_timeout`` seconds (and a second) after its head
  closes the connection once the answer is out (the app answers 408 itself when it was
  reading that body: :class:`nerve.http.bodies.BodyDeadlines`).

Both answers are problem bodies; the connection is then closed, after reading (and
dropping) what the client still sends for :data:`LINGER_SECONDS`, so that it gets the
answer rather than a reset. The limits are ``NERVE_*`` settings (:class:`HTTPSettings`),
read once per process: uvicorn builds the protocol from its class, in each worker.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nerve.http.settings import HTTPSettings

#: Seconds a refused connection is still read (and dropped) before it is closed.
LINGER_SECONDS = 1.0
#: Seconds past ``body_timeout`` before a trickling body closes its connection: the app's
#: own 408 comes first.
BODY_GRACE_SECONDS = 1.0
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@cache
def limits() -> HTTPSettings:
    """This process's settings (its ``NERVE_*`` variables), read once."""
    return HTTPSettings()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head and a bounded body time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = limits()
        self.max_head_bytes = settings.max_header_bytes
        self.head_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout + BODY_GRACE_SECONDS
        self.reading_head = True  # between requests, or in a request's line and headers
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.close_when_answered = False
        self.refused = False

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer = self.loop.call_later(self.head_timeout, self._head_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # answered and closing: what still comes is dropped
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.reading_head:
            if self.head_bytes > self.max_head_bytes:
                self._refuse(
                    431,
                    "too_large",
                    f"the request line and headers pass {self.max_head_bytes} bytes",
                )
            elif self.head_bytes and self.head_timer is None:  # a head begun, not done
                self.head_timer = self.loop.call_later(self.head_timeout, self._head_overdue)
        elif self.body_timer is None:  # a body begun, not done
            self.body_timer = self.loop.call_later(self.body_timeout, self._body_overdue)

    # parser callbacks

    def on_headers_complete(self) -> None:
        self.reading_head = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.close_when_answered and not self.transport.is_closing():
            self.transport.close()

    # bounds

    def _stop_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _head_overdue(self) -> None:
        self.head_timer = None
        if self.refused or not self.reading_head or self.transport.is_closing():
            return
        if self._answering():  # a pipelined head: no 408 in the middle of an answer
            self.close_when_answered = True
            return
        self._refuse(
            408,
            "timeout",
            f"the request line and headers did not arrive within {self.head_timeout:g} s",
        )

    def _body_overdue(self) -> None:
        self.body_timer = None
        if self._answering():
            self.close_when_answered = True
        elif not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, error: str, detail: str) -> None:
        """Answer ``status`` with a problem body, then close (after a linger)."""
        self.refused = True
        self._stop_timers()
        body = orjson.dumps({"error": error, "detail": detail})
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body)
        )
        self.transport.write(b"".join(head) + body)
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
