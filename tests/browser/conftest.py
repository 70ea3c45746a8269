"""What the browser tests share: Debian's Chromium under Playwright, and ``nerve serve``.

A real ``nerve serve`` on 127.0.0.1 (SQLite) runs :mod:`tests.browser.shop`.

Chromium comes from Debian (``scripts/browser``), never from ``playwright install``. In CI
(``CI=true``) a missing browser fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

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


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[tuple[str, Path]]:
    """``nerve serve`` on the shop app; yields its base URL and the file that fixes cards."""
    fixed = directory / "cards-fixed"
    env = environment(
        f"sqlite:///{directory}/bus.db?poll=0.02",
        NERVE_API_KEYS=KEY,
        NERVE_ADMIN_API_KEYS=ADMIN_KEY,
        SHOP_CARDS_FIXED=str(fixed),
    )
    output = directory / "serve.out"
    process, base = start(env, "tests.browser.shop", output=output)
    try:
        yield base, fixed
    finally:
        if process.poll() is None:
            stop(process, output)
        server_log = output.read_text()
        assert "Traceback" not in server_log.replace("PaymentDeclined", ""), server_log[-4000:]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server of the test's own: its base URL and the file that fixes cards."""
    with serving(tmp_path) as found:
        yield found


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
