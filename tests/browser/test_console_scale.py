"""The console at a large company's size: a million usage rows, and the page still loads in
under a second, because it asks only for pages and rollups.

The ledger is loaded by bulk SQL into the test's own billing database (20,000 jobs of 49
rows and 2,000 drafts of 10 rows over the last 90 days, at the default price), then the
rollups are built by the project's own rebuild, as a deployment over an existing ledger
would be. `CONSOLE_SCALE_ROWS` sets another size (the shape stays the same).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from uuid import UUID

import asyncpg
import pytest

from services.billing.rollups.rebuild import rebuild_all
from tests.browser.conftest import Console, Watched
from tests.integration.billing.conftest import record
from tests.support.auth import token
from tests.support.events import generated

pytestmark = pytest.mark.browser

ROWS = int(os.environ.get("CONSOLE_SCALE_ROWS", "1000000"))
ROWS_PER_JOB = 49
ROWS_PER_DRAFT = 10
BUDGET_MS = 1000.0

# Priced as the default price prices them: 10 questions cost 0.1000.
LEDGER = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, draft_job_id, prompt_tokens, completion_tokens,
    total_tokens, question_count, cost, model_used, created_at, period
)
SELECT gen_random_uuid(), $1::uuid, job_id, draft_job_id, 100, 200, 300, questions,
       (questions * 0.01)::numeric(10, 4), 'gpt-4o', at,
       to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')
FROM (
    SELECT md5($1::uuid::text || '/job/' || (n / $4::int))::uuid AS job_id,
           NULL::text AS draft_job_id,
           1 + n % 19 AS questions,
           now() - ((n % 7919) / 7919.0) * interval '89 days' AS at
    FROM generate_series(0, $2::int - 1) AS n
    UNION ALL
    SELECT NULL::uuid, 'draft-' || (n / $5::int), 1 + n % 7,
           now() - ((n % 7907) / 7907.0) * interval '89 days'
    FROM generate_series(0, $3::int - 1) AS n
) AS ledger
"""


@pytest.fixture
def tests_clock() -> bool:
    return False  # the page is timed by the browser's own performance entries


async def load_ledger(dsn: str, company: UUID, rows: int) -> None:
    drafts = rows // 50
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(LEDGER, company, rows - drafts, drafts, ROWS_PER_JOB, ROWS_PER_DRAFT)
        await conn.execute("VACUUM (ANALYZE) question_generation_usage")
    finally:
        await conn.close()


async def load_time_ms(watched: Watched, console: Console, company: UUID) -> float:
    """From navigation to every part of the page shown, as the browser measures it."""
    await watched.page.goto("about:blank")
    await watched.page.goto(console.url(token(company)))
    await watched.ready()
    elapsed: float = await watched.page.evaluate(
        "performance.getEntriesByName('console-ready')[0].startTime"
    )
    return elapsed


async def test_the_page_loads_in_under_a_second_at_a_million_rows(
    console: Console, watched: Watched, company: UUID
) -> None:
    small = uuid.uuid4()
    await record(console.stack, *(generated(small, questions=10) for _ in range(10)))
    started = time.perf_counter()
    await load_ledger(console.stack.dbs.billing, company, ROWS)
    loaded = time.perf_counter() - started
    await rebuild_all(console.stack.dbs.billing, rows_per_group=500_000, check=False)
    rebuilt = time.perf_counter() - started - loaded

    # Side by side, alternating; the first visit of each (cold caches) counts too.
    cold_small = await load_time_ms(watched, console, small)
    cold_large = await load_time_ms(watched, console, company)
    small_ms, large_ms = [], []
    for _ in range(5):
        small_ms.append(await load_time_ms(watched, console, small))
        large_ms.append(await load_time_ms(watched, console, company))

    assert await watched.text("drafts-waiting") == str((ROWS // 50) // ROWS_PER_DRAFT)
    assert await watched.page.locator("[data-testid=job-row]").count() == 20
    median_small, median_large = statistics.median(small_ms), statistics.median(large_ms)
    print(
        f"\n{ROWS} rows loaded in {loaded:.1f}s, rollups rebuilt in {rebuilt:.1f}s; "
        f"page ready: 10 rows {median_small:.0f} ms, {ROWS} rows {median_large:.0f} ms "
        f"(median of 5; max {max(large_ms):.0f} ms; ratio {median_large / median_small:.2f}); "
        f"first visit: {cold_small:.0f} ms and {cold_large:.0f} ms"
    )
    assert max(cold_large, *large_ms) < BUDGET_MS, (cold_large, large_ms)
    assert watched.errors == []
