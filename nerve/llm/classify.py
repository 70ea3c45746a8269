"""Zero-shot classification by embedding similarity, offline or against an endpoint.

A text is embedded and compared (cosine) with a few phrases per label: a description and
some generic examples. A label's score is the mean of its two best phrase similarities,
so one lucky phrase does not win alone but a label needs no phrase for every wording.
(On the triage eval, evals/triage.py, the variants tried -- the best phrase alone, the
mean of the best 2, 3 or 4 or of all, each with and without centring the vectors -- got
65 to 70 of the 75 tickets; all but the mean of all within 3 tickets, which is noise at
that size. The two-best mean got 69.)

The embeddings come from an :class:`Embedder`: the embedded model by default
(:class:`LocalEmbedder`), or the endpoint's embeddings API when one is configured
(:class:`EndpointEmbedder`, chosen by :func:`default_embedder` from ``LLMSettings``), so
handler code is the same either way.

Example:
    ```python
    triage = Classifier(
        {
            "billing": ["payments, invoices, refunds and charges", "I was charged twice"],
            "bug": ["something in the product is broken", "the button does nothing"],
        }
    )
    result = await triage.classify("My card was billed two times this month")
    result.label  # "billing"
    ```
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict

from nerve.exceptions import ConfigurationError
from nerve.llm.calls import embed as endpoint_embed
from nerve.llm.embedded import EmbeddedModel, load_model, require
from nerve.llm.settings import LLMSettings

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from openai import AsyncOpenAI

    Matrix: TypeAlias = NDArray[np.float32]

__all__ = [
    "Classification",
    "Classifier",
    "Embedder",
    "EndpointEmbedder",
    "Labels",
    "LocalEmbedder",
    "classify",
    "default_embedder",
]

#: label -> a description, or a description and example phrases; or just label names.
Labels: TypeAlias = Mapping[str, str | Sequence[str]] | Sequence[str]

#: How many of a label's best phrase similarities its score averages.
TOP_PHRASES = 2
#: Softmax temperature turning scores (cosines) into ``confidence``: cosines of related
#: texts differ by hundredths, so a plain softmax would call every answer a coin toss.
TEMPERATURE = 0.05


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors, one row per text, in order."""

    async def embed(self, texts: Sequence[str]) -> Matrix: ...


class LocalEmbedder:
    """The embedded model (:mod:`nerve.llm.embedded`), run in a worker thread.

    The model is loaded on first use, once per process (see :func:`load_model`).
    """

    def __init__(self, model: EmbeddedModel | None = None) -> None:
        self._model = model

    async def embed(self, texts: Sequence[str]) -> Matrix:
        # ~10-20 ms of numpy per short text: off the event loop, so other handlers keep going.
        return await asyncio.to_thread(self._embed, list(texts))

    def _embed(self, texts: list[str]) -> Matrix:
        if self._model is None:
            self._model = load_model()
        return self._model.embed(texts)


class EndpointEmbedder:
    """An OpenAI-compatible endpoint's embeddings API, through :func:`nerve.llm.calls.embed`
    (so the event's budget is checked and its usage recorded, and errors are nerve's own).

    Args:
        settings: the endpoint and ``embedding_model``; read from the environment if None.
        client: a client to reuse; by default each call opens and closes its own.
    """

    def __init__(
        self, settings: LLMSettings | None = None, *, client: AsyncOpenAI | None = None
    ) -> None:
        self.settings = settings or LLMSettings()
        self.client = client

    async def embed(self, texts: Sequence[str]) -> Matrix:
        np = require("numpy")
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)  # type: ignore[no-any-return]
        # Some servers refuse empty strings; a space embeds as "nothing" just the same.
        rows = await endpoint_embed(
            [text or " " for text in texts], client=self.client, settings=self.settings
        )
        if len(rows) != len(texts):
            raise ConfigurationError(
                f"the endpoint returned {len(rows)} embeddings for {len(texts)} texts"
            )
        return _unit(np.array(rows, dtype=np.float32))


def default_embedder(settings: LLMSettings | None = None) -> Embedder:
    """The endpoint's embeddings when one is configured (``settings.configured``), else the
    embedded model."""
    settings = settings or LLMSettings()
    return EndpointEmbedder(settings) if settings.configured else LocalEmbedder()


class Classification(BaseModel):
    """The outcome of :meth:`Classifier.classify`.

    Attributes:
        label: the best-scoring label.
        scores: every label's score (a cosine similarity, in [-1, 1]), best first.
        confidence: the winner's share of a softmax over the scores, in (0, 1]; higher
            means the winner stood further from the rest. A ranking aid, not a calibrated
            probability.
    """

    model_config = ConfigDict(frozen=True)

    label: str
    scores: dict[str, float]
    confidence: float


def _phrases(labels: Labels) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if isinstance(labels, str):
        raise ConfigurationError("labels must be several; got one str")
    if isinstance(labels, Mapping):
        items = [
            (name, (spec,) if isinstance(spec, str) else tuple(spec))
            for name, spec in labels.items()
        ]
    else:
        items = [(name, (name.replace("_", " "),)) for name in labels]
    if len(items) < 2:
        raise ConfigurationError("classification needs at least two labels")
    for name, phrases in items:
        if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise ConfigurationError(f"label {name!r} needs at least one non-empty phrase")
    return tuple(items)


class Classifier:
    """Classifies texts into fixed labels; embeds the labels' phrases once, on first use.

    Args:
        labels: ``{label: description}``, ``{label: [description, example, ...]}``, or
            label names (their words are the only phrase; weaker).
        embedder: what embeds texts. By default the one :func:`default_embedder` picks,
            at every call, from the settings of the moment (so building a Classifier at
            import time reads no settings, and one classifier follows a change of
            endpoint); label embeddings are kept per endpoint and embedding model.

    Example:
        ```python
        kinds = Classifier({"question": "asking how to do something", "complaint": "unhappy"})
        (await kinds.classify("How do I export my data?")).label  # "question"
        ```
    """

    def __init__(self, labels: Labels, *, embedder: Embedder | None = None) -> None:
        self.labels = _phrases(labels)
        self.names = tuple(name for name, _ in self.labels)
        self._embedder = embedder
        self._label_vectors: dict[tuple[str | None, ...], Matrix] = {}
        self._owner: tuple[int, ...] = tuple(
            i for i, (_, phrases) in enumerate(self.labels) for _ in phrases
        )

    def _embedder_now(self) -> tuple[tuple[str | None, ...], Embedder]:
        """The embedder to use, and the key its label vectors are kept under."""
        if self._embedder is not None:
            return ("given",), self._embedder
        settings = LLMSettings()
        if settings.configured:
            key = ("endpoint", settings.base_url, settings.embedding_model)
            return key, EndpointEmbedder(settings)
        return ("local",), LocalEmbedder()

    async def classify(self, text: str) -> Classification:
        """The label ``text`` is most similar to, with every label's score."""
        np = require("numpy")
        key, embedder = self._embedder_now()
        label_vectors = self._label_vectors.get(key)
        if label_vectors is None:
            # No lock: two first calls racing both embed the labels, with the same result.
            phrases = [phrase for _, group in self.labels for phrase in group]
            label_vectors = self._label_vectors[key] = await embedder.embed(phrases)
        vector = (await embedder.embed([text]))[0]
        similarities = label_vectors @ vector
        scores: dict[str, float] = {}
        owner = np.asarray(self._owner)
        for i, name in enumerate(self.names):
            best = np.sort(similarities[owner == i])[::-1][:TOP_PHRASES]
            scores[name] = round(float(best.mean()), 6)
        ranked = dict(sorted(scores.items(), key=lambda item: item[1], reverse=True))
        label = next(iter(ranked))
        top = ranked[label]
        weights = [math.exp((score - top) / TEMPERATURE) for score in ranked.values()]
        return Classification(label=label, scores=ranked, confidence=1.0 / sum(weights))


def _unit(vectors: Matrix) -> Matrix:
    np = require("numpy")

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=16)
def _default_classifier(labels: tuple[tuple[str, tuple[str, ...]], ...]) -> Classifier:
    return Classifier(dict(labels))


async def classify(
    text: str, labels: Labels, *, embedder: Embedder | None = None
) -> Classification:
    """Classify ``text`` into one of ``labels``: see :class:`Classifier`.

    With the default embedder, the labels' embeddings are kept for the next call with equal
    labels (the 16 latest label sets, per process). With an ``embedder`` given they are
    computed on every call. A handler that
    classifies often should rather hold a :class:`Classifier`, whose lifetime it controls.
    """
    if embedder is not None:
        return await Classifier(labels, embedder=embedder).classify(text)
    return await _default_classifier(_phrases(labels)).classify(text)
