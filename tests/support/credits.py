"""Prepaid credits for the tests: grants, modes and batches through billing's own code.

And the invariant every credits test ends with: the balance identity, checked against
the raw credit ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg

from contracts.events import CreditsChanged, Event, JobCreated, QuestionsGenerated
from services.billing.credits import handlers
from services.billing.credits.handlers import GrantOrder
from services.billing.ledger.record import record_batch
from services.billing.ledger.rules import Entry, Pricing

PRICING = Pricing()  # 0.1000 per 10 questions
NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=60)


async def grant(
    pool: asyncpg.Pool,
    company: UUID,
    amount: str,
    *,
    priority: int = 10,
    expires_at: datetime | None = None,
    effective_at: datetime = LONG_AGO,
) -> UUID:
    order = GrantOrder(
        company_id=company,
        amount=Decimal(amount),
        kind="purchased",
        priority=priority,
        effective_at=effective_at,
        expires_at=expires_at,
        reason="test grant",
        created_by="ops@example.com",
    )
    async with pool.acquire() as conn:
        return (await handlers.grant_credits(conn, order, NOW)).grant_id


async def set_mode(pool: asyncpg.Pool, company: UUID, mode: str = "credit_only") -> None:
    async with pool.acquire() as conn:
        await handlers.set_mode(conn, company, mode, None, NOW)


async def record(pool: asyncpg.Pool, *events: Event) -> None:
    entries: list[Entry] = []
    for event in events:
        assert isinstance(event, (QuestionsGenerated, JobCreated))
        entries.append(event)
    results = await record_batch(pool, entries, default=PRICING)
    assert not [r for r in results if isinstance(r, Exception)], results


async def draws_by_grant(pool: asyncpg.Pool, company: UUID) -> dict[UUID, Decimal]:
    rows = await pool.fetch(
        "SELECT grant_id, sum(amount) AS drawn FROM credit_entries"
        " WHERE company_id = $1 AND kind = 'draw' GROUP BY grant_id",
        company,
    )
    return {row["grant_id"]: row["drawn"] for row in rows}


async def assert_balance_identity(pool: asyncpg.Pool, company: UUID) -> Decimal:
    """balance = grants - draws - expiries - voids = what the grants have left; >= 0."""
    row = await pool.fetchrow(
        """
        SELECT a.balance,
            (SELECT COALESCE(sum(CASE kind WHEN 'grant' THEN amount ELSE -amount END), 0)
             FROM credit_entries WHERE company_id = $1) AS ledger,
            (SELECT COALESCE(sum(remaining), 0) FROM credit_grants WHERE company_id = $1) AS left,
            (SELECT COALESCE(sum(amount), 0) FROM credit_grants WHERE company_id = $1) AS granted,
            (SELECT COALESCE(sum(amount), 0) FROM credit_entries
             WHERE company_id = $1 AND kind = 'grant') AS granted_entries
        FROM credit_accounts a WHERE a.company_id = $1
        """,
        company,
    )
    assert row is not None
    assert row["balance"] == row["ledger"] == row["left"]
    assert row["granted"] == row["granted_entries"]
    assert row["balance"] >= 0
    # Each grant's own identity too: amount - draws - expiry - void = remaining.
    bad = await pool.fetch(
        """
        SELECT g.grant_id FROM credit_grants g
        LEFT JOIN credit_entries e ON e.grant_id = g.grant_id AND e.kind <> 'grant'
        WHERE g.company_id = $1
        GROUP BY g.grant_id, g.amount, g.remaining
        HAVING g.amount - COALESCE(sum(e.amount), 0) <> g.remaining
        """,
        company,
    )
    assert bad == []
    # The latest CreditsChanged carries the balance.
    events = await pool.fetch(
        "SELECT payload FROM outbox WHERE routing_key = $1", CreditsChanged.routing_key
    )
    mine = [CreditsChanged.model_validate(e["payload"]) for e in events]
    mine = [e for e in mine if e.company_id == company]
    if mine:
        latest = max(mine, key=lambda e: e.revision)
        assert latest.balance == row["balance"]
        assert len({e.revision for e in mine}) == len(mine)  # one event per revision
    balance: Decimal = row["balance"]
    return balance
