"""The HTTP benchmark runs end to end (a smoke run; the figures live in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench.http import main
from bench.http_load import wrk_path

ALL = {
    "seed",
    "nerve",
    "seed-trivial",
    "nerve-trivial",
    "nerve-seedform",
    "batch",
    "sqlite",
    "sqlite-batch",
    "overload-seed",
    "overload-nerve",
}


@pytest.mark.timeout(180)
def test_every_scenario_runs_and_nerve_handles_what_it_accepted() -> None:
    result = main(["--quick"])
    assert result["ok"], {k: s["error"] for k, s in result["scenarios"].items()}
    assert set(result["scenarios"]) == ALL
    for key, s in result["scenarios"].items():
        assert s["error"] is None, key
        assert s["requests"] > 0, key
        assert s["events_per_s"] > 0, key
        assert 0 < s["p50_ms"] <= s["p99_ms"], key
        assert s["rss_peak_mib"] > 0, key
        assert s["accepted"] > 0, key
        if s["system"] == "nerve":
            assert s["drained_s"] is not None, f"{key}: accepted events left unhandled"
            assert s["handled"] == s["accepted"] == s["metrics_handled"], key
    assert (
        result["scenarios"]["batch"]["events_per_s"]
        > result["scenarios"]["batch"]["requests_per_s"]
    )
    overload = result["scenarios"]["overload-nerve"]
    assert overload["by_status"] is not None
    assert set(overload["by_status"]) <= {"202", "503"}
    assert overload["retry_after"] == overload["by_status"].get("503", 0)
    assert {t["target"].split(" ")[0] for t in result["targets"]} >= {"nerve", "batch"}


@pytest.mark.timeout(60)
def test_the_python_generator_stands_in_for_wrk() -> None:
    result = main(
        ["--quick", "--generator", "python", "--scenarios", "seed-trivial,overload-nerve"]
    )
    assert result["ok"], {k: s["error"] for k, s in result["scenarios"].items()}
    assert result["config"]["generator"] == "python"
    for key, s in result["scenarios"].items():
        assert s["requests"] > 0, key
        assert s["by_status"], key  # the Python generator always counts statuses
        assert s["handled"] == s["accepted"] or s["system"] == "seed", key
    overload = result["scenarios"]["overload-nerve"]
    assert overload["handled"] == overload["accepted"]


@pytest.mark.skipif(wrk_path() is None, reason="wrk is not installed")
@pytest.mark.timeout(60)
def test_wrk_runs_when_installed() -> None:
    result = main(["--quick", "--generator", "wrk", "--scenarios", "nerve-trivial"])
    assert result["ok"]
    assert result["scenarios"]["nerve-trivial"]["generator"] == "wrk"
