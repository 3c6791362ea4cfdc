"""The baseline of job creation: raw asyncpg, one row inserted and committed per request.

`python -m bench.raw_insert --dsn DSN --concurrency C --pool-size P --seconds S`:
C tasks in a loop, each inserting one job row (the columns the jobs service
writes) in its own implicit transaction, over a pool of P connections. Prints
one JSON line: requests, errors, seconds, p50_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvloop

from bench.load import load_report

INSERT = """
INSERT INTO jobs (id, company_id, title, description, created_by, draft_job_id, details, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
"""


async def run(dsn: str, concurrency: int, pool_size: int, seconds: float) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    company = uuid.uuid4()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal errors
        while (sent := time.perf_counter()) < deadline:
            try:
                async with pool.acquire() as conn:
                    await conn.execute(
                        INSERT,
                        uuid.uuid4(),
                        company,
                        "Senior Python engineer",
                        "Event-driven billing on RabbitMQ and PostgreSQL.",
                        "recruiter@example.com",
                        None,
                        "{}",
                        datetime.now(UTC),
                    )
            except asyncpg.PostgresError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return load_report(len(latencies), errors, elapsed, latencies)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_insert")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(json.dumps(uvloop.run(run(args.dsn, args.concurrency, args.pool_size, args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
