"""Billing metrics: events, rows, reconciliations, money, dead letters."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_CONSUMED = Counter(
    "billing_events_consumed_total",
    "Events committed (or found already committed), by routing key.",
    ["routing_key"],
)
EVENTS_FAILED = Counter(
    "billing_events_failed_total",
    "Events whose processing failed, not transiently.",
    ["routing_key"],
)
EVENTS_DEAD_LETTERED = Counter(
    "billing_events_dead_lettered_total", "Messages sent to the DLQ, by reason.", ["reason"]
)
EVENTS_DUPLICATE = Counter(
    "billing_events_duplicate_total", "QuestionsGenerated delivered again after being recorded."
)
USAGE_ROWS = Counter(
    "billing_usage_rows_written_total", "Usage rows written, by status at write.", ["status"]
)
DRAFTS_RECONCILED = Counter(
    "billing_drafts_reconciled_total", "Draft usage rows moved onto their job."
)
AMOUNT_BILLED = Counter(
    "billing_amount_billed_total", "Money billed (cost of rows written), as a float for graphs."
)
TRANSIENT_RETRIES = Counter(
    "billing_transient_retries_total", "Batches retried after a transient database error."
)
BATCH_SIZE = Histogram(
    "billing_batch_size",
    "Events per committed transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
