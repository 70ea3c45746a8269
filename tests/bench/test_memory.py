"""The benchmark runs end to end (a smoke run; the figures live in docs/benchmarks.md)."""

from __future__ import annotations

from bench.memory_bus import main


def test_the_benchmark_runs_both_sides_of_every_scenario() -> None:
    result = main(["--quick"])
    assert result["ok"], "a side failed or timed out"
    assert set(result["scenarios"]) == {"1", "2", "3a", "3b"}
    for scenario in result["scenarios"].values():
        assert scenario["toy"]["error"] is None
        assert scenario["nerve"]["error"] is None
        assert scenario["nerve"]["handled"] >= scenario["toy"]["handled"] > 0
    # Even at smoke sizes, concurrent handling beats the toy's one-at-a-time by far.
    assert result["scenarios"]["1"]["ratio"] > 10
