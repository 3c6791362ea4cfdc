"""Commit batches of events, retrying what is transient and isolating what is not.

A transient failure (connection lost, serialization failure, deadlock) is
retried with backoff for as long as it takes; its messages stay unacknowledged
meanwhile. Any other failure splits the batch so that one bad event cannot
hold the others back: each is committed alone, and only the failing one
reports an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from contracts.events import Event
from services.billing.handlers import BatchOutcome, DraftsReconciled, UsageRecorded, record_events
from services.billing.metrics import BATCH_SIZE, TRANSIENT_RETRIES
from services.billing.pricing import Pricing
from services.servicekit.db import is_transient

log = structlog.get_logger(__name__)

Result = UsageRecorded | DraftsReconciled


def _log_retry(state: RetryCallState) -> None:
    TRANSIENT_RETRIES.inc()
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient database error, retrying batch",
        attempt=state.attempt_number,
        error=repr(error),
    )


class UsageRecorder:
    def __init__(
        self, pool: asyncpg.Pool, pricing: Pricing, *, max_retry_delay: float = 5.0
    ) -> None:
        self._pool = pool
        self._pricing = pricing
        self._max_retry_delay = max_retry_delay

    async def record(self, events: list[Event]) -> Sequence[Result | BaseException]:
        BATCH_SIZE.observe(len(events))
        try:
            outcome = await self._commit(events)
        except Exception as exc:
            if len(events) == 1:
                return [exc]
            log.warning("batch failed, committing its events one by one", error=repr(exc))
            return [await self._commit_alone(event) for event in events]
        return [outcome.by_event[event.event_id] for event in events]

    async def _commit_alone(self, event: Event) -> Result | BaseException:
        try:
            return (await self._commit([event])).by_event[event.event_id]
        except Exception as exc:
            return exc

    async def _commit(self, events: list[Event]) -> BatchOutcome:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.05, max=self._max_retry_delay, jitter=0.05),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._pool.acquire(timeout=10) as conn, conn.transaction():
                    return await record_events(conn, events, self._pricing)
        raise AssertionError("unreachable: tenacity retries until success or a permanent error")
