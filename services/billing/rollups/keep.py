"""The rollups' effect of a recorded batch: the rows it inserted and the drafts it moved.

Written once per batch, after both, so that every rollup row of the batch is
locked in one order (rollup by rollup, keys sorted) and two batches can never
deadlock on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from contracts.events import JobCreated
from services.billing.ledger.batch import RecordedBatch
from services.billing.ledger.store import Attached, UsageRow
from services.billing.rollups import store
from services.billing.rollups.rules import Amounts, Line
from services.servicekit.db import Connection


async def keep_rollups(conn: Connection, batch: RecordedBatch) -> None:
    await store.keep(
        conn,
        inserted=[rollup_line(row) for row in batch.inserted],
        moved=[rollup_line(row) for row in batch.moved],
        reconciled=reconciled_drafts(batch.jobs),
    )


def rollup_line(row: UsageRow | Attached) -> Line:
    """One usage row as the rollups count it: a moved row is on its job, no longer a draft."""
    return Line(
        row.company_id,
        row.job_id,
        row.draft_job_id if isinstance(row, UsageRow) else None,
        row.created_at,
        row.period,
        row.late,
        Amounts(
            1,
            row.question_count,
            row.cost,
            row.prompt_tokens,
            row.completion_tokens,
            row.total_tokens,
        ),
    )


def reconciled_drafts(jobs: Sequence[JobCreated]) -> list[tuple[UUID, str]]:
    """The draft keys a JobCreated empties: its job's id and its draft's id."""
    keys = [(job.company_id, str(job.job_id)) for job in jobs]
    keys += [(job.company_id, job.draft_job_id) for job in jobs if job.draft_job_id is not None]
    return keys
