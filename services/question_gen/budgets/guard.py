"""The budget guard on the request path: reserve before the LLM call, settle or release after.

Every generation counts in its period, limit or not: its row carries its cost
(`settlement`), counted from its commit on (see `store`). Under a limit it also
settles the reservation its request holds.

What a company may spend comes from billing's events (`consume.py`), kept in this
service's own database; the guard never calls billing. Per process it remembers
each company's terms (has it a limit, its prices) for `refresh_seconds`, so a
company with no limit costs no query at all, and a change billing publishes takes
effect within that time of its arrival. The limit itself is read under the
period's row lock, when the reservation is decided.

Reservations are decided in batches: a request joins the batch after the one in
hand, so under load one statement decides many (see `store.RESERVE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from uuid import UUID

import asyncpg
import structlog

from contracts.events import QuestionsGenerated
from contracts.periods import period_of
from services.question_gen.budgets import store
from services.question_gen.budgets.rules import (
    BudgetExceeded,
    Settlement,
    Terms,
    cost_at,
)
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)

# Companies remembered per process; past this the memory starts over (a query each).
MAX_REMEMBERED = 100_000
# Reservations decided in one transaction at most.
BATCH_SIZE = 500


@dataclass(frozen=True)
class Reservation:
    """The worst-case cost of one request, held against its period's limit."""

    id: UUID
    company_id: UUID
    period: str
    amount: Decimal


class Outcome(Enum):
    RESERVED = "reserved"
    REFUSED = "refused"
    UNLIMITED = "unlimited"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BudgetGuard:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        hold_seconds: float,
        refresh_seconds: float = 1.0,
        sweep_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._pool = pool
        self._hold_seconds = hold_seconds
        self._refresh_seconds = refresh_seconds
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._now = now
        self._known: dict[UUID, tuple[float, Terms]] = {}
        self._loading: dict[UUID, asyncio.Task[Terms]] = {}
        self._changes = 0  # grows with every `forget`: a load begun before one is not kept
        self._sweeper: asyncio.Task[None] | None = None
        self._waiting: list[tuple[Reservation, asyncio.Future[Outcome]]] = []
        self._batches: asyncio.Task[None] | None = None
        self._periods: set[tuple[UUID, str]] = set()  # (company, period) rows made
        self._releasing: set[asyncio.Task[None]] = set()  # reservations given back late

    # -- the request path ------------------------------------------------------------------

    async def reserve(self, company_id: UUID, question_count: int) -> Reservation | None:
        """Hold the request's worst case; None when the company has no limit.

        `BudgetExceeded` when it does not fit: nothing is held, the LLM is not called.
        """
        terms = await self.terms(company_id)
        if not terms.limited:
            return None
        now = self._now()
        period = period_of(now)
        amount = cost_at(terms, company_id, now, question_count)
        reservation = Reservation(uuid.uuid4(), company_id, period, amount)
        outcome = await self._batched(reservation)
        if outcome is Outcome.REFUSED:
            # Reservations count at their worst case until folded (settled ones at their
            # cost, expired ones at nothing): fold them now rather than refuse on their
            # account, then decide once more. Whether or not this fold found any: a
            # concurrent fold (another refused request, the sweeper) may have taken them.
            async with self._pool.acquire() as conn:
                await store.fold(conn, company_id, period)
            outcome = await self._batched(reservation)
        if outcome is Outcome.REFUSED:
            raise BudgetExceeded(company_id, period, amount)
        if outcome is Outcome.UNLIMITED:  # the limit was removed meanwhile
            self.forget(company_id)
            return None
        return reservation

    async def settlement(
        self, conn: Connection, reservation: Reservation | None, event: QuestionsGenerated
    ) -> Settlement:
        """What every generation row carries: its cost, and the reservation it settles.

        Its cost as billing will bill it: the questions delivered at the price in force
        at the generation's occurredAt, counted in that instant's period. Asked of every
        generation, with a reservation or without (its company had no limit), so that
        what a company spent before it had a limit counts against the limit it then has.
        """
        # Read on the caller's connection: waiting for another one while holding this one
        # could leave every connection of the pool waiting.
        terms = self._fresh(event.company_id) or await self._load(event.company_id, conn)
        cost = cost_at(terms, event.company_id, event.occurred_at, event.question_count)
        return Settlement(
            reservation.id if reservation else None, cost, period_of(event.occurred_at)
        )

    async def release(self, reservation: Reservation) -> None:
        """The generation failed: give the reservation back (else it expires).

        Safe whatever happened: a reservation whose generation was recorded after all
        (its reply was lost) is kept until the fold that counts the generation.
        """
        try:
            async with self._pool.acquire() as conn:
                await store.release(conn, reservation.id)
        except Exception:
            log.warning("budget reservation not released; it expires", exc_info=True)

    # -- reservations, a batch at a time ---------------------------------------------------

    async def _batched(self, reservation: Reservation) -> Outcome:
        """Join the next batch: every request waiting when the batch in hand ends."""
        decided: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((reservation, decided))
        if self._batches is None or self._batches.done():
            self._batches = asyncio.create_task(self._reserve_batches(), name="budget-batches")
        try:
            return await asyncio.shield(decided)
        except asyncio.CancelledError:
            # The request gave up (its deadline). Undecided: the batch gives it back when
            # decided. Decided already, but too late for the request: give it back here.
            if not decided.done():
                decided.cancel()
            elif (
                not decided.cancelled()
                and decided.exception() is None
                and decided.result() is Outcome.RESERVED
            ):
                releasing = asyncio.create_task(self.release(reservation))
                self._releasing.add(releasing)
                releasing.add_done_callback(self._releasing.discard)
            raise

    async def _reserve_batches(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH_SIZE], self._waiting[BATCH_SIZE:]
            try:
                outcomes = await self._reserve_batch([reservation for reservation, _ in batch])
            except BaseException as exc:
                stopping = not isinstance(exc, Exception)
                # A failed batch fails its requests; stopping fails every request waiting.
                failed, self._waiting = (
                    ([*batch, *self._waiting], []) if stopping else (batch, self._waiting)
                )
                for _, decided in failed:
                    if decided.done():
                        continue
                    if stopping:
                        decided.cancel()
                    else:
                        decided.set_exception(exc)
                if stopping:
                    raise
                continue
            for (reservation, decided), outcome in zip(batch, outcomes, strict=True):
                if not decided.done():
                    decided.set_result(outcome)
                elif outcome is Outcome.RESERVED:  # its request is gone: give it back
                    await self.release(reservation)

    async def _reserve_batch(self, batch: list[Reservation]) -> list[Outcome]:
        keys = {(r.company_id, r.period) for r in batch}
        async with self._pool.acquire() as conn:
            if not keys <= self._periods:  # a period's first reservation in this process
                await store.add_periods(conn, sorted(keys - self._periods, key=str))
                if len(self._periods) >= MAX_REMEMBERED:
                    self._periods.clear()
                self._periods |= keys
            decided = await store.reserve(
                conn, [(r.id, r.company_id, r.period, r.amount) for r in batch], self._hold_seconds
            )
        return [
            Outcome.RESERVED if reserved else Outcome.REFUSED if limited else Outcome.UNLIMITED
            for reserved, limited in decided
        ]

    # -- what the guard knows of each company ----------------------------------------------

    async def terms(self, company_id: UUID) -> Terms:
        """The company's terms, read again when older than `refresh_seconds`.

        Call it holding no connection of the pool: it may need one.
        """
        fresh = self._fresh(company_id)
        if fresh is not None:
            return fresh
        loading = self._loading.get(company_id)
        if loading is None:  # one query per company however many requests wait for it
            loading = asyncio.ensure_future(self._load_from_pool(company_id))
            self._loading[company_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(company_id, None))
        return await asyncio.shield(loading)

    def _fresh(self, company_id: UUID) -> Terms | None:
        known = self._known.get(company_id)
        if known is not None and self._clock() - known[0] < self._refresh_seconds:
            return known[1]
        return None

    async def _load_from_pool(self, company_id: UUID) -> Terms:
        async with self._pool.acquire() as conn:
            return await self._load(company_id, conn)

    async def _load(self, company_id: UUID, conn: Connection) -> Terms:
        started, changes = self._clock(), self._changes
        terms = await store.terms(conn, company_id)
        if changes == self._changes:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            self._known[company_id] = (started, terms)
        return terms

    def forget(self, company_id: UUID | None = None) -> None:
        """A change arrived: read the company's terms again (None: every company's)."""
        self._changes += 1
        if company_id is None:
            self._known.clear()
        else:
            self._known.pop(company_id, None)

    # -- folding finished reservations into the counters ------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="budget-sweeper")

    async def stop(self) -> None:
        if self._batches is not None:
            self._batches.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batches
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
            try:  # what this process settled is counted before it goes (else the next fold)
                await self.sweep()
            except Exception:
                log.warning("budget fold at stop failed; the next one counts it", exc_info=True)

    async def sweep(self) -> int:
        """Fold every settled or expired reservation into its counter; how many."""
        folded = 0
        async with self._pool.acquire() as conn:
            for company_id, period in await store.held(conn):
                folded += await store.fold(conn, company_id, period)
        return folded

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.warning("budget sweep failed; next in a moment", exc_info=True)
