"""One model call: the SDK's retries honour Retry-After, errors become nerve's, usage and
spend are recorded per subscription, and no endpoint is a clear error."""

from __future__ import annotations

import logging

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from nerve import (
    ConfigurationError,
    Event,
    EventBus,
    ModelRequestRejected,
    ModelUnavailable,
    current,
)
from nerve.llm import LLMSettings, LLMUsage, chat, embed, openai_client, usage
from tests.llm.openai_server import OpenAIServer, completion, error, fake_embedding

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def test_retries_on_429_wait_for_retry_after(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(error(429, retry_after="0.4"), error(429, retry_after="0.4"), completion("hi"))
    response = await chat(HELLO, client=client)
    assert response.choices[0].message.content == "hi"
    times = [r.at for r in server.chat_requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.4
    assert times[2] - times[1] >= 0.4


async def test_retries_on_5xx_then_model_unavailable(
    server: OpenAIServer, settings: LLMSettings
) -> None:
    few = openai_client(settings.model_copy(update={"max_retries": 1}))
    assert few is not None
    async with few:
        server.then(error(503, retry_after_ms="10"), error(503, retry_after_ms="10"))
        with pytest.raises(ModelUnavailable, match="503") as caught:
            await chat(HELLO, client=few)
        assert len(server.chat_requests) == 2  # the first try and one SDK retry
        # Longer than the SDK waits: it gives up at once, and the event retries that late.
        server.then(error(429, retry_after="600"))
        with pytest.raises(ModelUnavailable) as caught:
            await chat(HELLO, client=few)
        assert caught.value.delay == 600
        assert len(server.chat_requests) == 3


async def test_refusals_dead_letter(server: OpenAIServer, client: AsyncOpenAI) -> None:
    server.then(error(401, "bad key"))
    with pytest.raises(ModelRequestRejected, match="401 - bad key") as caught:
        await chat(HELLO, client=client)
    assert "sk-test-secret" not in str(caught.value)
    assert len(server.chat_requests) == 1  # not retried


async def test_no_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NERVE_LLM_BASE_URL", "OPENAI_BASE_URL", "NERVE_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert openai_client() is None
    assert not LLMSettings().configured
    with pytest.raises(ConfigurationError, match="NERVE_LLM_BASE_URL"):
        await chat(HELLO)


async def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("NERVE_LLM_MODEL", "m")
    settings = LLMSettings()
    assert settings.base_url == "http://127.0.0.1:1/v1"
    assert settings.model == "m"
    assert "sk-from-env" not in repr(settings)  # a SecretStr
    monkeypatch.setenv("NERVE_LLM_BASE_URL", "http://127.0.0.1:2/v1")
    assert LLMSettings().base_url == "http://127.0.0.1:2/v1"  # nerve's own name wins


async def test_a_client_made_per_call_from_settings(
    server: OpenAIServer, settings: LLMSettings
) -> None:
    response = await chat(HELLO, settings=settings)
    assert response.choices[0].message.content == "ok"
    assert server.chat_requests[0].headers["authorization"] == "Bearer sk-test-secret"
    assert server.chat_requests[0].body["model"] == "test-model"


async def test_usage_is_recorded_on_the_handlers_context(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI, settings: LLMSettings
) -> None:
    usages: list[LLMUsage] = []
    server.then(completion("a", prompt_tokens=100, completion_tokens=20))
    server.then(completion("b", prompt_tokens=7, completion_tokens=3, model="other"))

    @bus.on("ticket.created", name="triage")
    async def triage(event: Event) -> None:
        await chat(HELLO, client=client, settings=settings)  # the model is the requested one
        await chat(HELLO, client=client, model="other")
        await embed(["two words"], client=client)
        ctx = current()
        assert ctx is not None
        usages.append(usage(ctx))

    async with bus:
        await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    (spent,) = usages
    assert (spent.prompt_tokens, spent.completion_tokens, spent.calls) == (109, 23, 3)
    assert spent.by_model["test-model"].total_tokens == 120
    assert spent.by_model["other"].calls == 1
    assert spent.by_model["text-embedding-3-small"].prompt_tokens == 2
    await chat(HELLO, client=client)  # outside a handler: nothing to record on


async def test_embeddings(client: AsyncOpenAI) -> None:
    vectors = await embed(["a", "b"], client=client)
    assert vectors == [fake_embedding("a"), fake_embedding("b")]


async def test_the_api_key_is_never_logged(
    server: OpenAIServer, client: AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.then(error(429, retry_after="0.01"), error(400, "no"))
    with pytest.raises(ModelRequestRejected):
        await chat(HELLO, client=client)
    assert caplog.records  # the SDK logged its retry
    assert "sk-test-secret" not in caplog.text
