"""The margin rollups' effect of a recorded batch: its new usage rows and its new calls.

Revenue is what the batch billed (each new usage row's cost), the provider cost
what its new calls cost us; both by company, the model's stem and the UTC day of
the event. Moving drafts onto jobs changes neither, so moved rows add nothing.
"""

from __future__ import annotations

from services.billing.costs import store
from services.billing.costs.margins import deltas_of
from services.billing.ledger.batch import RecordedBatch
from services.servicekit.db import Connection


async def keep_margins(conn: Connection, batch: RecordedBatch) -> None:
    deltas = deltas_of(
        ((row.company_id, row.model_used, row.created_at, row.cost) for row in batch.inserted),
        batch.calls,
    )
    if not deltas.is_empty():
        await store.add_margins(conn, deltas)
