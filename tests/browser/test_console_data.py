"""What the console shows equals what the billing API says, for a busy company and an empty one."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from tests.browser.conftest import (
    AMOUNT,
    LOCALE,
    NARROW,
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

pytestmark = pytest.mark.browser

PAGE_SIZE = 20  # the page's own page size (console.js)
JOBS = PAGE_SIZE + 3
HOSTILE_TITLE = "<img src=x onerror=alert(1)>"
UNTITLED = {6, 9}  # jobs known from a JobCreated sent before events carried titles
usd = money_format(LOCALE, "USD")


ROLES = (
    "Senior Python engineer",
    "Data analyst",
    "Product designer",
    "Recruiting coordinator",
    "Site reliability engineer",
    "Account executive",
    "Engineering manager",
)
CITIES = ("Lisbon", "Berlin & remote", "São Paulo", "Toronto")


def title_of(index: int) -> str | None:
    if index in UNTITLED:
        return None
    if index == 10:
        return HOSTILE_TITLE
    return f"{ROLES[index % len(ROLES)]}, {CITIES[index % len(CITIES)]}"


def month_start(moment: datetime, back: int = 0) -> datetime:
    month = moment.year * 12 + moment.month - 1 - back
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


async def busy_company(console: Console, company: UUID, now: datetime) -> dict[str, Any]:
    """Usage on jobs this month and last, drafts waiting and abandoned, a budget, last month
    closed, then usage arriving late for it and an adjustment.

    Every instant is placed from the start of a month, never from today's date: the jobs
    spread over the first days of last month (every month has 28), this month's usage falls
    between its first instant and now. So the same lines land in the same statements on the
    1st, the 15th or the 31st, at noon or half an hour after midnight.
    """
    stack = console.stack
    this_month, last_month = month_start(now), month_start(now, back=1)
    lately = max(this_month, now - timedelta(minutes=30))  # this month, and not abandoned
    jobs = [job_created(company, title=title_of(index)) for index in range(JOBS)]
    await record(stack, *jobs)
    usage = [
        *(
            generated(
                company,
                job_id=job.job_id,
                questions=index + 1,
                at=last_month + timedelta(days=index, hours=12),
            )
            for index, job in enumerate(jobs)
        ),
        generated(company, job_id=jobs[0].job_id, questions=40, at=last_month + timedelta(days=14)),
        generated(company, job_id=jobs[1].job_id, questions=7, at=last_month + timedelta(days=3)),
        generated(company, job_id=jobs[3].job_id, questions=4, at=lately),
        generated(company, draft="draft-waiting", questions=5, at=lately),
        generated(
            company, draft="draft-forgotten", questions=9, at=last_month + timedelta(days=25)
        ),
    ]
    await record(stack, *usage, generated(uuid.uuid4(), questions=50))  # another company's

    admin = bearer(company, roles=["billing:admin"])
    operator = bearer(uuid.uuid4(), roles=["platform:admin"], user="operator@example.com")
    response = await stack.billing.put(
        "/api/billing/budget",
        json={"monthlyLimit": "10.0000", "thresholds": [50, 80, 100], "webhookUrl": None},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    period = last_month.strftime("%Y-%m")
    response = await stack.billing.post(
        f"/api/billing/admin/periods/{period}/close", headers=operator
    )
    assert response.status_code == 200, response.text
    await record(
        stack,
        generated(company, job_id=jobs[2].job_id, questions=3, at=last_month + timedelta(days=20)),
    )
    response = await stack.billing.post(
        f"/api/billing/admin/companies/{company}/adjustments",
        json={"amount": "-0.0500", "reason": "<script>alert(3)</script> goodwill credit"},
        headers=operator,
    )
    assert response.status_code == 201, response.text
    return {"last_month": period, "this_month": now.strftime("%Y-%m"), "rows": len(usage) + 1}


async def cells(watched: Watched, selector: str) -> list[str]:
    texts: list[str] = await watched.page.locator(selector).all_inner_texts()
    return [text.strip() for text in texts]


async def statement_shown(watched: Watched, period: str) -> None:
    await watched.page.wait_for_selector(f"#statement-body[data-period='{period}']")


async def test_every_part_holds_what_the_api_says(
    console: Console, watched: Watched, company: UUID
) -> None:
    months = await busy_company(console, company, datetime.now(UTC))
    summary = await console.api(company, "/api/billing/summary", limit=PAGE_SIZE)
    budget = await console.api(company, "/api/billing/budget")
    waiting = await console.api(company, "/api/billing/drafts", abandoned="false", limit=PAGE_SIZE)
    abandoned = await console.api(company, "/api/billing/drafts", abandoned="true", limit=PAGE_SIZE)
    # The statements as the console asks for them: a page of its size.
    closed = await console.api(
        company, f"/api/billing/statements/{months['last_month']}", limit=PAGE_SIZE
    )
    current = await console.api(
        company, f"/api/billing/statements/{months['this_month']}", limit=PAGE_SIZE
    )
    jwt = token(company)

    await watched.page.goto(console.url(jwt))
    await watched.ready()
    await watched.screenshot("console-wide")

    # This period against its budget, in the currency of the answers.
    assert budget["currency"] == summary["currency"] == "USD"
    assert await watched.text("period-spend") == usd(budget["spent"])
    assert await watched.testid("period-spend").get_attribute("data-amount") == budget["spent"]
    assert await watched.text("budget-remaining") == usd(budget["remaining"])
    assert await watched.text("drafts-waiting") == str(summary["drafts"]["count"]) == "2"

    # The jobs, most expensive first, one page at a time, by title where billing knows one.
    first_page = [job["jobId"] for job in summary["jobs"]]
    assert len(first_page) == PAGE_SIZE
    assert summary["nextCursor"]
    assert await cells(watched, "[data-testid=jobs-table] tbody tr .job-id") == first_page
    assert await cells(watched, "[data-testid=jobs-table] tbody tr .job-title") == [
        job["jobTitle"] for job in summary["jobs"] if job["jobTitle"] is not None
    ]
    assert {job["jobTitle"] for job in summary["jobs"]} >= {HOSTILE_TITLE, None}
    assert await cells(watched, "[data-testid=job-row] td.money") == [
        usd(job["cost"]) for job in summary["jobs"]
    ]
    # The hostile title is text: no element was made of it, nothing ran.
    assert await watched.page.locator("main img").count() == 0
    assert watched.dialogs == []
    await watched.page.locator("#jobs-pager button", has_text="Next").click()
    second = await console.api(
        company, "/api/billing/summary", limit=PAGE_SIZE, cursor=summary["nextCursor"]
    )
    await watched.page.wait_for_selector("#jobs-pager span:text('Page 2')")
    assert await cells(watched, "[data-testid=jobs-table] tbody tr .job-id") == [
        job["jobId"] for job in second["jobs"]
    ]

    # Daily spend: a bar per day with usage, each as the API writes it.
    link = await watched.testid("csv-download").get_attribute("href")
    assert link is not None
    shown_range = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    first_day = datetime.fromisoformat(shown_range["from"])
    end = datetime.fromisoformat(shown_range["to"])
    assert (first_day.time(), end.time()) == (time(0), time(0))
    assert (end - first_day).days == 90
    last_day = (end - timedelta(days=1)).date()
    daily = await console.api(
        company, "/api/billing/usage/daily", **{"from": str(first_day.date()), "to": str(last_day)}
    )
    bars = watched.page.locator("[data-testid=daily-chart] rect.bar")
    drawn = {
        (await bar.get_attribute("data-date"), await bar.get_attribute("data-cost"))
        for bar in await bars.all()
    }
    assert drawn == {(day["date"], day["cost"]) for day in daily["days"] if day["cost"] != "0.0000"}
    assert len(drawn) >= JOBS - 1

    # Drafts waiting and abandoned.
    assert (
        await cells(watched, "#drafts-open-table td.id")
        == [draft["draftJobId"] for draft in waiting["drafts"]]
        == ["draft-waiting"]
    )
    assert (
        await cells(watched, "#drafts-abandoned-table td.id")
        == [draft["draftJobId"] for draft in abandoned["drafts"]]
        == ["draft-forgotten"]
    )

    # Last month's statement first: closed, frozen.
    picker = watched.testid("statement-period")
    await statement_shown(watched, months["last_month"])
    assert await picker.input_value() == months["last_month"]
    assert closed["status"] == "closed"
    assert (await watched.text("statement-status")).startswith("Closed")
    assert await watched.text("statement-usage") == usd(closed["totals"]["cost"])
    assert await watched.text("statement-total") == usd(closed["total"])
    lines = "[data-testid=statement-lines] .job-id"
    titles = "[data-testid=statement-lines] .job-title"
    assert await cells(watched, lines) == [line["jobId"] for line in closed["lines"]]
    assert await cells(watched, titles) == [
        line["jobTitle"] for line in closed["lines"] if line["jobTitle"] is not None
    ]
    assert await watched.testid("statement-print").is_visible()
    assert len(closed["lines"]) == PAGE_SIZE
    assert closed["nextCursor"]
    rest = await console.api(
        company,
        f"/api/billing/statements/{months['last_month']}",
        limit=PAGE_SIZE,
        cursor=closed["nextCursor"],
    )
    await watched.page.locator("#statement-pager button", has_text="Next").click()
    await watched.page.wait_for_selector("#statement-pager span:text('Page 2')")
    assert await cells(watched, lines) == [line["jobId"] for line in rest["lines"]]
    assert len(rest["lines"]) == JOBS - PAGE_SIZE
    assert rest["nextCursor"] is None

    # Another month picked: this one, open, with the late usage and the adjustment.
    await picker.select_option(months["this_month"])
    await statement_shown(watched, months["this_month"])
    assert current["status"] == "open"
    assert current["late"]["count"] == 1
    assert (await watched.text("statement-status")).startswith("Open")
    assert await watched.text("statement-usage") == usd(current["totals"]["cost"])
    assert await watched.text("statement-total") == usd(current["total"])
    assert await watched.text("statement-late") == f"{usd(current['late']['cost'])} (1 late)"
    assert await cells(watched, "[data-testid=adjustment-row] td:nth-child(2)") == [
        "<script>alert(3)</script> goodwill credit"
    ]
    assert await cells(watched, "[data-testid=adjustment-row] td:nth-child(3)") == ["-$0.0500"]
    assert not await watched.testid("statement-print").is_visible()  # open: not final yet

    # Every amount on the page is written in the API's currency, with its 4 places.
    shown = await amounts_shown(watched.page)
    assert len(shown) >= 10  # the cards, a page of jobs, the statement and its lines
    for amount in shown:
        assert (amount["text"], amount["currency"]) == (usd(amount["amount"]), "USD")
    page_text = await watched.page.locator("body").inner_text()
    bare = [found for found in AMOUNT.finditer(page_text) if page_text[found.start() - 1] != "$"]
    assert [found.group() for found in bare] == []

    # Usable by anyone: no serious accessibility problem, every control reached by Tab.
    assert await serious_accessibility_violations(watched.page) == []
    assert await controls_tab_misses(watched.page) == []

    # The CSV of the range shown, fetched with the header and saved from memory.
    async with watched.page.expect_download() as started:
        await watched.testid("csv-download").click()
    download = await started.value
    saved = await download.path()
    assert saved is not None
    body = saved.read_text()
    expected = await console.stack.billing.get(
        "/api/billing/usage.csv", params=shown_range, headers=bearer(company)
    )
    assert expected.status_code == 200
    assert body == expected.text
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == len(await console.stack.usage(company)) == months["rows"]
    assert download.suggested_filename.startswith("usage-")

    for url in watched.requests:
        assert jwt not in url
    assert watched.dialogs == []
    assert watched.errors == []

    await watched.page.set_viewport_size(NARROW)
    assert await narrow_overflow(watched.page) == []
    await watched.screenshot("console-narrow")


async def test_an_empty_company_gets_a_friendly_empty_state(
    console: Console, watched: Watched, company: UUID
) -> None:
    await watched.page.goto(console.url(token(company)))
    await watched.ready()
    await watched.screenshot("empty")

    assert await watched.testid("empty-state").is_visible()
    assert await watched.text("period-spend") == "$0.0000"
    assert await watched.text("drafts-waiting") == "0"
    assert await watched.text("budget-remaining") == "No budget set"
    assert await cells(watched, "[data-testid=jobs-table] tbody td") == [
        "No job has been billed yet."
    ]
    assert await watched.page.locator("[data-testid=daily-chart] rect.bar").count() == 0
    assert watched.errors == []
