"""The waits benchmark runs end to end (a smoke run; the figures live in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench.waits import main


@pytest.mark.timeout(120)
def test_every_waiting_run_is_resumed_or_times_out_on_sqlite() -> None:
    result = main(["--runs", "300", "--store", "sqlite", "--resumes", "5", "--lookups", "10"])
    assert result["ok"]
    s = result["stores"]["sqlite"]
    assert s["skipped"] is None
    assert s["error"] is None
    assert s["bytes_per_wait"] > 0
    assert s["lookup_found"] == 10  # each lookup finds exactly its run's wait
    assert s["resumes"] == 5
    assert 0 < s["resume_p50_ms"] <= s["resume_p99_ms"]
    # every run not resumed by its event was resumed by its timeout
    assert s["timed_out"] == s["timeout_expected"] == 300 - 5
