"""A tiny MCP server over stdio for tests, with the SDK's MCPServer (FastMCP in mcp 1).

``echo`` returns its text (reversed when asked); ``count_calls`` says how many tool calls
this process has answered, so a test can count executions; ``fail`` is always an error.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server: MCPServer = MCPServer("echo")
calls = 0


@server.tool()
def echo(text: str, reverse: bool = False) -> str:
    """Say the text back (reversed if asked)."""
    global calls
    calls += 1
    return text[::-1] if reverse else text


@server.tool()
def count_calls() -> dict[str, int]:
    """How many echo calls this server has answered."""
    return {"calls": calls}


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason."""
    raise ToolError(reason)


if __name__ == "__main__":
    server.run("stdio")
