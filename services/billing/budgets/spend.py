"""The budgets' effect of a recorded batch: what follows from the periods' new totals.

In the batch's own transaction, after the rollups hold each period's new total
(`ledger/effects.py`): every threshold a total has reached enqueues its webhook
delivery (once per company, period and threshold, ever), and one `SpendRecorded`
per (company, period) goes to billing's outbox for the question service.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from contracts.events import SpendRecorded
from services.billing.budgets import store
from services.billing.budgets.rules import thresholds_reached
from services.billing.budgets.store import PeriodSpend
from services.billing.ledger.batch import RecordedBatch
from services.billing.webhooks import store as webhooks
from services.billing.webhooks.rules import DeliveryPolicy, threshold_body, threshold_event_id
from services.servicekit import outbox
from services.servicekit.db import Connection

GIVE_UP_AFTER = DeliveryPolicy().give_up_after


def deliveries_for(spend: PeriodSpend, now: datetime) -> list[webhooks.NewDelivery]:
    if not spend.has_webhook or spend.monthly_limit is None:
        return []
    return [
        webhooks.NewDelivery(
            event_id=threshold_event_id(spend.company_id, spend.period, threshold),
            company_id=spend.company_id,
            period=spend.period,
            threshold=threshold,
            body=threshold_body(
                spend.company_id, spend.period, threshold, spend.spent, spend.monthly_limit, now
            ),
            created_at=now,
            give_up_at=now + GIVE_UP_AFTER,
        )
        for threshold in thresholds_reached(spend.spent, spend.monthly_limit, spend.thresholds)
    ]


def spend_recorded(spend: PeriodSpend, now: datetime) -> SpendRecorded:
    return SpendRecorded(
        event_id=uuid.uuid4(),
        occurred_at=now,
        company_id=spend.company_id,
        period=spend.period,
        spent=spend.spent,
    )


async def record_spend(conn: Connection, batch: RecordedBatch) -> None:
    """For each (company, period) the batch's new usage rows were billed in."""
    periods = sorted({(row.company_id, row.period) for row in batch.inserted})
    if not periods:
        return
    spends = await store.spent_after(conn, periods)
    await webhooks.enqueue(conn, [d for spend in spends for d in deliveries_for(spend, batch.now)])
    await outbox.enqueue_many(conn, [spend_recorded(spend, batch.now) for spend in spends])
