"""Exchange, routing keys, queues and dead-lettering, in one place.

Every service declares this topology at start (idempotently), so a publish is
never unroutable because the consumer has not started yet.

Dead-lettering is portable across RabbitMQ 3.10 to 4.x: the billing queue is a
quorum queue with an explicit `x-delivery-limit`, `at-least-once` dead-letter
strategy (which needs `x-overflow=reject-publish`), and the DLQ is itself a
quorum queue. From 4.3 on, a `nack` no longer counts toward the delivery limit,
so billing tells transient failures and poison apart in code (see
`services/billing/ledger/consume.py`); the limit is the backstop for crash loops.

On a cluster, each quorum queue is replicated on `QUORUM_REPLICAS` nodes, named
explicitly (`x-quorum-initial-group-size`) rather than left to the broker's
default. A smaller cluster, one node included, takes the same declaration and
places as many replicas as it has nodes; `rabbitmq-queues grow` adds replicas
on nodes that join later. RabbitMQ compares the argument on redeclaration, so a
queue declared without it (before clusters were supported) must be moved or
redeclared once (`docs/operations.md`, "Running on a cluster").
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from contracts.events import JobCreated, LlmCallFinished, QuestionsGenerated

QUESTIONS_GENERATED = QuestionsGenerated.routing_key
JOB_CREATED = JobCreated.routing_key
LLM_CALL_FINISHED = LlmCallFinished.routing_key
# Every event billing publishes (`billing.price_changed.v1`, ...): the question service's.
BILLING_EVENTS = "billing.#"

# Deliveries of one message before RabbitMQ dead-letters it on its own.
DELIVERY_LIMIT = 20
# The DLQ only loses a message past this many deliveries: never, in practice.
DLQ_DELIVERY_LIMIT = 1_000_000
# Replicas of every quorum queue: a three-node cluster goes on with one node lost.
QUORUM_REPLICAS = 3


def quorum_queue(name: str, arguments: QuorumQueueArgs, *, declare: bool = True) -> RabbitQueue:
    """A durable quorum queue replicated on `QUORUM_REPLICAS` nodes (any queue of ours)."""
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        declare=declare,
        arguments={**arguments, "x-quorum-initial-group-size": QUORUM_REPLICAS},
    )


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
        return quorum_queue(
            self.billing_queue_name,
            {
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": self.billing_dlx_name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
            declare=declare,
        )

    def billing_dlq(self) -> RabbitQueue:
        # Explicit: RabbitMQ 4.x gives quorum queues a delivery limit of 20 by default, and
        # the DLQ has nowhere to send what passes it (each replay dry run is a delivery).
        return quorum_queue(self.billing_dlq_name, {"x-delivery-limit": DLQ_DELIVERY_LIMIT})

    def billing_bindings(self) -> tuple[str, ...]:
        return (QUESTIONS_GENERATED, JOB_CREATED, LLM_CALL_FINISHED)

    @property
    def question_billing_queue_name(self) -> str:
        return f"{self.prefix}question_gen.billing"

    def question_billing_queue(self, *, declare: bool = True) -> RabbitQueue:
        """The question service's queue of billing's events (prices, budgets, spend)."""
        return quorum_queue(self.question_billing_queue_name, {}, declare=declare)

    def question_billing_bindings(self) -> tuple[str, ...]:
        return (BILLING_EVENTS,)
