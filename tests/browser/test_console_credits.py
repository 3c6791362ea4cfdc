"""The console's credits: the balance, the mode, the grants with what remains and when they
expire, and the credit entries of the month shown, each figure equal to the credits API's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.billing.credits.expiry import expire_due
from tests.browser.conftest import (
    AMOUNT,
    LOCALE,
    NARROW,
    SCREENSHOTS,
    Console,
    Watched,
    amounts_shown,
    controls_tab_misses,
    money_format,
    narrow_overflow,
    serious_accessibility_violations,
)
from tests.integration.billing.conftest import record
from tests.support.auth import bearer, token
from tests.support.events import generated, job_created
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

PAGE_SIZE = 20  # the page's own page size (console.js)
HOSTILE_REASON = "<img src=x onerror=alert(1)>"
TITLES = ("Senior Python engineer, Lisbon", "Data analyst, Berlin & remote", "Product designer")
THIS_MONTH_ROWS = 24  # 3 questions each (0.0300): more draws than a page holds
OPERATOR = bearer(uuid.uuid4(), roles=["platform:admin"], user="operator@example.com")
usd = money_format(LOCALE, "USD")


def month_start(moment: datetime, back: int = 0) -> datetime:
    month = moment.year * 12 + moment.month - 1 - back
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


def month_range(start: datetime) -> dict[str, str]:
    return {"from": start.isoformat(), "to": month_start(start, back=-1).isoformat()}


def when(value: str | None) -> str:
    """An instant as the console writes it."""
    if value is None:
        return "Never"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@contextmanager
def app_clock(console: Console, at: datetime) -> Iterator[None]:
    """Billing's API acts at `at` (a grant's creation, a void): the ledger's entries of an
    earlier month, made as they would have been then."""
    state = console.stack.apps["billing"].state
    state.clock = lambda: at
    try:
        yield
    finally:
        state.clock = None


async def grant(console: Console, company: UUID, **body: Any) -> dict[str, Any]:
    response = await console.stack.billing.post(
        f"/api/billing/admin/companies/{company}/credits",
        json={"kind": "purchased", **body},
        headers=OPERATOR,
    )
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def company_with_credits(console: Console, company: UUID, now: datetime) -> dict[str, str]:
    """Credits granted last month (one voided, one expired), a top-up this month, and usage
    of both months drawn from them; jobs with titles, as a finance user sees them.

    Instants are placed from the start of a month, never from today's date, so the same
    entries land in the same months whatever day the test runs.
    """
    stack = console.stack
    this_month, last_month = month_start(now), month_start(now, back=1)
    lately = max(this_month, now - timedelta(minutes=30))
    jobs = [job_created(company, title=title) for title in TITLES]
    await record(stack, *jobs)
    response = await stack.billing.put(
        f"/api/billing/admin/companies/{company}/credit-mode",
        json={"mode": "credit_then_invoice", "lowBalanceThreshold": "25.0000"},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text

    with app_clock(console, last_month + timedelta(days=1)):
        await grant(console, company, amount="20.0000", reason="Annual plan, paid by invoice")
    with app_clock(console, last_month + timedelta(days=1, hours=1)):
        await grant(
            console,
            company,
            amount="3.0000",
            kind="promotional",
            reason=HOSTILE_REASON,
            expiresAt=(last_month + timedelta(days=5)).isoformat(),
        )
    with app_clock(console, last_month + timedelta(days=2)):
        voucher = await grant(console, company, amount="1.0000", reason="Conference voucher")
    with app_clock(console, last_month + timedelta(days=3)):
        response = await stack.billing.post(
            f"/api/billing/admin/companies/{company}/credits/{voucher['grantId']}/void",
            headers=OPERATOR,
        )
        assert response.status_code == 200, response.text
    pool = await asyncpg.create_pool(stack.dbs.billing, min_size=1, max_size=1)
    try:
        # The expiry worker's pass, now: the promotional grant's 3.0000 expired last month.
        # None: the service's own worker has the turn; the next pass is ours.
        await eventually(lambda: expire_due(pool, now), until=lambda done: done is not None)
    finally:
        await pool.close()
    # Drawn first (priority 1), from the start of this month.
    await grant(
        console,
        company,
        amount="0.2500",
        priority=1,
        effectiveAt=this_month.isoformat(),
        expiresAt=(this_month + timedelta(days=60)).isoformat(),
        reason="Top-up",
    )
    await record(
        stack,
        generated(company, job_id=jobs[0].job_id, questions=10, at=last_month + timedelta(days=10)),
        *(
            generated(company, job_id=jobs[i % len(jobs)].job_id, questions=3, at=lately)
            for i in range(THIS_MONTH_ROWS)
        ),
        generated(uuid.uuid4(), questions=50),  # another company's
    )
    return {"last_month": last_month.strftime("%Y-%m"), "this_month": this_month.strftime("%Y-%m")}


async def cells(watched: Watched, selector: str) -> list[str]:
    texts: list[str] = await watched.page.locator(selector).all_inner_texts()
    return [text.strip() for text in texts]


async def attributes(watched: Watched, selector: str, name: str) -> list[str | None]:
    found: list[str | None] = await watched.page.eval_on_selector_all(
        selector, "(elements, name) => elements.map((e) => e.getAttribute(name))", name
    )
    return found


async def entries_shown(watched: Watched, period: str) -> None:
    await watched.page.wait_for_selector(f"#credit-entries[data-period='{period}']")


async def assert_entries_are(watched: Watched, entries: list[dict[str, Any]]) -> None:
    rows = "[data-testid=credit-entry]"
    assert await attributes(watched, rows, "data-entry-id") == [e["entryId"] for e in entries]
    assert await attributes(watched, f"{rows} td.kind", "data-kind") == [e["kind"] for e in entries]
    assert await cells(watched, f"{rows} td.money") == [usd(e["amount"]) for e in entries]
    assert await cells(watched, f"{rows} td.date") == [when(e["at"]) for e in entries]


async def test_credits_hold_what_the_api_says(
    console: Console, watched: Watched, company: UUID
) -> None:
    months = await company_with_credits(console, company, datetime.now(UTC))
    credits = await console.api(company, "/api/billing/credits", limit=PAGE_SIZE)
    last = month_range(datetime.strptime(months["last_month"], "%Y-%m").replace(tzinfo=UTC))
    this = month_range(datetime.strptime(months["this_month"], "%Y-%m").replace(tzinfo=UTC))
    last_entries = await console.api(
        company, "/api/billing/credits/entries", limit=PAGE_SIZE, **last
    )
    this_entries = await console.api(
        company, "/api/billing/credits/entries", limit=PAGE_SIZE, **this
    )
    statement = await console.api(
        company, f"/api/billing/statements/{months['last_month']}", limit=PAGE_SIZE
    )
    # The story as the API tells it: the top-up used up, then the annual plan drawn.
    assert credits["balance"] == "19.4300"
    assert [g["remaining"] for g in credits["grants"]] == ["0.0000", "0.0000", "0.0000", "19.4300"]
    assert [e["kind"] for e in last_entries["entries"]] == [
        "expiry",
        "void",
        "grant",
        "grant",
        "grant",
    ]
    assert this_entries["nextCursor"]
    assert statement["credits"]["applied"] == "0.1000"

    await watched.page.goto(console.url(token(company)))
    await watched.ready()
    await entries_shown(watched, months["last_month"])
    await watched.screenshot("console-with-credits")  # docs/console.png (make docs-screenshots)

    # The balance, the mode and the alert.
    assert await watched.text("credits-balance") == usd(credits["balance"])
    assert await watched.testid("credits-balance").get_attribute("data-amount") == "19.4300"
    assert "over" in (await watched.testid("credits-balance").get_attribute("class") or "")
    assert await watched.testid("credits-mode").get_attribute("data-mode") == credits["mode"]
    assert await watched.text("credits-mode") == "Credits first, then invoiced"
    assert await watched.text("credits-threshold") == usd(credits["lowBalanceThreshold"])

    # The grants, newest first: what each was, what remains, when it expires.
    grants = credits["grants"]
    rows = "[data-testid=credit-grant]"
    assert await attributes(watched, rows, "data-grant-id") == [g["grantId"] for g in grants]
    assert await cells(watched, f"{rows} .item-name") == [g["reason"] for g in grants]
    assert await cells(watched, f"{rows} .item-id") == [g["grantId"] for g in grants]
    assert await cells(watched, f"{rows} td.granted") == [usd(g["amount"]) for g in grants]
    assert await cells(watched, f"{rows} td.remaining") == [usd(g["remaining"]) for g in grants]
    assert await cells(watched, f"{rows} td.expires") == [when(g["expiresAt"]) for g in grants]
    states = await cells(watched, f"{rows} .item-about")
    assert [state.rsplit(" · ", 1)[-1].split(" ")[0] for state in states] == [
        "used",
        "voided",
        "expired",
        "active",
    ]
    # The hostile reason is text: nothing was made of it, nothing ran.
    assert HOSTILE_REASON in await cells(watched, f"{rows} .item-name")
    assert await watched.page.locator("main img").count() == 0
    assert watched.dialogs == []

    # Last month's entries (the month the statement shows first), naming their grants.
    await assert_entries_are(watched, last_entries["entries"])
    reasons = {g["grantId"]: g["reason"] for g in grants}
    assert await cells(watched, "[data-testid=credit-entry] .item-name") == [
        reasons[e["grantId"]] for e in last_entries["entries"]
    ]
    # Its statement: the credits applied to it and what is due.
    assert await watched.text("statement-credits") == usd(statement["credits"]["applied"])
    assert await watched.text("statement-amount-due") == usd(statement["amountDue"])

    # This month: its entries, a page at a time.
    await watched.testid("statement-period").select_option(months["this_month"])
    await entries_shown(watched, months["this_month"])
    assert (
        "Credit entries made in" in await watched.page.locator("#credit-entries-title").inner_text()
    )
    await assert_entries_are(watched, this_entries["entries"])
    assert len(this_entries["entries"]) == PAGE_SIZE
    rest = await console.api(
        company,
        "/api/billing/credits/entries",
        limit=PAGE_SIZE,
        cursor=this_entries["nextCursor"],
        **this,
    )
    await watched.page.locator("#credit-entries-pager button", has_text="Next").click()
    await watched.page.wait_for_selector("#credit-entries-pager span:text('Page 2')")
    await assert_entries_are(watched, rest["entries"])
    assert rest["nextCursor"] is None
    assert [e["kind"] for e in rest["entries"]][-1] == "grant"  # the top-up, this month's first
    await watched.page.locator("#credit-entries-pager button", has_text="Previous").click()
    await watched.page.wait_for_selector("#credit-entries-pager span:text('Page 1')")
    await assert_entries_are(watched, this_entries["entries"])

    # Every amount on the page is written in the API's currency, with its 4 places.
    shown = await amounts_shown(watched.page)
    assert len(shown) >= 2 * len(grants) + PAGE_SIZE
    for amount in shown:
        assert (amount["text"], amount["currency"]) == (usd(amount["amount"]), "USD")
    page_text = await watched.page.locator("body").inner_text()
    bare = [found for found in AMOUNT.finditer(page_text) if page_text[found.start() - 1] != "$"]
    assert [found.group() for found in bare] == []

    # Usable by anyone: no serious accessibility problem, every control reached by Tab.
    assert await serious_accessibility_violations(watched.page) == []
    assert await controls_tab_misses(watched.page) == []
    assert watched.dialogs == []
    assert watched.errors == []

    await watched.page.set_viewport_size(NARROW)
    assert await narrow_overflow(watched.page) == []
    for name in ("credits-balance", "credits-mode"):
        assert await watched.testid(name).is_visible()
    assert await watched.page.locator(f"{rows} td.remaining").first.is_visible()
    assert await watched.page.locator("[data-testid=credit-entry] td.money").first.is_visible()
    await watched.screenshot("credits-narrow")
    # The panel alone, at the phone's width, to read.
    await watched.page.locator("#credits").screenshot(path=SCREENSHOTS / "credits-narrow-panel.png")


async def test_a_company_without_credits_is_told_so(
    console: Console, watched: Watched, company: UUID
) -> None:
    await record(console.stack, generated(company, questions=10))

    await watched.page.goto(console.url(token(company)))
    await watched.ready()
    await entries_shown(watched, month_start(datetime.now(UTC), back=1).strftime("%Y-%m"))

    assert await watched.text("credits-balance") == usd("0.0000")
    assert await watched.text("credits-mode") == "Not used"
    assert await watched.text("credits-threshold") == "No alert set"
    assert await cells(watched, "[data-testid=credit-grants] tbody td") == [
        "No credits have been granted to this company."
    ]
    assert await cells(watched, "[data-testid=credit-entries] tbody td") == [
        "No credit was granted, used, expired or voided in this month."
    ]
    assert watched.errors == []
