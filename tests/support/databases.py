"""A database per service per test, cloned from templates migrated once per run."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import asyncpg

from services.migrate import MIGRATION_SETS
from services.servicekit import migrations
from services.servicekit.migrations import migrate, with_database
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


async def drop_databases(names: list[str]) -> None:
    await migrations.drop_databases(ADMIN_DSN, named=names)


async def drop_run_databases() -> None:
    """Everything this run made, templates included (also what a failed test left)."""
    await migrations.drop_databases(ADMIN_DSN, prefix=f"{RUN_ID}_")
