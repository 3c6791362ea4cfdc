"""`python -m services.billing.statements.close YYYY-MM`: close a month, for operators.

The same close as `POST /api/billing/admin/periods/{period}/close`: every
company's statement of the month is frozen in one transaction. Safe to run
again (a closed month stays as it was closed); refused while the month is not
over. Exit status 0 when the month is closed, 2 for a malformed or unfinished
month.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

import asyncpg

from services.billing.config import Settings
from services.billing.statements.handlers import PeriodNotEnded, close_period
from services.billing.statements.rules import InvalidPeriod, Period


async def close(database_url: str, period: Period, out: TextIO) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        started = datetime.now(UTC)
        closed = await close_period(pool, period, datetime.now(UTC))
    finally:
        await pool.close()
    seconds = (datetime.now(UTC) - started).total_seconds()
    if closed.statements is None:
        print(f"{period} was already closed at {closed.closed_at.isoformat()}", file=out)
    else:
        print(
            f"{period} closed at {closed.closed_at.isoformat()}: "
            f"{closed.statements} statement(s) frozen in {seconds:.1f} s",
            file=out,
        )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.billing.statements.close", description=__doc__.split("\n")[0]
    )
    parser.add_argument("period", help="the month to close, YYYY-MM (it must be over)")
    args = parser.parse_args(argv)
    try:
        period = Period.parse(args.period)
        asyncio.run(close(Settings().database_url, period, out))
    except (InvalidPeriod, PeriodNotEnded) as exc:
        print(f"not closed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
