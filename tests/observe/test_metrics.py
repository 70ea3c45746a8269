"""The core's Prometheus metrics stay bounded whatever the traffic."""

from __future__ import annotations

from nerve import Event, EventBus
from nerve.observe.metrics import MAX_EVENT_TYPES, OTHER, Metrics


def _type_labels(text: str, name: str) -> set[str]:
    return {
        line.split('event_type="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


async def test_event_types_chosen_by_senders_do_not_grow_the_series() -> None:
    # 10,000 distinct types once made 40,000 series (3 MiB of /metrics).
    bus = EventBus("memory://")
    metrics = Metrics()
    bus.observe(metrics)
    handled: list[str] = []

    @bus.on("#", name="all")
    async def everything(event: Event) -> None:
        handled.append(event.event_type)

    async with bus:
        await bus.publish_many([Event(event_type=f"spam.t{i}") for i in range(1_000)])
        await bus.join(timeout=30)
    assert len(handled) == 1_000
    text = metrics.render().decode()
    published = _type_labels(text, "nerve_events_published_total")
    assert len(published) == MAX_EVENT_TYPES + 1
    assert OTHER in published
    assert len(_type_labels(text, "nerve_events_handled_total")) == MAX_EVENT_TYPES + 1
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nerve_events_published_total{")
    )
    assert total == 1_000  # nothing is lost from the counts, only folded


async def test_the_first_types_keep_their_own_label() -> None:
    metrics = Metrics(max_event_types=2)
    metrics.published([Event(event_type="a.one"), Event(event_type="a.two")])
    metrics.published([Event(event_type="a.three"), Event(event_type="a.one")])
    text = metrics.render().decode()
    assert _type_labels(text, "nerve_events_published_total") == {"a.one", "a.two", OTHER}
