"""The dashboard's layout at common widths: nothing the operator acts on is off-screen.

At laptop widths (1366 and 1440 px) and on a phone (390 px) the page must not scroll
sideways, and each subscription's and event's key facts must be on screen: the outcome
state of each event, the FAILED, DEAD and LAG figures of each subscription, the last error
of a dead letter and its **Replay** button, and at 390 px the header's key form. Each is
checked with its bounding box against the viewport's width and against every box that
could clip it (a panel scrolling sideways hides what is past its edge just as well).

One ``nerve serve`` (:mod:`tests.browser.shop`) serves the three widths: a few orders and
two dead letters whose errors carry a long unbreakable order reference (one a URL), one of
them of a subscription with a dotted name, as real ones are. Each test saves a
full-page screenshot in its tmp dir and names it in its assertion messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import ADMIN_KEY, WAIT_MS, publish, serving

#: A reference as payment providers write them: long, and with nowhere to break a line.
REFERENCE = "EU-2024-11-26-7f3c9a2e4b1d4c0f9e8a6b5c4d3e2f1a-retail-web-checkout"
#: Orders handled; each sets off order.billed and order.shipped.
ORDERS = 3
SUBSCRIPTIONS = ("audit", "billing", "orders.risk.screening", "shipping")
#: The subscriptions table's columns, as the page orders them.
FAILED, DEAD, LAG = 5, 6, 7

#: Where each box is, what clips it, and whether its own content overflows it.
PLACEMENT = """(node) => {
  const box = node.getBoundingClientRect();
  const clippedBy = [];
  for (let a = node.parentElement; a && a !== document.body; a = a.parentElement) {
    if (getComputedStyle(a).overflowX === "visible") continue;
    const left = a.getBoundingClientRect().left + a.clientLeft;
    if (box.left < left - 1 || box.right > left + a.clientWidth + 1) {
      clippedBy.push(a.tagName.toLowerCase() + (a.id ? "#" + a.id : "") +
        (a.className ? "." + String(a.className).split(" ").join(".") : ""));
    }
  }
  const inline = getComputedStyle(node).display === "inline";
  return {
    left: box.left,
    right: box.right,
    width: box.width,
    height: box.height,
    clippedBy,
    overflows: !inline && node.scrollWidth > node.clientWidth + 1,
  };
}"""

#: The document's width against the viewport's, and each panel that scrolls sideways.
WIDTHS = """() => ({
  document: document.documentElement.scrollWidth,
  body: document.body.scrollWidth,
  viewport: document.documentElement.clientWidth,
  panels: [...document.querySelectorAll(".scroll")]
    .filter((s) => s.scrollWidth > s.clientWidth + 1)
    .map((s) => `${s.closest("section").getAttribute("aria-labelledby")}: ` +
      `${s.scrollWidth} px of content in ${s.clientWidth} px`),
})"""


@dataclass(frozen=True)
class Shop:
    base: str
    orders: tuple[str, ...]
    #: Dead letters: event id -> the subscription that dead-lettered it.
    dead: dict[str, str]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """One server for the three widths: handled orders and two dead letters."""
    with serving(tmp_path_factory.mktemp("layout")) as (base, _):
        orders = tuple(
            publish(base, "order.placed", {"order": f"{REFERENCE}-{n}", "card": "ok"})
            for n in range(ORDERS)
        )
        declined = publish(base, "order.placed", {"order": REFERENCE, "card": "declined"})
        flagged = publish(base, "order.placed", {"order": REFERENCE, "card": "flagged"})
        yield Shop(base, orders, {declined: "billing", flagged: "orders.risk.screening"})


def connect(page: Page, shop: Shop) -> None:
    """Open the page, enter the key, wait for every row the checks need, open a trace."""
    page.goto(f"{shop.base}/ui")
    page.fill("#key", ADMIN_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#live")).to_have_attribute("data-state", "on")
    shipped = page.locator('#feed tr[data-event-type="order.shipped"]')
    expect(shipped).to_have_count(ORDERS + 1)  # the flagged order is billed and shipped
    for order in shop.orders:
        expect(outcome(page, order, "billing")).to_have_attribute("data-state", "done")
    for event_id, subscription in shop.dead.items():
        expect(outcome(page, event_id, subscription)).to_have_attribute(
            "data-state", "dead_lettered"
        )
        row = page.locator(f'#dlq tr[data-event-id="{event_id}"]')
        expect(row).to_contain_text(REFERENCE)
        expect(row).to_contain_text(subscription)
    expect(page.locator("#subscriptions tbody tr")).to_have_count(len(SUBSCRIPTIONS))
    for subscription in shop.dead.values():
        row = page.locator(f'#subscriptions tr[data-subscription="{subscription}"]')
        expect(row.locator("td").nth(DEAD)).to_have_text("1")
    # The trace of the first order, three levels deep, so its panel is measured too.
    page.locator(f'#feed tr[data-event-id="{shop.orders[0]}"] td:nth-child(4) a').click()
    expect(page.locator("#tree li li li")).to_contain_text("order.shipped")
    # The fresh-row highlight fades in 1.2 s; the screenshot should show the settled page.
    page.wait_for_timeout(1500)


def outcome(page: Page, event_id: str, subscription: str) -> Locator:
    return page.locator(
        f'#feed tr[data-event-id="{event_id}"] .badge[data-subscription="{subscription}"]'
    )


def key_facts(page: Page, shop: Shop) -> dict[str, Locator]:
    """What must be on screen, by a name for the messages."""
    facts: dict[str, Locator] = {
        "the live indicator": page.locator("#live"),
        "the key box": page.locator("#key"),
        "Connect": page.locator("#key-form button[type=submit]"),
        "Forget key": page.locator("#forget"),
    }
    for event_id in (*shop.orders, *shop.dead):
        row = page.locator(f'#feed tr[data-event-id="{event_id}"]')
        facts[f"the type of {event_id}"] = row.locator(".type")
        for subscription in ("audit", "billing", "orders.risk.screening"):
            facts[f"the {subscription} state of {event_id}"] = outcome(page, event_id, subscription)
    for name in SUBSCRIPTIONS:
        cells = page.locator(f'#subscriptions tr[data-subscription="{name}"] td')
        facts[f"the name of {name}"] = cells.nth(0)
        for column, label in ((FAILED, "FAILED"), (DEAD, "DEAD"), (LAG, "LAG")):
            facts[f"{label} of {name}"] = cells.nth(column)
    for event_id, subscription in shop.dead.items():
        dead = page.locator(f'#dlq tr[data-event-id="{event_id}"]')
        which = f"the dead letter of {subscription}"
        facts[f"{which}: its event type"] = dead.locator(".type")
        facts[f"{which}: its last error"] = dead.locator(".error")
        facts[f"{which}: its error type"] = dead.locator(".error-type")
        facts[f"{which}: its error message"] = dead.locator(".error-msg")
        facts[f"{which}: Replay"] = dead.get_by_role("button", name="Replay")
    return facts


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("width", "height"), [(1366, 768), (1440, 900), (390, 844)], ids=lambda n: str(n)
)
def test_key_facts_and_replay_are_on_screen_without_scrolling_sideways(
    shop: Shop, browser: Browser, tmp_path: Path, width: int, height: int
) -> None:
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        connect(page, shop)
        shot = tmp_path / f"dashboard-{width}x{height}.png"
        page.screenshot(path=str(shot), full_page=True)
        see = f"at {width}x{height} (screenshot: {shot})"

        widths: dict[str, Any] = page.evaluate(WIDTHS)
        viewport = widths["viewport"]
        assert 0 < viewport <= width, widths
        problems = [f"a panel scrolls sideways: {panel}" for panel in widths["panels"]]
        if max(widths["document"], widths["body"]) > viewport:
            problems.append(f"the page scrolls sideways: {widths}")
        facts = key_facts(page, shop)
        for name, locator in facts.items():
            expect(locator, f"{name} {see}").to_have_count(1)
            if not locator.is_visible():
                problems.append(f"{name}: not visible")
                continue
            box: dict[str, Any] = locator.evaluate(PLACEMENT)
            where = f"{box['left']:.0f}..{box['right']:.0f} px of {viewport}"
            if box["width"] <= 0 or box["height"] <= 0:
                problems.append(f"{name}: an empty box {box}")
            if box["left"] < 0 or box["right"] > viewport + 0.5:
                problems.append(f"{name}: outside the viewport ({where})")
            if box["clippedBy"]:
                problems.append(f"{name}: clipped by {box['clippedBy']} ({where})")
            if box["overflows"]:
                problems.append(f"{name}: its content overflows it ({where})")
        assert problems == [], f"{see}:\n" + "\n".join(problems)

        # Each Replay takes a click where it is: once scrolled to, nothing covers it.
        for event_id in shop.dead:
            replay = page.locator(f'#dlq tr[data-event-id="{event_id}"]').get_by_role(
                "button", name="Replay"
            )
            replay.click(trial=True, timeout=WAIT_MS)
        assert page.evaluate("window.scrollX") == 0, f"Replay needed a sideways scroll {see}"
    finally:
        context.close()
