"""An MCP server's tools as nerve tools: ``async with mcp_tools(server) as tools``.

Each tool the server lists becomes a :class:`~nerve.llm.tools.Tool` whose schema is the
MCP tool's ``inputSchema`` (not strict: MCP schemas rarely meet OpenAI's strict subset),
so it goes into ``tools=[...]`` next to the ``@tool`` functions.

Durability is the caller's: the agent loop makes every tool call a step keyed by
(subscription, event, turn, call), so a retried or replayed run reads the recorded result
and does not call the server again. The Tool's ``call`` is therefore plain: one
``tools/call`` request each time it runs. Outside the loop, wrap it yourself:
``await nerve.step(f"mcp:{name}:{digest}", lambda: tool.call(args))``.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx2
import pydantic_core
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult, TextContent
from mcp_types import Tool as MCPTool

from nerve.exceptions import ConfigurationError
from nerve.llm.tools import Tool

__all__ = ["mcp_tools"]

#: How a server is named: a URL (streamable HTTP), a command line (stdio: a string split
#: like a shell's, or a list), or the SDK's own stdio parameters.
Server = str | Sequence[str] | StdioServerParameters


@asynccontextmanager
async def mcp_tools(
    server: Server,
    *,
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    prefix: str = "",
    only: Sequence[str] | None = None,
) -> AsyncIterator[list[Tool]]:
    """Connect to an MCP server and yield its tools; they work until the block ends.

    Args:
        server: ``http(s)://...`` for streamable HTTP; otherwise the command that starts
            a stdio server (``"python server.py"`` or ``["python", "server.py"]``), or
            the SDK's :class:`~mcp.StdioServerParameters`.
        headers: HTTP headers on every request (``{"Authorization": "Bearer ..."}``).
        env: environment variables for a stdio server, over the SDK's safe defaults
            (``PATH``, ``HOME``...: the parent's secrets are not passed on).
        prefix: put before each tool's name, so two servers' tools cannot clash.
        only: the tools to keep (names as the server lists them); default all.

    Example:
        ```python
        async with mcp_tools(["python", "-m", "weather_server"]) as tools:
            answer = await run_agent("Weather in Lyon?", tools=tools)
        ```
    """
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(_client(server, headers, env, stack))
        listed: list[MCPTool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        yield [
            _tool(client, found, prefix) for found in listed if only is None or found.name in only
        ]


def _client(
    server: Server,
    headers: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
    stack: AsyncExitStack,
) -> Client:
    if isinstance(server, str) and server.startswith(("http://", "https://")):
        http: httpx2.AsyncClient = create_mcp_http_client(headers=dict(headers or {}))
        stack.push_async_callback(http.aclose)
        return Client(streamable_http_client(server, http_client=http), cache=None)
    if isinstance(server, StdioServerParameters):
        params = server
    else:
        argv = shlex.split(server) if isinstance(server, str) else list(server)
        if not argv:
            raise ConfigurationError("mcp_tools: the server command is empty")
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(env or {}))
    return Client(params, cache=None)


def _tool(client: Client, found: MCPTool, prefix: str) -> Tool:
    name = found.name

    async def call(arguments: dict[str, Any]) -> Any:
        return _result(name, await client.call_tool(name, arguments))

    return Tool(
        name=f"{prefix}{name}",
        description=found.description or found.title or "",
        parameters=dict(found.input_schema),
        call=call,
        strict=False,
    )


def _result(name: str, result: CallToolResult) -> Any:
    """The result for the model: the content's text, as MCP means it for models.

    Structured content (which the SDK also wraps a plain value in, ``{"result": ...}``)
    is used only when there is no content at all.
    """
    text = "\n".join(
        block.text if isinstance(block, TextContent) else pydantic_core.to_json(block).decode()
        for block in result.content
    )
    if result.is_error:
        return f"error: {text}" if name in text else f"error: {name}: {text}"
    if not result.content and result.structured_content is not None:
        return result.structured_content
    return text
