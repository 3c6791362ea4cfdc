"""The credit guard's SQL. Functions take a connection and never commit.

The company's `credit_accounts` row is the one lock every credit reservation
takes, and it carries everything a reservation must read fresh: the grants as
billing last published them, `unbilled` (folded spends billing has not named
yet) and `reserved`. Spends not yet folded are read from the statement's
snapshot: one committed while a reservation waited for the row is missed, but its
reservation is not (a settled reservation leaves `reserved` only in the fold that
adds its spend to `unbilled`), as in the budget's count.

Locks, always in this order: spend rows, reservation rows, then account rows in
company order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from contracts.events import CreditsChanged
from services.servicekit.db import Connection


def _drawable(now: str, hold: str) -> str:
    """What account `a`'s grants drawable from `now` to `now + hold` seconds have left
    (`rules.drawable`), with the statement's parameters `now` and `hold`."""
    return f"""
(SELECT coalesce(sum((g->>'remaining')::numeric), 0) FROM jsonb_array_elements(a.grants) g
 WHERE (g->>'effectiveAt')::timestamptz <= {now}
   AND (g->>'expiresAt' IS NULL
        OR (g->>'expiresAt')::timestamptz > {now} + make_interval(secs => {hold})))
"""


# Reservations of a batch, in one statement: the accounts in credit_only are locked in
# company order and read as they are under the lock; in arrival order, reservations are
# admitted while unbilled + unfolded + reserved + their running sum stays within what
# the drawable grants have left (a prefix per company); the admitted are written and
# added to `reserved`. A company not in credit_only (under the lock) is not enforced.
# Committed without waiting for the WAL flush, for the budget's reason (`budgets/store`).
RESERVE = f"""
WITH req AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::numeric[])
        WITH ORDINALITY AS r(id, company_id, amount, n)
),
locked AS (
    SELECT a.company_id, a.unbilled + coalesce(u.cost, 0) + a.reserved AS used,
           {_drawable("$4", "$5")} AS drawable
    FROM credit_accounts a
    LEFT JOIN LATERAL (
        SELECT sum(s.cost) AS cost FROM credit_spends s
        WHERE s.company_id = a.company_id AND NOT s.folded
    ) AS u ON true
    WHERE a.company_id IN (SELECT company_id FROM req) AND a.mode = 'credit_only'
    ORDER BY a.company_id
    FOR UPDATE OF a
),
admitted AS (
    SELECT id, company_id, amount FROM (
        SELECT r.id, r.company_id, r.amount, k.used, k.drawable,
               sum(r.amount) OVER (PARTITION BY r.company_id ORDER BY r.n) AS running
        FROM req r JOIN locked k ON k.company_id = r.company_id
    ) AS candidate
    WHERE used + running <= drawable
),
held AS (
    INSERT INTO credit_reservations (id, company_id, amount, expires_at)
    SELECT id, company_id, amount, clock_timestamp() + make_interval(secs => $5)
    FROM admitted
),
added AS (
    UPDATE credit_accounts a SET reserved = a.reserved + t.amount
    FROM (SELECT company_id, sum(amount) AS amount FROM admitted GROUP BY 1) AS t
    WHERE a.company_id = t.company_id
)
SELECT r.id, r.company_id IN (SELECT company_id FROM locked) AS enforced,
       r.id IN (SELECT id FROM admitted) AS reserved,
       set_config('synchronous_commit', 'off', true) AS commit_mode
FROM req r
ORDER BY r.n
"""

# Give reservations back (the generation failed, or its budget refused it): their
# amounts leave `reserved`. Not one its generation settled (a lost reply): that one
# waits for the fold that counts its spend.
RELEASE = """
WITH released AS (
    DELETE FROM credit_reservations WHERE id = ANY($1::uuid[]) AND NOT settled
    RETURNING company_id, amount
)
UPDATE credit_accounts a SET reserved = a.reserved - r.amount
FROM (SELECT company_id, sum(amount) AS amount FROM released GROUP BY 1) AS r
WHERE a.company_id = r.company_id
"""

# The companies holding credit reservations or unfolded spends, for the periodic fold.
HELD = """
SELECT company_id FROM credit_reservations
UNION
SELECT company_id FROM credit_spends WHERE NOT folded
LIMIT $1
"""

# Fold one company's unfolded spends into `unbilled`, with the reservations they settle
# (their worst case off `reserved`), and release its expired unsettled reservations.
# Rows a concurrent fold, generation or event holds are skipped.
FOLD = """
WITH spends AS (
    UPDATE credit_spends SET folded = true WHERE generation_id IN (
        SELECT generation_id FROM credit_spends
        WHERE company_id = $1 AND NOT folded
        FOR UPDATE SKIP LOCKED
    )
    RETURNING reservation_id, cost
),
settled AS (
    DELETE FROM credit_reservations
    WHERE id IN (SELECT reservation_id FROM spends WHERE reservation_id IS NOT NULL)
    RETURNING amount
),
expired AS (
    DELETE FROM credit_reservations WHERE id IN (
        SELECT r.id FROM credit_reservations r
        WHERE r.company_id = $1 AND r.expires_at <= clock_timestamp() AND NOT r.settled
        FOR UPDATE SKIP LOCKED
    )
    RETURNING amount
),
folded AS (
    UPDATE credit_accounts a
    SET unbilled = a.unbilled + (SELECT coalesce(sum(cost), 0) FROM spends),
        reserved = a.reserved
            - (SELECT coalesce(sum(amount), 0) FROM settled)
            - (SELECT coalesce(sum(amount), 0) FROM expired)
    WHERE a.company_id = $1
)
SELECT (SELECT count(*) FROM spends) + (SELECT count(*) FROM expired) AS folded,
       set_config('synchronous_commit', 'off', true) AS commit_mode
"""

# billing.credits_changed.v1: the account of the highest revision is kept, whatever the
# order of arrival; the generations it names as recorded stop counting (folded ones off
# `unbilled`; unfolded ones with the reservation they settled, off `reserved`). An
# account newly in mode none counts nothing any more: billing draws nothing for it.
APPLY = """
WITH account AS (
    SELECT revision FROM credit_accounts WHERE company_id = $1
),
counted AS (
    DELETE FROM credit_spends
    WHERE company_id = $1
      AND (generation_id = ANY($2::uuid[])
           OR ($4 = 'none' AND $3 > coalesce((SELECT revision FROM account), 0)))
    RETURNING reservation_id, cost, folded
),
settled AS (
    DELETE FROM credit_reservations
    WHERE id IN (SELECT reservation_id FROM counted WHERE NOT folded)
    RETURNING amount
)
INSERT INTO credit_accounts AS a (company_id, revision, mode, balance, grants)
VALUES ($1, $3, $4, $5, $6::jsonb)
ON CONFLICT (company_id) DO UPDATE SET
    revision = greatest(a.revision, EXCLUDED.revision),
    mode = CASE WHEN EXCLUDED.revision > a.revision THEN EXCLUDED.mode ELSE a.mode END,
    balance = CASE WHEN EXCLUDED.revision > a.revision THEN EXCLUDED.balance ELSE a.balance END,
    grants = CASE WHEN EXCLUDED.revision > a.revision THEN EXCLUDED.grants ELSE a.grants END,
    unbilled = a.unbilled - (SELECT coalesce(sum(cost), 0) FROM counted WHERE folded),
    reserved = a.reserved - (SELECT coalesce(sum(amount), 0) FROM settled)
"""

# One company's account as the guard counts it, for operators and tests.
ACCOUNT = f"""
SELECT a.revision, a.mode, a.balance, a.unbilled, a.reserved,
       {_drawable("$2", "$3")} AS drawable,
       (SELECT coalesce(sum(cost), 0) FROM credit_spends s
        WHERE s.company_id = $1 AND NOT s.folded) AS unfolded,
       (SELECT count(*) FROM credit_spends s WHERE s.company_id = $1) AS spends,
       (SELECT count(*) FROM credit_reservations r WHERE r.company_id = $1) AS reservations
FROM credit_accounts a WHERE a.company_id = $1
"""


@dataclass(frozen=True)
class CreditCounter:
    revision: int
    mode: str
    balance: Decimal
    drawable: Decimal
    unbilled: Decimal
    unfolded: Decimal
    reserved: Decimal
    spends: int
    reservations: int


async def reserve(
    conn: Connection,
    reservations: Sequence[tuple[UUID, UUID, Decimal]],
    *,
    now: datetime,
    hold_seconds: float,
) -> list[tuple[bool, bool]]:
    """(id, company, amount) of each, in arrival order: (enforced, reserved) of each."""
    rows = await conn.fetch(
        RESERVE,
        [r[0] for r in reservations],
        [r[1] for r in reservations],
        [r[2] for r in reservations],
        now,
        hold_seconds,
    )
    return [(bool(row["enforced"]), bool(row["reserved"])) for row in rows]


async def release(conn: Connection, reservation_ids: Sequence[UUID]) -> None:
    await conn.execute(RELEASE, list(reservation_ids))


async def held(conn: Connection, limit: int = 1000) -> list[UUID]:
    return [row["company_id"] for row in await conn.fetch(HELD, limit)]


async def fold(conn: Connection, company_id: UUID) -> int:
    """Fold one company's spends and expired reservations; how many of them."""
    row = await conn.fetchrow(FOLD, company_id)
    return int(row["folded"]) if row else 0


async def apply_change(conn: Connection, event: CreditsChanged) -> None:
    grants = [grant.model_dump(mode="json", by_alias=True) for grant in event.grants]
    await conn.execute(
        APPLY,
        event.company_id,
        event.counted_generations,
        event.revision,
        event.mode,
        event.balance,
        grants,
    )


async def counter(
    conn: Connection, company_id: UUID, now: datetime, hold_seconds: float = 0.0
) -> CreditCounter | None:
    row = await conn.fetchrow(ACCOUNT, company_id, now, hold_seconds)
    if row is None:
        return None
    return CreditCounter(
        row["revision"],
        row["mode"],
        row["balance"],
        row["drawable"],
        row["unbilled"],
        row["unfolded"],
        row["reserved"],
        int(row["spends"]),
        int(row["reservations"]),
    )
