"""The README's example and the example apps run, and say what they should."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
