"""`python -m services.billing.rollups.rebuild`: recompute every rollup from the usage rows.

For a deployment over an existing ledger, or after a manual repair of usage
rows. Reports every rollup that differed from what the rows add up to, and
fixes it (`--check` reports without fixing, and exits 1 if anything differs).

Safe while billing workers run: the companies are taken a group at a time
(about `--rows` usage rows each, read once), each group in its own transaction holding the
rollups' EXCLUSIVE lock, so a worker's batch waits at most one group (readers
never wait). Prints one JSON line per group that differed, then a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from typing import Any
from uuid import UUID

import asyncpg

from services.billing.config import Settings
from services.billing.rollups import store


class CheckOnly(Exception):
    """Raised inside a group's transaction to roll its fixes back under `--check`."""


def groups(companies: list[tuple[UUID, int]], rows_per_group: int) -> list[list[UUID]]:
    """Consecutive companies, about `rows_per_group` usage rows a group (a large one alone)."""
    result: list[list[UUID]] = []
    current: list[UUID] = []
    rows = 0
    for company, count in companies:
        if current and rows + count > rows_per_group:
            result.append(current)
            current, rows = [], 0
        current.append(company)
        rows += count
    if current:
        result.append(current)
    return result


async def rebuild_all(dsn: str, *, rows_per_group: int, check: bool) -> dict[str, Any]:
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        counted = [(row["company_id"], row["rows"]) for row in await conn.fetch(store.COMPANIES)]
        orphans = [row["company_id"] for row in await conn.fetch(store.ORPHAN_COMPANIES)]
        work = groups(counted, rows_per_group) + ([orphans] if orphans else [])
        differing: dict[str, int] = {}
        for companies in work:
            differences: list[store.Difference] = []
            try:
                async with conn.transaction():
                    differences = await store.rebuild(conn, companies)
                    if check and differences:
                        raise CheckOnly
            except CheckOnly:
                pass
            for difference in differences:
                differing[difference.table] = (
                    differing.get(difference.table, 0) + difference.missing + difference.unexpected
                )
                print(json.dumps({"differs": asdict(difference)}, default=str), flush=True)
        if differing and not check:
            # Fresh statistics: the reads' plans depend on the rollups' sizes.
            await conn.execute(f"ANALYZE {', '.join(r.table for r in store.ROLLUPS)}")
    finally:
        await conn.close()
    return {
        "companies": len(counted) + len(orphans),
        "rows": sum(count for _, count in counted),
        "groups": len(work),
        "differing_rows": differing,
        "fixed": not check,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.billing.rollups.rebuild")
    parser.add_argument("--check", action="store_true", help="report differences, fix nothing")
    parser.add_argument("--rows", type=int, default=500_000, help="usage rows per transaction")
    args = parser.parse_args(argv)
    report = asyncio.run(
        rebuild_all(Settings().database_url, rows_per_group=args.rows, check=args.check)
    )
    print(json.dumps(report), flush=True)
    return 1 if args.check and report["differing_rows"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
