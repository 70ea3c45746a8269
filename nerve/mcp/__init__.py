"""MCP both ways, with the official ``mcp`` SDK (``pip install 'nerve[mcp]'``).

- :func:`~nerve.mcp.client.mcp_tools`: an MCP server's tools (stdio or streamable HTTP)
  as :class:`~nerve.llm.Tool` objects for an agent's ``tools=[...]``.
- :func:`~nerve.mcp.server.build_server`: the bus as an MCP server (``nerve mcp app:bus``):
  publish, status, trace, dead letters, approvals, with the HTTP app's keys.
"""

from __future__ import annotations

from nerve.mcp.client import mcp_tools
from nerve.mcp.server import build_server

__all__ = ["build_server", "mcp_tools"]
