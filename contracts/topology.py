"""Exchange, routing keys, queues and dead-lettering, in one place.

Every service declares this topology at start (idempotently), so a publish is
never unroutable because the consumer has not started yet.

Dead-lettering is portable across RabbitMQ 3.10 to 4.x: the billing queue is a
quorum queue with an explicit `x-delivery-limit`, `at-least-once` dead-letter
strategy (which needs `x-overflow=reject-publish`), and the DLQ is itself a
quorum queue. From 4.3 on, a `nack` no longer counts toward the delivery limit,
so billing tells transient failures and poison apart in code (see
`services/billing/intake.py`); the limit is the backstop for crash loops.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from contracts.events import JobCreated, QuestionsGenerated

QUESTIONS_GENERATED = QuestionsGenerated.routing_key
JOB_CREATED = JobCreated.routing_key

# Deliveries of one message before RabbitMQ dead-letters it on its own.
DELIVERY_LIMIT = 20
# The DLQ only loses a message past this many deliveries: never, in practice.
DLQ_DELIVERY_LIMIT = 1_000_000


@dataclass(frozen=True)
class Topology:
    """Names of the broker objects. `prefix` namespaces them (tests, shared brokers)."""

    prefix: str = ""

    @property
    def exchange_name(self) -> str:
        return f"{self.prefix}events"

    @property
    def billing_queue_name(self) -> str:
        return f"{self.prefix}billing.usage"

    @property
    def billing_dlq_name(self) -> str:
        return f"{self.prefix}billing.usage.dlq"

    @property
    def billing_dlx_name(self) -> str:
        return f"{self.prefix}billing.usage.dlx"

    def exchange(self) -> RabbitExchange:
        return RabbitExchange(self.exchange_name, type=ExchangeType.TOPIC, durable=True)

    def dead_letter_exchange(self) -> RabbitExchange:
        return RabbitExchange(self.billing_dlx_name, type=ExchangeType.FANOUT, durable=True)

    def billing_queue(self, *, declare: bool = True) -> RabbitQueue:
        return RabbitQueue(
            self.billing_queue_name,
            queue_type=QueueType.QUORUM,
            declare=declare,
            arguments={
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": self.billing_dlx_name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    def billing_dlq(self) -> RabbitQueue:
        # Explicit: RabbitMQ 4.x gives quorum queues a delivery limit of 20 by default, and
        # the DLQ has nowhere to send what passes it (each replay dry run is a delivery).
        return RabbitQueue(
            self.billing_dlq_name,
            queue_type=QueueType.QUORUM,
            arguments={"x-delivery-limit": DLQ_DELIVERY_LIMIT},
        )

    def billing_bindings(self) -> tuple[str, ...]:
        return (QUESTIONS_GENERATED, JOB_CREATED)
