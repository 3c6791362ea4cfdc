"""Re-pricing: the calls a version added for the past now covers, priced again while billing runs.

Adding a version enqueues its re-pricing (`book.add_price`). The worker takes the
oldest one and walks its model's calls from the version's effectiveFrom, in rounds
of at most `batch_size` calls, each round one transaction holding the price book's
exclusive lock (`store.py`): every call of the round is priced again with the book
as it stands, the calls whose price changed are rewritten, the margin rollups
gain exactly the difference, and the re-pricing's position moves on with them.
A crash loses at most the round in progress, which the next one does again.

Re-pricing is idempotent: a call is set to what the book says, not moved by a
difference, so a call priced twice, or already priced right by its batch, changes
nothing. Calls before the version's effectiveFrom are never read; calls after a
later version stay at that version's price (the book decides, not the order of
re-pricings).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import structlog

from services.billing import metrics
from services.billing.costs import store
from services.billing.costs.calls import price_calls
from services.billing.costs.margins import MarginDeltas, repricing
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Round:
    """What one round did: the version it re-prices, calls read and changed, finished or not."""

    model_price_id: UUID
    scanned: int
    repriced: int
    done: bool
    total_scanned: int  # by every round of this re-pricing so far
    total_repriced: int


async def reprice_round(conn: Connection, batch_size: int) -> Round | None:
    """One round of the oldest unfinished re-pricing, inside the caller's transaction."""
    await store.lock_book(conn)
    job = await store.next_repricing(conn)
    if job is None:
        return None
    calls = await store.calls_to_reprice(conn, job, batch_size)
    priced = await price_calls(conn, calls)
    changed = []
    deltas = MarginDeltas()
    for before, after in zip(calls, priced, strict=True):
        if (before.provider_cost, before.model_price_id) != (
            after.provider_cost,
            after.model_price_id,
        ):
            changed.append(after)
            change = repricing(before, after)
            deltas.add(before.company_id, before.model, before.occurred_at, change)
    await store.reprice_calls(conn, changed)
    await store.add_margins(conn, deltas)
    done = len(calls) < batch_size
    last = calls[-1] if calls else None
    totals = await store.advance_repricing(conn, job, last, len(calls), len(changed), done)
    return Round(job.model_price_id, len(calls), len(changed), done, *totals)


class Repricer:
    """The worker: rounds back to back while there is work, then a look every `poll_seconds`."""

    def __init__(self, pool: asyncpg.Pool, *, batch_size: int, poll_seconds: float) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-repricing")

    def wake(self) -> None:
        """A version was added: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_round(self) -> Round | None:
        async with self._pool.acquire() as conn, conn.transaction():
            done = await reprice_round(conn, self._batch_size)
        if done is not None:
            metrics.CALLS_REPRICED.inc(done.repriced)
            if done.done and done.total_scanned:  # not the versions no call was waiting for
                log.info(
                    "re-pricing finished",
                    model_price_id=str(done.model_price_id),
                    calls_scanned=done.total_scanned,
                    calls_repriced=done.total_repriced,
                )
        return done

    async def _run(self) -> None:
        while True:
            try:
                done = await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("re-pricing round failed, will retry", error=repr(exc))
                done = None
            if done is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
                self._wake.clear()
