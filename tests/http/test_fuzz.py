"""A bounded schemathesis run against a real ``nerve serve``: no 5xx, answers match the schema.

Every check schemathesis has runs (server errors, status codes, content types, response
schemas and headers, negative data rejected, positive data accepted), over every
operation of the OpenAPI schema, with the webhooks configured so their routes are
reached. ``NERVE_FUZZ_EXAMPLES`` and ``NERVE_FUZZ_SEED`` widen or vary the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_commands import ROOT, environment
from tests.http.test_serve import start, stop

KEY = "fuzz-key"


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    env = environment(
        f"sqlite:///{tmp_path}/bus.db",
        NERVE_API_KEYS=KEY,
        NERVE_GITHUB_WEBHOOK_SECRET="fuzz-github",
        NERVE_STRIPE_WEBHOOK_SECRET="whsec_fuzz",
        NERVE_WEBHOOK_SECRETS='{"acme": "whsec_ZnV6ei1hY21lLXNlY3JldA=="}',
        SLOW_SECONDS="0",
    )
    output = tmp_path / "serve.out"
    process, base = start(env, "tests.apps.slow", output=output)
    try:
        examples = os.environ.get("NERVE_FUZZ_EXAMPLES", "40")
        seed = os.environ.get("NERVE_FUZZ_SEED", "20261130")
        result = subprocess.run(  # noqa: S603  # schemathesis from our venv
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                examples,
                "--seed",
                seed,
                "--request-timeout",
                "10",
                "-H",
                f"Authorization: Bearer {KEY}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        report = result.stdout + result.stderr
        assert result.returncode == 0, report[-6000:]
        assert "passed" in report
        assert "Tested: " in report
    finally:
        stop(process, output)
    server_log = output.read_text()
    assert "Traceback" not in server_log, server_log[-4000:]
