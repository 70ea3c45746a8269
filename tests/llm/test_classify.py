"""classify(): the embedded model by default, the endpoint's embeddings when configured."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from nerve import ConfigurationError, Event, EventBus, current
from nerve.llm import LLMSettings, usage
from nerve.llm.classify import (
    Classification,
    Classifier,
    EndpointEmbedder,
    LocalEmbedder,
    classify,
    default_embedder,
)
from nerve.llm.embedded import load_model
from tests.conftest import eventually
from tests.llm.openai_server import OpenAIServer

TICKETS = {
    "billing": ["payments, invoices, refunds and charges", "I was billed the wrong amount"],
    "bug": ["something in the product is broken", "the app shows an error when I save"],
    "outage": ["the whole service is down for everyone", "your website is unreachable"],
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint from the environment: these tests say which embedder they mean."""
    for name in ("NERVE_LLM_BASE_URL", "OPENAI_BASE_URL", "NERVE_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def local() -> LocalEmbedder:
    return LocalEmbedder(load_model())


async def test_classifies_unambiguous_texts(local: LocalEmbedder) -> None:
    classifier = Classifier(TICKETS, embedder=local)
    cases = {
        "Please refund the double charge on my credit card": "billing",
        "Clicking save shows an error and my changes are lost": "bug",
        "Nothing loads, your site is down for our whole company": "outage",
    }
    for text, label in cases.items():
        result = await classifier.classify(text)
        assert result.label == label, (text, result)


async def test_result_shape(local: LocalEmbedder) -> None:
    result = await Classifier(TICKETS, embedder=local).classify("I was charged twice")
    assert isinstance(result, Classification)
    assert list(result.scores) == sorted(result.scores, key=result.scores.__getitem__)[::-1]
    assert set(result.scores) == set(TICKETS)
    assert next(iter(result.scores)) == result.label
    assert all(-1.0 <= score <= 1.0 for score in result.scores.values())
    assert 1 / len(TICKETS) <= result.confidence <= 1.0
    assert result.confidence > 0.9  # an easy one


async def test_label_names_alone(local: LocalEmbedder) -> None:
    result = await Classifier(["refund request", "password reset"], embedder=local).classify(
        "I forgot my password and need to reset it"
    )
    assert result.label == "password reset"


async def test_labels_are_embedded_once(local: LocalEmbedder) -> None:
    calls: list[int] = []

    class Counting(LocalEmbedder):
        async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
            calls.append(len(texts))
            return await super().embed(texts)

    classifier = Classifier(TICKETS, embedder=Counting(load_model()))
    await classifier.classify("refund please")
    await classifier.classify("the site is down")
    assert calls == [6, 1, 1]  # the six label phrases, then one text per call


async def test_classify_function_uses_the_embedded_model_and_keeps_labels() -> None:
    result = await classify("my invoice is wrong", TICKETS)
    assert result.label == "billing"
    again = await classify("the site is down for everyone", dict(TICKETS))  # equal labels
    assert again.label == "outage"
    assert isinstance(default_embedder(), LocalEmbedder)


def test_bad_labels() -> None:
    with pytest.raises(ConfigurationError, match="at least two"):
        Classifier({"only": "one"})
    with pytest.raises(ConfigurationError, match="several"):
        Classifier("billing")
    with pytest.raises(ConfigurationError, match="non-empty phrase"):
        Classifier({"a": [], "b": "fine"})


async def test_endpoint_embeddings_when_configured(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same Classifier, with an endpoint configured, asks the endpoint's embeddings API
    (the test server's vectors are hashes of the text: equal texts, equal vectors)."""
    labels = {"billing": ["refund my invoice"], "outage": ["the site is down"]}
    classifier = Classifier(labels)
    assert (await classifier.classify("the site is down")).label == "outage"  # offline first
    assert not server.requests
    monkeypatch.setenv("NERVE_LLM_BASE_URL", server.url)
    monkeypatch.setenv("NERVE_LLM_EMBEDDING_MODEL", "test-embedding")
    result = await classifier.classify("refund my invoice")
    assert result.label == "billing"
    assert result.scores["billing"] == pytest.approx(1.0)
    assert [r.path for r in server.requests] == ["/v1/embeddings", "/v1/embeddings"]
    assert server.requests[0].body["model"] == "test-embedding"
    assert server.requests[0].body["input"] == ["refund my invoice", "the site is down"]
    assert server.requests[1].body["input"] == ["refund my invoice"]
    assert isinstance(default_embedder(), EndpointEmbedder)


async def test_endpoint_usage_is_recorded_per_event(
    server: OpenAIServer, settings: LLMSettings
) -> None:
    labels = {"billing": ["refund my invoice"], "outage": ["the site is down"]}
    classifier = Classifier(labels, embedder=EndpointEmbedder(settings))
    bus = EventBus()
    seen: list[tuple[str, int]] = []

    @bus.on("ticket")
    async def handle(event: Event) -> None:
        result = await classifier.classify(event.payload["body"])
        ctx = current()
        assert ctx is not None
        seen.append((result.label, usage(ctx).total_tokens))

    async with bus:
        await bus.publish(Event(event_type="ticket", payload={"body": "the site is down"}))
        await eventually(lambda: seen)
    assert seen[0][0] == "outage"
    assert seen[0][1] > 0
