"""The billing consumer: one quorum queue, both events, acknowledged by hand after commit.

FastStream owns the connection: it declares the topology, keeps the robust
channel (prefetch, reconnection) and publishes dead letters. Messages are
taken from its robust queue with aio-pika's own consumer rather than a
FastStream subscriber: per message, FastStream's pipeline (context scopes,
middlewares, parsing, dependency injection) cost more CPU than recording the
event, and billing acknowledges by hand anyway. The robust queue re-registers
this consumer after a reconnection exactly as it would a subscriber's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustQueue, ConsumerTag
from faststream.rabbit import RabbitBroker

from contracts.topology import Topology
from services.billing.acks import Acknowledger
from services.billing.intake import Intake
from services.billing.metrics import MESSAGE_SECONDS

log = structlog.get_logger(__name__)


class BillingConsumer:
    def __init__(
        self, broker: RabbitBroker, topology: Topology, intake: Intake, acks: Acknowledger
    ) -> None:
        self._broker = broker
        self._topology = topology
        self._intake = intake
        self._acks = acks
        self._queue: AbstractRobustQueue | None = None
        self._tag: ConsumerTag | None = None
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Register on the billing queue (declared by the topology, same arguments)."""
        queue = await self._broker.declare_queue(self._topology.billing_queue())
        self._tag = await queue.consume(self._on_message, no_ack=False)
        self._queue = queue

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            return  # not acknowledged: the broker redelivers it when our channel closes
        self._acks.received(message)
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        started = time.perf_counter()
        try:
            await self._intake.handle(message)
        except Exception as exc:
            # Not settled (its dead letter could not be published, say). Give it back rather
            # than hold it: an unsettled tag would hold back the acknowledgement of every
            # later message of the channel. The nack goes out before any ack covering it.
            log.warning("message returned to the queue", error=repr(exc))
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            self._acks.returned(message)
        finally:
            self._in_flight.discard(task)
            MESSAGE_SECONDS.observe(time.perf_counter() - started)

    async def stop(self, graceful_timeout: float) -> None:
        """Stop taking messages; let those in hand commit and be acknowledged."""
        self._stopping = True
        queue, tag = self._queue, self._tag
        if queue is not None and tag is not None and not queue.channel.is_closed:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=graceful_timeout)
            if pending:
                log.warning(
                    "stopping with messages in hand; the broker redelivers them",
                    messages=len(pending),
                )
        await self._acks.drain()  # settled ones go out before the channel closes
        self._queue, self._tag = None, None

    def consuming(self) -> bool:
        """True while our consumer is registered on a live channel."""
        queue = self._queue
        return (
            not self._stopping
            and queue is not None
            and self._tag is not None
            and not queue.channel.is_closed
        )
