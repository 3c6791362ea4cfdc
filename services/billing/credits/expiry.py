"""The expiry: what remains of a grant at its expiresAt becomes an `expiry` entry, once.

Every billing process runs this worker; each pass takes a PostgreSQL advisory
lock for its transaction (`pg_try_advisory_xact_lock`), so one process expires
while the others skip their turn: no second scheduler to run, and none to lose.
The grant's `remaining > 0` condition and a unique index (one expiry per grant)
make a second expiry impossible even without the lock. The clock is a
parameter: tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import asyncpg
import structlog

from services.billing.credits import store
from services.billing.credits.changes import publish_changes
from services.billing.credits.store import Expired, GrantEntry

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
COMPANIES_PER_PASS = 200


def utc_now() -> datetime:
    return datetime.now(UTC)


async def expire_due(
    pool: asyncpg.Pool, now: datetime, *, companies: int = COMPANIES_PER_PASS
) -> list[Expired] | None:
    """Expire what is due at `now` (up to `companies` companies); None: another process is."""
    async with pool.acquire() as conn, conn.transaction():
        if not await store.try_expiry_lock(conn):
            return None
        due = await store.due_companies(conn, now, companies)
        if not due:
            return []
        await store.lock_accounts(conn, due)  # the order every writer of credits takes
        expired = await store.expire_due(conn, due, now)
        await store.append_entries(
            conn, [GrantEntry(e.company_id, "expiry", e.amount, e.grant_id, e.at) for e in expired]
        )
        deltas: dict[UUID, Decimal] = defaultdict(Decimal)
        for e in expired:
            deltas[e.company_id] -= e.amount
        changed = await store.change_balances(conn, sorted(deltas.items()))
        await publish_changes(conn, changed, now)
    return expired


class CreditExpiry:
    """Runs `expire_due` every `poll_seconds`, until stopped."""

    def __init__(
        self, pool: asyncpg.Pool, *, clock: Clock = utc_now, poll_seconds: float = 5.0
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="credit-expiry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                expired = await expire_due(self._pool, self._clock())
                if expired:
                    log.info("credit grants expired", grants=len(expired))
                    continue  # more may be due: no wait
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next pass tries again; nothing was written by this one.
                log.warning("credit expiry pass failed", exc_info=True)
            await asyncio.sleep(self._poll_seconds)
