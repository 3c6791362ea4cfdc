"""`python -m services.migrate`: create each service's database if needed and apply migrations."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.billing.config import Settings as BillingSettings
from services.jobs.config import Settings as JobsSettings
from services.question_gen.config import Settings as QuestionSettings
from services.servicekit import idempotency, outbox
from services.servicekit.migrations import MigrationSet, migrate
from services.servicekit.settings import ServiceSettings

SERVICES = Path(__file__).parent


def own(service: str) -> MigrationSet:
    return MigrationSet(service, SERVICES / service / "migrations")


MIGRATION_SETS: dict[str, list[MigrationSet]] = {
    "question_gen": [outbox.MIGRATIONS, idempotency.MIGRATIONS, own("question_gen")],
    "jobs": [outbox.MIGRATIONS, idempotency.MIGRATIONS, own("jobs")],
    "billing": [outbox.MIGRATIONS, idempotency.MIGRATIONS, own("billing")],
}

SETTINGS: dict[str, type[ServiceSettings]] = {
    "question_gen": QuestionSettings,
    "jobs": JobsSettings,
    "billing": BillingSettings,
}


async def migrate_all(services: list[str]) -> None:
    for service in services:
        settings = SETTINGS[service]()
        applied = await migrate(settings.database_url, MIGRATION_SETS[service])
        print(
            f"{service}: {len(applied)} migration(s) applied"
            + (f": {', '.join(applied)}" if applied else "")
        )


def main(argv: list[str]) -> int:
    services = argv or list(MIGRATION_SETS)
    unknown = [name for name in services if name not in MIGRATION_SETS]
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    asyncio.run(migrate_all(services))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
