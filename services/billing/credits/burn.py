"""Credits' effect of a recorded batch: each new usage row draws its cost from the grants.

In the batch's own transaction (`ledger/effects.py`), only for the rows this batch
inserted: a redelivered generation inserts none and a draft moved onto its job is
not new, so neither draws again. Rows of companies in mode `none` draw nothing.
Each row draws from the grants active at its occurredAt, in burn-down order
(`rules.burn_down`); a late event draws from those if anything remains. Each
account charged gets its `CreditsChanged`, naming the generations recorded, even
when nothing was left to draw. The
accounts are locked first (`store.py`), so concurrent batches, voids and the
expiry take turns per company and none can draw what another has taken.
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from services.billing.credits import store
from services.billing.credits.changes import publish_changes
from services.billing.credits.rules import Charge, burn_down
from services.billing.credits.store import DrawnRow
from services.billing.ledger.batch import RecordedBatch
from services.servicekit.db import Connection


async def draw_credits(conn: Connection, batch: RecordedBatch) -> None:
    charges: dict[UUID, list[Charge]] = defaultdict(list)
    periods: dict[UUID, str] = {}
    for row in batch.inserted:
        if row.cost > 0:
            charges[row.company_id].append(Charge(row.event_id, row.created_at, row.cost))
            periods[row.event_id] = row.period
    if not charges:
        return
    accounts = await store.lock_drawing_accounts(conn, list(charges))
    if not accounts:
        return
    left = await store.grants_left(conn, [account.company_id for account in accounts])
    drawn: list[DrawnRow] = []
    deltas = []
    counted: dict[UUID, list[UUID]] = {}
    for account in accounts:
        company = account.company_id
        result = burn_down(left[company], charges[company])
        drawn += [DrawnRow(draw, company, periods[draw.event_id]) for draw in result.draws]
        # Every account a batch charged changes (a revision, an event), drawn from or not:
        # its event names the generations now counted, which the question service stops
        # counting as not yet billed.
        deltas.append((company, -result.drawn))
        counted[company] = [charge.event_id for charge in charges[company]]
    if drawn:
        await store.record_draws(conn, drawn, batch.now)
    await publish_changes(
        conn, await store.change_balances(conn, deltas), batch.now, counted=counted
    )
