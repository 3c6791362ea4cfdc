"""Billing's ledger driven directly through its handler, on a real database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from contracts.events import Event, JobCreated, QuestionsGenerated
from services.billing.handlers import BatchOutcome, record_events
from services.billing.pricing import Pricing
from tests.support.databases import ServiceDatabases


def generated(company: UUID, **fields: Any) -> QuestionsGenerated:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": datetime.now(UTC),
        "company_id": company,
        "prompt_tokens": 100,
        "completion_tokens": 200,
        "total_tokens": 300,
        "question_count": 10,
        "model": "gpt-4o",
    }
    return QuestionsGenerated(**{**values, **fields})


def created(company: UUID, job_id: UUID | None = None, **fields: Any) -> JobCreated:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": datetime.now(UTC),
        "company_id": company,
        "job_id": job_id or uuid.uuid4(),
    }
    return JobCreated(**{**values, **fields})


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, *events: Event) -> BatchOutcome:
        async with self.pool.acquire() as conn, conn.transaction():
            return await record_events(conn, list(events), Pricing())

    async def rows(self, company: UUID) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(
                "SELECT * FROM question_generation_usage WHERE company_id = $1 ORDER BY created_at",
                company,
            )


@pytest.fixture
async def ledger(dbs: ServiceDatabases) -> AsyncIterator[Ledger]:
    pool = await asyncpg.create_pool(dbs.billing, min_size=2, max_size=10)
    try:
        yield Ledger(pool)
    finally:
        await pool.close()


@pytest.fixture
def make_generated() -> Callable[..., QuestionsGenerated]:
    return generated


@pytest.fixture
def make_created() -> Callable[..., JobCreated]:
    return created
