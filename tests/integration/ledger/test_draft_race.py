"""A generation and its draft's JobCreated committed at the same moment by two writers."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

from tests.integration.ledger.conftest import Ledger
from tests.support.events import generated, job_created

ROUNDS = 150


async def test_concurrent_writers_never_leave_a_row_behind_as_a_draft(
    ledger: Ledger, company: UUID
) -> None:
    for _ in range(ROUNDS):
        draft = str(uuid.uuid4())
        await asyncio.gather(
            ledger.record(generated(company, draft=draft)),
            ledger.record(job_created(company, draft=draft)),
            ledger.record(generated(company, job_id=UUID(draft))),
        )

    rows = await ledger.rows(company)
    assert len(rows) == 2 * ROUNDS
    left_behind = [row["draft_job_id"] for row in rows if row["job_id"] is None]
    assert left_behind == []
