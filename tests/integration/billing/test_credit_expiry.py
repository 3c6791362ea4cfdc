"""Expiry: what a grant has left at its expiresAt becomes one `expiry` entry, however many run."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg

from contracts.events import CreditsChanged
from services.billing.credits import store
from services.billing.credits.expiry import CreditExpiry, expire_due
from tests.support.credits import (
    NOW,
    assert_balance_identity,
    grant,
    record,
    set_mode,
)
from tests.support.databases import ServiceDatabases
from tests.support.events import generated

EXPIRES = NOW + timedelta(hours=1)
LATER = NOW + timedelta(hours=2)


async def grant_with_3_left(pool: asyncpg.Pool, company: UUID) -> UUID:
    expiring = await grant(pool, company, "5.0000", priority=1, expires_at=EXPIRES)
    await grant(pool, company, "1.0000", priority=2)  # never expires
    await set_mode(pool, company)
    await record(pool, generated(company, questions=200, at=NOW))  # 2.0000 from `expiring`
    return expiring


async def expiries(pool: asyncpg.Pool, grant_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT amount, at FROM credit_entries WHERE grant_id = $1 AND kind = 'expiry'", grant_id
    )


async def test_a_grant_expires_with_what_it_has_left_once_whatever_the_processes(
    pool: asyncpg.Pool, dbs: ServiceDatabases, company: UUID
) -> None:
    expiring = await grant_with_3_left(pool, company)
    assert await expire_due(pool, EXPIRES - timedelta(microseconds=1)) == []

    # Four billing processes, each with its own pool and its own worker, at a later time.
    pools = [await asyncpg.create_pool(dbs.billing, min_size=1, max_size=2) for _ in range(4)]
    try:
        workers = [CreditExpiry(p, clock=lambda: LATER, poll_seconds=0.001) for p in pools]
        for worker in workers:
            worker.start()
        passes = await asyncio.gather(*(expire_due(p, LATER) for p in pools for _ in range(5)))
        await asyncio.sleep(0.3)
        for worker in workers:
            await worker.stop()
    finally:
        for opened in pools:
            await opened.close()

    found = await expiries(pool, expiring)
    assert [(row["amount"], row["at"]) for row in found] == [(Decimal("3.0000"), EXPIRES)]
    assert all(result in (None, []) or len(result) == 1 for result in passes)
    assert await assert_balance_identity(pool, company) == Decimal("1.0000")
    left = await pool.fetchrow(
        "SELECT remaining, expired_at FROM credit_grants WHERE grant_id = $1", expiring
    )
    assert left is not None
    assert left["remaining"] == 0
    assert left["expired_at"] == EXPIRES

    # A late generation of before the expiry finds nothing left there: the other grant pays.
    await record(pool, generated(company, at=EXPIRES - timedelta(minutes=1)))
    assert await assert_balance_identity(pool, company) == Decimal("0.9000")


async def test_while_one_process_expires_the_others_skip_their_turn(
    pool: asyncpg.Pool, company: UUID
) -> None:
    expiring = await grant_with_3_left(pool, company)
    async with pool.acquire() as holder, holder.transaction():
        assert await store.try_expiry_lock(holder)
        assert await expire_due(pool, LATER) is None
    assert await expiries(pool, expiring) == []

    expired = await expire_due(pool, LATER)
    assert expired is not None
    assert [(e.grant_id, e.amount) for e in expired] == [(expiring, Decimal("3.0000"))]
    events = await pool.fetch(
        "SELECT payload FROM outbox WHERE routing_key = $1", CreditsChanged.routing_key
    )
    latest = max(
        (CreditsChanged.model_validate(e["payload"]) for e in events), key=lambda e: e.revision
    )
    assert latest.balance == Decimal("1.0000")
    assert [g.remaining for g in latest.grants] == [Decimal("1.0000")]
