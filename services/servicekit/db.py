"""The PostgreSQL pool, and what counts as a transient database error."""

from __future__ import annotations

import asyncio
import json

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection of its own or one lent by a pool: store functions take either.
Connection = asyncpg.Connection | PoolConnectionProxy

# Errors after which the same work, retried later, can succeed.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_DB_ERRORS)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, schema="pg_catalog", encoder=json.dumps, decoder=json.loads)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool without the default reset query.

    asyncpg's default reset (`UNLISTEN *; RESET ALL; pg_advisory_unlock_all()`...)
    costs a round trip on every release. Our pooled connections keep no session
    state: advisory locks are transaction-scoped, LISTEN has its own connection,
    nothing runs SET. An unfinished transaction is still rolled back by asyncpg
    before this is called.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """A pool that retries nothing itself: callers decide what is transient."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=30,
        # Idle connections are checked by use; a cut connection fails fast and is replaced.
        max_inactive_connection_lifetime=60,
    )
    return pool


async def ping(pool: asyncpg.Pool, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except Exception:
        return False
    return True
