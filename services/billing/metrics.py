"""Billing metrics: events, rows, reconciliations, money, dead letters, webhooks, LLM calls."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

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
MESSAGES_RETURNED = Counter(
    "billing_messages_returned_total",
    "Messages nacked back to the queue unsettled (their dead letter or retry not confirmed).",
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
MESSAGE_SECONDS = Histogram(
    "billing_message_seconds",
    "From a message's receipt to its acknowledgement (its batch committed).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "billing_batch_size",
    "Events per committed transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
WEBHOOK_ATTEMPTS = Counter(
    "billing_webhook_attempts_total",
    "Threshold webhook attempts recorded, by outcome; gave_up: the last of an undelivered one.",
    ["outcome"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "billing_webhook_attempt_seconds",
    "Webhook attempts that sent a request: from the URL's check to the answer or failure.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

LLM_CALLS = Counter(
    "billing_llm_calls_recorded_total",
    "LLM calls recorded (the cost of goods), by outcome and whether their model had a price.",
    ["outcome", "priced"],
)
CALLS_REPRICED = Counter(
    "billing_llm_calls_repriced_total", "LLM calls whose provider cost a re-pricing changed."
)

RECONCILIATION_RUNS = Counter(
    "billing_reconciliation_runs_total",
    "Reconciliation runs this process made, by trigger (schedule, request) and status.",
    ["trigger", "status"],
)
RECONCILIATION_ENABLED = Gauge(
    "billing_reconciliation_enabled", "1 when OPENAI_ADMIN_KEY is set: reconciliation runs."
)
RECONCILIATION_DAY_MODELS = Gauge(
    "billing_reconciliation_day_models",
    "Day-models of the latest succeeded run, by status (every process reads it from the database).",
    ["status"],
)
RECONCILIATION_MAX_DRIFT = Gauge(
    "billing_reconciliation_max_drift_percent",
    "The largest difference, in percent of ours, of a drifted day-model's figure in the "
    "latest succeeded run (0 when none drifted).",
)
RECONCILIATION_LAST_SUCCESS = Gauge(
    "billing_reconciliation_last_success_timestamp_seconds",
    "When the latest succeeded run finished (Unix seconds; 0 before the first).",
)


@cache
def consumed(routing_key: str) -> Counter:
    """The labelled child, looked up once per key rather than per message."""
    return EVENTS_CONSUMED.labels(routing_key)


@cache
def usage_rows(status: str) -> Counter:
    return USAGE_ROWS.labels(status)


@cache
def llm_calls(outcome: str, priced: bool) -> Counter:
    return LLM_CALLS.labels(outcome, "true" if priced else "false")


@cache
def webhook_attempts(outcome: str) -> Counter:
    return WEBHOOK_ATTEMPTS.labels(outcome)
