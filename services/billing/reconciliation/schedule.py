"""When runs happen: once a day on their own, and when an operator asks.

Every billing process runs the daily loop. Each `poll_seconds` it refreshes the
gauges from the latest succeeded run (so every process shows the same figures),
then asks for the day's run; `reconcile` takes the run's advisory lock and, under
it, the plan reads what ran before: today's daily run already succeeded, or failed
less than `retry_seconds` ago, and there is nothing to do. So one process runs it
and the others find it done: no second scheduler to run, and none to lose.

The daily run reads the last week (`rules.scheduled_range`): its 3 provisional days
are read again the next days, until they settle. An operator's run (`request`) runs
at once in the background of this process; two at once are one run and a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import asyncpg
import structlog

from services.billing import metrics
from services.billing.reconciliation import store
from services.billing.reconciliation.provider import UsageReader
from services.billing.reconciliation.rules import scheduled_range
from services.billing.reconciliation.run import Clock, RunOrder, ordered, reconcile, show
from services.billing.reconciliation.store import Run
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ReconciliationOff(Exception):
    """No OPENAI_ADMIN_KEY: nothing to read the provider's usage with."""

    def __str__(self) -> str:
        return "reconciliation is off: OPENAI_ADMIN_KEY is not set"


class RunInProgress(Exception):
    """Another run holds the lock (in this process or another)."""

    def __str__(self) -> str:
        return "a reconciliation run is in progress; ask again once it has finished"


@dataclass(frozen=True)
class Started:
    """A run asked for, under way: its id, and the task that ends with it."""

    run_id: UUID
    started_at: datetime
    task: asyncio.Task[Run | None]


def daily_due(now: datetime, latest: Run | None, succeeded: Run | None, retry: timedelta) -> bool:
    """Whether the day's run is due: none succeeded today, and no failure is too recent."""
    today = now.astimezone(UTC).date()
    if succeeded is not None and succeeded.as_of >= today:
        return False
    return latest is None or latest.succeeded or now - latest.finished_at >= retry


class Reconciler:
    """The runs of this process: the daily loop, and the runs operators ask for."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: UsageReader | None,
        *,
        tolerance: Decimal,
        daily: bool = True,
        poll_seconds: float = 300.0,
        retry_seconds: float = 3600.0,
        clock: Clock = utc_now,
    ) -> None:
        self._pool = pool
        self._reader = reader
        self._tolerance = tolerance
        self._daily = daily
        self._poll_seconds = poll_seconds
        self._retry = timedelta(seconds=retry_seconds)
        self._clock = clock
        self._loop_task: asyncio.Task[None] | None = None
        self._requested: set[asyncio.Task[Run | None]] = set()

    @property
    def enabled(self) -> bool:
        return self._reader is not None

    def start(self) -> None:
        metrics.RECONCILIATION_ENABLED.set(1 if self.enabled else 0)
        if not self.enabled:
            log.info("reconciliation is off: OPENAI_ADMIN_KEY is not set")
        self._loop_task = asyncio.create_task(self._run_daily(), name="reconciliation")

    async def stop(self) -> None:
        """Stop the loop and the runs under way (each rolls back: it leaves nothing)."""
        tasks = [*self._requested, *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop_task = None

    # ---------------------------------------------------------------- daily

    async def run_daily(self) -> Run | None:
        """The day's run if it is due and no other run holds the lock; else None."""
        if self._reader is None or not self._daily:
            return None
        return await reconcile(
            self._pool, self._reader, self._plan, clock=self._clock, tolerance=self._tolerance
        )

    async def _plan(self, conn: Connection) -> RunOrder | None:
        now = self._clock()
        latest = await store.latest_scheduled(conn, succeeded_only=False)
        succeeded = await store.latest_scheduled(conn, succeeded_only=True)
        if not daily_due(now, latest, succeeded, self._retry):
            return None
        covered = succeeded.last_day if succeeded is not None else None
        first, last = scheduled_range(now.astimezone(UTC).date(), covered)
        return RunOrder(first, last, "schedule")

    async def refresh_gauges(self) -> None:
        async with self._pool.acquire() as conn:
            show(await store.latest_succeeded(conn))

    async def _run_daily(self) -> None:
        while True:
            try:
                await self.refresh_gauges()
                await self.run_daily()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The run itself records what the provider did; this is the database.
                log.warning("reconciliation pass failed, will retry", error=repr(exc))
            await asyncio.sleep(self._poll_seconds)

    # ---------------------------------------------------------------- asked for

    async def request(self, order: RunOrder, clock: Clock | None = None) -> Started:
        """Start a run of `order` in the background once it holds the lock; `RunInProgress`
        when another run holds it, `ReconciliationOff` without a key."""
        if self._reader is None:
            raise ReconciliationOff()
        run_id = uuid4()
        began = asyncio.get_running_loop().create_future()

        def on_start() -> None:
            if not began.done():
                began.set_result(None)

        task = asyncio.create_task(
            reconcile(
                self._pool,
                self._reader,
                ordered(order),
                clock=clock or self._clock,
                tolerance=self._tolerance,
                run_id=run_id,
                on_start=on_start,
            ),
            name=f"reconciliation-{run_id}",
        )
        self._requested.add(task)
        task.add_done_callback(self._forget)
        await asyncio.wait({began, task}, return_when=asyncio.FIRST_COMPLETED)
        if not began.done():
            began.cancel()
            if await task is None:
                raise RunInProgress()
        return Started(run_id, (clock or self._clock)(), task)

    def _forget(self, task: asyncio.Task[Run | None]) -> None:
        self._requested.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reconciliation run failed to record", error=repr(task.exception()))
