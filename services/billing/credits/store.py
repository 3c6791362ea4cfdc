"""Credits' SQL: accounts, grants, the credit ledger, credits applied. Never commits.

How draws, grants, voids and expiries never overdraw or miss each other
------------------------------------------------------------------------
Every writer of a company's credits (a batch's draws, a grant, a void, an expiry,
a mode change) first locks the company's `credit_accounts` row (`FOR UPDATE`,
several companies in company order, so two writers never deadlock), then reads
its grants. The reads are statements after the lock was granted (READ COMMITTED),
so each sees what the previous writer committed: a void that commits first leaves
the grant with nothing to draw; a batch that commits first has drawn before the
void takes the rest. CHECK constraints on `remaining` and `balance` refuse, in
the database, any write that would take either below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.billing.credits.rules import Draw, Grant
from services.servicekit.db import Connection
from services.servicekit.pagination import Page, fetch_page

# The advisory-lock space of credits' own locks (the two-int form, like the periods').
CREDITS_LOCK_SPACE = 0x5E13
EXPIRY_LOCK_KEY = 1

ACCOUNT_COLUMNS = (
    "company_id, mode, low_balance_threshold, balance, revision, low_balance_alerted,"
    " low_balance_alerts"
)
GRANT_COLUMNS = (
    "grant_id, company_id, kind, amount, remaining, priority, effective_at, expires_at,"
    " reason, created_by, created_at, voided_at, expired_at"
)

# Make a company's account (mode `none`, nothing in it) if it has none yet.
OPEN_ACCOUNT = "INSERT INTO credit_accounts (company_id) VALUES ($1) ON CONFLICT DO NOTHING"

# Lock the accounts of these companies, in company order; those in a drawing mode only
# when $2 (a batch's draws: a company in `none` is not locked at all).
LOCK_ACCOUNTS = f"""
SELECT {ACCOUNT_COLUMNS} FROM credit_accounts
WHERE company_id = ANY($1::uuid[]) AND (NOT $2 OR mode <> 'none')
ORDER BY company_id
FOR UPDATE
"""

# A company's account as it stands (no row: mode none, nothing in it).
GET_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM credit_accounts WHERE company_id = $1"

# Set the mode and the threshold of a locked account; one more revision.
SET_MODE = f"""
UPDATE credit_accounts
SET mode = $2, low_balance_threshold = $3, revision = revision + 1,
    updated_at = clock_timestamp()
WHERE company_id = $1
RETURNING {ACCOUNT_COLUMNS}
"""

# Add to (or take from) locked accounts' balances; one more revision each. A balance
# taken below zero is refused by credit_balance_never_negative.
CHANGE_BALANCES = f"""
UPDATE credit_accounts AS a
SET balance = a.balance + d.delta, revision = a.revision + 1, updated_at = clock_timestamp()
FROM (
    SELECT company_id, sum(delta) AS delta
    FROM unnest($1::uuid[], $2::numeric[]) AS c(company_id, delta)
    GROUP BY company_id
) AS d
WHERE a.company_id = d.company_id
RETURNING {", ".join(f"a.{c.strip()}" for c in ACCOUNT_COLUMNS.split(","))}
"""

# Whether a low-balance webhook is outstanding, and how many were sent.
SET_ALERTED = """
UPDATE credit_accounts AS a
SET low_balance_alerted = s.alerted, low_balance_alerts = s.alerts
FROM unnest($1::uuid[], $2::boolean[], $3::bigint[]) AS s(company_id, alerted, alerts)
WHERE a.company_id = s.company_id
"""

# A new grant, whole.
INSERT_GRANT = f"""
INSERT INTO credit_grants (
    grant_id, company_id, kind, amount, remaining, priority, effective_at, expires_at,
    reason, created_by, created_at
)
VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10)
RETURNING {GRANT_COLUMNS}
"""

# One grant of the company.
GET_GRANT = f"SELECT {GRANT_COLUMNS} FROM credit_grants WHERE grant_id = $1 AND company_id = $2"

# Void a grant of the company: what it had left goes (`voided`), and nothing more is drawn.
VOID_GRANT = f"""
WITH old AS (
    SELECT grant_id, remaining FROM credit_grants
    WHERE grant_id = $1 AND company_id = $2 AND voided_at IS NULL
)
UPDATE credit_grants AS g
SET remaining = 0, voided_at = $3
FROM old
WHERE g.grant_id = old.grant_id
RETURNING old.remaining AS voided, {", ".join(f"g.{c.strip()}" for c in GRANT_COLUMNS.split(","))}
"""

# The companies' grants with something left, in burn-down order (a voided or expired
# grant has nothing left).
GRANTS_LEFT = """
SELECT company_id, grant_id, remaining, priority, effective_at, expires_at
FROM credit_grants
WHERE company_id = ANY($1::uuid[]) AND remaining > 0
ORDER BY company_id, priority, expires_at NULLS LAST, effective_at, grant_id
"""

# Take draws from their grants. A grant taken below zero is refused by
# credit_grant_never_overdrawn.
TAKE_FROM_GRANTS = """
UPDATE credit_grants AS g
SET remaining = g.remaining - d.amount
FROM (
    SELECT grant_id, sum(amount) AS amount
    FROM unnest($1::uuid[], $2::numeric[]) AS d(grant_id, amount)
    GROUP BY grant_id
) AS d
WHERE g.grant_id = d.grant_id
"""

# The draws' entries, each naming its usage row (found by its event, in this transaction).
INSERT_DRAWS = """
INSERT INTO credit_entries (entry_id, company_id, kind, amount, grant_id, usage_id, period, at)
SELECT gen_random_uuid(), u.company_id, 'draw', d.amount, d.grant_id, u.id, u.period, $4
FROM unnest($1::uuid[], $2::uuid[], $3::numeric[]) AS d(event_id, grant_id, amount)
JOIN question_generation_usage u ON u.event_id = d.event_id
ORDER BY d.event_id, d.grant_id
"""

# Credits applied to the periods of the drawn rows.
ADD_APPLIED = """
INSERT INTO credit_applied_periods (company_id, period, applied)
SELECT company_id, period, sum(amount)
FROM unnest($1::uuid[], $2::text[], $3::numeric[]) AS a(company_id, period, amount)
GROUP BY company_id, period
ORDER BY company_id, period
ON CONFLICT (company_id, period) DO UPDATE
SET applied = credit_applied_periods.applied + EXCLUDED.applied
"""

# One entry of a grant's life: its grant, expiry or void.
INSERT_ENTRIES = """
INSERT INTO credit_entries (entry_id, company_id, kind, amount, grant_id, at)
SELECT gen_random_uuid(), company_id, kind, amount, grant_id, at
FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::timestamptz[])
    AS e(company_id, kind, amount, grant_id, at)
"""

# Only one process expires grants at a time; the others skip their turn.
TRY_EXPIRY_LOCK = "SELECT pg_try_advisory_xact_lock($1::int, $2::int)"

# Companies with grants that expired with something left, at most $2.
DUE_COMPANIES = """
SELECT DISTINCT company_id FROM credit_grants
WHERE remaining > 0 AND expires_at <= $1
ORDER BY company_id
LIMIT $2
"""

# Expire the locked companies' grants that are due: what they had left goes.
EXPIRE_DUE = """
WITH due AS (
    SELECT grant_id, remaining FROM credit_grants
    WHERE company_id = ANY($1::uuid[]) AND remaining > 0 AND expires_at <= $2
)
UPDATE credit_grants AS g
SET remaining = 0, expired_at = g.expires_at
FROM due
WHERE g.grant_id = due.grant_id
RETURNING g.company_id, g.grant_id, due.remaining AS expired, g.expires_at
"""

# A page of a company's grants, newest first, after (created_at $2, grant $3); $4 rows.
LIST_GRANTS = f"""
SELECT {GRANT_COLUMNS} FROM credit_grants
WHERE company_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, grant_id) < ($2::timestamptz, $3::uuid))
ORDER BY created_at DESC, grant_id DESC
LIMIT $4
"""

# A page of a company's credit ledger, newest first, after the entry $2, of the entries
# made in [$3, $4) (either end open when null); $5 rows.
LIST_ENTRIES = """
SELECT id, entry_id, kind, amount, grant_id, usage_id, at FROM credit_entries
WHERE company_id = $1 AND ($2::bigint IS NULL OR id < $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
  AND ($4::timestamptz IS NULL OR at < $4)
ORDER BY id DESC
LIMIT $5
"""

# Credits applied to a company's period as it stands.
APPLIED = "SELECT applied FROM credit_applied_periods WHERE company_id = $1 AND period = $2"

# The budget's webhook, where the company's alerts go.
HAS_WEBHOOK = """
SELECT company_id FROM budgets WHERE company_id = ANY($1::uuid[]) AND webhook_url IS NOT NULL
"""


@dataclass(frozen=True)
class Account:
    company_id: UUID
    mode: str
    low_balance_threshold: Decimal | None
    balance: Decimal
    revision: int
    low_balance_alerted: bool
    low_balance_alerts: int


@dataclass(frozen=True)
class StoredGrant:
    grant_id: UUID
    company_id: UUID
    kind: str
    amount: Decimal
    remaining: Decimal
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    reason: str
    created_by: str | None
    created_at: datetime
    voided_at: datetime | None
    expired_at: datetime | None


@dataclass(frozen=True)
class NewGrant:
    grant_id: UUID
    company_id: UUID
    kind: str
    amount: Decimal
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    reason: str
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class LedgerEntry:
    """One entry of the credit ledger, as the API lists it."""

    id: int
    entry_id: UUID
    kind: str
    amount: Decimal
    grant_id: UUID
    usage_id: UUID | None
    at: datetime


@dataclass(frozen=True)
class GrantEntry:
    """A grant, expiry or void to append."""

    company_id: UUID
    kind: str
    amount: Decimal
    grant_id: UUID
    at: datetime


@dataclass(frozen=True)
class Expired:
    company_id: UUID
    grant_id: UUID
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class DrawnRow:
    """A draw with what the statement needs: its company and its usage row's period."""

    draw: Draw
    company_id: UUID
    period: str


def _account(row: asyncpg.Record) -> Account:
    return Account(**dict(row))


def _grant(row: asyncpg.Record) -> StoredGrant:
    return StoredGrant(**{key: row[key] for key in StoredGrant.__dataclass_fields__})


# ---------------------------------------------------------------------------
# Accounts: the lock, the mode, the balance
# ---------------------------------------------------------------------------


async def lock_account(conn: Connection, company_id: UUID) -> Account:
    """Lock the company's account, opening it first if it has none."""
    await conn.execute(OPEN_ACCOUNT, company_id)
    rows = await conn.fetch(LOCK_ACCOUNTS, [company_id], False)
    return _account(rows[0])


async def lock_drawing_accounts(conn: Connection, companies: Sequence[UUID]) -> list[Account]:
    """Lock the accounts of these companies that are in a drawing mode, in company order."""
    rows = await conn.fetch(LOCK_ACCOUNTS, sorted(set(companies)), True)
    return [_account(row) for row in rows]


async def lock_accounts(conn: Connection, companies: Sequence[UUID]) -> list[Account]:
    rows = await conn.fetch(LOCK_ACCOUNTS, sorted(set(companies)), False)
    return [_account(row) for row in rows]


async def get_account(conn: Connection, company_id: UUID) -> Account | None:
    row = await conn.fetchrow(GET_ACCOUNT, company_id)
    return _account(row) if row is not None else None


async def set_mode(
    conn: Connection, company_id: UUID, mode: str, threshold: Decimal | None
) -> Account:
    row = await conn.fetchrow(SET_MODE, company_id, mode, threshold)
    assert row is not None  # the caller locked (so opened) the account
    return _account(row)


async def change_balances(
    conn: Connection, deltas: Sequence[tuple[UUID, Decimal]]
) -> list[Account]:
    rows = await conn.fetch(
        CHANGE_BALANCES, [company for company, _ in deltas], [delta for _, delta in deltas]
    )
    return sorted((_account(row) for row in rows), key=lambda account: account.company_id)


async def set_alerted(conn: Connection, accounts: Sequence[Account]) -> None:
    if not accounts:
        return
    await conn.execute(
        SET_ALERTED,
        [a.company_id for a in accounts],
        [a.low_balance_alerted for a in accounts],
        [a.low_balance_alerts for a in accounts],
    )


async def with_webhook(conn: Connection, companies: Sequence[UUID]) -> set[UUID]:
    if not companies:
        return set()
    return {row["company_id"] for row in await conn.fetch(HAS_WEBHOOK, list(companies))}


# ---------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------


async def insert_grant(conn: Connection, grant: NewGrant) -> StoredGrant:
    row = await conn.fetchrow(
        INSERT_GRANT,
        grant.grant_id,
        grant.company_id,
        grant.kind,
        grant.amount,
        grant.priority,
        grant.effective_at,
        grant.expires_at,
        grant.reason,
        grant.created_by,
        grant.created_at,
    )
    assert row is not None  # INSERT ... RETURNING of one row
    return _grant(row)


async def get_grant(conn: Connection, company_id: UUID, grant_id: UUID) -> StoredGrant | None:
    row = await conn.fetchrow(GET_GRANT, grant_id, company_id)
    return _grant(row) if row is not None else None


async def void_grant(
    conn: Connection, company_id: UUID, grant_id: UUID, at: datetime
) -> tuple[StoredGrant, Decimal] | None:
    """The voided grant and what it had left; None if it was voided before (or is not theirs)."""
    row = await conn.fetchrow(VOID_GRANT, grant_id, company_id, at)
    return (_grant(row), row["voided"]) if row is not None else None


async def grants_left(conn: Connection, companies: Sequence[UUID]) -> dict[UUID, list[Grant]]:
    """Each company's grants with something left, in burn-down order."""
    found: dict[UUID, list[Grant]] = {company: [] for company in companies}
    for row in await conn.fetch(GRANTS_LEFT, list(companies)):
        found[row["company_id"]].append(
            Grant(
                grant_id=row["grant_id"],
                remaining=row["remaining"],
                priority=row["priority"],
                effective_at=row["effective_at"],
                expires_at=row["expires_at"],
            )
        )
    return found


async def append_entries(conn: Connection, entries: Sequence[GrantEntry]) -> None:
    if not entries:
        return
    await conn.execute(
        INSERT_ENTRIES,
        [e.company_id for e in entries],
        [e.kind for e in entries],
        [e.amount for e in entries],
        [e.grant_id for e in entries],
        [e.at for e in entries],
    )


# ---------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------


async def record_draws(conn: Connection, drawn: Sequence[DrawnRow], at: datetime) -> None:
    """Take the draws from their grants, append their entries, add them to credits applied."""
    if not drawn:
        return
    draws = [row.draw for row in drawn]
    await conn.execute(TAKE_FROM_GRANTS, [d.grant_id for d in draws], [d.amount for d in draws])
    await conn.execute(
        INSERT_DRAWS,
        [d.event_id for d in draws],
        [d.grant_id for d in draws],
        [d.amount for d in draws],
        at,
    )
    await conn.execute(
        ADD_APPLIED,
        [row.company_id for row in drawn],
        [row.period for row in drawn],
        [row.draw.amount for row in drawn],
    )


async def applied(conn: Connection, company_id: UUID, period: str) -> Decimal:
    value = await conn.fetchval(APPLIED, company_id, period)
    return value if value is not None else Decimal("0.0000")


# ---------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------


async def try_expiry_lock(conn: Connection) -> bool:
    """The expiry's turn, until this transaction ends; False if another process has it."""
    return bool(await conn.fetchval(TRY_EXPIRY_LOCK, CREDITS_LOCK_SPACE, EXPIRY_LOCK_KEY))


async def due_companies(conn: Connection, now: datetime, limit: int) -> list[UUID]:
    return [row["company_id"] for row in await conn.fetch(DUE_COMPANIES, now, limit)]


async def expire_due(conn: Connection, companies: Sequence[UUID], now: datetime) -> list[Expired]:
    rows = await conn.fetch(EXPIRE_DUE, list(companies), now)
    return [
        Expired(row["company_id"], row["grant_id"], row["expired"], row["expires_at"])
        for row in rows
    ]


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------


async def list_grants(
    conn: Connection, company_id: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> Page[StoredGrant]:
    created_at, grant_id = after if after is not None else (None, None)
    page = await fetch_page(conn, LIST_GRANTS, company_id, created_at, grant_id, limit=limit)
    return page.map(_grant)


async def list_entries(
    conn: Connection,
    company_id: UUID,
    before_id: int | None,
    within: tuple[datetime | None, datetime | None],
    limit: int,
) -> Page[LedgerEntry]:
    since, until = within
    page = await fetch_page(conn, LIST_ENTRIES, company_id, before_id, since, until, limit=limit)
    return page.map(lambda row: LedgerEntry(**dict(row)))
