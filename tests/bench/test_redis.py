"""The Redis benchmark runs end to end (a smoke run; the figures live in docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from bench.redis_bus import DEFAULT_REDIS, SCENARIOS, main
from tests.conftest import TRANSPORTS

pytestmark = pytest.mark.skipif("redis" not in TRANSPORTS, reason="NERVE_TEST_TRANSPORTS")


@pytest.mark.timeout(180)  # ~25 short processes; ~15 s on an idle machine
def test_every_system_of_every_scenario_handles_every_event_once(tmp_path: Path) -> None:
    result = main(["--quick", "--json", str(tmp_path / "redis.json")])
    assert result["ok"], "a job failed or timed out"
    assert (tmp_path / "redis.json").exists()
    assert list(result["scenarios"]) == list(SCENARIOS)
    for scenario, compared in result["scenarios"].items():
        systems = compared["systems"]
        assert list(systems) == list(SCENARIOS[scenario])
        for name, s in systems.items():
            where = f"{scenario}/{name}"
            assert s["error"] is None, where
            # every event handled (publish: stored) exactly once, every delivery acked
            assert s["handled"] == s["unique"] == s["events"] > 0, where
            if scenario != "publish":
                assert s["pending_after"] == 0, where
            assert s["events_per_s"] > 0, where
            assert s["peak_rss_mib"] > 0, where
            if scenario == "latency":
                assert 0 <= s["p50_ms"] <= s["p99_ms"], where
        if scenario != "sqlite":
            assert systems["raw"]["vs_raw"] == pytest.approx(1.0)
    assert {t["target"] for t in _targets(result)} >= {"nerve >= 5x faststream"}


def test_the_benchmark_leaves_no_redis_keys_behind() -> None:
    result = main(["--quick", "--scenarios", "consume", "--events", "50", "--in-process"])
    assert result["ok"]
    client = Redis.from_url(DEFAULT_REDIS)
    try:
        left = list(client.scan_iter(match=result["config"]["key_prefix"] + "*", count=1000))
    finally:
        client.close()
    assert left == []


def _targets(result: dict[str, object]) -> list[dict[str, object]]:
    scenarios = result["scenarios"]
    assert isinstance(scenarios, dict)
    return [t for c in scenarios.values() for t in c["targets"]]
