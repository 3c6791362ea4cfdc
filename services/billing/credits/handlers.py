"""Credits' use cases: grant, void, set the mode; read the balance, grants and ledger.

Each write runs in its own transaction (a savepoint inside the idempotency
key's), takes the company's account lock first, and ends with `publish_changes`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.billing.credits import store
from services.billing.credits.changes import publish_changes
from services.billing.credits.store import Account, GrantEntry, LedgerEntry, NewGrant, StoredGrant
from services.servicekit.db import Connection
from services.servicekit.pagination import Page


class GrantNotFound(Exception):
    """A grant that is not the company's (or does not exist): the same answer."""

    def __init__(self) -> None:
        super().__init__("grant not found")


def no_account(company_id: UUID) -> Account:
    return Account(company_id, "none", None, Decimal("0.0000"), 0, False, 0)


@dataclass(frozen=True)
class GrantOrder:
    company_id: UUID
    amount: Decimal
    kind: str
    priority: int
    effective_at: datetime | None  # None: now
    expires_at: datetime | None
    reason: str
    created_by: str | None


async def grant_credits(conn: Connection, order: GrantOrder, now: datetime) -> StoredGrant:
    """Add a grant to the company's credits; its whole amount is in the balance at once."""
    async with conn.transaction():
        await store.lock_account(conn, order.company_id)
        grant = await store.insert_grant(
            conn,
            NewGrant(
                grant_id=uuid.uuid4(),
                company_id=order.company_id,
                kind=order.kind,
                amount=order.amount,
                priority=order.priority,
                effective_at=order.effective_at or now,
                expires_at=order.expires_at,
                reason=order.reason,
                created_by=order.created_by,
                created_at=now,
            ),
        )
        await store.append_entries(
            conn, [GrantEntry(order.company_id, "grant", order.amount, grant.grant_id, now)]
        )
        changed = await store.change_balances(conn, [(order.company_id, order.amount)])
        await publish_changes(conn, changed, now, granted=True)
    return grant


async def void_grant(
    conn: Connection, company_id: UUID, grant_id: UUID, now: datetime
) -> StoredGrant:
    """Void what remains of a grant: nothing is drawn from it after this commits.

    Voiding it again changes nothing and answers the same grant.
    """
    async with conn.transaction():
        if not await store.lock_accounts(conn, [company_id]):
            raise GrantNotFound  # a company with no account has no grants
        voided = await store.void_grant(conn, company_id, grant_id, now)
        if voided is None:
            existing = await store.get_grant(conn, company_id, grant_id)
            if existing is None:
                raise GrantNotFound
            return existing
        grant, amount = voided
        if amount > 0:
            await store.append_entries(
                conn, [GrantEntry(company_id, "void", amount, grant_id, now)]
            )
            await publish_changes(
                conn, await store.change_balances(conn, [(company_id, -amount)]), now
            )
    return grant


async def set_mode(
    conn: Connection, company_id: UUID, mode: str, threshold: Decimal | None, now: datetime
) -> Account:
    """Set how the company's credits are used, and the balance that alerts."""
    async with conn.transaction():
        before = await store.lock_account(conn, company_id)
        after = await store.set_mode(conn, company_id, mode, threshold)
        await publish_changes(
            conn, [after], now, new_threshold=before.low_balance_threshold != threshold
        )
    return after


@dataclass(frozen=True)
class CreditsView:
    account: Account
    grants: Page[StoredGrant]


async def read_credits(
    pool: asyncpg.Pool, company_id: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> CreditsView:
    # One snapshot: the balance and the grants' remaining agree even while billing draws.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        account = await store.get_account(conn, company_id) or no_account(company_id)
        grants = await store.list_grants(conn, company_id, after, limit)
    return CreditsView(account, grants)


async def read_entries(
    pool: asyncpg.Pool,
    company_id: UUID,
    before_id: int | None,
    within: tuple[datetime | None, datetime | None],
    limit: int,
) -> Page[LedgerEntry]:
    async with pool.acquire() as conn:
        return await store.list_entries(conn, company_id, before_id, within, limit)
