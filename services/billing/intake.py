"""One delivered message: parse it, record it in a batch, settle it after commit.

Settled messages are acknowledged together (`acks.py`), never before their commit.

- Poison (not JSON, not valid against the contract, unknown type): to the DLQ
  at once, with the reason; then acknowledged.
- Transient failure: retried inside the recorder; never acknowledged meanwhile.
- Any other failure: back of the queue with the count in a header; after
  `max_failed_attempts`, to the DLQ. The code counts, because RabbitMQ 4.3+ no
  longer counts a `nack` toward the queue's delivery limit.
"""

from __future__ import annotations

import logging

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from contracts.events import EVENT_TYPES, Event, QuestionsGenerated
from services.billing import metrics
from services.billing.acks import Acknowledger
from services.billing.batching import Batcher
from services.billing.dead_letters import DeadLetters, failed_attempts, original_routing_key
from services.billing.handlers import DraftsReconciled, UsageRecorded
from services.billing.pricing import PriceOutOfRange, Pricing

log = structlog.get_logger(__name__)


class PoisonMessage(ValueError):
    """A message no retry can make usable."""


def parse_event(routing_key: str, body: bytes, pricing: Pricing) -> Event:
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
    if isinstance(event, QuestionsGenerated):
        try:
            pricing.cost(event.question_count)
        except PriceOutOfRange as exc:
            raise PoisonMessage(str(exc)) from exc
    return event


class Intake:
    def __init__(
        self,
        batcher: Batcher[Event, UsageRecorded | DraftsReconciled],
        dead_letters: DeadLetters,
        acks: Acknowledger,
        pricing: Pricing,
        *,
        max_failed_attempts: int,
    ) -> None:
        self._batcher = batcher
        self._acks = acks
        self._dead_letters = dead_letters
        self._pricing = pricing
        self._max_failed_attempts = max_failed_attempts
        # Bound once, after logging is configured: a lazy module logger re-binds per call.
        self._logger: structlog.typing.FilteringBoundLogger = log.bind()
        self._debug = self._logger.is_enabled_for(logging.DEBUG)

    async def handle(self, raw: AbstractIncomingMessage) -> None:
        routing_key = original_routing_key(raw)
        try:
            event = parse_event(routing_key, raw.body, self._pricing)
        except PoisonMessage as exc:
            await self._dead_letter(raw, "poison", str(exc))
            self._acks.settled(raw)
            return
        try:
            result = await self._batcher.submit(event)
        except Exception as exc:
            await self._failed(raw, routing_key, exc)
            self._acks.settled(raw)
            return
        self._acks.settled(raw)
        metrics.consumed(routing_key).inc()
        self._report(raw, event, result)

    def _log(self, raw: AbstractIncomingMessage) -> structlog.typing.FilteringBoundLogger:
        """This message's logger: its correlation id came with it from the HTTP request."""
        return self._logger.bind(
            correlation_id=raw.correlation_id,
            message_id=raw.message_id,
            redelivered=raw.redelivered,
        )

    async def _failed(self, raw: AbstractIncomingMessage, routing_key: str, exc: Exception) -> None:
        metrics.EVENTS_FAILED.labels(routing_key).inc()
        attempts = failed_attempts(raw) + 1
        if attempts >= self._max_failed_attempts:
            await self._dead_letter(raw, "failed", f"after {attempts} attempts: {exc!r}")
        else:
            self._log(raw).warning("event failed, will retry", attempts=attempts, error=repr(exc))
            await self._dead_letters.retry_later(raw, attempts)

    async def _dead_letter(self, raw: AbstractIncomingMessage, reason: str, detail: str) -> None:
        await self._dead_letters.send(raw, reason, detail)
        metrics.EVENTS_DEAD_LETTERED.labels(reason).inc()
        self._log(raw).warning("message dead-lettered", reason=reason, detail=detail)

    def _report(
        self,
        raw: AbstractIncomingMessage,
        event: Event,
        result: UsageRecorded | DraftsReconciled,
    ) -> None:
        if isinstance(result, DraftsReconciled):
            metrics.DRAFTS_RECONCILED.inc(result.rows)
            self._log(raw).info(
                "job created: draft usage reconciled",
                company_id=str(event.company_id),
                job_id=str(result.job_id),
                draft_job_id=getattr(event, "draft_job_id", None),
                reconciled_rows=result.rows,
                questions=result.questions,
                cost=str(result.cost),
            )
            return
        if not result.new:
            metrics.EVENTS_DUPLICATE.inc()
            if self._debug:
                self._log(raw).debug("usage already recorded", event_id=str(event.event_id))
            return
        placement = result.placement
        status = "draft" if placement.is_draft else "job"
        metrics.usage_rows(status).inc()
        metrics.AMOUNT_BILLED.inc(float(result.cost))
        if self._debug:  # one line per row is for a terminal, not for the hot path
            self._log(raw).debug(
                "usage recorded",
                company_id=str(event.company_id),
                job_id=str(placement.job_id) if placement.job_id else None,
                draft_job_id=placement.draft_job_id,
                status=status,
                questions=getattr(event, "question_count", None),
                cost=str(result.cost),
            )
