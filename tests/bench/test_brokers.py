"""The cross-transport benchmark runs end to end (a smoke run; figures in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import pytest

from bench.brokers import SCENARIOS, main
from tests.conftest import TRANSPORTS

pytestmark = pytest.mark.skipif("nats" not in TRANSPORTS, reason="NERVE_TEST_TRANSPORTS")

SMALL = ["--quick", "--events", "200", "--duration", "0.4", "--timeout", "20"]


@pytest.mark.timeout(60)
def test_every_system_handles_every_event_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "brokers.json"
    result = main(
        [*SMALL, "--transports", "memory,sqlite,nats", "--in-process", "--json", str(out)]
    )
    assert out.exists()
    assert result["ok"], [r["error"] or r["cleanup"] for r in result["rows"]]
    assert result["unavailable"] == {}
    seen = {(r["transport"], r["scenario"], r["system"]) for r in result["rows"]}
    expected = {
        ("memory", "throughput", "nerve"),
        ("memory", "latency", "nerve"),
        *(
            (transport, scenario, system)
            for transport in ("sqlite", "nats")
            for scenario in SCENARIOS
            for system in ("nerve", "nerve-memstore")
        ),
        *(("nats", scenario, "faststream") for scenario in SCENARIOS),
    }
    assert seen == expected
    for r in result["rows"]:
        where = f"{r['transport']}/{r['scenario']}/{r['system']}"
        assert r["error"] is None, where
        assert r["cleanup"] is None, where
        assert r["handled"] == r["unique"] == r["events"] > 0, where
        assert r["events_per_s"] > 0, where
        if r["scenario"] == "latency":
            assert 0 <= r["p50_ms"] <= r["p99_ms"], where
        if r["transport"] == "nats" and r["scenario"] != "latency":
            assert r["vs_faststream"] > 0, where
    assert [s["transport"] for s in result["summary"]] == ["nats"]
    assert asyncio.run(_streams_named(result["config"]["prefix"])) == []


@pytest.mark.timeout(60)
def test_a_job_runs_in_its_own_process_and_a_missing_broker_is_reported() -> None:
    result = main(
        [
            *SMALL,
            "--transports",
            "memory,amqp",
            "--scenarios",
            "throughput",
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/",  # nothing listens on port 1
        ]
    )
    rows = {(r["transport"], r["system"]): r for r in result["rows"]}
    memory = rows["memory", "nerve"]
    assert memory["error"] is None
    assert memory["handled"] == memory["unique"] == memory["events"]
    assert memory["peak_rss_mib"] > 0  # measured in the job's own process
    assert "127.0.0.1:1" in result["unavailable"]["amqp"]
    for system in ("nerve", "nerve-memstore", "faststream"):
        assert rows["amqp", system]["error"].startswith("unavailable: ")
    assert result["ok"]  # what could run ran fine


async def _streams_named(prefix: str) -> list[str]:
    client = await nats.connect("nats://127.0.0.1:4222", max_reconnect_attempts=0)
    try:
        names: list[Any] = await client.jetstream().streams_info()
        found = [s.config.name or "" for s in names]
        return [n for n in found if n.removeprefix("KV_").startswith(prefix)]  # store buckets too
    finally:
        await client.close()
