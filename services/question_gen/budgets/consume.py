"""Billing's events into the guard's tables: prices, limits, billed spend and credits.

The question service's own quorum queue (`question_gen.billing`, bound to
`billing.#`) is consumed by every process of the service; they share one
database, so each event is applied once, by whichever process receives it.
Applying is idempotent and order-free: price versions are kept by `priceId`,
a limit only by a higher `revision`, billed spend only if higher. A message is
acknowledged after the transaction that applied it commits; a database failure
retries the batch (the messages stay unacknowledged meanwhile), and a message
that is not a valid billing event is logged and dropped, changing nothing.

As billing does, messages are taken from FastStream's robust queue with
aio-pika's consumer, which the robust channel registers again after a
reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from uuid import UUID

import asyncpg
import structlog
from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker
from pydantic import ValidationError

from contracts.events import (
    BILLING_EVENT_TYPES,
    BudgetChanged,
    CreditsChanged,
    Event,
    PriceChanged,
    SpendRecorded,
)
from contracts.topology import Topology
from services.question_gen.budgets import store
from services.question_gen.credits import store as credits
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)

BATCH_SIZE = 200
MAX_DELAY = 5.0


class NotABillingEvent(ValueError):
    pass


def parse(routing_key: str | None, body: bytes) -> Event:
    kind = BILLING_EVENT_TYPES.get(routing_key or "")
    if kind is None:
        raise NotABillingEvent(f"unknown routing key {routing_key!r}")
    try:
        return kind.model_validate_json(body)
    except ValidationError as exc:
        raise NotABillingEvent(f"invalid {routing_key}: {exc.error_count()} error(s)") from exc


async def apply(conn: Connection, event: Event) -> None:
    if isinstance(event, PriceChanged):
        await store.add_price(conn, event)
    elif isinstance(event, BudgetChanged):
        await store.set_limit(conn, event)
    elif isinstance(event, SpendRecorded):
        await store.set_billed(conn, event)
    elif isinstance(event, CreditsChanged):
        await credits.apply_change(conn, event)


def lock_order(event: Event) -> tuple[int, str, str]:
    if isinstance(event, SpendRecorded):
        return (1, str(event.company_id), event.period)
    if isinstance(event, CreditsChanged):  # spend rows, then its account, company by company
        return (2, str(event.company_id), "")
    return (0, str(event.company_id), "")


def changed_company(event: Event) -> tuple[bool, UUID | None]:
    """Whether the event changes a company's terms, and whose (None: every company's)."""
    if isinstance(event, PriceChanged):
        return True, None if event.is_default else event.company_id
    if isinstance(event, (BudgetChanged, CreditsChanged)):  # a limit, a credit mode
        return True, event.company_id
    return False, None


class BillingEventsConsumer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: RabbitBroker,
        topology: Topology,
        *,
        on_change: Callable[[UUID | None], None],
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._topology = topology
        self._on_change = on_change
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._consuming = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._subscribe(), name="billing-events-subscribe"),
            asyncio.create_task(self._apply_forever(), name="billing-events-apply"),
        ]

    async def stop(self) -> None:
        """Stop at once: what is not acknowledged is delivered again when the channel closes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def consuming(self) -> bool:
        return self._consuming

    async def _subscribe(self) -> None:
        """Once the broker is connected (the runtime connects it), register on the queue."""
        delay = 0.1
        while True:
            try:
                if await self._broker.ping(timeout=1.0):
                    queue = await self._broker.declare_queue(
                        self._topology.question_billing_queue()
                    )
                    await queue.consume(self._inbox.put, no_ack=False)
                    self._consuming = True
                    log.info("consuming billing's events", queue=queue.name)
                    return
            except Exception as exc:
                log.warning("billing's events not consumed yet, retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    async def _apply_forever(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < BATCH_SIZE and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self._settle(batch)

    async def _settle(self, batch: list[AbstractIncomingMessage]) -> None:
        events: list[Event] = []
        for message in batch:
            try:
                events.append(parse(message.routing_key, message.body))
            except NotABillingEvent as exc:
                log.error("billing event dropped", reason=str(exc), message_id=message.message_id)
        # In one order everywhere (period rows by company, then period), so that two
        # processes applying batches at once never wait on each other.
        events.sort(key=lock_order)
        delay = 0.1
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    for event in events:
                        await apply(conn, event)
                break
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("billing events not applied, retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
        for event in events:
            changes, company_id = changed_company(event)
            if changes:
                self._on_change(company_id)
        for message in batch:
            try:
                await message.ack()
            except Exception as exc:  # the channel went: delivered again, applied again alike
                log.warning("billing event not acknowledged", error=repr(exc))
