"""One reconciliation run over a range of UTC days.

A run is one transaction holding the run's advisory lock (`pg_try_advisory_xact_lock`):
whoever holds it runs, anyone else is told so (None) and runs nothing. Under it, the
run reads the provider's pages one after the other; for each, our calls of the page's
days (one query), compares them (`rules.compare_day`) and writes the rows. The run row
is written last, in the same transaction: a run that succeeded is there with all its
rows, or not at all.

When the provider cannot be read (`UsageUnavailable`: refused, unanswered, malformed)
the transaction is rolled back, and the run alone is recorded, failed, with its reason:
nothing else changes, and the next run tries again. A run cut short (the process
stopped) leaves nothing.

A run changes nothing but its own rows, so running a range again is idempotent: the
newer run's rows are what the list shows for those days, with the same figures unless
one side's figures moved (a late call, a provider's correction), and the older run
stays in the history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from uuid import UUID, uuid4

import asyncpg
import structlog

from services.billing import metrics
from services.billing.reconciliation import store
from services.billing.reconciliation.provider import (
    Malformed,
    UsageDay,
    UsageReader,
    UsageUnavailable,
)
from services.billing.reconciliation.rules import (
    DISAGREEING,
    Figures,
    Summary,
    by_stem,
    compare_day,
    days_between,
)
from services.billing.reconciliation.store import Run
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
Trigger = Literal["schedule", "request"]


@dataclass(frozen=True)
class RunOrder:
    """What to run: the days `[first, last]`, why, and who asked."""

    first: date
    last: date
    trigger: Trigger
    requested_by: str | None = None


# What to run, decided under the lock (the daily run reads what ran before it); None: nothing.
Plan = Callable[[Connection], Awaitable[RunOrder | None]]


def ordered(order: RunOrder) -> Plan:
    """The plan of a run asked for: this one, whatever ran before."""

    async def plan(_: Connection) -> RunOrder:
        return order

    return plan


async def reconcile(
    pool: asyncpg.Pool,
    reader: UsageReader,
    plan: Plan,
    *,
    clock: Clock,
    tolerance: Decimal,
    run_id: UUID | None = None,
    on_start: Callable[[], None] | None = None,
) -> Run | None:
    """Run what `plan` says, if no other run holds the lock; the run as recorded, or None
    (another run holds the lock, or the plan had nothing to run). `on_start` is called once
    the lock is held and the run begins."""
    run_id = run_id or uuid4()
    started_at = clock()
    today = started_at.astimezone(UTC).date()
    order: RunOrder | None = None
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                if not await store.try_run_lock(conn):
                    return None
                order = await plan(conn)
                if order is None:
                    return None
                if on_start is not None:
                    on_start()
                summary, pages = await _compare(conn, reader, order, run_id, today, tolerance)
                run = _finished(run_id, order, today, started_at, clock(), pages, summary)
                await store.insert_run(conn, run)
        except UsageUnavailable as exc:
            reason = exc.reason
        except Exception as exc:
            if order is None:
                raise  # the lock or the plan: nothing began
            log.exception("reconciliation run broke off", run_id=str(run_id))
            reason = f"unexpected error: {type(exc).__name__}"
        else:
            _report(run)
            return run
        assert order is not None
        run = _finished(run_id, order, today, started_at, clock(), 0, Summary(), reason)
        async with conn.transaction():
            await store.insert_run(conn, run)
    _report(run)
    return run


def _finished(
    run_id: UUID,
    order: RunOrder,
    today: date,
    started_at: datetime,
    finished_at: datetime,
    pages: int,
    summary: Summary,
    reason: str | None = None,
) -> Run:
    return Run(
        run_id=run_id,
        trigger=order.trigger,
        requested_by=order.requested_by,
        first_day=order.first,
        last_day=order.last,
        as_of=today,
        started_at=started_at,
        finished_at=finished_at,
        status="succeeded" if reason is None else "failed",
        reason=reason,
        pages=pages,
        summary=summary,
    )


async def _compare(
    conn: Connection,
    reader: UsageReader,
    order: RunOrder,
    run_id: UUID,
    today: date,
    tolerance: Decimal,
) -> tuple[Summary, int]:
    """Every day of the order compared and written, a provider's page at a time."""
    summary = Summary()
    pages = 0
    next_day = order.first  # the days before it are written

    async def settle(first: date, last: date, theirs: dict[date, dict[str, Figures]]) -> None:
        ours = await store.ledger_figures(conn, first, last)
        rows = [
            row
            for day in days_between(first, last)
            for row in compare_day(
                day, ours.get(day, {}), theirs.get(day, {}), today=today, tolerance=tolerance
            )
        ]
        await store.insert_results(conn, run_id, rows)
        summary.add(rows)

    async for page in reader.pages(order.first, order.last):
        pages += 1
        theirs = _theirs(page, next_day)
        if theirs:
            last = max(theirs)
            await settle(next_day, last, theirs)
            next_day = last + timedelta(days=1)
        del page, theirs  # not held while the next page is read
    if next_day <= order.last:  # days the provider gave no bucket for
        await settle(next_day, order.last, {})
    return summary, pages


def _theirs(page: list[UsageDay], after: date) -> dict[date, dict[str, Figures]]:
    """A page's days by day and model stem; each day once, none before `after`."""
    theirs: dict[date, dict[str, Figures]] = {}
    for usage in page:
        if usage.day < after or usage.day in theirs:
            raise Malformed(f"malformed usage page: the day {usage.day} was already read")
        theirs[usage.day] = by_stem(usage.models)
    return theirs


def _report(run: Run) -> None:
    metrics.RECONCILIATION_RUNS.labels(run.trigger, run.status).inc()
    fields = {
        "run_id": str(run.run_id),
        "trigger": run.trigger,
        "from": run.first_day.isoformat(),
        "to": run.last_day.isoformat(),
    }
    if not run.succeeded:
        log.warning("reconciliation run failed", reason=run.reason, **fields)
        return
    counts = {status.replace("-", "_"): n for status, n in run.summary.counts.items()}
    disagreeing = run.summary.disagreeing
    if disagreeing:
        log.warning(
            "reconciliation: the provider and the ledger disagree",
            max_drift_percent=str(run.summary.max_drift_percent),
            **counts,
            **fields,
        )
    else:
        log.info("reconciliation run succeeded", pages=run.pages, **counts, **fields)
    show(run)


def show(latest: Run | None) -> None:
    """The gauges, from the latest succeeded run (every process shows the same)."""
    for status in (*DISAGREEING, "matched", "provisional"):
        metrics.RECONCILIATION_DAY_MODELS.labels(status).set(
            latest.summary.counts[status] if latest is not None else 0
        )
    drift = latest.summary.max_drift_percent if latest is not None else None
    metrics.RECONCILIATION_MAX_DRIFT.set(float(drift or 0))
    metrics.RECONCILIATION_LAST_SUCCESS.set(
        latest.finished_at.timestamp() if latest is not None else 0
    )
