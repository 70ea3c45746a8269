"""The dashboard's approvals and waiting runs in a real browser (Chromium, headless).

A real ``nerve serve`` of the approving app (:mod:`tests.apps.approving`) on ``memory://``:
the server and its bus are one process, so the run that waits is the server's own. The
test sees two refunds wait (in the approvals panel, the waiting runs and the feed), signs
with a name, approves one with a comment and rejects the other by clicking, and sees each
run resume with its decision: the panels empty, the runs done, the app's log written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, expect

from tests.browser.conftest import ADMIN_KEY, KEY, WAIT_MS, publish
from tests.cli.test_commands import environment, lines
from tests.cli.test_commands import wait_for as wait_until
from tests.http.test_serve import start, stop


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``nerve serve`` of the approving app: its base URL and the file of its decisions."""
    log = tmp_path / "decided.log"
    env = environment(
        "memory://",
        NERVE_API_KEYS=KEY,
        NERVE_ADMIN_API_KEYS=ADMIN_KEY,
        APPROVING_LOG=str(log),
        NERVE_HISTORY="true",  # off by default on memory://: the feed reads the log
    )
    output = tmp_path / "serve.out"
    process, base = start(env, "tests.apps.approving", output=output)
    try:
        yield base, log
    finally:
        if process.poll() is None:
            stop(process, output)
        assert "Traceback" not in output.read_text(), output.read_text()[-4000:]


@pytest.mark.timeout(120)
def test_approve_and_reject_by_clicking_resume_the_waiting_runs(
    server: tuple[str, Path], browser: Browser, tmp_path: Path
) -> None:
    base, log = server
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    problems: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    def crashed(error: Error) -> None:
        problems.append(str(error))

    page.on("console", logged)
    page.on("pageerror", crashed)
    try:
        big = publish(base, "refund.requested", {"id": "r-1", "amount": 900})
        small = publish(base, "refund.requested", {"id": "r-2", "amount": 40})
        page.goto(f"{base}/ui")
        page.fill("#key", ADMIN_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#live")).to_have_attribute("data-state", "on")

        # Both runs wait: listed as approvals, as waiting runs, and waiting in the feed.
        first = page.locator(f'#approvals tr[data-event-id="{big}"]')
        second = page.locator(f'#approvals tr[data-event-id="{small}"]')
        expect(first).to_contain_text("refund.approve")
        expect(first).to_contain_text('"amount":900')
        expect(first).to_contain_text("refunds")
        expect(second).to_be_visible()
        expect(page.locator("#approvals-count")).to_have_text("2")
        waits = page.locator('#waits tr[data-awaited="approval.decided"]')
        expect(waits).to_have_count(2)
        expect(waits.first).to_contain_text("payload.approval_id")
        expect(page.locator("#waits-count")).to_have_text("2")
        expect(
            page.locator(f'#feed tr[data-event-id="{big}"] .badge[data-state="waiting"]')
        ).to_be_visible()

        shot = Path(os.environ.get("NERVE_APPROVALS_SCREENSHOT") or tmp_path / "approvals.png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        # Sign, comment, approve the big one: the row goes, the run resumes approved.
        page.fill("#by", "ann")
        first.locator("input.comment").fill("checked the receipt")
        first.get_by_role("button", name="Approve").click()
        expect(page.locator("#approvals-said")).to_have_text("refund.approve: approved by ann.")
        expect(first).to_have_count(0)
        wait_until(lambda: lines(log) == ["r-1 approved ann checked the receipt"], 30, "r-1")
        expect(
            page.locator(f'#feed tr[data-event-id="{big}"] .badge[data-state="done"]')
        ).to_be_visible()

        # Reject the other without a comment: the panels empty.
        second.get_by_role("button", name="Reject").click()
        expect(page.locator("#approvals-said")).to_have_text("refund.approve: rejected by ann.")
        expect(page.locator("#approvals-empty")).to_be_visible()
        expect(page.locator("#approvals-count")).to_have_text("0")
        expect(page.locator("#waits-empty")).to_be_visible()
        wait_until(lambda: len(lines(log)) == 2, 30, "r-2")
        assert lines(log)[1] == "r-2 rejected ann None"

        auth = {"Authorization": f"Bearer {KEY}"}
        for event_id in (big, small):
            status = httpx.get(f"{base}/events/{event_id}", headers=auth).json()
            assert status["subscriptions"] == {"refunds": "done"}
        # The name is kept for the next visit (not a secret: localStorage).
        page.reload()
        expect(page.locator("#by")).to_have_value("ann")
    finally:
        context.close()
    assert problems == []
