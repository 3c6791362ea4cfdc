"""A close racing the worker: every generation in the closed statement or late in the next.

2,000 generations whose `occurredAt` straddles the end of last month stream
through the real broker into two billing workers while the month is closed.
Each must be counted exactly once across the two statements: never both, never
neither. The month also holds the usage of 5,000 other companies, so that the
close takes long enough for batches to commit while it copies (without the
period lock, some of them then land in the month after its copy was taken).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from contracts.events import QuestionsGenerated
from services.billing.rollups import store as rollups
from services.billing.statements.rules import Period
from tests.support.auth import bearer
from tests.support.broker import publish_events
from tests.support.databases import ServiceDatabases
from tests.support.events import generated
from tests.support.stack import Stack, start_stack
from tests.support.waiting import eventually

EVENTS = 2_000
COMPANIES = 20
OTHER_COMPANIES = 5_000

# The other companies' month: 20 rows each, on 4 jobs, with their rollups.
PRELOAD = """
INSERT INTO question_generation_usage (
    event_id, company_id, job_id, question_count, cost, created_at, period
)
SELECT gen_random_uuid(), company_id, (ARRAY[gen_random_uuid(), gen_random_uuid(),
       gen_random_uuid(), gen_random_uuid()])[1 + n % 4], 1, 0.0100,
       $2::timestamptz + make_interval(mins => n), $3
FROM unnest($1::uuid[]) AS company_id CROSS JOIN generate_series(1, 20) AS n
"""
OPERATOR = bearer(uuid.uuid4(), user="ops@example.com", roles=["platform:admin"])


async def recorded(stack: Stack, events: list[QuestionsGenerated]) -> int:
    rows = await stack.fetch(
        stack.dbs.billing,
        "SELECT count(*) AS n FROM question_generation_usage WHERE event_id = ANY($1)",
        [event.event_id for event in events],
    )
    return int(rows[0]["n"])


async def statement(stack: Stack, company: UUID, period: Period) -> dict[str, Any]:
    response = await stack.billing.get(
        f"/api/billing/statements/{period}", params={"limit": 1000}, headers=bearer(company)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def preload(dsn: str, month: Period) -> None:
    others = [uuid.uuid4() for _ in range(OTHER_COMPANIES)]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(PRELOAD, others, month.start, str(month))
            await rollups.rebuild(conn, others)
    finally:
        await conn.close()


async def test_every_generation_is_counted_once_across_the_close(
    billing: Stack, dbs: ServiceDatabases, prefix: str
) -> None:
    month = Period.of(datetime.now(UTC)).previous()
    await preload(dbs.billing, month)
    # Two billing processes on the one queue, as when billing is scaled out.
    async with start_stack(dbs, prefix, services=("billing",)):
        await race(billing, month)


async def race(billing: Stack, month: Period) -> None:
    companies = [uuid.uuid4() for _ in range(COMPANIES)]
    shuffle = random.Random(12)
    # One question each, so a statement's questionCount counts its generations.
    events = [
        generated(
            shuffle.choice(companies),
            draft=f"draft-{shuffle.randrange(50)}",
            questions=1,
            at=month.end + timedelta(seconds=shuffle.uniform(-600, 600)),
        )
        for _ in range(EVENTS)
    ]
    before, during, after = events[:700], events[700:1300], events[1300:]

    await publish_events(billing.topology, *before)
    await eventually(lambda: recorded(billing, before), until=lambda n: n > 0, timeout=30)
    closing = asyncio.create_task(
        billing.billing.post(f"/api/billing/admin/periods/{month}/close", headers=OPERATOR)
    )
    await publish_events(billing.topology, *during)
    assert (await closing).status_code == 200
    await publish_events(billing.topology, *after)
    await eventually(lambda: recorded(billing, events), until=lambda n: n == EVENTS, timeout=60)

    in_closed = in_next = late = 0
    for company in companies:
        closed = await statement(billing, company, month)
        following = await statement(billing, company, month.next())
        assert closed["status"] == "closed"
        assert closed["late"]["count"] == 0
        in_closed += closed["totals"]["questionCount"]
        in_next += following["totals"]["questionCount"]
        late += following["late"]["count"]
    assert in_closed + in_next == EVENTS

    # The frozen figures are those of the rows billed in the month: none came after the copy.
    rows = await billing.fetch(
        billing.dbs.billing,
        "SELECT period, late, created_at < $1 AS of_month, count(*) AS n"
        " FROM question_generation_usage WHERE event_id = ANY($2) GROUP BY 1, 2, 3",
        month.end,
        [event.event_id for event in events],
    )
    counts = {(row["period"], row["late"], row["of_month"]): row["n"] for row in rows}
    of_month_early = counts.get((str(month), False, True), 0)
    of_month_late = counts.get((str(month.next()), True, True), 0)
    assert in_closed == of_month_early
    assert late == of_month_late
    assert of_month_early + of_month_late == sum(
        1 for event in events if event.occurred_at < month.end
    )
    assert set(counts) <= {
        (str(month), False, True),
        (str(month.next()), True, True),
        (str(month.next()), False, False),
    }
    # The race really happened: some of last month's generations made it, some came late.
    assert of_month_early > 0
    assert of_month_late > 0
