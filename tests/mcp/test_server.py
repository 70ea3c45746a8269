"""nerve's MCP server, driven by the SDK's own client over stdio (``python -m nerve mcp``)
against a bus on SQLite: the tools listed, publish and status and the DLQ called, and
the keys of the HTTP app applied (none, an event key, an admin key)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult, TextContent

ROOT = Path(__file__).parents[2]
TOOLS = {
    "publish_event",
    "event_status",
    "trace",
    "dlq_list",
    "dlq_show",
    "dlq_replay",
    "approvals_list",
    "approval_decide",
}


@asynccontextmanager
async def nerve_mcp(db: Path, key: str | None) -> AsyncIterator[ClientSession]:
    env = {
        "NERVE_URL": f"sqlite:///{db}",
        "NERVE_API_KEYS": "event-key",
        "NERVE_ADMIN_API_KEYS": "admin-key",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if key is not None:
        env["NERVE_MCP_KEY"] = key
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nerve", "mcp", "tests.apps.approving:bus"],
        env=env,
        cwd=ROOT,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def call(session: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content.get("result", result.structured_content)


async def test_an_admin_lists_and_calls_nerves_tools(tmp_path: Path) -> None:
    async with nerve_mcp(tmp_path / "bus.db", "admin-key") as session:
        listed = await session.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        published = await call(
            session,
            "publish_event",
            event_type="refund.requested",
            payload={"id": "r1", "amount": 5},
        )
        status = await call(session, "event_status", event_id=published["event_id"])
        assert status["known"] is True
        assert status["event_type"] == "refund.requested"
        assert status["subscriptions"] == {"refunds": "pending"}  # no worker runs it
        assert await call(session, "dlq_list") == []
        assert await call(session, "approvals_list") == []
        chain = await call(session, "trace", correlation_id=published["event_id"])
        assert [n["record"]["event"]["event_id"] for n in chain] == [published["event_id"]]
        missing = await session.call_tool("dlq_show", {"event_id": published["event_id"]})
        assert missing.is_error
        assert f"no dead letter of {published['event_id']}" in text_of(missing)


async def test_an_event_key_publishes_but_no_admin_tool_runs(tmp_path: Path) -> None:
    async with nerve_mcp(tmp_path / "bus.db", "event-key") as session:
        published = await call(session, "publish_event", event_type="refund.requested")
        assert (await call(session, "event_status", event_id=published["event_id"]))["known"]
        for tool, arguments in [
            ("dlq_list", {}),
            ("approvals_list", {}),
            ("trace", {"correlation_id": "x"}),
        ]:
            refused = await session.call_tool(tool, arguments)
            assert refused.is_error
            assert "refused: this endpoint needs an admin API key" in text_of(refused)


async def test_without_a_valid_key_every_tool_is_refused(tmp_path: Path) -> None:
    for key in (None, "wrong-key"):
        async with nerve_mcp(tmp_path / "bus.db", key) as session:
            for tool, arguments in [
                ("publish_event", {"event_type": "refund.requested"}),
                ("dlq_list", {}),
            ]:
                refused = await session.call_tool(tool, arguments)
                assert refused.is_error
                assert "refused:" in text_of(refused)
