"""The flow benchmark runs end to end (a smoke run; the figures live in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench.flow import CONTROLS, main


@pytest.mark.timeout(120)
def test_every_control_handles_every_event_on_memory_and_sqlite() -> None:
    result = main(["--stores", "memory,sqlite", "--events", "200"])
    assert result["ok"]
    rows = {(r["store"], r["control"]): r for r in result["rows"]}
    assert len(rows) == 2 * len(CONTROLS)
    for (store, control), r in rows.items():
        assert r["skipped"] is None, (store, control)
        assert r["error"] is None, (store, control, r["error"])
        assert r["handled"] == 200, (store, control)
        assert r["per_s"] > 0
        assert r["ratio"] > 0
        assert r["p50_ms"] > 0
    for store in ("memory", "sqlite"):
        assert rows[store, "none"]["ratio"] == 1.0
        assert rows[store, "throttle"]["deferred"] == 0  # the throttle does not bind
        assert rows[store, "rate_limit"]["deferred"] == 0
        assert rows[store, "debounce"]["deferred"] == 200  # each event held back once
        assert rows[store, "debounce"]["p50_ms"] >= 50  # its quiet period
