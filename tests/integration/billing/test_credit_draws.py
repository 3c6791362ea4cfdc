"""Burn-down in billing's write transaction: exact, in order, never overdrawn, whatever happens.

The ledger is driven directly (`record_batch`, as the consumer calls it, several at
once); grants, voids and modes through their handlers. Every test ends by checking
the balance identity against the raw credit ledger.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg
import pytest

from contracts.events import CreditsChanged, Event
from services.billing.credits import handlers
from services.billing.credits.store import StoredGrant
from services.billing.statements.handlers import close_period
from services.billing.statements.rules import Period
from tests.support.credits import (
    LONG_AGO,
    NOW,
    assert_balance_identity,
    draws_by_grant,
    grant,
    record,
    set_mode,
)
from tests.support.events import generated, job_created
from tests.support.waiting import eventually


async def test_draws_take_priority_1_first_then_the_one_that_expires_sooner(
    pool: asyncpg.Pool, company: UUID
) -> None:
    tomorrow = NOW + timedelta(days=1)
    p5_never = await grant(pool, company, "0.2000", priority=5)
    p5_tomorrow = await grant(pool, company, "0.2000", priority=5, expires_at=tomorrow)
    p1_never = await grant(pool, company, "0.2000", priority=1)
    p1_tomorrow = await grant(pool, company, "0.2000", priority=1, expires_at=tomorrow)
    await set_mode(pool, company)

    order = []
    for n in range(8):
        event = generated(company, at=NOW + timedelta(seconds=n))
        await record(pool, event)
        rows = await pool.fetch(
            "SELECT e.grant_id FROM credit_entries e JOIN question_generation_usage u"
            " ON u.id = e.usage_id WHERE u.event_id = $1",
            event.event_id,
        )
        order += [row["grant_id"] for row in rows]

    assert order == [p1_tomorrow] * 2 + [p1_never] * 2 + [p5_tomorrow] * 2 + [p5_never] * 2
    assert await assert_balance_identity(pool, company) == 0


async def test_one_row_draws_across_grants_and_credit_then_invoice_leaves_the_rest(
    pool: asyncpg.Pool, company: UUID
) -> None:
    first = await grant(pool, company, "0.0300", priority=1)
    second = await grant(pool, company, "0.0500", priority=2)
    await set_mode(pool, company, "credit_then_invoice")
    await record(pool, generated(company, at=NOW, questions=10))  # costs 0.1000

    assert await draws_by_grant(pool, company) == {
        first: Decimal("0.0300"),
        second: Decimal("0.0500"),
    }
    applied = await pool.fetchval(
        "SELECT applied FROM credit_applied_periods WHERE company_id = $1", company
    )
    assert applied == Decimal("0.0800")
    assert await assert_balance_identity(pool, company) == 0


async def test_mode_none_draws_nothing(pool: asyncpg.Pool, company: UUID) -> None:
    await grant(pool, company, "5.0000")
    await record(pool, generated(company, at=NOW))
    assert await draws_by_grant(pool, company) == {}
    assert await assert_balance_identity(pool, company) == Decimal("5.0000")


async def test_redeliveries_and_a_moved_draft_draw_nothing_more(
    pool: asyncpg.Pool, company: UUID
) -> None:
    await grant(pool, company, "5.0000")
    await set_mode(pool, company)
    draft = f"draft-{uuid.uuid4().hex[:8]}"
    usage = generated(company, draft=draft, at=NOW)
    await record(pool, usage)
    await record(pool, usage, usage)  # redelivered, twice in one batch too
    await record(pool, job_created(company, draft=draft))  # the draft moves onto its job
    await record(pool, usage)

    assert sum((await draws_by_grant(pool, company)).values()) == Decimal("0.1000")
    assert await assert_balance_identity(pool, company) == Decimal("4.9000")


async def test_a_late_event_draws_from_the_grants_active_at_its_occurred_at(
    pool: asyncpg.Pool, company: UUID
) -> None:
    ended = await grant(
        pool,
        company,
        "1.0000",
        priority=1,
        effective_at=LONG_AGO,
        expires_at=NOW - timedelta(days=1),
    )
    current = await grant(
        pool, company, "1.0000", priority=5, effective_at=NOW - timedelta(hours=1)
    )
    await set_mode(pool, company)

    await record(pool, generated(company, at=NOW - timedelta(days=2)))  # late: only `ended`
    await record(pool, generated(company, at=NOW))  # `ended` has expired at NOW
    await record(pool, generated(company, at=LONG_AGO - timedelta(days=1)))  # before both

    assert await draws_by_grant(pool, company) == {
        ended: Decimal("0.1000"),
        current: Decimal("0.1000"),
    }
    await assert_balance_identity(pool, company)


async def test_the_database_refuses_a_negative_remaining_or_balance(
    pool: asyncpg.Pool, company: UUID
) -> None:
    grant_id = await grant(pool, company, "1.0000")
    with pytest.raises(asyncpg.CheckViolationError, match="credit_grant_never_overdrawn"):
        await pool.execute(
            "UPDATE credit_grants SET remaining = remaining - 1.0001 WHERE grant_id = $1", grant_id
        )
    with pytest.raises(asyncpg.CheckViolationError, match="credit_balance_never_negative"):
        await pool.execute(
            "UPDATE credit_accounts SET balance = balance - 1.0001 WHERE company_id = $1", company
        )
    with pytest.raises(asyncpg.PostgresError, match="written once"):
        await pool.execute("DELETE FROM credit_entries WHERE grant_id = $1", grant_id)
    assert await assert_balance_identity(pool, company) == Decimal("1.0000")


def story(companies: list[UUID], rng: random.Random, size: int) -> list[Event]:
    """Generations on drafts and jobs, job creations, some delivered twice, in any order."""
    events: list[Event] = []
    for _ in range(size):
        company = rng.choice(companies)
        draft = f"draft-{rng.randrange(20)}"
        at = NOW - timedelta(days=rng.randrange(25), seconds=rng.randrange(86_400))
        if rng.random() < 0.15:
            events.append(job_created(company, draft=draft, at=at))
        else:
            events.append(generated(company, draft=draft, questions=rng.randint(1, 50), at=at))
    events += rng.sample(events, size // 5)  # redeliveries
    rng.shuffle(events)
    return events


async def test_the_balance_is_exact_after_redeliveries_concurrent_workers_and_a_close(
    pool: asyncpg.Pool,
) -> None:
    rng = random.Random(20260210)
    companies = [uuid.uuid4() for _ in range(3)]
    for n, company in enumerate(companies):
        await grant(pool, company, "3.0000", priority=1, expires_at=NOW + timedelta(days=3))
        await grant(pool, company, "4.0000", priority=2)
        await set_mode(pool, company, ["credit_only", "credit_then_invoice", "credit_only"][n])
    events = story(companies, rng, 400)
    chunks = [events[i : i + 25] for i in range(0, len(events), 25)]

    async def worker(mine: list[list[Event]]) -> None:
        for chunk in mine:
            await record(pool, *chunk)

    async def close_january() -> None:
        await asyncio.sleep(0.05)
        await close_period(pool, Period(2026, 1), NOW)

    await asyncio.gather(*(worker(chunks[w::4]) for w in range(4)), close_january())

    for company in companies:
        balance = await assert_balance_identity(pool, company)
        row = await pool.fetchrow(
            """
            SELECT
                (SELECT sum(cost) FROM question_generation_usage WHERE company_id = $1) AS billed,
                (SELECT sum(amount) FROM credit_entries
                 WHERE company_id = $1 AND kind = 'draw') AS drawn,
                (SELECT sum(applied) FROM credit_applied_periods WHERE company_id = $1) AS applied
            """,
            company,
        )
        assert row is not None
        # Whatever the order: the credits cover the usage up to what was granted, exactly.
        assert row["drawn"] == min(row["billed"], Decimal("7.0000")) == row["applied"]
        assert balance == Decimal("7.0000") - row["drawn"]
        # No usage row drew more than it cost.
        over = await pool.fetch(
            "SELECT u.id FROM question_generation_usage u JOIN credit_entries e"
            " ON e.usage_id = u.id WHERE u.company_id = $1 GROUP BY u.id, u.cost"
            " HAVING sum(e.amount) > u.cost",
            company,
        )
        assert over == []


async def test_a_grant_voided_mid_burst_is_never_drawn_after_the_void(
    pool: asyncpg.Pool, company: UUID
) -> None:
    voided = await grant(pool, company, "100.0000", priority=1)
    backup = await grant(pool, company, "50.0000", priority=2)
    await set_mode(pool, company)
    burst = [generated(company, at=NOW + timedelta(milliseconds=n)) for n in range(60)]

    async def burst_worker(offset: int) -> None:
        for n in range(offset, len(burst), 3):
            await record(pool, burst[n])

    async def void_mid_burst() -> StoredGrant:
        await eventually(lambda: draws_by_grant(pool, company), interval=0.005)
        async with pool.acquire() as conn:
            return await handlers.void_grant(conn, company, voided, NOW)

    *_, void = await asyncio.gather(*(burst_worker(w) for w in range(3)), void_mid_burst())
    assert isinstance(void, StoredGrant)
    await record(pool, generated(company, at=NOW + timedelta(seconds=5)))  # after the void

    entries = await pool.fetch(
        "SELECT kind, amount FROM credit_entries WHERE grant_id = $1 AND kind <> 'grant'", voided
    )
    drawn = sum((e["amount"] for e in entries if e["kind"] == "draw"), Decimal("0"))
    voids = [e["amount"] for e in entries if e["kind"] == "void"]
    # What the void took is exactly what was left when it committed: nothing drawn after.
    assert void.remaining == 0
    assert void.voided_at is not None
    assert len(voids) == 1
    assert drawn + voids[0] == Decimal("100.0000")
    assert Decimal("0") < drawn < Decimal("6.1000")
    assert (await draws_by_grant(pool, company))[backup] == Decimal("6.1000") - drawn
    async with pool.acquire() as conn:
        again = await handlers.void_grant(conn, company, voided, NOW)
    assert again.voided_at == void.voided_at  # voided once
    assert await assert_balance_identity(pool, company) == Decimal("50.0000") - (
        Decimal("6.1000") - drawn
    )


async def test_each_batch_names_the_generations_it_recorded_drawn_from_or_not(
    pool: asyncpg.Pool, company: UUID
) -> None:
    # What the question service stops counting as not yet billed: every generation of a
    # company in a credit mode that a batch recorded, whether anything was left to draw.
    await grant(pool, company, "0.1000")
    await set_mode(pool, company)
    covered, uncovered = generated(company, at=NOW), generated(company, at=NOW)
    await record(pool, covered, uncovered)
    await record(pool, covered)  # redelivered: recorded already, named again by nothing
    idle = uuid.uuid4()  # mode none: nothing drawn, no account to publish
    await record(pool, generated(idle, at=NOW))

    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE routing_key = $1", CreditsChanged.routing_key
    )
    changes = sorted(
        (CreditsChanged.model_validate(row["payload"]) for row in rows),
        key=lambda change: change.revision,
    )
    assert {change.company_id for change in changes} == {company}
    assert [sorted(change.counted_generations) for change in changes] == [
        [],  # the grant
        [],  # the mode
        sorted([covered.event_id, uncovered.event_id]),
    ]
    assert changes[-1].balance == Decimal("0.0000")
    assert await assert_balance_identity(pool, company) == 0
