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

One reservation covers the company's credits too, when it is in `credit_only`
(`credits/`): the credit check first, then the budget's, in one transaction; one
refused gives back what the other held, and the refusal says which refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from services.question_gen.credits import store as credits
from services.question_gen.credits.rules import (
    ENFORCED_MODE,
    CreditsExhausted,
    counts_as_unbilled,
)
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)

# Companies remembered per process; past this the memory starts over (a query each).
MAX_REMEMBERED = 100_000
# Reservations decided in one transaction at most.
BATCH_SIZE = 500


@dataclass(frozen=True)
class Reservation:
    """The worst-case cost of one request, held against its period's limit (`budget`),
    its company's credits (`credits`), or both."""

    id: UUID
    company_id: UUID
    period: str
    amount: Decimal
    budget: bool = True
    credits: bool = False


class Outcome(Enum):
    RESERVED = "reserved"
    REFUSED = "refused"
    CREDITS_EXHAUSTED = "credits-exhausted"
    UNLIMITED = "unlimited"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    budget: bool = False  # held against the limit
    credits: bool = False  # held against the credits


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
        self._waiting: list[tuple[Reservation, asyncio.Future[Decision]]] = []
        self._batches: asyncio.Task[None] | None = None
        self._periods: set[tuple[UUID, str]] = set()  # (company, period) rows made
        self._releasing: set[asyncio.Task[None]] = set()  # reservations given back late

    # -- the request path ------------------------------------------------------------------

    async def reserve(self, company_id: UUID, question_count: int) -> Reservation | None:
        """Hold the request's worst case; None when the company has no limit and is not
        in `credit_only`.

        `BudgetExceeded` or `CreditsExhausted` when it does not fit: nothing is held, the
        LLM is not called.
        """
        terms = await self.terms(company_id)
        enforced = terms.credit_mode == ENFORCED_MODE
        if not terms.limited and not enforced:
            return None
        now = self._now()
        period = period_of(now)
        amount = cost_at(terms, company_id, now, question_count)
        asked = Reservation(
            uuid.uuid4(), company_id, period, amount, budget=terms.limited, credits=enforced
        )
        decision = await self._batched(asked)
        if decision.outcome in (Outcome.REFUSED, Outcome.CREDITS_EXHAUSTED):
            # Reservations count at their worst case until folded (settled ones at their
            # cost, expired ones at nothing): fold them now rather than refuse on their
            # account, then decide once more. Whether or not this fold found any: a
            # concurrent fold (another refused request, the sweeper) may have taken them.
            async with self._pool.acquire() as conn:
                if decision.outcome is Outcome.REFUSED:
                    await store.fold(conn, company_id, period)
                else:
                    await credits.fold(conn, company_id)
            decision = await self._batched(asked)
        if decision.outcome is Outcome.REFUSED:
            raise BudgetExceeded(company_id, period, amount)
        if decision.outcome is Outcome.CREDITS_EXHAUSTED:
            raise CreditsExhausted(company_id, amount)
        if decision.budget != asked.budget or decision.credits != asked.credits:
            self.forget(company_id)  # a limit or the mode changed meanwhile
        if decision.outcome is Outcome.UNLIMITED:
            return None
        return replace(asked, budget=decision.budget, credits=decision.credits)

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
        on_credits = reservation is not None and reservation.credits
        return Settlement(
            reservation.id if reservation and reservation.budget else None,
            cost,
            period_of(event.occurred_at),
            credit_reservation_id=reservation.id if reservation and on_credits else None,
            credit_spend=counts_as_unbilled(
                ENFORCED_MODE if on_credits else terms.credit_mode, cost
            ),
        )

    async def release(self, reservation: Reservation) -> None:
        """The generation failed: give the reservation back (else it expires).

        Safe whatever happened: a reservation whose generation was recorded after all
        (its reply was lost) is kept until the fold that counts the generation.
        """
        try:
            async with self._pool.acquire() as conn:
                if reservation.budget:
                    await store.release(conn, reservation.id)
                if reservation.credits:
                    await credits.release(conn, [reservation.id])
        except Exception:
            log.warning("budget reservation not released; it expires", exc_info=True)

    # -- reservations, a batch at a time ---------------------------------------------------

    async def _batched(self, reservation: Reservation) -> Decision:
        """Join the next batch: every request waiting when the batch in hand ends."""
        decided: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
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
                and decided.result().outcome is Outcome.RESERVED
            ):
                held = decided.result()
                releasing = asyncio.create_task(
                    self.release(replace(reservation, budget=held.budget, credits=held.credits))
                )
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
                elif outcome.outcome is Outcome.RESERVED:  # its request is gone: give it back
                    await self.release(
                        replace(reservation, budget=outcome.budget, credits=outcome.credits)
                    )

    async def _reserve_batch(self, batch: list[Reservation]) -> list[Decision]:
        on_credits = [r for r in batch if r.credits]
        async with self._pool.acquire() as conn:
            if not on_credits:
                return await self._reserve_budgets(conn, batch, {})
            if not any(r.budget for r in batch):  # one statement, as the budget's alone
                return await self._reserve_credits(conn, batch, on_credits)
            # Both checks in one transaction: credits first (their account rows), then the
            # budget's period rows; what the budget refuses gives its credits back.
            async with conn.transaction():
                return await self._reserve_credits(conn, batch, on_credits)

    async def _reserve_credits(
        self, conn: Connection, batch: list[Reservation], on_credits: list[Reservation]
    ) -> list[Decision]:
        decided = await credits.reserve(
            conn,
            [(r.id, r.company_id, r.amount) for r in on_credits],
            now=self._now(),
            hold_seconds=self._hold_seconds,
        )
        return await self._reserve_budgets(
            conn, batch, {r.id: d for r, d in zip(on_credits, decided, strict=True)}
        )

    async def _reserve_budgets(
        self,
        conn: Connection,
        batch: list[Reservation],
        on_credits: dict[UUID, tuple[bool, bool]],  # id: (enforced, reserved)
    ) -> list[Decision]:
        exhausted = {id for id, (enforced, held) in on_credits.items() if enforced and not held}
        asking = [r for r in batch if r.budget and r.id not in exhausted]
        budget: dict[UUID, tuple[bool, bool]] = {}  # id: (reserved, limited)
        if asking:
            keys = {(r.company_id, r.period) for r in asking}
            if not keys <= self._periods:  # a period's first reservation in this process
                await store.add_periods(conn, sorted(keys - self._periods, key=str))
                if len(self._periods) >= MAX_REMEMBERED:
                    self._periods.clear()
                self._periods |= keys
            decided = await store.reserve(
                conn,
                [(r.id, r.company_id, r.period, r.amount) for r in asking],
                self._hold_seconds,
            )
            budget = {r.id: d for r, d in zip(asking, decided, strict=True)}
        refused = {id for id, (reserved, limited) in budget.items() if limited and not reserved}
        given_back = [id for id in refused if on_credits.get(id, (False, False))[1]]
        if given_back:
            await credits.release(conn, given_back)
        return [self._decision(r.id, on_credits, budget, refused) for r in batch]

    @staticmethod
    def _decision(
        id: UUID,
        on_credits: dict[UUID, tuple[bool, bool]],
        budget: dict[UUID, tuple[bool, bool]],
        refused: set[UUID],
    ) -> Decision:
        enforced, credit_held = on_credits.get(id, (False, False))
        if enforced and not credit_held:
            return Decision(Outcome.CREDITS_EXHAUSTED)
        if id in refused:
            return Decision(Outcome.REFUSED)
        budget_held = budget.get(id, (False, False))[0]
        if not budget_held and not credit_held:
            return Decision(Outcome.UNLIMITED)
        return Decision(Outcome.RESERVED, budget=budget_held, credits=credit_held)

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
            for company_id in await credits.held(conn):
                folded += await credits.fold(conn, company_id)
        return folded

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.warning("budget sweep failed; next in a moment", exc_info=True)
