"""An MCP server's tools used as nerve tools: listed with their schemas, called as an
agent calls a tool (``Tool.run`` on the model's JSON arguments)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nerve.llm import Tool
from nerve.mcp import mcp_tools

ECHO = [sys.executable, str(Path(__file__).with_name("echo_server.py"))]


async def test_a_stdio_servers_tools_become_nerve_tools() -> None:
    async with mcp_tools(ECHO) as tools:
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"echo", "count_calls", "fail"}
        echo = by_name["echo"]
        assert isinstance(echo, Tool)
        assert echo.description == "Say the text back (reversed if asked)."
        assert echo.parameters["required"] == ["text"]
        assert set(echo.parameters["properties"]) == {"text", "reverse"}
        definition = echo.definition()
        assert definition["function"]["strict"] is False

        assert await echo.run(json.dumps({"text": "nerve", "reverse": True})) == "evren"
        assert await echo.call({"text": "again"}) == "again"
        counted = json.loads(await by_name["count_calls"].run("{}"))
        assert counted == {"calls": 2}  # each call ran once on the server


async def test_errors_come_back_as_text_for_the_model() -> None:
    async with mcp_tools(ECHO, prefix="t_", only=["echo", "fail"]) as tools:
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"t_echo", "t_fail"}
        failed = await by_name["t_fail"].run('{"reason": "out of stock"}')
        assert failed.startswith("error: ")
        assert failed.endswith("fail: out of stock")  # the SDK's words, with the reason
        invalid = await by_name["t_echo"].run('{"reverse": true}')  # no text
        assert invalid.startswith("error: ")
        assert "text" in invalid
        assert (await by_name["t_echo"].run("[1]")).startswith("error: the arguments")
