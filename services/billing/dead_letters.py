"""The DLQ: poison and repeatedly failing messages, with the reason in their headers.

Publishing here is confirmed before the original is acknowledged, so a message
is never lost on its way to the DLQ (at worst it is there twice).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker

from contracts.events import EVENT_TYPES
from contracts.topology import Topology

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


def failed_attempts(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPTS, 0)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


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


class DeadLetters:
    def __init__(self, broker: RabbitBroker, topology: Topology) -> None:
        self._broker = broker
        self._topology = topology
        self._dlx = topology.dead_letter_exchange()

    async def send(self, message: AbstractIncomingMessage, reason: str, detail: str) -> None:
        headers = dict(message.headers or {})
        headers.update(
            {
                REASON: reason,
                DETAIL: detail[:1000],
                ORIGINAL_ROUTING_KEY: original_routing_key(message),
                DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
            }
        )
        await self._republish(message, exchange=self._dlx, routing_key="", headers=headers)

    async def retry_later(self, message: AbstractIncomingMessage, attempts: int) -> None:
        """Back of the billing queue, with the failures counted (the broker may not count nacks)."""
        headers = dict(message.headers or {})
        headers[ATTEMPTS] = attempts
        headers[ORIGINAL_ROUTING_KEY] = original_routing_key(message)
        await self._republish(
            message, exchange=None, routing_key=self._topology.billing_queue_name, headers=headers
        )

    async def _republish(
        self,
        message: AbstractIncomingMessage,
        *,
        exchange: Any,
        routing_key: str,
        headers: dict[str, Any],
    ) -> None:
        await self._broker.publish(
            message.body,
            exchange=exchange,
            routing_key=routing_key,
            persist=True,
            message_id=message.message_id,
            # Kept, or the client library would make up a new one per attempt.
            correlation_id=message.correlation_id or message.message_id,
            content_type=message.content_type,
            message_type=original_routing_key(message) or None,
            headers=headers,
        )
