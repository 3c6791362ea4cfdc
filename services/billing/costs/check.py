"""`python -m services.billing.costs.check`: the margin rollups against the usage rows and calls.

Recomputes every margin rollup from what it sums (the usage rows' cost, the
calls' provider cost) and prints one JSON line per rollup that differs, then a
summary; exits 1 if anything differed. `--fix` rewrites what differs instead (and
exits 0 once it is fixed): for a ledger loaded by other means, say.

One transaction holding the margin rollups' EXCLUSIVE lock: billing's batches
wait for it (readers do not), so run it at a quiet moment on a large ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from typing import Any

import asyncpg

from services.billing.config import Settings
from services.billing.costs import store


async def check(dsn: str, *, fix: bool) -> dict[str, Any]:
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            differences = await store.check_margins(conn, fix=fix)
    finally:
        await conn.close()
    for difference in differences:
        print(json.dumps({"differs": asdict(difference)}, default=str), flush=True)
    return {
        "differing": {d.table: d.missing + d.unexpected for d in differences},
        "fixed": fix,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.billing.costs.check")
    parser.add_argument("--fix", action="store_true", help="rewrite what differs")
    args = parser.parse_args(argv)
    report = asyncio.run(check(Settings().database_url, fix=args.fix))
    print(json.dumps(report), flush=True)
    return 1 if report["differing"] and not args.fix else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
