"""The README's example and the example apps run, and say what they should."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # our own interpreter on our own files
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_readme_example(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README has a python example"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0])
    result = run([str(script)], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ticket 7 is billing"
    assert len(lines) == 2
    assert "1 attempt(s), last error nerve.exceptions.Reject: empty ticket" in lines[1]


def test_support_desk_example() -> None:
    result = run(["examples/support_desk.py"], ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "handled: {'audit': 9, 'crm_sync': 5, 'page': 1, 'route': 4, 'triage': 4}" in out
    assert "__main__.triage: done" in out
    assert "__main__.crm_sync: done" in out
    assert "PayloadInvalid: payload does not validate as Ticket: body: Field required" in out


def test_main_job_serves_both_agents_and_ends_with_a_classified_ticket(tmp_path: Path) -> None:
    """What ``bash scripts/demo`` runs, on its own SQLite file and a free port: the refund
    agent with auto-approve first, then the served agents."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NERVE_", "OPENAI_"))},
        "NERVE_URL": f"sqlite:///{tmp_path}/demo.db",
    }
    result = subprocess.run(  # our own interpreter on our own files
        [sys.executable, "examples/demo.py", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    refunds = out.split("== The support and deployment agents")[0]  # the refund agent's part
    assert "refund R-1001 approved (by policy)" in refunds
    assert "refund R-1002 approved (by a person)" in refunds
    assert refunds.count("(console.follow_ups: scheduled)") == 2
    assert "202" in out
    fix = json.loads(out.split("<- deployment.fix.suggested")[1].split("\n", 1)[1].split("\n\n")[0])
    assert fix["service"] == "checkout-api"
    assert "ModuleNotFoundError" in fix["diagnosis"]
    assert fix["suggestions"]
    last = out.rstrip().split("<- support.ticket.classified")[-1].split("\n", 1)[1]
    answer = json.loads(last)  # the output ends with the classified ticket
    assert answer["ticket_id"] == 4521
    assert answer["category"] == "billing"
    assert "refund" in answer["reply"]
