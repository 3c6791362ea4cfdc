"""`console_load`: how long the billing console takes to show a large company, against a
small one, in the same run.

One billing database holds both: the large company's ledger of `large_rows` usage rows
(1,000,000; `--quick` 100,000), loaded by bulk SQL and rolled up by the project's own
rebuild (`tests/support/large_ledger.py`, as the console's scale test loads it), and a
company of 10 rows. `python -m services.billing` serves the page; Debian's Chromium
(headless, driven by Playwright) opens it for each company in turn, alternating, the first
visit of each included; each figure is the browser's own, from navigation to the page's
`console-ready` mark (every part shown). Ours: the large company's median; baseline: the
small one's. The page asks only for pages and rollups, so the size of the ledger should
barely show.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from playwright.async_api import Page, async_playwright

from bench import harness
from bench.harness import Profile, Result, median
from bench.ledger_reads import billing_service, build_rollups
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, WIDE, browser_env
from tests.support.large_ledger import LargeLedger, load_large_ledger

BAR = 2.0
SMALL_ROWS = 10

# Ten generations of 10 questions (0.1000 each), this month.
SMALL_LEDGER = """
INSERT INTO question_generation_usage (
    event_id, company_id, draft_job_id, prompt_tokens, completion_tokens, total_tokens,
    question_count, cost, model_used, created_at, period
)
SELECT gen_random_uuid(), $1::uuid, 'draft-small', 100, 200, 300, 10, 0.1000, 'gpt-4o',
       now(), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')
FROM generate_series(1, $2::int)
"""


@asynccontextmanager
async def chromium_page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=browser_env()
        )
        try:
            context = await browser.new_context(viewport=WIDE)
            yield await context.new_page()
        finally:
            await browser.close()


async def ready_ms(page: Page, base_url: str, company: uuid.UUID) -> float:
    """From navigation to every part of the page shown, as the browser measures it."""
    await page.goto("about:blank")
    await page.goto(f"{base_url}/billing#token={harness.token(company)}")
    await page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    elapsed: float = await page.evaluate(
        "performance.getEntriesByName('console-ready')[0].startTime"
    )
    # A page that showed nothing would be quick for nothing: both companies spent this month.
    spent = await page.get_attribute("#period-spend", "data-amount")
    if spent in (None, "0.0000"):
        raise AssertionError(f"the console showed no spend for {company}: {spent!r}")
    return elapsed


async def run(profile: Profile) -> Result:
    ledger = LargeLedger(profile.large_rows)
    large, small = uuid.uuid4(), uuid.uuid4()
    visits = 3 if profile.quick else 7
    async with harness.temp_database("billing") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(SMALL_LEDGER, small, SMALL_ROWS)
        finally:
            await conn.close()
        await load_large_ledger(dsn, large, ledger)
        rebuilt = await build_rollups(dsn)  # both companies'
        large_ms: list[float] = []
        small_ms: list[float] = []
        async with billing_service(dsn) as (base_url, _), chromium_page() as page:
            for visit in range(visits):
                # Alternating, and which goes first alternates too.
                order = ((small, small_ms), (large, large_ms))
                for company, into in order if visit % 2 == 0 else order[::-1]:
                    into.append(await ready_ms(page, base_url, company))
    ratio = median(large_ms) / median(small_ms)
    return Result(
        name="console_load",
        ours=median(large_ms),
        baseline=median(small_ms),
        unit=f"ms to ready ({ledger.rows:,} rows vs {SMALL_ROWS})",
        ratio=ratio,
        bar=f"large/small <= {BAR}",
        passed=ratio <= BAR,
        details={
            "large_rows": ledger.rows,
            "rebuild_seconds": None if rebuilt is None else round(rebuilt, 1),
            "visits": visits,
            "large_ms": [round(ms) for ms in large_ms],
            "small_ms": [round(ms) for ms in small_ms],
            "large_max_ms": round(max(large_ms)),
        },
    )
