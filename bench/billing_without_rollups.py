"""`python -m bench.billing_without_rollups`: billing with its rollups not kept. Benchmarks only.

The same process as `python -m services.billing`, except that a batch's rollup
deltas are neither computed nor written: the baseline against which
`bench/ledger_reads.py` measures what keeping the rollups costs the ledger's
throughput. Its read API then answers wrong sums; never run it over a real ledger.
"""

from __future__ import annotations

from typing import Any

from services.billing.config import Settings
from services.billing.rollups import store
from services.servicekit.db import Connection
from services.servicekit.serve import serve


async def keep_nothing(conn: Connection, *args: Any, **kwargs: Any) -> None:
    return None


if __name__ == "__main__":
    store.keep = keep_nothing
    serve("services.billing.main:create_app", Settings())
