"""`python -m services.billing.reconciliation [--from YYYY-MM-DD] [--to YYYY-MM-DD]`
(`make reconcile FROM= TO=`): run a reconciliation now and answer "did we pay for
anything we did not record?".

Runs in this process, against billing's database and the provider's usage API, with
billing's settings (`BILLING_DATABASE_URL`, `OPENAI_ADMIN_KEY`, ...), under the same
lock as billing's own runs: recorded like any run, listed by the admin API. Prints
the run, every day-model that is not `matched`, then the answer. Exit status: 0 when
every settled day-model matched, 2 when some disagree, 1 when the run could not be
made (no key, the provider refused or could not answer, another run in progress).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime, timedelta

from services.billing.config import Settings
from services.billing.costs.margins import InvalidRange
from services.billing.main import usage_reader
from services.billing.reconciliation import store
from services.billing.reconciliation.rules import (
    FIGURES,
    DayModel,
    check_run_range,
    default_range,
)
from services.billing.reconciliation.run import RunOrder, ordered, reconcile
from services.servicekit import db


def utc_now() -> datetime:
    return datetime.now(UTC)


def describe(row: DayModel) -> str:
    figures = ", ".join(
        f"{name} {ours}/{theirs}"
        for name, ours, theirs in zip(
            FIGURES, row.ours.as_tuple(), row.theirs.as_tuple(), strict=True
        )
    )
    percents = ", ".join(
        f"{name} {'n/a' if percent is None else f'{percent:+}%'}"
        for name, percent in row.percent().items()
        if percent
    )
    return f"  {row.day}  {row.model:<28} {row.status:<15} ours/theirs: {figures}" + (
        f"  (theirs - ours: {percents})" if percents else ""
    )


async def main(first: date | None, last: date | None) -> int:
    settings = Settings()
    reader = usage_reader(settings)
    if reader is None:
        print("reconciliation is off: OPENAI_ADMIN_KEY is not set", file=sys.stderr)
        return 1
    today = utc_now().date()
    if first is None and last is None:
        first, last = default_range(today)
    last = last or today
    first = first or last - timedelta(days=6)
    try:
        check_run_range(first, last, today)
    except InvalidRange as exc:
        print(f"{exc.field}: {exc}", file=sys.stderr)
        return 1
    tolerance = settings.reconciliation_tolerance_percent
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        run = await reconcile(
            pool,
            reader,
            ordered(RunOrder(first, last, "request", requested_by="make reconcile")),
            clock=utc_now,
            tolerance=tolerance,
        )
        if run is None:
            print("a reconciliation run is in progress; try again once it has finished")
            return 1
        async with pool.acquire() as conn:
            rows = [stored.row for stored in await store.run_results(conn, run.run_id)]
    finally:
        await pool.close()
    outcome = f": {run.reason}" if run.reason else f", provider's pages read: {run.pages}"
    print(f"run {run.run_id}: {first} to {last}, {run.status}{outcome}")
    if not run.succeeded:
        return 1
    counts = ", ".join(f"{n} {status}" for status, n in run.summary.counts.items())
    print(f"day-models: {counts} (tolerance {tolerance}%)")
    for row in rows:
        if row.status != "matched":
            print(describe(row))
    unrecorded = [row for row in rows if row.unrecorded(tolerance)]
    if unrecorded:
        print(
            "YES: the provider counts more than our ledger of calls (drift or missing-ours "
            f"above) on settled day-models: {len(unrecorded)}. Usage paid for, never recorded."
        )
    else:
        print(
            "NO: on every settled day the provider counts nothing our ledger of calls does not "
            f"hold (within {tolerance}%)."
        )
    return 2 if run.summary.disagreeing else 0


def _day(value: str) -> date:
    return date.fromisoformat(value)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m services.billing.reconciliation")
    parser.add_argument("--from", dest="first", type=_day, help="first UTC day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="last", type=_day, help="last UTC day, included")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.first, args.last)))
