"""The budget guard against the real database, and billing's events through the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg
import pytest

from contracts.events import BudgetChanged, PriceChanged, QuestionsGenerated, SpendRecorded
from contracts.periods import period_of
from contracts.topology import Topology
from services.question_gen import store as generations
from services.question_gen.budgets import store
from services.question_gen.budgets.guard import BudgetGuard, Reservation
from services.question_gen.budgets.rules import BudgetExceeded, HoldLost
from services.question_gen.generation import Answer, CallLog, MalformedAnswer
from services.question_gen.llm import Deliver
from services.servicekit import db
from tests.support.auth import bearer
from tests.support.broker import declare_topology_at, publish_events
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.events import generated
from tests.support.stack import start_stack
from tests.support.waiting import eventually

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
PERIOD = period_of(NOW)


def budget_changed(company: UUID, limit: str | None, revision: int) -> BudgetChanged:
    return BudgetChanged(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company,
        revision=revision,
        monthly_limit=None if limit is None else Decimal(limit),
        thresholds=[],
    )


def price_changed(
    company: UUID | None, price: str, *, start: datetime, margin: str = "0"
) -> PriceChanged:
    return PriceChanged(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company or UUID(int=0),
        price_id=uuid.uuid4(),
        is_default=company is None,
        price_per_10_questions=Decimal(price),
        profit_margin_percent=Decimal(margin),
        effective_from=start,
    )


def spend_recorded(company: UUID, spent: str, period: str = PERIOD) -> SpendRecorded:
    return SpendRecorded(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        company_id=company,
        period=period,
        spent=Decimal(spent),
    )


@pytest.fixture
async def pool(dbs: ServiceDatabases) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(dbs.question_gen, min_size=1, max_size=20)
    try:
        yield created
    finally:
        await created.close()


async def set_limit(
    pool: asyncpg.Pool, company: UUID, limit: str | None, revision: int = 1
) -> None:
    async with pool.acquire() as conn:
        await store.set_limit(conn, budget_changed(company, limit, revision))


async def counter(pool: asyncpg.Pool, company: UUID, period: str = PERIOD) -> store.PeriodCounter:
    async with pool.acquire() as conn:
        found = await store.period_counter(conn, company, period)
    assert found is not None
    return found


def guard_at(pool: asyncpg.Pool, now: datetime = NOW, hold_seconds: float = 60) -> BudgetGuard:
    return BudgetGuard(pool, hold_seconds=hold_seconds, refresh_seconds=0, now=lambda: now)


async def test_concurrent_reservations_never_pass_the_limit_together(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await set_limit(pool, company, "1.0000")
    guard = guard_at(pool)

    async def one() -> bool:
        try:
            reservation = await guard.reserve(company, 10)
        except BudgetExceeded:
            return False
        assert reservation is not None
        assert reservation.amount == Decimal("0.1000")
        return True

    outcomes = await asyncio.gather(*(one() for _ in range(40)))
    assert outcomes.count(True) == 10
    held = await counter(pool, company)
    assert (held.reserved, held.reservations, held.spent) == (Decimal("1.0000"), 10, Decimal(0))


async def test_a_company_without_a_limit_reserves_nothing(
    pool: asyncpg.Pool, company: UUID
) -> None:
    guard = guard_at(pool)
    assert await guard.reserve(company, 50) is None
    await set_limit(pool, company, None)
    assert await guard.reserve(company, 50) is None
    async with pool.acquire() as conn:
        assert await store.period_counter(conn, company, PERIOD) is None


async def test_settled_is_the_cost_delivered_at_the_price_of_occurred_at(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await set_limit(pool, company, "10")
    async with pool.acquire() as conn:
        await store.add_price(conn, price_changed(None, "0.10", start=NOW - timedelta(days=30)))
        await store.add_price(
            conn, price_changed(company, "0.50", start=NOW + timedelta(seconds=5))
        )
    guard = guard_at(pool)
    reservation = await guard.reserve(company, 10)
    assert reservation is not None
    assert reservation.amount == Decimal("0.1000")
    # Answered after the new price started, with 4 questions of the 10 asked.
    event = generated(company, questions=4, at=NOW + timedelta(seconds=6))
    await record(guard, pool, reservation, event)
    held = await counter(pool, company)
    assert (held.settled, held.reserved, held.reservations) == (Decimal("0.2000"), Decimal(0), 0)


async def record(
    guard: BudgetGuard, pool: asyncpg.Pool, reservation: Reservation, event: QuestionsGenerated
) -> None:
    """Write the generation row as the service does, then fold it into the counter."""
    async with pool.acquire() as conn:
        settles = await guard.settlement(conn, reservation, event)
        await generations.record_generation(conn, event, correlation_id=None, settles=settles)
    assert await guard.sweep() == 1


async def test_billed_spend_counts_when_it_is_more(pool: asyncpg.Pool, company: UUID) -> None:
    await set_limit(pool, company, "1.0000")
    async with pool.acquire() as conn:
        await store.set_billed(conn, spend_recorded(company, "0.9500"))
        await store.set_billed(conn, spend_recorded(company, "0.4000"))  # older, arrived late
    guard = guard_at(pool)
    with pytest.raises(BudgetExceeded):
        await guard.reserve(company, 10)
    assert await guard.reserve(company, 5) is not None  # 0.95 + 0.05 fits exactly


async def test_a_failed_generation_gives_its_reservation_back(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await set_limit(pool, company, "0.1000")
    guard = guard_at(pool)
    reservation = await guard.reserve(company, 10)
    assert reservation is not None
    with pytest.raises(BudgetExceeded):
        await guard.reserve(company, 1)
    await guard.release(reservation)
    assert (await counter(pool, company)).reserved == 0
    assert await guard.reserve(company, 10) is not None


async def test_reservations_of_dead_requests_stop_counting_once_expired(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await set_limit(pool, company, "0.2000")
    # A request that died: its reservation is already past its expiry.
    assert await guard_at(pool, hold_seconds=-1).reserve(company, 10) is not None
    guard = guard_at(pool)
    assert await guard.reserve(company, 10) is not None  # 0.1 + 0.1 fits
    # Full only counting the dead one: it is released rather than counted.
    assert await guard.reserve(company, 10) is not None
    held = await counter(pool, company)
    assert (held.reserved, held.reservations) == (Decimal("0.2000"), 2)
    # The sweeper releases what no request asks about.
    other = uuid.uuid4()
    await set_limit(pool, other, "5")
    assert await guard_at(pool, hold_seconds=-1).reserve(other, 50) is not None
    assert await guard.sweep() == 1
    assert (await counter(pool, other)).reserved == 0


async def test_requests_refused_together_all_see_the_expired_reservations_go(
    pool: asyncpg.Pool, company: UUID
) -> None:
    # Ten requests that died hold the whole limit, already past their expiry; then ten
    # arrive at once. Each is refused, folds, and one fold takes every expired
    # reservation: the others, finding nothing left to fold, must still decide again.
    await set_limit(pool, company, "1.0000")
    dead = guard_at(pool, hold_seconds=-1)
    for _ in range(10):
        assert await dead.reserve(company, 10) is not None
    guard = guard_at(pool)

    async def one() -> bool:
        try:
            return await guard.reserve(company, 10) is not None
        except BudgetExceeded:
            return False

    outcomes = await asyncio.gather(*(one() for _ in range(10)))
    assert outcomes.count(True) == 10
    held = await counter(pool, company)
    assert (held.reserved, held.reservations) == (Decimal("1.0000"), 10)


async def test_a_new_period_starts_with_nothing_spent(pool: asyncpg.Pool, company: UUID) -> None:
    await set_limit(pool, company, "0.1000")
    november = guard_at(pool)
    reservation = await november.reserve(company, 10)
    assert reservation is not None
    await record(november, pool, reservation, generated(company, at=NOW))
    with pytest.raises(BudgetExceeded):
        await november.reserve(company, 1)
    december = guard_at(pool, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert await december.reserve(company, 10) is not None


async def test_terms_are_remembered_for_the_refresh_interval(
    pool: asyncpg.Pool, company: UUID
) -> None:
    ticks = [0.0]
    guard = BudgetGuard(pool, hold_seconds=60, refresh_seconds=1.0, clock=lambda: ticks[0])
    assert not (await guard.terms(company)).limited
    await set_limit(pool, company, "1")
    ticks[0] = 0.9
    assert not (await guard.terms(company)).limited
    ticks[0] = 1.0
    assert (await guard.terms(company)).limited
    await set_limit(pool, company, None, revision=2)
    guard.forget(company)  # what the consumer does when it applies a change
    assert not (await guard.terms(company)).limited


class FailingWriter:
    model = "failing"

    async def write(self, description: str, count: int, calls: CallLog | None = None) -> Answer:
        raise MalformedAnswer("not JSON")

    async def stream(
        self, description: str, count: int, deliver: Deliver, calls: CallLog | None = None
    ) -> Answer:
        raise MalformedAnswer("not JSON")

    async def close(self) -> None:
        return None


async def test_billing_events_replayed_and_reordered_leave_the_latest_state(
    dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    async with start_stack(dbs, prefix, services=("question_gen",)) as stack:
        topology = Topology(prefix)
        # Billing declares the question service's queue too: nothing it publishes is lost.
        await declare_topology_at(RABBITMQ_URL, topology)
        default = price_changed(None, "0.10", start=datetime(1970, 1, 1, tzinfo=UTC))
        own = price_changed(company, "0.3000", start=datetime.now(UTC))
        newer, older = budget_changed(company, "0.5000", 2), budget_changed(company, "100", 1)
        period = period_of(datetime.now(UTC))
        spends = spend_recorded(company, "0.3000", period), spend_recorded(company, "0.1", period)
        await publish_events(topology, default, own, newer, older, *spends, times=2)

        async def state() -> tuple[object, ...]:
            limits = await stack.fetch(
                dbs.question_gen, "SELECT monthly_limit, revision FROM budget_limits"
            )
            prices = await stack.fetch(dbs.question_gen, "SELECT price_id FROM budget_prices")
            periods = await stack.fetch(dbs.question_gen, "SELECT billed FROM budget_periods")
            return (
                [tuple(row) for row in limits],
                sorted(row["price_id"] for row in prices),
                [row["billed"] for row in periods],
            )

        expected = (
            [(Decimal("0.5000"), 2)],
            sorted([default.price_id, own.price_id]),
            [Decimal("0.3000")],
        )
        await eventually(state, until=lambda found: found == expected, timeout=10)

        body = {"draftJobId": "d-1", "jobDescription": "Rust engineer", "numberOfQuestions": 10}
        headers = bearer(company)
        # Spent 0.3 (billed); 10 questions at the company's 0.30 do not fit 0.5.
        refused = await stack.questions.post(
            "/api/ai/generate-questions", json=body, headers=headers
        )
        assert refused.status_code == 402, refused.text
        problem = refused.json()
        assert problem["type"].endswith("budget-exceeded")
        assert problem["cost"] == "0.3000"
        assert refused.headers["content-type"].startswith("application/problem+json")
        # 6 questions (0.18) fit: answered, and counted at the company's price.
        answered = await stack.questions.post(
            "/api/ai/generate-questions", json={**body, "numberOfQuestions": 6}, headers=headers
        )
        assert answered.status_code == 200, answered.text
        [generation] = await stack.fetch(dbs.question_gen, "SELECT cost FROM generations")
        assert generation["cost"] == Decimal("0.1800")

        async def period_counter() -> list[tuple[Decimal, ...]]:
            rows = await stack.fetch(
                dbs.question_gen,
                "SELECT settled, reserved FROM budget_periods WHERE period = $1",
                period,
            )
            return [tuple(row) for row in rows]

        # Folded into the counter within a sweep (a second).
        folded = [(Decimal("0.1800"), Decimal("0.0000"))]
        await eventually(period_counter, until=lambda found: found == folded, timeout=5)


async def test_a_refused_or_failed_generation_calls_no_llm_and_holds_nothing(
    dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    async with start_stack(
        dbs, prefix, services=("question_gen",), writer=FailingWriter()
    ) as stack:
        await declare_topology_at(RABBITMQ_URL, Topology(prefix))
        await publish_events(Topology(prefix), budget_changed(company, "0.1000", 1))
        body = {"draftJobId": "d-1", "jobDescription": "Rust engineer", "numberOfQuestions": 10}

        async def status(questions: int) -> int:
            response = await stack.questions.post(
                "/api/ai/generate-questions",
                json={**body, "numberOfQuestions": questions},
                headers=bearer(company),
            )
            return response.status_code

        # 11 questions never fit 0.1: refused before the (failing) writer is asked.
        assert await eventually(lambda: status(11), until=lambda code: code == 402) == 402
        assert await status(10) == 502  # fits, asked, failed: released
        rows = await stack.fetch(dbs.question_gen, "SELECT settled, reserved FROM budget_periods")
        assert [tuple(row) for row in rows] == [(Decimal("0.0000"), Decimal("0.0000"))]
        assert await stack.fetch(dbs.question_gen, "SELECT * FROM budget_reservations") == []
        assert await stack.fetch(dbs.question_gen, "SELECT * FROM generations") == []


async def test_an_idempotent_retry_replays_without_reserving_again(
    dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    async with start_stack(dbs, prefix, services=("question_gen",)) as stack:
        await declare_topology_at(RABBITMQ_URL, Topology(prefix))
        await publish_events(Topology(prefix), budget_changed(company, "0.1000", 1))
        body = {"draftJobId": "d-1", "jobDescription": "Rust engineer", "numberOfQuestions": 10}
        headers = {**bearer(company), "Idempotency-Key": "budget-retry"}

        async def limit_applied() -> bool:
            return bool(await stack.fetch(dbs.question_gen, "SELECT 1 FROM budget_limits"))

        await eventually(limit_applied)
        first = await stack.questions.post("/api/ai/generate-questions", json=body, headers=headers)
        assert first.status_code == 200, first.text
        # The limit is spent, yet the retry gets the first answer: no reservation, no bill.
        again = await stack.questions.post("/api/ai/generate-questions", json=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["generationId"] == first.json()["generationId"]
        other = await stack.questions.post(
            "/api/ai/generate-questions", json=body, headers=bearer(company)
        )
        assert other.status_code == 402
        assert len(await stack.fetch(dbs.question_gen, "SELECT id FROM generations")) == 1


# -- what the period has spent, whatever billing has said -----------------------------------


@pytest.mark.parametrize("billed", [None, "0.9000"], ids=["billing-silent", "billing-lagging"])
async def test_spend_before_a_limit_counts_while_billing_is_paused(
    dbs: ServiceDatabases, prefix: str, company: UUID, billed: str | None
) -> None:
    # Nine generations with no limit (0.9000), then a limit of 1.0000; billing says nothing
    # after (paused), or had reported the nine before it paused: one more fits, no more.
    async with start_stack(dbs, prefix, services=("question_gen",)) as stack:
        topology = Topology(prefix)
        await declare_topology_at(RABBITMQ_URL, topology)
        body = {"draftJobId": "d-1", "jobDescription": "Rust engineer", "numberOfQuestions": 10}

        async def status() -> int:
            response = await stack.questions.post(
                "/api/ai/generate-questions", json=body, headers=bearer(company)
            )
            return response.status_code

        assert [await status() for _ in range(9)] == [200] * 9
        period = period_of(datetime.now(UTC))
        events: list[BudgetChanged | SpendRecorded] = [budget_changed(company, "1.0000", 1)]
        if billed is not None:
            events.append(spend_recorded(company, billed, period))
        await publish_events(topology, *events)

        async def applied() -> bool:
            limits = await stack.fetch(dbs.question_gen, "SELECT 1 FROM budget_limits")
            periods = await stack.fetch(dbs.question_gen, "SELECT billed FROM budget_periods")
            return bool(limits) and (
                billed is None or [p["billed"] for p in periods] == [Decimal(billed)]
            )

        await eventually(applied)
        after = [await status() for _ in range(10)]
        assert after == [200] + [402] * 9
        [spent] = await stack.fetch(dbs.question_gen, "SELECT sum(cost) AS cost FROM generations")
        assert spent["cost"] == Decimal("1.0000")


async def test_an_expired_hold_cannot_be_settled_after_its_room_was_given_away(
    pool: asyncpg.Pool, company: UUID
) -> None:
    # A request stalled past its hold: the hold expired and its room went to another
    # request. The stalled one's generation may not then count on top of the limit.
    await set_limit(pool, company, "0.1000")
    stalled = await guard_at(pool, hold_seconds=-1).reserve(company, 10)
    assert stalled is not None
    guard = guard_at(pool)
    other = await guard.reserve(company, 10)  # refused, folds the expired hold, fits
    assert other is not None
    await record(guard, pool, other, generated(company, at=NOW))
    async with pool.acquire() as conn:
        late = generated(company, at=NOW)
        settles = await guard.settlement(conn, stalled, late)
        with contextlib.suppress(HoldLost):
            await generations.record_generation(conn, late, correlation_id=None, settles=settles)
    await guard.sweep()
    async with pool.acquire() as conn:
        spent = await conn.fetchval("SELECT sum(cost) FROM generations")
    assert spent == Decimal("0.1000")
    assert (await counter(pool, company)).spent == Decimal("0.1000")


async def test_a_release_after_a_lost_reply_does_not_uncount_the_generation(
    pool: asyncpg.Pool, company: UUID
) -> None:
    # The generation committed but its reply was lost: the request, seeing an error,
    # gives its reservation back. The generation still counts.
    await set_limit(pool, company, "0.1000")
    guard = guard_at(pool)
    reservation = await guard.reserve(company, 10)
    assert reservation is not None
    async with pool.acquire() as conn:
        event = generated(company, at=NOW)
        settles = await guard.settlement(conn, reservation, event)
        await generations.record_generation(conn, event, correlation_id=None, settles=settles)
    await guard.release(reservation)
    with pytest.raises(BudgetExceeded):
        await guard.reserve(company, 10)
    await guard.sweep()
    held = await counter(pool, company)
    assert (held.spent, held.reserved, held.reservations) == (Decimal("0.1000"), Decimal(0), 0)
