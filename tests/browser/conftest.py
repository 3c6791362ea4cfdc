"""The billing console in Debian's Chromium, driven by Playwright, against a real billing service.

Billing runs in-process as in the integration tests (its own database and queue prefix, events
through the real broker), and is also served by uvicorn on a free port of 127.0.0.1, because a
browser needs a real socket. Every request the page makes, every dialog it opens and every
error it logs is recorded, so a test can say none of them should have happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    ViewportSize,
    async_playwright,
)

from tests.support.databases import ServiceDatabases
from tests.support.stack import Stack, start_billing

CHROMIUM = Path("/usr/bin/chromium")
# Debian's build: Playwright's own browser download is neither needed nor wanted.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    "--mute-audio",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
# axe-core, from tests/browser/package-lock.json (`make browser-packages`): the test loads
# it into the page; billing never serves it.
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
# The locale the page formats money in, unless a test says otherwise.
LOCALE = "en-US"
ABANDONED_AFTER_HOURS = 24.0
WIDE = ViewportSize(width=1280, height=900)
NARROW = ViewportSize(width=390, height=844)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` (its lifespan already running) on a free port of 127.0.0.1, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        sock.close()


@dataclass
class Console:
    """The billing service, in-process for the test and on a port for the browser."""

    stack: Stack
    base_url: str

    def url(self, jwt: str) -> str:
        return f"{self.base_url}/billing#token={jwt}"

    async def api(self, company: UUID, path: str, **params: Any) -> Any:
        return await self.stack.billing_json(company, path, **params)


@pytest.fixture
async def console(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Console]:
    async with start_billing(
        dbs, prefix, abandoned_draft_after_hours=ABANDONED_AFTER_HOURS
    ) as stack:
        app = stack.apps["billing"]
        async with serving(app) as base_url:
            yield Console(stack, base_url)


def browser_env() -> dict[str, str | float | bool]:
    """The environment without a preloaded fake clock (faketime): Chromium does not start
    under one. The page gets the tests' clock from Playwright instead (`watched`)."""
    hidden = {"LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"}
    return {name: value for name, value in os.environ.items() if name not in hidden}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():  # noqa: ASYNC240 (a stat, once per test)
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(apt-get install -y chromium chromium-driver)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=browser_env()
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """A page and what it did: request URLs, dialogs opened, errors logged."""

    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def testid(self, name: str) -> Any:
        return self.page.get_by_test_id(name)

    async def text(self, name: str) -> str:
        value: str = await self.testid(name).inner_text()
        return value.strip()

    async def ready(self) -> None:
        """Wait until the page has loaded every part (or said why it could not)."""
        await self.page.wait_for_selector("body[data-ready=true]", timeout=15_000)

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def tests_clock() -> bool:
    """Whether the page runs on the tests' clock; a module that times the page itself with
    the browser's `performance` entries (which the fake clock replaces) says False."""
    return True


@pytest.fixture
async def watched(browser: Browser, tests_clock: bool) -> AsyncIterator[Watched]:
    async with watching(browser, LOCALE, tests_clock=tests_clock) as seen:
        yield seen


@asynccontextmanager
async def watching(
    browser: Browser, locale: str, *, tests_clock: bool = True
) -> AsyncIterator[Watched]:
    """A page of a fresh context whose browser speaks `locale`."""
    context = await browser.new_context(viewport=WIDE, accept_downloads=True, locale=locale)
    if tests_clock:
        # The page's clock starts at the tests' own and flows from there: the console and
        # the test agree on today and this month, whatever clock the tests run with.
        await context.clock.install(time=datetime.now(UTC))
    page = await context.new_page()
    seen = Watched(page)

    def on_request(request: Request) -> None:
        seen.requests.append(request.url)

    async def on_dialog(dialog: Dialog) -> None:
        seen.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        # A refused request is logged by the browser itself; the page says what it means.
        if message.type == "error" and "Failed to load resource" not in message.text:
            seen.errors.append(message.text)

    page.on("request", on_request)
    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
    try:
        yield seen
    finally:
        await context.close()


# ---- what a person gets: accessible, reachable by keyboard, readable on a phone ----------


async def serious_accessibility_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations of the page as shown (the test loads axe)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make browser-packages` (npm ci in tests/browser)")
    # Evaluated by the browser's debugger, which the page's CSP does not govern: the page
    # itself still runs only its own script.
    await page.evaluate(AXE.read_text())
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']}: "
        + "; ".join(node["target"][0] for node in violation["nodes"][:5])
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


# Every control a person can use: what Tab must reach (disabled ones are not usable).
CONTROLS = """() => {
  const selector = 'a[href], button:not([disabled]), select:not([disabled]), input, [tabindex]';
  const shown = (element) => element.getClientRects().length > 0
    && getComputedStyle(element).visibility !== 'hidden';
  const found = [...document.querySelectorAll(selector)]
    .filter((element) => element.tabIndex >= 0 && shown(element));
  found.forEach((element, index) => element.setAttribute('data-control', String(index)));
  return found.map((element) =>
    `${element.tagName.toLowerCase()} ${element.id || element.textContent.trim().slice(0, 30)}`);
}"""


async def controls_tab_misses(page: Page) -> list[str]:
    """The controls that pressing Tab from the top of the page never reaches."""
    controls: list[str] = await page.evaluate(CONTROLS)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await page.evaluate("window.scrollTo(0, 0)")
    reached: set[int] = set()
    for _ in range(len(controls) + 3):
        await page.keyboard.press("Tab")
        index = await page.evaluate(
            "document.activeElement && document.activeElement.getAttribute('data-control')"
        )
        if index is not None:
            reached.add(int(index))
    return [name for index, name in enumerate(controls) if index not in reached]


async def narrow_overflow(page: Page) -> list[str]:
    """What sticks out of a narrow viewport (the page itself scrolls sideways): none, to read."""
    found: list[str] = await page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const out = [];
          if (document.documentElement.scrollWidth > width) out.push('the page');
          for (const scroller of document.querySelectorAll('.scroll')) {
            const shown = scroller.getClientRects().length > 0;
            if (shown && scroller.scrollWidth > scroller.clientWidth + 1) {
              out.push(`${scroller.getAttribute('aria-label') || 'a table'} scrolls sideways`);
            }
          }
          for (const element of document.querySelectorAll('h1, h2, h3, p, dt, dd, .job-title')) {
            const box = element.getBoundingClientRect();
            const scroller = element.closest('.scroll');
            if (!scroller && box.width > 0 && (box.left < 0 || box.right > width + 1)) {
              out.push(element.id || element.textContent.trim().slice(0, 40));
            }
          }
          return out;
        }"""
    )
    return found


# An amount as the API writes it, somewhere in a page's text: e.g. 0.3000, 1,234.5000 or 0,3000.
AMOUNT = re.compile(r"-?\d[\d.,\u00a0\u202f]*[.,]\d{4}(?!\d)")


async def amounts_shown(page: Page) -> list[dict[str, str]]:
    """Every element showing an API amount: its text, the amount and the currency it carries."""
    found: list[dict[str, str]] = await page.eval_on_selector_all(
        "[data-amount]",
        """(elements) => elements
          .filter((element) => element.getClientRects().length > 0)
          .map((element) => ({
            text: element.textContent,
            amount: element.getAttribute('data-amount'),
            currency: element.getAttribute('data-currency') || '',
          }))""",
    )
    return found


def money_format(locale: str, currency: str) -> Any:
    """How the browser writes an amount in `locale` (the formats the tests use)."""

    def written(amount: str) -> str:
        negative = amount.startswith("-")
        whole, fraction = amount.lstrip("-").split(".")
        grouped = f"{int(whole):,}"
        if (locale, currency) == ("en-US", "USD"):
            return f"{'-' if negative else ''}${grouped}.{fraction}"
        if (locale, currency) == ("de-DE", "EUR"):
            return f"{'-' if negative else ''}{grouped.replace(',', '.')},{fraction}\u00a0€"
        raise AssertionError(f"no expected format for {locale} {currency}")

    return written
