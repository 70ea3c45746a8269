"""``nerve mcp APP --http``: a request without a key is refused before MCP (401), an event
key reaches the event tools only, an admin key the rest; nerve's own client connects."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nerve.mcp import mcp_tools

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(
        os.environ,
        NERVE_URL=f"sqlite:///{tmp_path}/bus.db",
        NERVE_API_KEYS="event-key",
        NERVE_ADMIN_API_KEYS="admin-key",
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-m", "nerve", "mcp", "tests.apps.approving:bus"]
    process = subprocess.Popen([*command, "--http", f"127.0.0.1:{port}"], env=env, cwd=ROOT)  # noqa: S603
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def wait_until_up(url: str) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    async with httpx.AsyncClient() as client:
        while True:
            try:
                return (await client.post(url, json={})).status_code
            except httpx.TransportError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def test_keys_over_http(served: str) -> None:
    assert await wait_until_up(served) == 401  # no key: refused before MCP
    async with mcp_tools(served, headers={"Authorization": "Bearer event-key"}) as tools:
        by_name = {t.name: t for t in tools}
        published = json.loads(
            await by_name["publish_event"].run('{"event_type": "refund.requested"}')
        )
        asked = json.dumps({"event_id": published["event_id"]})
        status = json.loads(await by_name["event_status"].run(asked))
        assert status["subscriptions"] == {"refunds": "pending"}
        refused = await by_name["dlq_list"].run("{}")
        assert "refused: this endpoint needs an admin API key" in refused
    async with mcp_tools(served, headers={"Authorization": "Bearer admin-key"}) as tools:
        dlq_list = next(t for t in tools if t.name == "dlq_list")
        assert json.loads(await dlq_list.run("{}")) == {"result": []}
