"""A closed month's statement as a printable page, printed by Chromium itself to an A4 PDF.

The company bills in euros and its finance user's browser speaks German: every amount on
the page and in the PDF is written as that locale writes euros, with its 4 places. The
PDF's text (`pdftotext`, Debian's poppler-utils) must hold every figure of the API's
statement; its first page is saved as a PNG (`pdftoppm`) to look at.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from playwright.async_api import Browser

from tests.browser.conftest import (
    NARROW,
    SCREENSHOTS,
    WIDE,
    Console,
    Watched,
    amounts_shown,
    controls_tab_misses,
    money_format,
    narrow_overflow,
    serious_accessibility_violations,
    serving,
    watching,
)
from tests.integration.billing.conftest import record
from tests.support.auth import bearer, token
from tests.support.databases import ServiceDatabases
from tests.support.events import generated, job_created
from tests.support.stack import start_billing

pytestmark = pytest.mark.browser

LOCALE = "de-DE"
eur = money_format(LOCALE, "EUR")
PERIOD = "2025-03"
MARCH = datetime(2025, 3, 1, tzinfo=UTC)
JOBS = 24  # more lines than the console shows at once (20): the printed page has them all
TITLES = {
    0: "<img src=x onerror=alert(1)>",
    1: "Entwickler:in Backend (Köln), Vollzeit",
    2: "Senior data engineer for the payments platform, Lisbon or remote, four days a week",
}
UNTITLED = 3
CREDITS = "100.0000"  # prepaid, drawn by March's usage before anything is invoiced
OPERATOR = bearer(uuid.uuid4(), roles=["platform:admin"], user="ops@example.com")


def title_of(index: int) -> str | None:
    if index == UNTITLED:
        return None
    return TITLES.get(index, f"Recruiter {index}")


@pytest.fixture
async def euro_console(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Console]:
    async with start_billing(dbs, prefix, billing_currency="EUR") as stack:
        app = stack.apps["billing"]
        async with serving(app) as base_url:
            yield Console(stack, base_url)


@pytest.fixture
async def german(browser: Browser) -> AsyncIterator[Watched]:
    async with watching(browser, LOCALE) as seen:
        yield seen


async def closed_march(console: Console, company: UUID) -> dict[str, Any]:
    """March 2025 of a company: jobs, a draft never saved, prepaid credits drawn, two
    adjustments; then closed."""
    stack = console.stack
    jobs = [job_created(company, title=title_of(index), at=MARCH) for index in range(JOBS)]
    await record(stack, *jobs)
    response = await stack.billing.put(
        f"/api/billing/admin/companies/{company}/credit-mode",
        json={"mode": "credit_then_invoice", "lowBalanceThreshold": None},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text
    response = await stack.billing.post(
        f"/api/billing/admin/companies/{company}/credits",
        json={
            "amount": CREDITS,
            "kind": "purchased",
            "effectiveAt": MARCH.isoformat(),
            "reason": "Prepaid plan",
        },
        headers=OPERATOR,
    )
    assert response.status_code == 201, response.text
    await record(
        stack,
        *(
            generated(
                company,
                job_id=job.job_id,
                questions=10 * (index + 1),
                at=MARCH + timedelta(days=index, hours=9),
            )
            for index, job in enumerate(jobs)
        ),
        # A large one, to see the thousands written as the locale writes them.
        generated(company, job_id=jobs[1].job_id, questions=123_456, at=MARCH + timedelta(days=2)),
        generated(company, draft="never-saved", questions=7, at=MARCH + timedelta(days=27)),
        generated(uuid.uuid4(), questions=50, at=MARCH + timedelta(days=3)),  # someone else's
    )
    app = stack.apps["billing"]
    app.state.clock = lambda: MARCH + timedelta(days=20)  # posted while March was open
    try:
        for amount, reason in (("-1.2500", "Kulanz: langsame Antworten"), ("0.5000", "Setup")):
            response = await stack.billing.post(
                f"/api/billing/admin/companies/{company}/adjustments",
                json={"amount": amount, "reason": reason},
                headers=OPERATOR,
            )
            assert response.status_code == 201, response.text
    finally:
        del app.state.clock
    response = await stack.billing.post(
        f"/api/billing/admin/periods/{PERIOD}/close", headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    statement: dict[str, Any] = await console.api(
        company, f"/api/billing/statements/{PERIOD}", limit=1000
    )
    assert statement["status"] == "closed"
    assert statement["currency"] == "EUR"
    assert statement["nextCursor"] is None
    assert len(statement["lines"]) == JOBS
    assert statement["credits"]["applied"] == CREDITS
    return statement


def closed_at(statement: dict[str, Any]) -> str:
    """`closedAt` as the page writes it: to the minute, in UTC."""
    instant = datetime.fromisoformat(statement["closedAt"]).astimezone(UTC)
    return instant.strftime("%Y-%m-%d %H:%M UTC")


def words(text: str) -> str:
    """Text with every run of white space (no-break ones too) as one space."""
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " ")).strip()


def figures(statement: dict[str, Any], company: UUID) -> list[str]:
    """Every figure and name of the statement that its printed page must hold."""
    adjusted = sum((Decimal(item["amount"]) for item in statement["adjustments"]), Decimal(0))
    expected = [
        PERIOD,
        str(company),
        "EUR",
        f"Closed {closed_at(statement)}",
        eur(statement["totals"]["cost"]),
        str(statement["totals"]["questionCount"]),
        eur(statement["total"]),
        eur(f"{adjusted:.4f}"),
        eur(statement["drafts"]["cost"]),
        str(statement["drafts"]["questionCount"]),
        eur(statement["credits"]["applied"]),
        eur(statement["amountDue"]),
    ]
    for line in statement["lines"]:
        name = line["jobTitle"] or line["jobId"]
        expected += [name, str(line["questionCount"]), eur(line["cost"])]
    for item in statement["adjustments"]:
        expected += [item["reason"], eur(item["amount"])]
    return expected


def run(*command: str) -> str:
    # poppler-utils' own tools, on a file this test wrote.
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)  # noqa: S603
    return done.stdout


async def test_a_closed_statement_prints_to_a_clean_a4_pdf_with_every_figure(
    euro_console: Console, german: Watched, company: UUID
) -> None:
    statement = await closed_march(euro_console, company)
    page = german.page
    await page.goto(f"{euro_console.base_url}/billing?statement={PERIOD}#token={token(company)}")
    await german.ready()
    await page.wait_for_selector(f"#statement-body[data-period='{PERIOD}']")
    assert await german.text("statement-total") == eur(statement["total"])

    # From the statement view to its printable page, by keyboard alone.
    for _ in range(80):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "statement-print":
            break
    else:
        pytest.fail("Tab never reached the printable statement's link")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("body.print-view[data-ready=true]")
    assert page.url == f"{euro_console.base_url}/billing?statement={PERIOD}&view=print"
    await german.screenshot("statement-print-view")

    # The page shows the API's statement: every line by title, every amount in euros.
    document = page.get_by_test_id("statement-document")
    assert await german.text("doc-currency") == "EUR"
    assert str(company) in await german.text("doc-company")
    assert await german.text("doc-total") == eur(statement["total"])
    # Credits applied and the amount due (the total less them), as the API says them.
    assert await german.text("doc-credits") == eur(statement["credits"]["applied"])
    assert await german.text("doc-amount-due") == eur(statement["amountDue"])
    assert Decimal(statement["amountDue"]) == Decimal(statement["total"]) - Decimal(CREDITS)
    job_ids = await page.locator("[data-testid=doc-lines] tbody .job-id").all_inner_texts()
    assert job_ids == [line["jobId"] for line in statement["lines"]]
    shown_titles = await page.locator("[data-testid=doc-lines] tbody .job-title").all_inner_texts()
    assert shown_titles == [line["jobTitle"] for line in statement["lines"] if line["jobTitle"]]
    assert TITLES[0] in shown_titles
    assert await document.locator("img").count() == 0
    assert german.dialogs == []
    for amount in await amounts_shown(page):
        assert (amount["text"], amount["currency"]) == (eur(amount["amount"]), "EUR")
    shown_text = words(await document.inner_text())
    missing = [figure for figure in figures(statement, company) if words(figure) not in shown_text]
    assert missing == []

    assert await serious_accessibility_violations(page) == []
    assert await controls_tab_misses(page) == []

    # Printed by Chromium itself (print media, the page's own @page size): A4, and its
    # text holds every figure, with no navigation and no button.
    pdf = SCREENSHOTS / "statement.pdf"
    SCREENSHOTS.mkdir(exist_ok=True)
    pdf.write_bytes(await page.pdf(prefer_css_page_size=True, print_background=True))
    info = await asyncio.to_thread(run, "pdfinfo", str(pdf))
    assert re.search(r"Page size:\s+[\d.]+ x [\d.]+ pts \(A4\)", info), info
    text = words(await asyncio.to_thread(run, "pdftotext", "-enc", "UTF-8", str(pdf), "-"))
    missing = [figure for figure in figures(statement, company) if words(figure) not in text]
    assert missing == []
    for chrome in ("Back to the console", "Print or save as PDF", "Question generation billing"):
        assert chrome not in text
    await asyncio.to_thread(
        run, "pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile",
        str(pdf), str(SCREENSHOTS / "statement-page-1"),
    )  # fmt: skip
    assert (SCREENSHOTS / "statement-page-1.png").stat().st_size > 10_000

    # On a phone the page stays readable: nothing sticks out sideways.
    await page.set_viewport_size(NARROW)
    assert await narrow_overflow(page) == []
    await german.screenshot("statement-print-view-narrow")
    await page.set_viewport_size(WIDE)
    assert german.errors == []
