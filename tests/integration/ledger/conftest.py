"""Billing's ledger driven directly through `record_events`, on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest

from contracts.events import Event, JobCreated, LlmCallFinished, QuestionsGenerated
from services.billing.ledger.record import Recorded, record_events
from services.billing.ledger.rules import Entry, Pricing
from tests.support.databases import ServiceDatabases

# The environment's price: what a bare migrated database (no price version yet) bills at.
PRICING = Pricing()


def entry(event: Event) -> Entry:
    """An event the consumer would hand to the ledger: as it is, unpriced."""
    assert isinstance(event, (QuestionsGenerated, JobCreated, LlmCallFinished))
    return event


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, *events: Event) -> dict[UUID, Recorded]:
        """One transaction, as a batch of the consumer: each generation priced at step 3."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await record_events(conn, [entry(e) for e in events], default=PRICING)

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
