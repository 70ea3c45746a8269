"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A real ``nerve serve`` on 127.0.0.1 (SQLite) runs :mod:`tests.browser.shop`. The test
enters the key, sees a published event appear live with its outcomes, sees a dead letter
with its error, replays it with the button once the cause is fixed and sees it handled,
opens the three-level trace of an order, and saves a screenshot
(``NERVE_DASHBOARD_SCREENSHOT`` names where; by default the test's tmp dir).

The server and the browser are :mod:`tests.browser.conftest`'s; the layout at laptop and
phone widths is :mod:`tests.browser.test_layout`'s.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Request,
    expect,
)

from tests.browser.conftest import ADMIN_KEY, CHROMIUM, KEY, WAIT_MS, publish


def badge(page: Page, event_id: str, subscription: str, state: str) -> Any:
    return page.locator(
        f'#feed tr[data-event-id="{event_id}"] '
        f'.badge[data-subscription="{subscription}"][data-state="{state}"]'
    )


@pytest.mark.timeout(120)
def test_dashboard_shows_events_live_replays_a_dead_letter_and_traces_a_chain(
    server: tuple[str, Path], browser: Browser, tmp_path: Path
) -> None:
    base, fixed = server
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    page = context.new_page()
    requests: list[Request] = []
    problems: list[str] = []

    def sent(request: Request) -> None:
        requests.append(request)

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    def crashed(error: Error) -> None:
        problems.append(str(error))

    page.on("request", sent)
    page.on("console", logged)
    page.on("pageerror", crashed)
    try:
        page.goto(f"{base}/ui")
        expect(page.locator("#notice")).to_contain_text("Enter an admin API key")
        page.fill("#key", ADMIN_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#live")).to_have_attribute("data-state", "on")

        # A published event appears live, then its outcomes: billing, then its chain.
        order = publish(base, "order.placed", {"order": 1001, "card": "ok"})
        row = page.locator(f'#feed tr[data-event-id="{order}"]')
        expect(row).to_contain_text("order.placed")
        expect(badge(page, order, "billing", "done")).to_be_visible()
        expect(badge(page, order, "audit", "done")).to_be_visible()
        expect(page.locator('#feed tr[data-event-type="order.shipped"]')).to_have_count(1)

        # A declined card is dead-lettered: the DLQ shows it with its error.
        declined = publish(base, "order.placed", {"order": 1002, "card": "declined"})
        expect(badge(page, declined, "billing", "dead_lettered")).to_be_visible()
        dead = page.locator(f'#dlq tr[data-event-id="{declined}"]')
        expect(dead).to_contain_text("PaymentDeclined")
        expect(dead).to_contain_text("card declined for order 1002")
        expect(dead).to_contain_text("billing")
        for n in range(1003, 1006):
            publish(base, "order.placed", {"order": n, "card": "ok"})
        expect(page.locator('#feed tr[data-event-type="order.shipped"]')).to_have_count(4)
        billing = page.locator('#subscriptions tr[data-subscription="billing"]')
        expect(billing.locator("td").nth(1)).to_have_text("order.placed")
        expect(billing.locator("td").nth(4)).to_have_text("4")  # handled
        expect(billing.locator("td").nth(6)).to_have_text("1")  # dead-lettered

        # The trace of the first order: placed -> billed -> shipped, three levels.
        row.locator("td:nth-child(4) a").click()
        tree = page.locator("#tree")
        level3 = tree.locator(f'li[data-event-id="{order}"] > ul > li > ul > li')
        expect(level3).to_contain_text("order.shipped")
        expect(tree.locator(f'li[data-event-id="{order}"] > ul > li').first).to_contain_text(
            "order.billed"
        )
        expect(page.locator("#correlation")).to_have_value(order)
        expect(page.locator("#dlq-count")).to_have_text("1")

        shot = Path(os.environ.get("NERVE_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        # Fix the cause, replay with the button: the row leaves the DLQ, the event is handled.
        fixed.touch()
        dead.get_by_role("button", name="Replay").click()
        expect(dead).to_have_count(0)
        expect(badge(page, declined, "billing", "done")).to_be_visible()
        expect(page.locator("#dlq-empty")).to_be_visible()
        status = httpx.get(
            f"{base}/events/{declined}", headers={"Authorization": f"Bearer {KEY}"}
        ).json()
        assert status["subscriptions"]["billing"] == "done"
    finally:
        context.close()

    assert problems == []
    # The key travels in headers only: never in a URL (logs, history, proxies keep those).
    assert requests
    assert all(ADMIN_KEY not in r.url for r in requests)
    feed = [r for r in requests if "/ui/api/feed" in r.url]
    assert feed
    assert feed[0].headers.get("authorization") == f"Bearer {ADMIN_KEY}"


def test_chromium_is_installed_in_ci() -> None:
    """CI installs the browser (scripts/browser); this fails loudly there if it did not."""
    if os.environ.get("CI") != "true":
        pytest.skip("only in CI (CI=true)")
    assert CHROMIUM.exists(), "scripts/browser did not install /usr/bin/chromium"
    version = subprocess.run(  # noqa: S603  # a fixed path
        [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "Chromium" in version.stdout
