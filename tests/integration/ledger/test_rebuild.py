"""The rebuild command finds and fixes rollups that differ from the rows, even beside batches."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from services.billing.rollups.rebuild import rebuild_all
from tests.integration.ledger.conftest import Ledger
from tests.support.databases import ServiceDatabases
from tests.support.events import generated, job_created

T0 = datetime(2025, 3, 31, 22, tzinfo=UTC)


async def some_usage(ledger: Ledger, company: UUID) -> None:
    job = job_created(company, draft="saved")
    await ledger.record(
        generated(company, draft="saved", at=T0),
        generated(company, draft="waiting", at=T0 + timedelta(hours=3)),
        generated(uuid.uuid4(), draft="elsewhere", at=T0),
    )
    await ledger.record(job, generated(company, job_id=job.job_id, at=T0 + timedelta(days=1)))


async def test_a_damaged_rollup_is_reported_then_fixed(
    ledger: Ledger, dbs: ServiceDatabases, company: UUID
) -> None:
    await some_usage(ledger, company)
    clean = await rebuild_all(dbs.billing, rows_per_group=2, check=True)
    assert clean["differing_rows"] == {}

    async with ledger.pool.acquire() as conn:
        await conn.execute("UPDATE rollup_days SET cost = cost + 1 WHERE company_id = $1", company)
        await conn.execute("DELETE FROM rollup_jobs WHERE company_id = $1", company)
        await conn.execute(
            "INSERT INTO rollup_drafts VALUES ($1, 'ghost', 1, 1, 1, 1, 1, 1, now(), now())",
            uuid.uuid4(),
        )

    checked = await rebuild_all(dbs.billing, rows_per_group=2, check=True)
    assert set(checked["differing_rows"]) == {"rollup_days", "rollup_jobs", "rollup_drafts"}
    assert checked == {**checked, "fixed": False}
    # --check changed nothing.
    assert (await rebuild_all(dbs.billing, rows_per_group=2, check=True))["differing_rows"]

    fixed = await rebuild_all(dbs.billing, rows_per_group=2, check=False)
    assert fixed["differing_rows"] == checked["differing_rows"]
    assert (await rebuild_all(dbs.billing, rows_per_group=2, check=True))["differing_rows"] == {}


async def test_a_rebuild_beside_running_batches_leaves_every_rollup_right(
    ledger: Ledger, dbs: ServiceDatabases
) -> None:
    companies = [uuid.uuid4() for _ in range(6)]

    async def batches() -> None:
        for round_ in range(15):
            await asyncio.gather(
                *(
                    ledger.record(
                        generated(company, draft=f"d{round_ % 4}", at=T0 + timedelta(hours=round_)),
                        job_created(company, draft=f"d{(round_ + 2) % 4}"),
                    )
                    for company in companies
                )
            )

    async def rebuilds() -> None:
        for _ in range(5):
            await rebuild_all(dbs.billing, rows_per_group=10, check=False)

    await asyncio.gather(batches(), rebuilds())

    assert (await rebuild_all(dbs.billing, rows_per_group=10, check=True))["differing_rows"] == {}
