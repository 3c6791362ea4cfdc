"""The console at a large company's size: a million usage rows, and the page shows them as
the API does, asking only for pages and rollups (never for the rows themselves).

How long the page takes at this size, against a company of ten rows, is the benchmark
`console_load` (`python -m bench --only console_load`): a wall-clock bar in a test fails on
a loaded machine whatever the page does. `CONSOLE_SCALE_ROWS` sets another size here.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from services.billing.rollups.rebuild import rebuild_all
from tests.browser.conftest import LOCALE, Console, Watched, money_format
from tests.support.auth import token
from tests.support.large_ledger import LargeLedger, load_large_ledger

pytestmark = pytest.mark.browser

ROWS = int(os.environ.get("CONSOLE_SCALE_ROWS", "1000000"))
PAGE_SIZE = 20  # the page's own page size (console.js)
usd = money_format(LOCALE, "USD")


async def cells(watched: Watched, selector: str) -> list[str]:
    texts: list[str] = await watched.page.locator(selector).all_inner_texts()
    return [text.strip() for text in texts]


async def test_a_million_rows_show_as_the_api_says_from_pages_and_rollups(
    console: Console, watched: Watched, company: UUID
) -> None:
    ledger = LargeLedger(ROWS)
    await load_large_ledger(console.stack.dbs.billing, company, ledger)
    await rebuild_all(console.stack.dbs.billing, rows_per_group=500_000, check=False)
    summary = await console.api(company, "/api/billing/summary", limit=PAGE_SIZE)
    budget = await console.api(company, "/api/billing/budget")
    waiting = await console.api(company, "/api/billing/drafts", abandoned="false", limit=PAGE_SIZE)
    abandoned = await console.api(company, "/api/billing/drafts", abandoned="true", limit=PAGE_SIZE)

    await watched.page.goto(console.url(token(company)))
    await watched.ready()
    await watched.screenshot("console-scale")

    # The figures of the whole ledger, as the API counts them.
    assert summary["totals"]["generations"] == ROWS
    assert await watched.text("drafts-waiting") == str(summary["drafts"]["count"])
    assert summary["drafts"]["count"] == ledger.drafts
    assert await watched.text("period-spend") == usd(budget["spent"])

    # One page of the jobs, most expensive first, and a way to the next.
    assert await cells(watched, "[data-testid=jobs-table] tbody tr .job-id") == [
        job["jobId"] for job in summary["jobs"]
    ]
    assert len(summary["jobs"]) == PAGE_SIZE
    assert await cells(watched, "[data-testid=job-row] td.money") == [
        usd(job["cost"]) for job in summary["jobs"]
    ]
    assert summary["nextCursor"]
    assert await watched.page.locator("#jobs-pager button", has_text="Next").is_enabled()

    # The drafts, a page of each list.
    assert await cells(watched, "#drafts-open-table td.id") == [
        draft["draftJobId"] for draft in waiting["drafts"]
    ]
    assert await cells(watched, "#drafts-abandoned-table td.id") == [
        draft["draftJobId"] for draft in abandoned["drafts"]
    ]
    assert len(abandoned["drafts"]) == PAGE_SIZE

    # Daily spend from the rollups: a bar for each day of the ledger, each the API's figure.
    link = await watched.testid("csv-download").get_attribute("href")
    assert link is not None
    shown_range = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    first_day = datetime.fromisoformat(shown_range["from"]).astimezone(UTC).date()
    last_day = datetime.fromisoformat(shown_range["to"]).astimezone(UTC).date() - timedelta(days=1)
    daily = await console.api(
        company, "/api/billing/usage/daily", **{"from": str(first_day), "to": str(last_day)}
    )
    bars = watched.page.locator("[data-testid=daily-chart] rect.bar")
    drawn = {
        (await bar.get_attribute("data-date"), await bar.get_attribute("data-cost"))
        for bar in await bars.all()
    }
    assert drawn == {(day["date"], day["cost"]) for day in daily["days"] if day["cost"] != "0.0000"}
    assert len(drawn) >= 89

    # Only pages and rollups were asked for: every list a page of the page's size, and no
    # read of the usage rows themselves.
    api = [urlsplit(url) for url in watched.requests if "/api/billing/" in url]
    assert api
    for url in api:
        assert not url.path.endswith("/api/billing/usage"), url.geturl()
        limits = parse_qs(url.query).get("limit")
        if url.path.endswith(("/summary", "/drafts", "/credits", "/credits/entries")):
            assert limits == [str(PAGE_SIZE)], url.geturl()
    assert watched.errors == []
