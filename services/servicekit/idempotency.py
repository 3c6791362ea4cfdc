"""`Idempotency-Key`: a retry with the same key and company gets the first answer again.

`Idempotent` owns this for any route. A key is claimed before the work. When the
work is only database writes (`run`), claim, work and `complete` share one
transaction, and a concurrent request with the same key waits on the row lock.
When the work is slow (`run_slow`: an LLM call), the claim commits first, the
slow part runs outside any transaction, and `complete` stores the answer with
the work's own rows; a concurrent request sees the claim as in progress and
waits for the answer (`await_outcome`). A failure releases the claim, so a
retry does the work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import structlog
from pydantic import BaseModel

from services.servicekit.db import Connection
from services.servicekit.migrations import MigrationSet
from services.servicekit.problems import Problem

log = structlog.get_logger(__name__)

MIGRATIONS = MigrationSet("idempotency", Path(__file__).parent / "migrations" / "idempotency")

MAX_KEY_LENGTH = 200

# Take the key if nobody has; returns a row only when this request now owns it.
CLAIM = """
INSERT INTO idempotency_keys (company_id, key, request_hash)
VALUES ($1, $2, $3)
ON CONFLICT (company_id, key) DO NOTHING
RETURNING key
"""

# Take over a claim whose owner died before finishing.
TAKE_OVER_STALE = """
UPDATE idempotency_keys SET claimed_at = now(), request_hash = $3
WHERE company_id = $1 AND key = $2 AND status_code IS NULL
  AND claimed_at < now() - make_interval(secs => $4)
RETURNING key
"""

# What is stored under a key.
LOOK_UP = """
SELECT request_hash, status_code, response FROM idempotency_keys
WHERE company_id = $1 AND key = $2
"""

# Store the answer, in the transaction of the work it answers for.
COMPLETE = """
UPDATE idempotency_keys SET status_code = $3, response = $4, completed_at = now()
WHERE company_id = $1 AND key = $2
"""

# Give the key back after a failure, so that a retry does the work.
RELEASE = "DELETE FROM idempotency_keys WHERE company_id = $1 AND key = $2 AND status_code IS NULL"


class ClaimState(Enum):
    OWNED = "owned"
    REPLAY = "replay"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    status_code: int = 0
    response: Any = None


def request_fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(
            422,
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            errors=[{"field": "Idempotency-Key", "in": "header", "message": "invalid"}],
        )
    return key


async def claim(
    conn: Connection,
    company_id: UUID,
    key: str,
    fingerprint: str,
    *,
    stale_after_seconds: float = 300.0,
) -> Claim:
    if await conn.fetchval(CLAIM, company_id, key, fingerprint) is not None:
        return Claim(ClaimState.OWNED)
    row = await conn.fetchrow(LOOK_UP, company_id, key)
    if row is None:  # released between our insert and our look: try once more
        return await claim(
            conn, company_id, key, fingerprint, stale_after_seconds=stale_after_seconds
        )
    if row["request_hash"] != fingerprint:
        raise Problem(
            422,
            "Idempotency-Key was already used with a different request",
            errors=[{"field": "Idempotency-Key", "in": "header", "message": "reused"}],
        )
    if row["status_code"] is not None:
        return Claim(ClaimState.REPLAY, row["status_code"], row["response"])
    taken = await conn.fetchval(TAKE_OVER_STALE, company_id, key, fingerprint, stale_after_seconds)
    return Claim(ClaimState.OWNED if taken is not None else ClaimState.IN_PROGRESS)


async def complete(
    conn: Connection, company_id: UUID, key: str, status_code: int, response: Any
) -> None:
    await conn.execute(COMPLETE, company_id, key, status_code, response)


async def release(conn: Connection, company_id: UUID, key: str) -> None:
    await conn.execute(RELEASE, company_id, key)


async def await_outcome(
    pool: asyncpg.Pool,
    company_id: UUID,
    key: str,
    fingerprint: str,
    *,
    timeout: float,
    stale_after_seconds: float,
    poll_interval: float = 0.05,
) -> Claim:
    """Claim the key, waiting while another request holds it; 409 if it never finishes."""
    deadline = time.monotonic() + timeout
    while True:
        async with pool.acquire() as conn:
            outcome = await claim(
                conn, company_id, key, fingerprint, stale_after_seconds=stale_after_seconds
            )
        if outcome.state is not ClaimState.IN_PROGRESS:
            return outcome
        if time.monotonic() >= deadline:
            raise Problem(
                409,
                "a request with this Idempotency-Key is still in progress; retry later",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(poll_interval)
        poll_interval = min(poll_interval * 1.5, 0.5)


Answer = TypeVar("Answer", bound=BaseModel)
Prepared = TypeVar("Prepared")


@dataclass(frozen=True)
class Idempotent(Generic[Answer]):
    """A route's idempotent replay: claim, replay the stored answer, complete, release.

    `write` is the route's effect; it must be atomic by itself (one statement, or
    its own transaction), as it also runs when the request carries no key. With a
    key it runs in the transaction that stores its answer. A domain error it
    raises rolls the effect back and leaves the key free.
    """

    pool: asyncpg.Pool
    answer: type[Answer]
    status_code: int = 200
    wait_seconds: float = 10.0
    stale_after_seconds: float = 300.0

    async def run(
        self,
        company_id: UUID,
        key: str | None,
        request: BaseModel,
        write: Callable[[Connection], Awaitable[Answer]],
    ) -> Answer:
        """Quick work: claim, write and answer in one transaction."""
        if key is None:
            async with self.pool.acquire() as conn:
                return await write(conn)
        fingerprint = _fingerprint(request)
        async with self.pool.acquire() as conn, conn.transaction():
            # A concurrent request with this key waits here until ours commits.
            outcome = await claim(conn, company_id, validate_key(key), fingerprint)
            if outcome.state is ClaimState.REPLAY:
                return self.answer.model_validate(outcome.response)
            if outcome.state is ClaimState.IN_PROGRESS:
                raise Problem(409, "a request with this Idempotency-Key is still in progress")
            answer = await write(conn)
            await self._complete(conn, company_id, key, answer)
        return answer

    async def run_slow(
        self,
        company_id: UUID,
        key: str | None,
        request: BaseModel,
        prepare: Callable[[], Awaitable[Prepared]],
        write: Callable[[Connection, Prepared], Awaitable[Answer]],
    ) -> Answer:
        """Slow work: `prepare` outside any transaction, then `write` with the answer."""
        if key is None:
            prepared = await prepare()
            async with self.pool.acquire() as conn:
                return await write(conn, prepared)
        outcome = await await_outcome(
            self.pool,
            company_id,
            validate_key(key),
            _fingerprint(request),
            timeout=self.wait_seconds,
            stale_after_seconds=self.stale_after_seconds,
        )
        if outcome.state is ClaimState.REPLAY:
            return self.answer.model_validate(outcome.response)
        try:
            prepared = await prepare()
            async with self.pool.acquire() as conn, conn.transaction():
                answer = await write(conn, prepared)
                await self._complete(conn, company_id, key, answer)
        except BaseException:
            await self._release(company_id, key)
            raise
        return answer

    # The slow path in three steps, for work whose end is not in the request's hands (a
    # stream, finished by whatever ends it): claim, then complete or release.

    async def claim_slow(self, company_id: UUID, key: str, request: BaseModel) -> Claim:
        """Own the key (waiting while another request holds it), or the answer to replay."""
        return await await_outcome(
            self.pool,
            company_id,
            validate_key(key),
            _fingerprint(request),
            timeout=self.wait_seconds,
            stale_after_seconds=self.stale_after_seconds,
        )

    async def complete_claim(
        self, conn: Connection, company_id: UUID, key: str, claim: Claim, answer: Answer
    ) -> None:
        """Store the answer of the key `claim` owns, in the transaction of its work."""
        assert claim.state is ClaimState.OWNED
        await self._complete(conn, company_id, key, answer)

    async def release_claim(self, company_id: UUID, key: str, claim: Claim) -> None:
        """Nothing was done: give the key `claim` owns back, so that a retry does the work."""
        assert claim.state is ClaimState.OWNED
        await self._release(company_id, key)

    async def _complete(self, conn: Connection, company_id: UUID, key: str, answer: Answer) -> None:
        body = answer.model_dump(mode="json", by_alias=True)
        await complete(conn, company_id, key, self.status_code, body)

    async def _release(self, company_id: UUID, key: str) -> None:
        try:
            async with self.pool.acquire() as conn:
                await release(conn, company_id, key)
        except Exception:
            # The request's own error matters more; the claim goes stale and is taken over.
            log.warning("idempotency key not released", exc_info=True)


def _fingerprint(request: BaseModel) -> str:
    # The body's companyId is optional and checked against the token: not part of the request.
    return request_fingerprint(request.model_dump(mode="json", exclude={"company_id"}))
