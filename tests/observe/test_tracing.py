"""OpenTelemetry traces: publish and handling spans linked through the events' metadata,
in one process, across two worker processes on Redis, and model calls as child spans."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nerve import Event, EventBus, Reject, Settings
from nerve.llm import LLMSettings, chat
from nerve.observe.tracing import Tracing, current_tracer
from tests.apps.span_files import span_record
from tests.conftest import FAST, BusFactory, drop_redis_keys, eventually
from tests.llm.openai_server import OpenAIServer, completion

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    return made


def traced_bus(provider: TracerProvider, url: str = "memory://", **settings: Any) -> EventBus:
    bus = EventBus(url, settings=Settings(**settings))
    bus.observe(Tracing(provider))  # its own provider: no process-wide state in tests
    return bus


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def trace_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id


async def test_a_chain_is_one_trace_of_publish_and_handling_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = traced_bus(provider)

    @bus.on("chain.a", name="first")
    async def first(event: Event) -> None:
        await bus.publish(Event(event_type="chain.b"))

    @bus.on("chain.b", name="second")
    async def second(event: Event) -> None:
        pass

    async with bus:
        root = await bus.publish(Event(event_type="chain.a", payload={"n": 1}))
        await bus.join(timeout=10)

    spans = by_name(exporter.get_finished_spans())
    [publish_a] = spans["publish chain.a"]
    [handle_a] = spans["process first"]
    [publish_b] = spans["publish chain.b"]
    [handle_b] = spans["process second"]
    assert len({trace_id(s) for s in (publish_a, handle_a, publish_b, handle_b)}) == 1
    assert parent_of(publish_a) is None
    assert parent_of(handle_a) == span_id(publish_a)
    assert parent_of(publish_b) == span_id(handle_a)
    assert parent_of(handle_b) == span_id(publish_b)
    assert publish_a.kind is SpanKind.PRODUCER
    assert handle_a.kind is SpanKind.CONSUMER
    assert (
        dict(handle_a.attributes or {}).items()
        >= {
            "nerve.event.type": "chain.a",
            "nerve.event.id": root.event_id,
            "nerve.subscription": "first",
            "nerve.attempt": 1,
            "nerve.outcome": "handled",
            "messaging.system": "nerve",
        }.items()
    )
    # The trace context travels in the metadata, as CloudEvents' tracing extension.
    assert root.metadata["traceparent"].split("-")[1] == format(trace_id(publish_a), "032x")
    cloudevent = root.to_cloudevent()
    assert cloudevent["traceparent"] == root.metadata["traceparent"]
    assert Event.from_cloudevent(cloudevent).metadata["traceparent"] == root.metadata["traceparent"]


async def test_the_trace_follows_a_chain_on_every_transport(
    make_bus: BusFactory, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = make_bus()
    bus.observe(Tracing(provider))

    @bus.on("hop.one", name="hop_one")
    async def hop_one(event: Event) -> None:
        await bus.publish(Event(event_type="hop.two"))

    @bus.on("hop.two", name="hop_two")
    async def hop_two(event: Event) -> None:
        pass

    await bus.start()
    await bus.publish(Event(event_type="hop.one"))
    await eventually(
        lambda: "process hop_two" in by_name(exporter.get_finished_spans()), timeout=30
    )
    spans = by_name(exporter.get_finished_spans())
    chain = [spans[n][0] for n in ("publish hop.one", "process hop_one", "publish hop.two")]
    chain.append(spans["process hop_two"][0])
    assert len({trace_id(s) for s in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert parent_of(child) == span_id(parent)


async def test_each_attempt_is_a_span_with_its_outcome_and_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = traced_bus(provider)
    tries: list[int] = []

    @bus.on("flaky.job", name="flaky", retries=1, backoff=FAST)
    async def flaky(event: Event) -> None:
        tries.append(1)
        raise RuntimeError(f"failure {len(tries)}")

    @bus.on("poison.job", name="poison")
    async def poison(event: Event) -> None:
        raise Reject("not for us")

    async with bus:
        await bus.publish(Event(event_type="flaky.job"))
        await bus.publish(Event(event_type="poison.job"))
        await bus.join(timeout=10)

    spans = by_name(exporter.get_finished_spans())
    attempts = sorted(
        spans["process flaky"], key=lambda s: str((s.attributes or {})["nerve.attempt"])
    )
    assert [(s.attributes or {})["nerve.outcome"] for s in attempts] == [
        "retrying",
        "dead_lettered",
    ]
    assert [(s.attributes or {})["nerve.attempt"] for s in attempts] == [1, 2]
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
    assert attempts[0].events[0].name == "exception"
    assert (attempts[0].events[0].attributes or {})["exception.message"] == "failure 1"
    # Both attempts are children of the one publish span.
    [publish] = spans["publish flaky.job"]
    assert {parent_of(s) for s in attempts} == {span_id(publish)}
    [rejected] = spans["process poison"]
    assert (rejected.attributes or {})["nerve.outcome"] == "dead_lettered"


async def test_an_event_with_a_traceparent_continues_the_callers_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = traced_bus(provider)
    caller = provider.get_tracer("an-http-client").start_span("POST /events")
    context = caller.get_span_context()
    carrier = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-01"}
    caller.end()
    await bus.publish(Event(event_type="from.outside", metadata=carrier))
    await bus.stop()
    [publish] = by_name(exporter.get_finished_spans())["publish from.outside"]
    assert trace_id(publish) == context.trace_id
    assert parent_of(publish) == context.span_id


async def test_without_an_sdk_nothing_is_traced_nor_added() -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a global tracer provider is installed in this process")
    assert Tracing().tracer() is None
    assert current_tracer() is None
    bus = EventBus("memory://")
    seen: list[Event] = []

    @bus.on("plain.job")
    async def plain(event: Event) -> None:
        seen.append(event)

    async with bus:
        published = await bus.publish(Event(event_type="plain.job"))
        await bus.join(timeout=10)
    assert "traceparent" not in published.metadata
    assert "traceparent" not in seen[0].metadata


async def test_a_model_call_in_a_handler_is_a_child_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server = OpenAIServer()
    await server.start()
    try:
        server.then(completion("fine", prompt_tokens=12, completion_tokens=4))
        settings = LLMSettings(base_url=server.url, api_key="sk-test", model="test-model")
        bus = traced_bus(provider)
        hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]

        @bus.on("ticket.created", name="triage")
        async def triage(event: Event) -> None:
            await chat(hello, settings=settings)

        async with bus:
            await bus.publish(Event(event_type="ticket.created"))
            await bus.join(timeout=10)
    finally:
        await server.stop()
    spans = by_name(exporter.get_finished_spans())
    [handling] = spans["process triage"]
    [call] = spans["chat test-model"]
    assert call.kind is SpanKind.CLIENT
    assert parent_of(call) == span_id(handling)
    assert trace_id(call) == trace_id(handling)
    assert (
        dict(call.attributes or {}).items()
        >= {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "test-model",
            "gen_ai.response.model": "test-model",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 4,
        }.items()
    )


# across processes


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = f"redis://127.0.0.1:6379/0?prefix=trace-{uuid.uuid4().hex[:12]}&lease=2"
    yield url
    drop_redis_keys(url)


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


async def publish_root(provider: TracerProvider, url: str) -> Event:
    publisher = traced_bus(provider, url)
    root = await publisher.publish(Event(event_type="trace.a"))
    await publisher.stop()
    return root


def test_a_chain_across_two_worker_processes_on_redis_is_one_trace(
    redis_url: str, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    files = {name: tmp_path / f"{name}.jsonl" for name in ("first", "second")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NERVE_", "OTEL_"))}
    env |= {"NERVE_URL": redis_url, "PYTHONPATH": str(ROOT), "NERVE_SHUTDOWN_GRACE": "5"}
    workers = [
        subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", "worker", f"tests.apps.traced:{name}"],
            cwd=ROOT,
            env={**env, "TRACE_SPANS": str(path)},
        )
        for name, path in files.items()
    ]
    try:
        root = asyncio.run(publish_root(provider, redis_url))
        deadline = time.monotonic() + 30
        while not any(s["name"] == "process second" for s in read_spans(files["second"])):
            if time.monotonic() > deadline:
                pytest.fail("the second worker did not handle trace.b within 30s")
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    local = [span_record(s) for s in exporter.get_finished_spans()]
    first, second = read_spans(files["first"]), read_spans(files["second"])
    spans = {s["name"]: s for s in [*local, *first, *second]}
    chain = [spans[n] for n in ("publish trace.a", "process first", "publish trace.b")]
    chain.append(spans["process second"])
    assert {s["trace_id"] for s in [*local, *first, *second]} == {chain[0]["trace_id"]}
    assert chain[0]["parent_id"] is None
    for parent, child in itertools.pairwise(chain):
        assert child["parent_id"] == parent["span_id"], (parent["name"], child["name"])
    assert chain[1]["attributes"]["nerve.event.id"] == root.event_id
    assert len({chain[0]["pid"], chain[1]["pid"], chain[3]["pid"]}) == 3  # three processes
    assert chain[2]["pid"] == chain[1]["pid"]
