"""Every figure the read API gives equals the same sum over the usage rows, whatever happened.

Random mixes of generations (on jobs, on drafts, on job ids billing does not
know yet), job creations, redeliveries and reorderings are recorded by several
ledger transactions at once; then the summary (totals, drafts, every job line
through its pages), the drafts list, the daily series and the CSV export are
compared with sums computed here over the raw rows, for ranges that cut through
days and months. Finally the rebuild command, run as a check, must find every
rollup (those no endpoint reads yet too) equal to what the rows add up to.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from contracts.events import Event, JobCreated, QuestionsGenerated
from services.billing.ledger.record import record_events
from services.billing.ledger.rules import Entry, Pricing
from services.billing.rollups import store as rollups
from tests.support.auth import bearer
from tests.support.events import generated, job_created
from tests.support.stack import Stack

PRICING = Pricing()
START = datetime(2025, 1, 20, tzinfo=UTC)
SPAN = timedelta(days=70)  # through the end of January and February, into March

# Ranges that cut through days and months, whole days, one day, open ends.
RANGES: list[tuple[str | None, str | None]] = [
    (None, None),
    ("2025-01-31T13:00:00Z", "2025-03-02T07:30:00Z"),
    ("2025-02-10T00:00:00Z", "2025-03-20T00:00:00Z"),
    ("2025-02-14T09:00:00Z", "2025-02-14T17:00:00Z"),
    ("2025-02-27T22:00:00Z", "2025-03-01T02:00:00Z"),
    (None, "2025-02-15T12:00:00Z"),
    ("2025-02-15T12:00:00Z", None),
]


def entry(event: Event) -> Entry:
    """As the consumer hands it to the ledger: unpriced (priced once, at step 3)."""
    assert isinstance(event, (QuestionsGenerated, JobCreated))
    return event


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def story(company: UUID, rng: random.Random, size: int) -> list[Event]:
    """Generations and job creations in an arbitrary order, some delivered twice."""

    def when() -> datetime:
        if rng.random() < 0.1:  # exactly at a midnight, the first of a month among them
            return START + timedelta(days=rng.randrange(70))
        return START + SPAN * rng.random()

    jobs = [uuid.uuid4() for _ in range(size // 6)]
    drafts = [f"draft-{n}" for n in range(size // 6)]
    events: list[Event] = []
    for _ in range(size):
        kind = rng.random()
        questions = rng.randint(1, 50)
        if kind < 0.35:  # a job's id: known at once, or held as a draft until its JobCreated
            events.append(
                generated(company, job_id=rng.choice(jobs), questions=questions, at=when())
            )
        elif kind < 0.8:
            events.append(
                generated(company, draft=rng.choice(drafts), questions=questions, at=when())
            )
        else:  # a recent draft: not abandoned
            events.append(
                generated(
                    company,
                    draft=f"fresh-{rng.randrange(5)}",
                    questions=questions,
                    at=datetime.now(UTC) - timedelta(minutes=rng.randrange(60)),
                )
            )
    for job_id in jobs[: len(jobs) * 2 // 3]:  # some jobs never created: their usage waits
        events.append(job_created(company, job_id=job_id))
    for draft in drafts[: len(drafts) // 2]:
        events.append(job_created(company, draft=draft))
    events += rng.sample(events, len(events) // 5)  # redeliveries
    rng.shuffle(events)
    return events


async def record_concurrently(pool: asyncpg.Pool, events: list[Event], rng: random.Random) -> None:
    """Batches of random sizes, four transactions at a time."""
    batches: list[list[Event]] = []
    while events:
        cut = rng.randint(1, 40)
        batches.append(events[:cut])
        events = events[cut:]

    async def one(batch: list[Event]) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, [entry(event) for event in batch], default=PRICING)

    for start in range(0, len(batches), 4):
        await asyncio.gather(*(one(batch) for batch in batches[start : start + 4]))


@pytest.fixture
async def pool(billing: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(billing.dbs.billing, min_size=4, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


# ---------------------------------------------------------------- sums over the rows


def money(value: Decimal) -> str:
    return f"{value:.4f}"


def sums(rows: list[asyncpg.Record]) -> dict[str, Any]:
    return {
        "generations": len(rows),
        "cost": money(sum((row["cost"] for row in rows), Decimal(0))),
        "questionCount": sum(row["question_count"] for row in rows),
        "promptTokens": sum(row["prompt_tokens"] for row in rows),
        "completionTokens": sum(row["completion_tokens"] for row in rows),
        "totalTokens": sum(row["total_tokens"] for row in rows),
    }


def within(rows: list[asyncpg.Record], since: datetime | None, until: datetime | None) -> list[Any]:
    return [
        row
        for row in rows
        if (since is None or row["created_at"] >= since)
        and (until is None or row["created_at"] < until)
    ]


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def expected_summary(
    rows: list[asyncpg.Record], since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    chosen = within(rows, since, until)
    by_job: dict[UUID, list[Any]] = defaultdict(list)
    for row in chosen:
        if row["job_id"] is not None:
            by_job[row["job_id"]].append(row)
    lines = [
        {
            "jobId": str(job_id),
            "jobTitle": None,  # its jobs are untitled (titles: test_names_and_currency.py)
            **sums(job_rows),
            "firstUsedAt": min(r["created_at"] for r in job_rows),
            "lastUsedAt": max(r["created_at"] for r in job_rows),
        }
        for job_id, job_rows in by_job.items()
    ]
    lines.sort(key=lambda line: (-Decimal(line["cost"]), line["jobId"]))
    drafts = [row for row in chosen if row["draft_job_id"] is not None]
    return {
        "totals": sums(chosen),
        "drafts": {**sums(drafts), "count": len({row["draft_job_id"] for row in drafts})},
        "jobs": lines,
    }


# ---------------------------------------------------------------- what the API says


async def get(stack: Stack, company: UUID, path: str, **params: Any) -> Any:
    query = {key.rstrip("_"): value for key, value in params.items() if value is not None}
    response = await stack.billing.get(path, params=query, headers=bearer(company))
    assert response.status_code == 200, response.text
    return response.json()


async def summary_pages(
    stack: Stack, company: UUID, since: str | None, until: str | None
) -> dict[str, Any]:
    first = await get(stack, company, "/api/billing/summary", from_=since, to=until, limit=7)
    lines = list(first["jobs"])
    cursor = first["nextCursor"]
    while cursor:
        page = await get(
            stack, company, "/api/billing/summary", from_=since, to=until, limit=7, cursor=cursor
        )
        assert page["totals"] == first["totals"]
        lines += page["jobs"]
        cursor = page["nextCursor"]
    return {**first, "jobs": lines}


def parsed_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **line,
            "firstUsedAt": datetime.fromisoformat(line["firstUsedAt"]),
            "lastUsedAt": datetime.fromisoformat(line["lastUsedAt"]),
        }
        for line in lines
    ]


async def test_every_figure_equals_the_sum_of_the_rows(
    billing: Stack, pool: asyncpg.Pool, company: UUID
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    other = uuid.uuid4()
    mine, theirs = story(company, rng, 800), story(other, rng, 150)
    mixed = mine + theirs
    rng.shuffle(mixed)
    await record_concurrently(pool, mixed, rng)

    rows = await billing.usage(company)
    assert len(rows) == len({e.event_id for e in mine if isinstance(e, QuestionsGenerated)})
    note = f"(seed {seed})"

    for since, until in RANGES:
        expected = expected_summary(rows, at(since), at(until))
        answer = await summary_pages(billing, company, since, until)
        assert answer["totals"] == expected["totals"], f"{since}..{until} {note}"
        drafts = {key: answer["drafts"][key] for key in expected["drafts"]}
        assert drafts == expected["drafts"], f"{since}..{until} {note}"
        assert parsed_lines(answer["jobs"]) == expected["jobs"], f"{since}..{until} {note}"

    await check_drafts(billing, company, rows, note)
    await check_daily(billing, company, rows, note)
    await check_csv(billing, company, rows, note)

    async with pool.acquire() as conn, conn.transaction():
        differences = await rollups.rebuild(conn, [company, other])
        assert differences == [], note


async def check_drafts(stack: Stack, company: UUID, rows: list[Any], note: str) -> None:
    by_draft: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row["draft_job_id"] is not None:
            by_draft[row["draft_job_id"]].append(row)
    cutoff = datetime.now(UTC) - timedelta(hours=24)
    expected = {
        draft: {
            "draftJobId": draft,
            **sums(draft_rows),
            "firstUsedAt": min(r["created_at"] for r in draft_rows),
            "lastUsedAt": max(r["created_at"] for r in draft_rows),
            "abandoned": min(r["created_at"] for r in draft_rows) < cutoff,
        }
        for draft, draft_rows in by_draft.items()
    }
    for abandoned in (None, True, False):
        listed: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await get(
                stack,
                company,
                "/api/billing/drafts",
                abandoned=None if abandoned is None else str(abandoned).lower(),
                limit=3,
                cursor=cursor,
            )
            listed += page["drafts"]
            cursor = page["nextCursor"]
            if not cursor:
                break
        wanted = [d for d in expected.values() if abandoned is None or d["abandoned"] == abandoned]
        wanted.sort(key=lambda d: (d["firstUsedAt"], d["draftJobId"]))
        assert [d["draftJobId"] for d in listed] == [d["draftJobId"] for d in wanted], note
        assert parsed_lines(listed) == wanted, note


async def check_daily(stack: Stack, company: UUID, rows: list[Any], note: str) -> None:
    by_day: dict[date, list[Any]] = defaultdict(list)
    for row in rows:
        by_day[row["created_at"].astimezone(UTC).date()].append(row)
    first, last = date(2025, 1, 1), date(2025, 12, 31)
    answer = await get(
        stack, company, "/api/billing/usage/daily", from_=first.isoformat(), to=last.isoformat()
    )
    expected = [
        {
            "date": day.isoformat(),
            **{key: sums(by_day[day])[key] for key in ("generations", "questionCount", "cost")},
        }
        for day in sorted(by_day)
        if first <= day <= last
    ]
    assert answer["days"] == expected, note


async def check_csv(stack: Stack, company: UUID, rows: list[Any], note: str) -> None:
    since, until = "2025-01-31T13:00:00Z", "2025-03-02T07:30:00Z"
    response = await stack.billing.get(
        "/api/billing/usage.csv", params={"from": since, "to": until}, headers=bearer(company)
    )
    assert response.status_code == 200
    exported = list(csv.DictReader(io.StringIO(response.text)))
    chosen = sorted(within(rows, at(since), at(until)), key=lambda r: (r["created_at"], r["id"]))
    assert [line["id"] for line in exported] == [str(row["id"]) for row in chosen], note
    total = sum((Decimal(line["cost"]) for line in exported), Decimal(0))
    assert money(total) == sums(chosen)["cost"], note
