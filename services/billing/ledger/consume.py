"""The billing consumer: every message received is settled exactly once.

A message is settled in one of three ways, and acknowledged only then:

- recorded: its batch committed (`record.py`); acknowledged after the commit;
- poison (not JSON, not valid against the contract, unknown type: `parse`; or
  a cost the ledger cannot hold at the price in force: `record.py` raises
  `CostOutOfRange`, a `PoisonMessage`, for that event alone): to the DLQ at once
  with `x-billing-reason=poison`, never retried, then acknowledged;
- failed (not transiently: those are retried inside `record.py` and never
  acknowledged meanwhile): back of the queue with the failures counted in a
  header, then acknowledged; after `max_failed_attempts`, to the DLQ. The code
  counts, because RabbitMQ 4.3+ no longer counts a `nack` toward the queue's
  delivery limit.

A message none of these could settle (its dead letter not confirmed, say) is
nacked back to the queue, before any acknowledgement that would cover it, and
its tag is never the one an acknowledgement names: RabbitMQ answers a
multiple-ack whose tag is no longer outstanding with PRECONDITION_FAILED
("unknown delivery tag") and closes the channel, which would send every
message in hand round again.

Messages are recorded in batches: while one batch commits, the next fills. No
timer: a lone message is recorded at once, and under load batches grow by
themselves (as group commit does). Settled messages are acknowledged together,
with one `basic.ack(multiple=True)` for the highest tag below which every
message of the channel is settled: a committed batch of 500 costs one frame.

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
import heapq
import logging
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustQueue, ConsumerTag
from aiormq.abc import AbstractChannel
from faststream.rabbit import RabbitBroker
from opentelemetry.trace import SpanContext

from contracts.topology import Topology
from services.billing import metrics
from services.billing.costs.calls import CallRecorded
from services.billing.ledger.messages import (
    PoisonMessage,
    dead_letter_headers,
    failed_attempts,
    original_routing_key,
    parse,
    retry_headers,
)
from services.billing.ledger.record import DraftsReconciled, RecordBatch, Recorded
from services.billing.ledger.rules import Entry
from services.billing.ledger.spans import LedgerSpans
from services.servicekit.tracing import Tracing, trace_id_in

log = structlog.get_logger(__name__)


class SettledTags:
    """Which tags of one channel may be acknowledged: the settled ones below the first unsettled.

    Delivery tags grow on a channel, so once every message up to tag T is
    settled, one multiple-ack for T covers them all. A message not yet settled
    holds back every later tag of its channel. A released message (nacked: the
    broker no longer holds it) no longer holds anything back, and is never the
    tag named: the ack names the highest tag below it that is still outstanding.
    """

    def __init__(self) -> None:
        self._received: list[int] = []  # a heap: the lowest unacknowledged tag first
        self._settled: set[int] = set()
        self._released: set[int] = set()

    def received(self, tag: int) -> None:
        heapq.heappush(self._received, tag)

    def settle(self, tag: int) -> None:
        """Done with, and to be acknowledged."""
        self._settled.add(tag)

    def release(self, tag: int) -> None:
        """Nacked: done with, and no longer the broker's to acknowledge."""
        self._released.add(tag)

    def acknowledgeable(self) -> int | None:
        """The highest tag that a multiple-ack may name now, and forget what it covers."""
        highest = None
        while self._received:
            lowest = self._received[0]
            if lowest in self._settled:
                self._settled.discard(lowest)
                highest = lowest
            elif lowest in self._released:
                self._released.discard(lowest)
            else:
                break
            heapq.heappop(self._received)
        return highest

    def __len__(self) -> int:
        return len(self._received)


class Consumer:
    def __init__(
        self,
        broker: RabbitBroker,
        topology: Topology,
        record: RecordBatch,
        *,
        batch_max_size: int,
        max_failed_attempts: int,
        tracing: Tracing | None = None,
    ) -> None:
        self._broker = broker
        self._topology = topology
        self._record = record
        self._batch_max_size = batch_max_size
        self._max_failed_attempts = max_failed_attempts
        self._queue: AbstractRobustQueue | None = None
        self._tag: ConsumerTag | None = None
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        # Batches: entries waiting for the next commit, each with its message's future.
        # With the span that published its message, for the batch's span to link to.
        self._pending: list[tuple[Entry, asyncio.Future[Recorded], SpanContext | None]] = []
        self._ready = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None
        # Acknowledgements: per channel, what is settled and not yet acknowledged.
        self._channels: dict[AbstractChannel, SettledTags] = {}
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        # Bound once, after logging is configured: a lazy module logger re-binds per call.
        self._logger: structlog.typing.FilteringBoundLogger = log.bind()
        self._debug = self._logger.is_enabled_for(logging.DEBUG)
        tracing = tracing or Tracing()
        self._spans = LedgerSpans(
            tracing.tracer(__name__) if tracing.enabled else None, topology.billing_queue_name
        )

    # -- receive ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Register on the billing queue (declared by the topology, same arguments)."""
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_batches(), name="billing-batches")
        queue = await self._broker.declare_queue(self._topology.billing_queue())
        self._tag = await queue.consume(self.on_message, no_ack=False)
        self._queue = queue

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            return  # not acknowledged: the broker redelivers it when our channel closes
        assert message.delivery_tag is not None
        # Before the first `await`: from now on it holds back the acknowledgement of later tags.
        self._channels.setdefault(message.channel, SettledTags()).received(message.delivery_tag)
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        started = time.perf_counter()
        try:
            await self._handle(message)
        except Exception as exc:
            # Not settled (its dead letter could not be published, say). Give it back rather
            # than hold it: an unsettled tag would hold back the acknowledgement of every
            # later message of the channel. The nack goes out before any ack covering it.
            self._log(message).warning("message returned to the queue", error=repr(exc))
            try:
                await message.nack(requeue=True)
            except Exception as nack_error:
                # Its channel is gone (the broker takes it back) or going: left unsettled, so
                # that no acknowledgement covers a message the broker may still hold.
                self._log(message).info("nack not delivered", error=repr(nack_error))
            else:
                metrics.MESSAGES_RETURNED.inc()
                self._released(message)
        finally:
            self._in_flight.discard(task)
            metrics.MESSAGE_SECONDS.observe(time.perf_counter() - started)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        """Record the message, or dead-letter it, or send it round again; then settle it."""
        routing_key = original_routing_key(message)
        try:
            entry = parse(routing_key, message.body)
            recorded = await self._recorded(entry, self._spans.context_of(message))
        except PoisonMessage as exc:
            await self._dead_letter(message, "poison", str(exc))
            self._settled(message)
            return
        except Exception as exc:
            await self._failed(message, routing_key, exc)
            self._settled(message)
            return
        self._settled(message)
        metrics.consumed(routing_key).inc()
        self._report(message, entry, recorded)

    # -- batch: group commit -----------------------------------------------------------------

    async def _recorded(self, entry: Entry, context: SpanContext | None) -> Recorded:
        """What recording the entry did, once the batch holding it has committed; `context`,
        the span that published it, for the batch's span to link to."""
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future, context))
        self._ready.set()
        return await future

    async def _commit_batches(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch = self._pending[: self._batch_max_size]
                del self._pending[: self._batch_max_size]
                await self._commit(batch)

    async def _commit(
        self, batch: list[tuple[Entry, asyncio.Future[Recorded], SpanContext | None]]
    ) -> None:
        try:
            with self._spans.batch([context for _, _, context in batch]):
                results = await self._record([entry for entry, _, _ in batch])
        except asyncio.CancelledError:
            for _, future, _ in batch:
                future.cancel()
            raise
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, future, _), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its message stopped waiting
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    # -- settle: acknowledge, dead-letter, retry ---------------------------------------------

    def _settled(self, message: AbstractIncomingMessage) -> None:
        """Done with the message: acknowledge it, together with the others settled now."""
        assert message.delivery_tag is not None
        tags = self._channels.get(message.channel)
        if tags is None:
            return  # its channel closed: the broker has taken it back already
        tags.settle(message.delivery_tag)
        self._schedule_flush()

    def _released(self, message: AbstractIncomingMessage) -> None:
        """Nacked: the broker holds it no more. A later multiple-ack may cover its tag (the
        broker acknowledges only tags still outstanding) but must never name it."""
        assert message.delivery_tag is not None
        tags = self._channels.get(message.channel)
        if tags is None:
            return
        tags.release(message.delivery_tag)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # After every handler resumed by the same commit has settled its message.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for channel, tags in list(self._channels.items()):
            if channel.is_closed:
                del self._channels[channel]
                continue
            tag = tags.acknowledgeable()
            if tag is not None:
                task = asyncio.create_task(self._ack(channel, tag))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _ack(self, channel: AbstractChannel, tag: int) -> None:
        try:
            await channel.basic_ack(delivery_tag=tag, multiple=True)
        except Exception as exc:
            # The channel went away: its messages return to the queue and are absorbed.
            log.info("acknowledgement not delivered; the broker redelivers", error=repr(exc))

    async def _failed(
        self, message: AbstractIncomingMessage, routing_key: str, exc: Exception
    ) -> None:
        metrics.EVENTS_FAILED.labels(routing_key).inc()
        attempts = failed_attempts(message) + 1
        if attempts >= self._max_failed_attempts:
            await self._dead_letter(message, "failed", f"after {attempts} attempts: {exc!r}")
            return
        self._log(message).warning("event failed, will retry", attempts=attempts, error=repr(exc))
        await self._republish(
            message,
            exchange=None,
            routing_key=self._topology.billing_queue_name,
            headers=retry_headers(message, attempts),
        )

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, detail: str
    ) -> None:
        """To the DLQ, confirmed before the original is acknowledged (at worst, there twice)."""
        await self._republish(
            message,
            exchange=self._topology.dead_letter_exchange(),
            routing_key="",
            headers=dead_letter_headers(message, reason, detail, at=datetime.now(UTC)),
        )
        metrics.EVENTS_DEAD_LETTERED.labels(reason).inc()
        self._log(message).warning("message dead-lettered", reason=reason, detail=detail)

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

    # -- stop, readiness -------------------------------------------------------------------

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
        await self.drain()
        self._queue, self._tag = None, None
        if self._committing is not None:
            self._committing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committing
            self._committing = None
        for _, future, _ in self._pending:
            future.cancel()
        self._pending.clear()

    async def drain(self) -> None:
        """Send the acknowledgements of what is settled and wait until they are written."""
        self._flush()
        if self._sending:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._sending)

    def consuming(self) -> bool:
        """True while our consumer is registered on a live channel."""
        queue = self._queue
        return (
            not self._stopping
            and queue is not None
            and self._tag is not None
            and not queue.channel.is_closed
        )

    # -- report ----------------------------------------------------------------------------

    def _log(self, message: AbstractIncomingMessage) -> structlog.typing.FilteringBoundLogger:
        """This message's logger: its correlation id (and trace id) came with it from the
        HTTP request."""
        logger = self._logger.bind(
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            redelivered=message.redelivered,
        )
        trace_id = trace_id_in(message.headers)
        return logger.bind(trace_id=trace_id) if trace_id else logger

    def _report(self, message: AbstractIncomingMessage, event: Entry, recorded: Recorded) -> None:
        if isinstance(recorded, CallRecorded):
            if recorded.new:
                metrics.llm_calls(recorded.outcome, recorded.provider_cost is not None).inc()
            return
        if isinstance(recorded, DraftsReconciled):
            metrics.DRAFTS_RECONCILED.inc(recorded.rows)
            self._log(message).info(
                "job created: draft usage reconciled",
                company_id=str(event.company_id),
                job_id=str(recorded.job_id),
                draft_job_id=getattr(event, "draft_job_id", None),
                reconciled_rows=recorded.rows,
                questions=recorded.questions,
                cost=str(recorded.cost),
            )
            return
        if not recorded.new:
            metrics.EVENTS_DUPLICATE.inc()
            if self._debug:
                self._log(message).debug("usage already recorded", event_id=str(event.event_id))
            return
        placement = recorded.placement
        status = "draft" if placement.is_draft else "job"
        metrics.usage_rows(status).inc()
        metrics.AMOUNT_BILLED.inc(float(recorded.cost))
        if self._debug:  # one line per row is for a terminal, not for the hot path
            self._log(message).debug(
                "usage recorded",
                company_id=str(event.company_id),
                job_id=str(placement.job_id) if placement.job_id else None,
                draft_job_id=placement.draft_job_id,
                status=status,
                questions=getattr(event, "question_count", None),
                cost=str(recorded.cost),
            )
