"""A recorded batch's effects: each sees what the batch changed, in the order of `EFFECTS`."""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from services.billing.ledger.batch import RecordedBatch
from services.billing.ledger.effects import EFFECTS
from services.billing.ledger.record import record_events
from services.servicekit.db import Connection
from tests.integration.ledger.conftest import PRICING, Ledger, entry
from tests.support.events import generated, job_created


async def test_effects_see_the_rows_made_and_moved_in_order(ledger: Ledger, company: UUID) -> None:
    draft = str(uuid.uuid4())
    earlier = generated(company, draft=draft)
    await ledger.record(earlier)
    seen: list[tuple[str, RecordedBatch]] = []

    def effect(name: str):
        async def record(conn: Connection, batch: RecordedBatch) -> None:
            seen.append((name, batch))

        return record

    job = job_created(company, job_id=uuid.uuid4(), draft=draft)
    fresh = generated(company, draft=str(uuid.uuid4()))
    async with ledger.pool.acquire() as conn, conn.transaction():
        await record_events(
            conn,
            [entry(earlier), entry(fresh), entry(job)],  # `earlier` is a redelivery
            default=PRICING,
            effects=[*EFFECTS, effect("first"), effect("second")],
        )

    assert [name for name, _ in seen] == ["first", "second"]
    batch = seen[0][1]
    assert seen[1][1] is batch
    assert [row.event_id for row in batch.inserted] == [fresh.event_id]
    assert [(row.job_id, row.question_count) for row in batch.moved] == [
        (job.job_id, earlier.question_count)
    ]
    assert [j.event_id for j in batch.jobs] == [job.event_id]


async def test_an_effect_that_fails_rolls_the_batch_back(ledger: Ledger, company: UUID) -> None:
    async def failing(conn: Connection, batch: RecordedBatch) -> None:
        raise RuntimeError("effect failed")

    event = generated(company, draft=str(uuid.uuid4()))
    with pytest.raises(RuntimeError, match="effect failed"):
        async with ledger.pool.acquire() as conn, conn.transaction():
            await record_events(conn, [entry(event)], default=PRICING, effects=[*EFFECTS, failing])
    assert await ledger.rows(company) == []
