"""Threshold webhooks' SQL. Functions take a connection and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.billing.webhooks.rules import EVENT_TYPE as BUDGET_EVENT_TYPE
from services.servicekit.db import Connection
from services.servicekit.pagination import Page, fetch_page

# One delivery per (company, period, threshold), ever: a second crossing adds nothing.
ENQUEUE = """
INSERT INTO webhook_deliveries (
    event_id, company_id, period, threshold, body, next_attempt_at, give_up_at, created_at,
    type
)
SELECT * FROM unnest(
    $1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[],
    $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[]
)
ON CONFLICT (company_id, period, threshold) DO NOTHING
"""

# Take the due deliveries no other worker holds, and lease them by moving their next
# attempt past the lease: a worker that dies mid-delivery leaves them to another. The
# lease is that next_attempt_at: a later claim can only happen once it has passed, and
# moves it further, so (attempts, next_attempt_at) names one claim.
CLAIM_DUE = """
UPDATE webhook_deliveries AS d
SET next_attempt_at = $2
FROM (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) AS due
WHERE d.id = due.id
RETURNING d.id, d.event_id, d.company_id, d.body, d.attempts, d.give_up_at,
    d.next_attempt_at AS lease_until,
    (SELECT webhook_url FROM budgets b WHERE b.company_id = d.company_id) AS url,
    (SELECT webhook_secret FROM budgets b WHERE b.company_id = d.company_id) AS secret
"""

# An attempt, kept only while its worker still holds the lease it claimed ($12): the
# delivery pending, as that claim left it. A worker whose lease ran out and was taken by
# another records nothing, so it can never write "failed" over another's "delivered".
# The delivery moves to its next state in the same statement. The attempt's id, or none.
RECORD_ATTEMPT = """
WITH held AS (
    UPDATE webhook_deliveries
    SET attempts = $3,
        status = $10,
        next_attempt_at = COALESCE($11, next_attempt_at),
        delivered_at = CASE WHEN $10 = 'delivered' THEN $4 ELSE delivered_at END
    WHERE id = $1 AND status = 'pending' AND attempts = $3 - 1 AND next_attempt_at = $12
    RETURNING id
)
INSERT INTO webhook_attempts (
    delivery_id, company_id, attempt, attempted_at, url, status_code, error,
    duration_ms, outcome
)
SELECT held.id, $2, $3, $4, $5, $6, $7, $8, $9 FROM held
RETURNING id
"""

# A company's attempts, newest first, after a keyset cursor; $3 rows. A budget webhook's
# period and threshold; none for another type (its key is not a period: see 0010).
LIST_ATTEMPTS = f"""
SELECT a.id, d.event_id, d.type,
       CASE WHEN d.type = '{BUDGET_EVENT_TYPE}' THEN d.period END AS period,
       CASE WHEN d.type = '{BUDGET_EVENT_TYPE}' THEN d.threshold END AS threshold,
       a.attempt, a.attempted_at, a.url,
       a.status_code, a.error, a.duration_ms, a.outcome, d.status AS delivery_status
FROM webhook_attempts a
JOIN webhook_deliveries d ON d.id = a.delivery_id
WHERE a.company_id = $1 AND ($2::bigint IS NULL OR a.id < $2)
ORDER BY a.id DESC
LIMIT $3
"""


@dataclass(frozen=True)
class NewDelivery:
    event_id: UUID
    company_id: UUID
    period: str
    threshold: int
    body: str
    created_at: datetime
    give_up_at: datetime
    type: str = BUDGET_EVENT_TYPE  # the body's `type`


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: UUID
    company_id: UUID
    body: str
    attempts: int
    give_up_at: datetime
    lease_until: datetime  # this claim's lease: what the delivery's next_attempt_at was set to
    url: str | None
    secret: str | None


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    company_id: UUID
    attempt: int
    attempted_at: datetime
    url: str | None
    status_code: int | None
    error: str | None
    duration_ms: int
    outcome: str  # delivered, failed (the receiver's answer or silence), refused (unsafe URL)


async def enqueue(conn: Connection, deliveries: Sequence[NewDelivery]) -> None:
    if not deliveries:
        return
    await conn.execute(
        ENQUEUE,
        [d.event_id for d in deliveries],
        [d.company_id for d in deliveries],
        [d.period for d in deliveries],
        [d.threshold for d in deliveries],
        [d.body for d in deliveries],
        [d.created_at for d in deliveries],
        [d.give_up_at for d in deliveries],
        [d.created_at for d in deliveries],
        [d.type for d in deliveries],
    )


async def claim_due(
    conn: Connection, now: datetime, lease_until: datetime, limit: int
) -> list[Claimed]:
    rows = await conn.fetch(CLAIM_DUE, now, lease_until, limit)
    return [Claimed(**dict(row)) for row in rows]


async def record_attempt(
    conn: Connection,
    attempt: Attempt,
    status: str,
    next_attempt_at: datetime | None,
    *,
    lease_until: datetime,
) -> bool:
    """Record the attempt under the claim's lease; False (nothing written) if it was lost."""
    attempt_id = await conn.fetchval(
        RECORD_ATTEMPT,
        attempt.delivery_id,
        attempt.company_id,
        attempt.attempt,
        attempt.attempted_at,
        attempt.url,
        attempt.status_code,
        attempt.error,
        attempt.duration_ms,
        attempt.outcome,
        status,
        next_attempt_at,
        lease_until,
    )
    return attempt_id is not None


async def list_attempts(
    conn: Connection, company_id: UUID, before_id: int | None, limit: int
) -> Page[asyncpg.Record]:
    return await fetch_page(conn, LIST_ATTEMPTS, company_id, before_id, limit=limit)
