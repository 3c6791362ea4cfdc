"""Every service's migrations apply to an empty database, twice, and from two runners at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.migrate import MIGRATION_SETS
from services.servicekit.migrations import migrate
from tests.support.databases import drop_databases, dsn_of
from tests.support.env import RUN_ID


@pytest.fixture
async def empty_database_dsn() -> AsyncIterator[str]:
    name = f"{RUN_ID}_empty_{uuid.uuid4().hex[:8]}"
    yield dsn_of(name)  # migrate() creates it
    await drop_databases([name])


@pytest.mark.parametrize("service", list(MIGRATION_SETS))
async def test_migrations_apply_to_an_empty_database_once(
    empty_database_dsn: str, service: str
) -> None:
    sets = MIGRATION_SETS[service]
    expected = sum(len(migration_set.files()) for migration_set in sets)

    first, second = await asyncio.gather(
        migrate(empty_database_dsn, sets), migrate(empty_database_dsn, sets)
    )
    third = await migrate(empty_database_dsn, sets)

    assert sorted([len(first), len(second)]) == [0, expected]
    assert third == []
    conn = await asyncpg.connect(empty_database_dsn)
    try:
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert recorded == expected
