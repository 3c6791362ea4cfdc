"""What recording a batch does besides writing its rows: one effect per feature, in this order.

Each effect runs in the batch's transaction, after its usage rows are written, its
drafts moved and its LLM calls kept (`record.py`), and is given the same `RecordedBatch`. A feature
that follows from recorded usage adds its effect here, not a step to the ledger.
The order is the list's: an effect may read what an earlier one wrote, and every
batch takes the rows these effects lock in the same order (no two can deadlock).
"""

from __future__ import annotations

from services.billing.budgets.spend import record_spend
from services.billing.costs.keep import keep_margins
from services.billing.credits.burn import draw_credits
from services.billing.ledger.batch import BatchEffect
from services.billing.rollups.keep import keep_rollups

EFFECTS: tuple[BatchEffect, ...] = (
    keep_rollups,  # the sums by day, period, job and draft that every read is served from
    record_spend,  # from the periods' new totals: thresholds reached (webhooks), SpendRecorded
    keep_margins,  # revenue and provider cost by company, model and day (the cost of goods)
    # Last: spend is what was billed whoever pays, so it needs nothing from the draws; and
    # the credit accounts it locks (also locked by grants, voids, the expiry) are held
    # for the shortest time before the commit.
    draw_credits,  # new rows draw their cost from the company's grants, in burn-down order
)
