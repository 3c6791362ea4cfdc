"""Billing alone (its worker and read API), fed events through the real broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from contracts.events import Event, JobCreated, LlmCallFinished, QuestionsGenerated
from services.servicekit import db
from tests.support.broker import publish_events
from tests.support.databases import ServiceDatabases
from tests.support.events import generated, job_created
from tests.support.stack import Stack, start_billing
from tests.support.waiting import eventually

ABANDONED_AFTER_HOURS = 24.0


@pytest.fixture
async def billing(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_billing(
        dbs, prefix, abandoned_draft_after_hours=ABANDONED_AFTER_HOURS
    ) as running:
        yield running


@pytest.fixture
async def pool(dbs: ServiceDatabases) -> AsyncIterator[asyncpg.Pool]:
    """A pool on billing's migrated database, for tests that call its handlers directly."""
    opened = await db.create_pool(dbs.billing, min_size=1, max_size=5)
    try:
        yield opened
    finally:
        await opened.close()


async def record(stack: Stack, *events: Event) -> None:
    """Publish the events and wait until billing has committed every one of them."""
    await publish_events(stack.topology, *events)
    usage_ids = [event.event_id for event in events if isinstance(event, QuestionsGenerated)]
    job_ids = [event.job_id for event in events if isinstance(event, JobCreated)]
    call_ids = [event.event_id for event in events if isinstance(event, LlmCallFinished)]

    async def committed() -> bool:
        rows = await stack.fetch(
            stack.dbs.billing,
            "SELECT (SELECT count(*) FROM question_generation_usage WHERE event_id = ANY($1))"
            " + (SELECT count(*) FROM known_jobs WHERE job_id = ANY($2))"
            " + (SELECT count(*) FROM llm_calls WHERE event_id = ANY($3)) AS done",
            usage_ids,
            job_ids,
            call_ids,
        )
        return int(rows[0]["done"]) == len(usage_ids) + len(job_ids) + len(call_ids)

    await eventually(committed, timeout=30)


async def record_drafts_of_every_age(stack: Stack, company: UUID) -> tuple[datetime, datetime]:
    """Drafts of `company`: "forgotten" (first used past the abandonment age, 0.1200),
    "in-progress" (an hour old, 0.1000), "saved-later" (old, then saved as a job, 0.1000);
    and another company's "forgotten". Returns now and the abandoned age's first use.
    """
    now = datetime.now(UTC)
    old = now - timedelta(hours=ABANDONED_AFTER_HOURS + 2)
    await record(
        stack,
        generated(company, at=old, draft="forgotten", questions=10),
        generated(company, at=now - timedelta(minutes=1), draft="forgotten", questions=2),
        generated(company, at=now - timedelta(hours=1), draft="in-progress", questions=10),
        generated(company, at=old - timedelta(hours=1), draft="saved-later", questions=10),
        generated(uuid.uuid4(), at=old, draft="forgotten", questions=50),
    )
    await record(stack, job_created(company, draft="saved-later"))
    return now, old
