"""Fixtures of the LLM layer's tests: the scripted OpenAI-compatible server, a client on
it, and buses on the memory and SQLite transports (whose stores keep steps and spend)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from nerve import EventBus
from nerve.llm import LLMSettings, openai_client
from tests.llm.openai_server import OpenAIServer


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    started = OpenAIServer()
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def settings(server: OpenAIServer) -> LLMSettings:
    return LLMSettings(base_url=server.url, api_key="sk-test-secret", model="test-model")


@pytest.fixture
async def client(settings: LLMSettings) -> AsyncIterator[AsyncOpenAI]:
    made = openai_client(settings)
    assert made is not None
    async with made:
        yield made


@pytest.fixture(params=["memory", "sqlite"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventBus]:
    """A bus (not started) whose store keeps step results and spend."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/bus.db?poll=0.01"
    made = EventBus(url)
    yield made
    await made.stop(grace=1.0)
