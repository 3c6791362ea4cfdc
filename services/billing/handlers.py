"""Recording a batch of events: usage rows exactly once, drafts moved onto their jobs.

One transaction per batch. Advisory locks on every (company, id) the batch
touches serialize it with any other writer of the same drafts, so a usage event
and the JobCreated of its draft, committed at the same moment by two workers,
cannot leave a row behind as a draft.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from contracts.events import Event, JobCreated, QuestionsGenerated
from services.billing import store
from services.billing.pricing import Pricing
from services.billing.reconciliation import Placement, lock_keys, place, references
from services.billing.store import Attached, UsageRow
from services.servicekit.db import Connection


@dataclass(frozen=True)
class UsageRecorded:
    """What a QuestionsGenerated did: `new` is false for a redelivery."""

    new: bool
    placement: Placement
    cost: Decimal


@dataclass(frozen=True)
class DraftsReconciled:
    """What a JobCreated did: the draft rows it moved onto its job."""

    job_id: UUID
    rows: int
    questions: int
    cost: Decimal


@dataclass
class BatchOutcome:
    by_event: dict[UUID, UsageRecorded | DraftsReconciled] = field(default_factory=dict)


def usage_row(event: QuestionsGenerated, placement: Placement, cost: Decimal) -> UsageRow:
    return UsageRow(
        event_id=event.event_id,
        company_id=event.company_id,
        job_id=placement.job_id,
        draft_job_id=placement.draft_job_id,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.total_tokens,
        question_count=event.question_count,
        cost=cost,
        model_used=event.model,
        created_at=event.occurred_at,
    )


def reconciled(job: JobCreated, attached: list[Attached]) -> DraftsReconciled:
    mine = [row for row in attached if row.job_id == job.job_id]
    return DraftsReconciled(
        job_id=job.job_id,
        rows=len(mine),
        questions=sum(row.question_count for row in mine),
        cost=sum((row.cost for row in mine), Decimal("0")),
    )


async def record_events(conn: Connection, events: list[Event], pricing: Pricing) -> BatchOutcome:
    """Apply a batch inside the caller's transaction."""
    unique = list({event.event_id: event for event in events}.values())
    generated = [event for event in unique if isinstance(event, QuestionsGenerated)]
    jobs = [event for event in unique if isinstance(event, JobCreated)]

    await store.lock(conn, lock_keys([*generated, *jobs]))
    await store.remember_jobs(conn, jobs)
    known = await store.find_jobs(
        conn,
        job_ids=[event.job_id for event in generated if event.job_id is not None],
        drafts=[(event.company_id, ref) for event in generated for ref in references(event)],
    )
    rows = [
        usage_row(event, place(event, known), pricing.cost(event.question_count))
        for event in generated
    ]
    inserted = await store.insert_usage(conn, rows)
    attached = await store.attach_drafts(conn, jobs)

    outcome = BatchOutcome()
    for row in rows:
        outcome.by_event[row.event_id] = UsageRecorded(
            new=row.event_id in inserted,
            placement=Placement(job_id=row.job_id, draft_job_id=row.draft_job_id),
            cost=row.cost,
        )
    for job in jobs:
        outcome.by_event[job.event_id] = reconciled(job, attached)
    return outcome
