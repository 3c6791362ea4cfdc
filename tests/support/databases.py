"""A database per service per test, cloned from templates migrated once per run.

Also what benchmarks use: a freshly migrated database, and dropping what a run made.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.migrate import MIGRATION_SETS
from services.servicekit.migrations import (
    MigrationSet,
    migrate,
    quote_identifier,
    with_database,
)
from tests.support.env import ADMIN_DSN, RUN_ID

SERVICES = tuple(MIGRATION_SETS)
_counter = itertools.count(1)


def template_name(service: str) -> str:
    return f"{RUN_ID}_tpl_{service}"


def dsn_of(database: str) -> str:
    return with_database(ADMIN_DSN, database)


@dataclass(frozen=True)
class ServiceDatabases:
    question_gen: str
    jobs: str
    billing: str

    def all(self) -> list[str]:
        return [self.question_gen, self.jobs, self.billing]


async def create_templates() -> None:
    for service in SERVICES:
        await migrate(dsn_of(template_name(service)), MIGRATION_SETS[service])


async def clone_databases() -> tuple[ServiceDatabases, list[str]]:
    number = next(_counter)
    admin = await asyncpg.connect(ADMIN_DSN)
    names = {service: f"{RUN_ID}_{number}_{service}" for service in SERVICES}
    try:
        for service, name in names.items():
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name(service)}"')
    finally:
        await admin.close()
    return ServiceDatabases(**{s: dsn_of(n) for s, n in names.items()}), list(names.values())


async def drop_databases(
    named: Sequence[str] = (), *, prefix: str = "", admin_dsn: str = ADMIN_DSN
) -> None:
    """Drop databases by name, and every one whose name starts with `prefix`."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        names = list(named)
        if prefix:
            like = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
            rows = await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", like)
            names += [row["datname"] for row in rows]
        for name in names:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")
    finally:
        await admin.close()


async def drop_run_databases() -> None:
    """Everything this run made, templates included (also what a failed test left)."""
    await drop_databases(prefix=f"{RUN_ID}_")


@asynccontextmanager
async def migrated_database(
    service: str, name: str, *, admin_dsn: str = ADMIN_DSN
) -> AsyncIterator[str]:
    """A new database `name` with `service`'s migrations applied; dropped after."""
    try:
        await migrate(with_database(admin_dsn, name), MIGRATION_SETS[service])
        yield with_database(admin_dsn, name)
    finally:
        await drop_databases([name], admin_dsn=admin_dsn)


@dataclass(frozen=True)
class MigrationsBefore(MigrationSet):
    """A service's own migrations up to (not including) `version`: a database as it was."""

    version: int = 0

    def files(self) -> list[tuple[int, Path]]:
        return [(number, path) for number, path in super().files() if number < self.version]


@dataclass(frozen=True)
class MigrationsWithout(MigrationSet):
    """A service's own migrations but `version`: that one alone left pending."""

    version: int = 0

    def files(self) -> list[tuple[int, Path]]:
        return [(number, path) for number, path in super().files() if number != self.version]


async def migrate_without(dsn: str, service: str, version: int) -> None:
    """`dsn` as a release that never applied `service`'s migration `version` left it, with
    every later migration applied: the schema today's code writes to, the data still as
    it was before `version`. (`migrate_before` with today's code fails on later tables.)"""
    sets = [
        MigrationsWithout(found.name, found.directory, version) if found.name == service else found
        for found in MIGRATION_SETS[service]
    ]
    await migrate(dsn, sets)


async def migrate_before(dsn: str, service: str, version: int) -> None:
    """`dsn` as the release before `service`'s migration `version` left it (kit sets whole)."""
    sets = [
        MigrationsBefore(found.name, found.directory, version) if found.name == service else found
        for found in MIGRATION_SETS[service]
    ]
    await migrate(dsn, sets)
