"""The credit guard (`credit_only`) against the real database: one reservation with the budget.

Billing's accounts arrive as `CreditsChanged` (applied here as the consumer applies
them); the guard counts the service's own generations until billing names them as
recorded, so a billing that lags can never let a company overdraw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg
import pytest

from contracts.events import BudgetChanged, CreditsChanged, QuestionsGenerated
from contracts.periods import period_of
from services.question_gen import store as generations
from services.question_gen.budgets import store as budgets
from services.question_gen.budgets.consume import apply
from services.question_gen.budgets.guard import BudgetGuard, Reservation
from services.question_gen.budgets.rules import BudgetExceeded
from services.question_gen.credits import store
from services.question_gen.credits.rules import CreditsExhausted, GrantLeft, drawable
from services.servicekit import db
from tests.support.databases import ServiceDatabases
from tests.support.events import credit_left, credits_changed, generated

NOW = datetime.now(UTC)
HOLD = 60.0


@pytest.fixture
async def pool(dbs: ServiceDatabases) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(dbs.question_gen, min_size=1, max_size=20)
    try:
        yield created
    finally:
        await created.close()


def guard_at(pool: asyncpg.Pool, hold_seconds: float = HOLD) -> BudgetGuard:
    return BudgetGuard(pool, hold_seconds=hold_seconds, refresh_seconds=0, now=lambda: NOW)


async def publish(pool: asyncpg.Pool, *events: CreditsChanged | BudgetChanged) -> None:
    """As the consumer applies billing's events."""
    async with pool.acquire() as conn:
        for event in events:
            await apply(conn, event)


async def account(pool: asyncpg.Pool, company: UUID) -> store.CreditCounter:
    async with pool.acquire() as conn:
        found = await store.counter(conn, company, NOW, HOLD)
    assert found is not None
    return found


async def admitted(guard: BudgetGuard, company: UUID, questions: int = 10) -> bool:
    try:
        return await guard.reserve(company, questions) is not None
    except CreditsExhausted:
        return False


async def generate(
    guard: BudgetGuard, pool: asyncpg.Pool, company: UUID, *, fold: bool = True
) -> QuestionsGenerated:
    """A 10-question request reserved and answered, its generation written as the service
    writes it (then folded, by default)."""
    reservation = await guard.reserve(company, 10)
    assert reservation is not None
    event = generated(company, at=NOW + timedelta(seconds=1))
    await record(guard, pool, reservation, event)
    if fold:
        assert await guard.sweep() >= 1
    return event


async def record(
    guard: BudgetGuard,
    pool: asyncpg.Pool,
    reservation: Reservation | None,
    event: QuestionsGenerated,
) -> None:
    async with pool.acquire() as conn:
        settles = await guard.settlement(conn, reservation, event)
        await generations.record_generation(conn, event, correlation_id=None, settles=settles)


def limit(company: UUID, monthly_limit: str, revision: int = 1) -> BudgetChanged:
    return BudgetChanged(
        event_id=UUID(int=revision),
        occurred_at=NOW,
        company_id=company,
        revision=revision,
        monthly_limit=Decimal(monthly_limit),
        thresholds=[],
    )


async def test_forty_concurrent_reservations_on_a_balance_of_one_never_overdraw(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await publish(pool, credits_changed(company, revision=1, grants=[credit_left("1.0000")]))
    guard = guard_at(pool)
    outcomes = await asyncio.gather(*(admitted(guard, company) for _ in range(40)))
    assert outcomes.count(True) == 10
    held = await account(pool, company)
    assert (held.reserved, held.reservations) == (Decimal("1.0000"), 10)


async def test_generations_count_until_billing_names_them_as_recorded(
    pool: asyncpg.Pool, company: UUID
) -> None:
    first = credits_changed(company, revision=1, grants=[credit_left("0.3000")])
    await publish(pool, first)
    guard = guard_at(pool)
    made = [await generate(guard, pool, company) for _ in range(3)]
    # Billing has not recorded any of them: its balance still says 0.3000, yet nothing fits.
    assert not await admitted(guard, company, questions=1)
    held = await account(pool, company)
    assert (held.balance, held.unbilled, held.reserved) == (
        Decimal("0.3000"),
        Decimal("0.3000"),
        Decimal("0.0000"),
    )
    # Billing records two of them (it drew 0.2000); the older account arriving late changes
    # nothing.
    two = credits_changed(
        company, revision=2, grants=[credit_left("0.1000")], counted=[e.event_id for e in made[:2]]
    )
    await publish(pool, two, first)
    held = await account(pool, company)
    assert (held.revision, held.balance, held.unbilled) == (2, Decimal("0.1000"), Decimal("0.1000"))
    assert not await admitted(guard, company, questions=1)
    # The third is recorded and a new grant of 0.2000 bought: exactly two more fit.
    three = credits_changed(
        company, revision=3, grants=[credit_left("0.2000")], counted=[made[2].event_id]
    )
    await publish(pool, three)
    assert [await admitted(guard, company) for _ in range(3)] == [True, True, False]
    held = await account(pool, company)
    assert (held.unbilled, held.spends) == (Decimal("0.0000"), 0)


async def test_a_generation_named_before_its_fold_gives_its_reservation_back(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await publish(pool, credits_changed(company, revision=1, grants=[credit_left("0.1000")]))
    guard = guard_at(pool)
    event = await generate(guard, pool, company, fold=False)
    held = await account(pool, company)
    assert (held.unfolded, held.reserved) == (Decimal("0.1000"), Decimal("0.1000"))
    recorded = credits_changed(company, revision=2, counted=[event.event_id])  # drew it all
    await publish(pool, recorded)
    held = await account(pool, company)
    assert (held.unfolded, held.unbilled, held.reserved, held.reservations, held.spends) == (
        Decimal(0),
        Decimal(0),
        Decimal(0),
        0,
        0,
    )
    async with pool.acquire() as conn:
        assert await store.fold(conn, company) == 0  # nothing left to fold


async def test_only_grants_in_effect_for_the_whole_hold_are_counted(
    pool: asyncpg.Pool, company: UUID
) -> None:
    grants = [
        credit_left("5.0000", effective_at=NOW + timedelta(minutes=5)),  # not yet
        credit_left("5.0000", expires_at=NOW + timedelta(seconds=HOLD / 2)),  # within the hold
        credit_left("0.1000"),
    ]
    await publish(pool, credits_changed(company, revision=1, grants=grants))
    guard = guard_at(pool)
    assert [await admitted(guard, company) for _ in range(2)] == [True, False]
    # The SQL counts what the pure rule counts.
    left = [GrantLeft(g.remaining, g.effective_at, g.expires_at) for g in grants]
    expected = drawable(left, NOW, timedelta(seconds=HOLD))
    assert (await account(pool, company)).drawable == expected == Decimal("0.1000")


async def test_a_budget_and_credits_are_both_checked_and_the_refusal_says_which(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await publish(
        pool,
        limit(company, "1.0000"),
        credits_changed(company, revision=1, grants=[credit_left("0.2000")]),
    )
    guard = guard_at(pool)
    both = await guard.reserve(company, 10)
    assert both is not None
    assert (both.budget, both.credits) == (True, True)
    assert await guard.reserve(company, 10) is not None
    with pytest.raises(CreditsExhausted):
        await guard.reserve(company, 10)
    period = period_of(NOW)
    async with pool.acquire() as conn:
        budget = await budgets.period_counter(conn, company, period)
    assert budget is not None
    assert budget.reserved == Decimal("0.2000")  # credits refused first
    # Plenty of credits, a limit of 0.3000: one more fits, then the budget refuses, and the
    # credits it had held are given back.
    await publish(
        pool,
        limit(company, "0.3000", revision=2),
        credits_changed(company, revision=2, grants=[credit_left("5.0000")]),
    )
    assert await guard.reserve(company, 10) is not None
    with pytest.raises(BudgetExceeded):
        await guard.reserve(company, 10)
    held = await account(pool, company)
    assert (held.reserved, held.reservations) == (Decimal("0.3000"), 3)
    await guard.release(both)
    held = await account(pool, company)
    assert (held.reserved, held.reservations) == (Decimal("0.2000"), 2)


async def test_credit_then_invoice_is_not_enforced_but_counts_and_none_forgets(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await publish(pool, credits_changed(company, revision=1, mode="credit_then_invoice"))
    guard = guard_at(pool)
    reservation = await guard.reserve(company, 50)  # nothing to draw: invoiced instead
    assert reservation is None
    await record(guard, pool, reservation, generated(company, at=NOW))
    held = await account(pool, company)
    assert (held.unfolded, held.spends) == (Decimal("0.1000"), 1)
    # Mode none: billing draws nothing for it any more, so it counts no more either.
    await publish(pool, credits_changed(company, revision=2, mode="none"))
    assert (await account(pool, company)).spends == 0
    assert await guard.reserve(company, 50) is None


async def test_a_generation_counts_even_where_the_process_still_remembers_mode_none(
    pool: asyncpg.Pool, company: UUID
) -> None:
    remembering = BudgetGuard(pool, hold_seconds=HOLD, refresh_seconds=3600, now=lambda: NOW)
    assert await remembering.reserve(company, 10) is None  # mode none, remembered
    await publish(pool, credits_changed(company, revision=1, grants=[credit_left("0.1000")]))
    # A request let through on what the process remembered: billing will draw for it.
    await record(remembering, pool, None, generated(company, at=NOW))
    held = await account(pool, company)
    assert (held.unfolded, held.spends) == (Decimal("0.1000"), 1)
    assert not await admitted(guard_at(pool), company, questions=1)


async def test_two_guards_and_billing_catching_up_mid_burst_never_overdraw(
    pool: asyncpg.Pool, company: UUID
) -> None:
    # Two processes' guards reserve and record at once while billing records what they
    # generated, a few at a time, and publishes the account after each, and the guards
    # fold: whatever interleaving, exactly the balance is spent.
    grant = credit_left("1.0000")
    await publish(pool, credits_changed(company, revision=1, grants=[grant]))
    guards = [guard_at(pool), guard_at(pool)]
    made: list[QuestionsGenerated] = []
    done = asyncio.Event()

    async def request(n: int) -> bool:
        guard = guards[n % 2]
        try:
            reservation = await guard.reserve(company, 10)
        except CreditsExhausted:
            return False
        event = generated(company, at=NOW + timedelta(seconds=1))
        await record(guard, pool, reservation, event)
        made.append(event)
        return True

    async def billing() -> None:
        counted: list[UUID] = []
        revision = 1
        while not done.is_set() or len(counted) < len(made):
            fresh = [e.event_id for e in made[len(counted) : len(counted) + 3]]
            if fresh:
                counted += fresh
                revision += 1
                left = grant.model_copy(
                    update={"remaining": Decimal("1.0000") - Decimal("0.1000") * len(counted)}
                )
                await publish(
                    pool, credits_changed(company, revision=revision, grants=[left], counted=fresh)
                )
            await guards[revision % 2].sweep()
            await asyncio.sleep(0.001)

    catching_up = asyncio.create_task(billing())
    outcomes = await asyncio.gather(*(request(n) for n in range(60)))
    done.set()
    await catching_up
    assert outcomes.count(True) == len(made) == 10
    await guards[0].sweep()
    held = await account(pool, company)
    assert (held.balance, held.unbilled, held.reserved, held.spends, held.reservations) == (
        Decimal("0.0000"),
        Decimal("0.0000"),
        Decimal("0.0000"),
        0,
        0,
    )
