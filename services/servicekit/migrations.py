"""Forward-only, numbered SQL migrations, applied under an advisory lock.

Safe to run twice and from several processes at once: the lock serializes
runners, and each file is applied in its own transaction together with its row
in `schema_migrations`. Files are `NNNN_description.sql`, grouped in sets (a
service's own tables, the kit's outbox, ...) tracked separately.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Any constant shared by every runner; it only has to differ from other app locks.
MIGRATION_LOCK_KEY = 0x5EED_B111

FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    migration_set TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_set, version)
)
"""


@dataclass(frozen=True)
class MigrationSet:
    name: str
    directory: Path

    def files(self) -> list[tuple[int, Path]]:
        found = []
        for path in sorted(self.directory.glob("*.sql")):
            match = FILE_NAME.match(path.name)
            if not match:
                raise ValueError(f"migration file name not NNNN_name.sql: {path}")
            found.append((int(match.group(1)), path))
        versions = [version for version, _ in found]
        if len(set(versions)) != len(versions):
            raise ValueError(f"duplicate migration versions in {self.directory}")
        return found


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def ensure_database(dsn: str) -> None:
    """Create the DSN's database if it does not exist (a fresh machine has none)."""
    name = database_name(dsn)
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {quote_identifier(name)}")
        log.info("database created", database=name)
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        pass  # created by a runner beside us (the catalog's unique index may answer first)
    finally:
        await admin.close()


async def migrate(dsn: str, sets: Sequence[MigrationSet]) -> list[str]:
    """Apply what is pending; return the names applied."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(CREATE_TRACKING)
            for migration_set in sets:
                done = {
                    row["version"]
                    for row in await conn.fetch(
                        "SELECT version FROM schema_migrations WHERE migration_set = $1",
                        migration_set.name,
                    )
                }
                for version, path in migration_set.files():
                    if version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(path.read_text())
                        await conn.execute(
                            "INSERT INTO schema_migrations (migration_set, version, name)"
                            " VALUES ($1, $2, $3)",
                            migration_set.name,
                            version,
                            path.name,
                        )
                    applied.append(f"{migration_set.name}/{path.name}")
                    log.info("migration applied", migration_set=migration_set.name, file=path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied
