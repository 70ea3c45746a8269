"""The bus as an MCP server, so a person's assistant can operate nerve: ``nerve mcp app:bus``.

Tools: ``publish_event`` and ``event_status`` (an event key, as ``POST /events`` and an
event's status in the HTTP app); ``trace``, ``dlq_list``, ``dlq_show``, ``dlq_replay``,
``approvals_list`` and ``approval_decide`` (an admin key, as the dashboard and the DLQ
endpoints).

The keys are the HTTP app's (``NERVE_API_KEYS``, ``NERVE_ADMIN_API_KEYS``, checked by
:class:`~nerve.http.keys.APIKeys`: no key configured means open, for development):

- over stdio the client starts the server, so the caller's key comes from the
  environment it gives the process: ``NERVE_MCP_KEY``. Every tool checks it when it is
  called; a refused call is a tool error the assistant reads ("send an API key", "needs
  an admin API key").
- over streamable HTTP the key is the request's ``Authorization: Bearer`` header: a
  request without a valid key is refused with 401 before it reaches MCP, and each tool
  checks the same header for its level. The SDK's own auth is OAuth (an authorization
  server's metadata, token verification by scopes); a static API key needs none of it,
  so a small ASGI check in front does the HTTP app's check, word for word.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve.approvals import decide, pending_approvals
from nerve.bus import EventBus
from nerve.events import Event
from nerve.exceptions import NerveError
from nerve.http.keys import APIKeys
from nerve.http.problems import HTTPProblem
from nerve.http.settings import HTTPSettings
from nerve.records import DeadLetter

__all__ = ["KEY_VARIABLE", "build_server", "http_app"]

#: The environment variable holding a stdio client's key.
KEY_VARIABLE = "NERVE_MCP_KEY"

T = TypeVar("T")


def build_server(bus: EventBus, keys: APIKeys | None = None) -> MCPServer:
    """An MCP server whose tools act on ``bus`` (it connects on first use)."""
    keys = keys or APIKeys(HTTPSettings())
    server: MCPServer = MCPServer(
        "nerve",
        instructions="Operate a nerve event bus: publish events, follow them, "
        "replay dead letters, decide approvals.",
    )

    def allow(ctx: Context, *, admin: bool) -> None:
        try:
            keys.authorize(_headers(ctx), admin=admin)
        except HTTPProblem as exc:
            raise ToolError(f"refused: {exc.detail}") from None

    @server.tool()
    async def publish_event(
        event_type: str,
        ctx: Context,
        payload: Any = None,
        correlation_id: str | None = None,
        source: str = "nerve-mcp",
    ) -> dict[str, str]:
        """Publish an event; returns its event_id and correlation_id."""
        allow(ctx, admin=False)
        fields: dict[str, Any] = {"event_type": event_type, "source": source}
        fields["payload"] = {} if payload is None else payload
        if correlation_id:
            fields["correlation_id"] = correlation_id
        try:
            event: Event[Any] = Event.model_validate(fields)
        except ValidationError as exc:
            raise ToolError(f"invalid event: {exc}") from None
        sent = await _guard(bus.publish(event))
        return {"event_id": sent.event_id, "correlation_id": sent.correlation_id}

    @server.tool()
    async def event_status(event_id: str, ctx: Context) -> dict[str, Any]:
        """Where an event stands with each subscription (done, pending, dead_lettered...)."""
        allow(ctx, admin=False)
        found = await _guard(bus.status(event_id))
        return {
            "event_id": found.event_id,
            "event_type": found.event_type,
            "known": found.event_type is not None,
            "settled": found.settled,
            "subscriptions": {k: str(v) for k, v in found.subscriptions.items()},
        }

    @server.tool()
    async def trace(correlation_id: str, ctx: Context) -> list[dict[str, Any]]:
        """The chain of events and handler outcomes of a correlation id (or an event id)."""
        allow(ctx, admin=True)
        nodes = await _guard(bus.history.trace(correlation_id))
        if not nodes:  # an event id: its chain
            record = await _guard(bus.history.event(correlation_id))
            if record is not None:
                nodes = await _guard(bus.history.trace(record.event.correlation_id))
        return [node.model_dump(mode="json") for node in nodes]

    @server.tool()
    async def dlq_list(
        ctx: Context, subscription: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Dead letters, newest first: event, subscription, attempts, last error."""
        allow(ctx, admin=True)
        entries = await _guard(bus.dlq.list(subscription=subscription, limit=limit))
        return [_summary(entry) for entry in entries]

    @server.tool()
    async def dlq_show(
        event_id: str, ctx: Context, subscription: str | None = None
    ) -> list[dict[str, Any]]:
        """An event's dead letters in full: the event and every attempt's error."""
        allow(ctx, admin=True)
        entries = await _guard(bus.dlq.list(event_id=event_id, subscription=subscription))
        if not entries:
            raise ToolError(f"no dead letter of {event_id}")
        return [entry.model_dump(mode="json") for entry in entries]

    @server.tool()
    async def dlq_replay(
        event_id: str, ctx: Context, subscription: str | None = None
    ) -> dict[str, Any]:
        """Deliver an event's dead letters again, each to its own subscription only."""
        allow(ctx, admin=True)
        taken = await _guard(bus.dlq.replay(event_id, subscription=subscription))
        return {
            "replayed": len(taken),
            "to": [{"event_id": t.event.event_id, "subscription": t.subscription} for t in taken],
        }

    @server.tool()
    async def approvals_list(ctx: Context, limit: int = 100) -> list[dict[str, Any]]:
        """The approvals runs are waiting for, oldest first."""
        allow(ctx, admin=True)
        found = await _guard(pending_approvals(bus, limit=limit))
        return [p.model_dump(mode="json") for p in found]

    @server.tool()
    async def approval_decide(
        approval_id: str,
        approved: bool,
        ctx: Context,
        by: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Approve or reject a pending approval; its run resumes with the decision."""
        allow(ctx, admin=True)
        decision = await _guard(decide(bus, approval_id, approved=approved, by=by, comment=comment))
        return decision.model_dump(mode="json")

    return server


async def _guard(work: Awaitable[T]) -> T:
    """Await ``work``; a nerve error becomes a tool error, an answer for the assistant."""
    try:
        return await work
    except NerveError as exc:  # ApprovalClosed included
        raise ToolError(str(exc)) from None


def _summary(entry: DeadLetter) -> dict[str, Any]:
    last = entry.last_error
    return {
        "event_id": entry.event.event_id,
        "event_type": entry.event.event_type,
        "subscription": entry.subscription,
        "attempts": entry.attempts,
        "last_error": None if last is None else last.model_dump(mode="json"),
    }


def _headers(ctx: Context) -> Mapping[str, str]:
    """The caller's credentials: the HTTP request's headers, or the stdio key."""
    request = ctx.request_context.request
    if isinstance(request, Request):
        return request.headers
    key = os.environ.get(KEY_VARIABLE, "")
    return {"authorization": f"Bearer {key}"} if key else {}


def http_app(server: MCPServer, keys: APIKeys) -> ASGIApp:
    """The server over streamable HTTP (at ``/mcp``), refusing requests without a key."""
    inner = server.streamable_http_app(stateless_http=True, json_response=True)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                keys.authorize(Request(scope).headers)
            except HTTPProblem as exc:
                response = JSONResponse(
                    {"error": exc.error, "status": exc.status, "detail": exc.detail},
                    status_code=exc.status,
                    headers=exc.headers,
                )
                await response(scope, receive, send)
                return
        await inner(scope, receive, send)

    return app
