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
    context = await browser.new_context(viewport=WIDE, accept_downloads=True)
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
