"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A real ``nerve serve`` on 127.0.0.1 (SQLite) runs :mod:`tests.browser.shop`. The test
enters the key, sees a published event appear live with its outcomes, sees a dead letter
with its error, replays it with the button once the cause is fixed and sees it handled,
opens the three-level trace of an order, and saves a screenshot
(``NERVE_DASHBOARD_SCREENSHOT`` names where; by default the test's tmp dir).

Chromium comes from Debian (``scripts/browser``), never from ``playwright install``. In CI
(``CI=true``) a missing browser fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
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
    sync_playwright,
)

from tests.cli.test_commands import environment
from tests.http.test_serve import start, stop

CHROMIUM = Path("/usr/bin/chromium")
KEY = "browser-event-key"
ADMIN_KEY = "browser-admin-key"
#: Milliseconds any expectation may take (the feed polls the log twice a second).
WAIT_MS = 10_000
#: Chromium's flags on a machine with no network but 127.0.0.1, running as root.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: bash scripts/browser installs Debian's chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``nerve serve`` on the shop app; yields its base URL and the file that fixes cards."""
    fixed = tmp_path / "cards-fixed"
    env = environment(
        f"sqlite:///{tmp_path}/bus.db?poll=0.02",
        NERVE_API_KEYS=KEY,
        NERVE_ADMIN_API_KEYS=ADMIN_KEY,
        SHOP_CARDS_FIXED=str(fixed),
    )
    output = tmp_path / "serve.out"
    process, base = start(env, "tests.browser.shop", output=output)
    try:
        yield base, fixed
    finally:
        if process.poll() is None:
            stop(process, output)
        server_log = output.read_text()
        assert "Traceback" not in server_log.replace("PaymentDeclined", ""), server_log[-4000:]


@pytest.fixture
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


def publish(base: str, event_type: str, payload: dict[str, Any]) -> str:
    response = httpx.post(
        f"{base}/events",
        json={"event_type": event_type, "payload": payload},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


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
