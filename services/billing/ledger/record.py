"""Recording a batch in the ledger: usage rows exactly once, drafts moved onto their jobs,
LLM calls kept once at their provider cost.

One transaction per batch. Advisory locks on every (company, id) the batch
touches serialize it with any other writer of the same drafts, so a usage event
and the JobCreated of its draft, committed at the same moment by two workers,
cannot leave a row behind as a draft.

A transient failure (connection lost, serialization failure, deadlock) is
retried with backoff for as long as it takes; the batch's messages stay
unacknowledged meanwhile. Any other failure splits the batch so that one bad
event cannot hold the others back: each is committed alone, and only the
failing one reports an error.

Each generation is priced once, here, with its company's price version
in force at its occurredAt. A cost the ledger cannot hold at that price raises
`CostOutOfRange`, a `PoisonMessage`: the consumer dead-letters it at once. The
`default` pricing (the environment's, from `Settings`) is used only for an event
the book has no version for, which happens only on a database billing never
started on (billing records the environment's price as the default version at
start); such a row keeps no priceId.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from contracts.events import JobCreated, LlmCallFinished, QuestionsGenerated
from services.billing.costs.calls import CallRecorded, record_calls
from services.billing.ledger import store
from services.billing.ledger.batch import BatchEffect, RecordedBatch
from services.billing.ledger.effects import EFFECTS
from services.billing.ledger.rules import (
    Entry,
    KnownJobs,
    Placement,
    Pricing,
    lock_keys,
    place,
    references,
)
from services.billing.ledger.store import Attached, UsageRow
from services.billing.metrics import BATCH_SIZE, TRANSIENT_RETRIES
from services.billing.prices import book
from services.billing.prices.rules import PriceVersion
from services.billing.statements import store as statements
from services.billing.statements.rules import Billed
from services.servicekit.db import Connection, is_transient

log = structlog.get_logger(__name__)


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


Recorded = UsageRecorded | DraftsReconciled | CallRecorded
# `record_batch` bound to a pool: one result, or the error, per entry, in order.
RecordBatch = Callable[[list[Entry]], Awaitable[Sequence[Recorded | Exception]]]


async def record_batch(
    pool: asyncpg.Pool, entries: list[Entry], *, default: Pricing, max_retry_delay: float = 5.0
) -> list[Recorded | Exception]:
    """Commit the entries together; if that fails for good, each alone."""
    BATCH_SIZE.observe(len(entries))
    try:
        recorded = await _commit(pool, entries, default, max_retry_delay)
    except Exception as exc:
        if len(entries) == 1:
            return [exc]
        log.warning("batch failed, committing its events one by one", error=repr(exc))
        return [await _commit_alone(pool, entry, default, max_retry_delay) for entry in entries]
    return [recorded[entry.event_id] for entry in entries]


async def _commit_alone(
    pool: asyncpg.Pool, entry: Entry, default: Pricing, max_retry_delay: float
) -> Recorded | Exception:
    try:
        return (await _commit(pool, [entry], default, max_retry_delay))[entry.event_id]
    except Exception as exc:
        return exc


def _log_retry(state: RetryCallState) -> None:
    TRANSIENT_RETRIES.inc()
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient database error, retrying batch", attempt=state.attempt_number, error=repr(error)
    )


async def _commit(
    pool: asyncpg.Pool, entries: list[Entry], default: Pricing, max_retry_delay: float
) -> dict[UUID, Recorded]:
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.05, max=max_retry_delay, jitter=0.05),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            async with pool.acquire(timeout=10) as conn, conn.transaction():
                return await record_events(conn, entries, default=default)
    raise AssertionError("unreachable: tenacity retries until success or a permanent error")


async def record_events(
    conn: Connection,
    entries: Sequence[Entry],
    *,
    default: Pricing,
    effects: Sequence[BatchEffect] = EFFECTS,
) -> dict[UUID, Recorded]:
    """Apply a batch inside the caller's transaction; what each event did, by event id.

    The ledger's own work: lock, bill each generation in its period at the price in
    force at its occurredAt, insert its row, move drafts onto their jobs, keep each LLM
    call at its model's price (`costs/calls.py`). Then every effect of the batch, in
    order (`effects.py`). `default` prices only a generation the price book has no
    version for (see above).
    """
    unique = list({entry.event_id: entry for entry in entries}.values())
    generated = [entry for entry in unique if isinstance(entry, QuestionsGenerated)]
    jobs = [entry for entry in unique if isinstance(entry, JobCreated)]
    llm_calls = [entry for entry in unique if isinstance(entry, LlmCallFinished)]
    now = datetime.now(UTC)

    await store.lock(conn, lock_keys([*generated, *jobs]))
    # Each generation's billing period, late if its own was closed first; holds those
    # periods against a close until this batch commits (see statements/store.py).
    periods = await statements.bill_periods(conn, generated, now)
    await store.remember_jobs(conn, jobs)
    known = KnownJobs(
        await store.find_jobs(
            conn,
            job_ids=[event.job_id for event in generated if event.job_id is not None],
            drafts=[(event.company_id, ref) for event in generated for ref in references(event)],
        )
    )
    prices = await book.prices_at(conn, generated)  # by occurredAt, one query per batch
    rows = [
        usage_row(event, place(event, known), price, periods[event.event_id], default)
        for event, price in zip(generated, prices, strict=True)
    ]
    inserted = await store.insert_usage(conn, rows)
    attached = await store.attach_drafts(conn, jobs)
    calls = await record_calls(conn, llm_calls)

    batch = RecordedBatch(
        now=now,
        inserted=[row for row in rows if row.event_id in inserted],
        moved=attached,
        jobs=jobs,
        calls=calls.new,
    )
    for effect in effects:
        await effect(conn, batch)

    recorded: dict[UUID, Recorded] = {
        row.event_id: UsageRecorded(
            new=row.event_id in inserted,
            placement=Placement(job_id=row.job_id, draft_job_id=row.draft_job_id),
            cost=row.cost,
        )
        for row in rows
    }
    moved_by_job: dict[UUID, list[Attached]] = {}
    for row in attached:
        moved_by_job.setdefault(row.job_id, []).append(row)
    for job in jobs:
        recorded[job.event_id] = reconciled(job, moved_by_job.get(job.job_id, []))
    recorded.update(calls.results())
    return recorded


def usage_row(
    event: QuestionsGenerated,
    placement: Placement,
    price: PriceVersion | None,
    billed: Billed,
    default: Pricing,
) -> UsageRow:
    """Priced once, with the price version in force at the generation's occurredAt.

    No version only before billing first started on this database: the `default`
    pricing then, and no priceId. `CostOutOfRange` if the ledger cannot hold the cost.
    """
    return UsageRow(
        event_id=event.event_id,
        company_id=event.company_id,
        job_id=placement.job_id,
        draft_job_id=placement.draft_job_id,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.total_tokens,
        question_count=event.question_count,
        cost=(price.pricing if price is not None else default).bill(event),
        price_id=price.price_id if price is not None else None,
        model_used=event.model,
        created_at=event.occurred_at,
        period=str(billed.period),
        late=billed.late,
    )


def reconciled(job: JobCreated, mine: list[Attached]) -> DraftsReconciled:
    """What `job` did: `mine`, the draft rows this batch moved onto it."""
    return DraftsReconciled(
        job_id=job.job_id,
        rows=len(mine),
        questions=sum(row.question_count for row in mine),
        cost=sum((row.cost for row in mine), Decimal("0")),
    )
