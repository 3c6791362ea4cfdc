"""Pure: a delivered message read as a ledger entry, or told apart as poison; its failure headers.

Nothing here does I/O: `consume.py` decides what to do with the answers. Poison is
what can be told from the message alone (the contract's validation). A generation is
priced once, by the ledger, with the price version in force at its occurredAt: a cost
too big for the ledger is found there (`CostOutOfRange`, poison too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from contracts.events import EVENT_TYPES, JobCreated, LlmCallFinished, QuestionsGenerated
from services.billing.ledger.rules import Entry
from services.billing.ledger.rules import PoisonMessage as PoisonMessage

REASON = "x-billing-reason"
DETAIL = "x-billing-detail"
ATTEMPTS = "x-billing-attempts"
ORIGINAL_ROUTING_KEY = "x-billing-original-routing-key"
DEAD_LETTERED_AT = "x-billing-dead-lettered-at"

# Headers that describe a past failure; a replayed message starts afresh.
FAILURE_HEADERS = (
    REASON,
    DETAIL,
    ATTEMPTS,
    DEAD_LETTERED_AT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


def parse(routing_key: str, body: bytes) -> Entry:
    """The event a message asks the ledger to record; `PoisonMessage` if it is not one."""
    model = EVENT_TYPES.get(routing_key)
    if model is None:
        raise PoisonMessage(f"unknown event type {routing_key!r}")
    try:
        event = model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise PoisonMessage(f"not a valid {routing_key}: {problems}") from exc
    assert isinstance(event, (QuestionsGenerated, JobCreated, LlmCallFinished))  # EVENT_TYPES'
    return event


def original_routing_key(message: AbstractIncomingMessage) -> str:
    """The event's routing key, even after a trip through the default exchange."""
    headers = message.headers or {}
    stored = headers.get(ORIGINAL_ROUTING_KEY)
    if isinstance(stored, bytes):
        stored = stored.decode()
    if stored:
        return str(stored)
    if message.routing_key in EVENT_TYPES:  # a publisher's own `type` does not override it
        return message.routing_key
    return str(message.type or message.routing_key or "")


def failed_attempts(message: AbstractIncomingMessage) -> int:
    """How many times billing failed this message before (the broker may not count nacks)."""
    value = (message.headers or {}).get(ATTEMPTS, 0)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def retry_headers(message: AbstractIncomingMessage, attempts: int) -> dict[str, Any]:
    """The message's headers for another round, with its failures counted."""
    headers = dict(message.headers or {})
    headers[ATTEMPTS] = attempts
    headers[ORIGINAL_ROUTING_KEY] = original_routing_key(message)
    return headers


def dead_letter_headers(
    message: AbstractIncomingMessage, reason: str, detail: str, *, at: datetime
) -> dict[str, Any]:
    """The message's headers in the DLQ: why it is there, and where it was going."""
    headers = dict(message.headers or {})
    headers.update(
        {
            REASON: reason,
            DETAIL: detail[:1000],
            ORIGINAL_ROUTING_KEY: original_routing_key(message),
            DEAD_LETTERED_AT: at.isoformat(),
        }
    )
    return headers
