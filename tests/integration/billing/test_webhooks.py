"""Threshold webhooks: signed, one eventId per (company, period, threshold), retried, listed."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from prometheus_client import REGISTRY

from contracts.periods import period_of
from services.billing.budgets import handlers as budgets
from services.billing.ledger.record import record_events
from services.billing.ledger.rules import Pricing
from services.billing.webhooks.deliver import WebhookDeliverer
from services.billing.webhooks.rules import DeliveryPolicy, threshold_event_id, verify
from tests.integration.billing.conftest import record
from tests.integration.billing.webhook_receiver import Receiver
from tests.support.auth import bearer
from tests.support.databases import ServiceDatabases
from tests.support.events import generated
from tests.support.paging import every_page
from tests.support.stack import Stack, start_billing
from tests.support.waiting import eventually

LOOPBACK = frozenset({"127.0.0.1"})
OUTCOMES = ("delivered", "failed", "refused", "gave_up")


def attempts_counted() -> dict[str, float]:
    """`billing_webhook_attempts_total` by outcome, and the requests timed, as exposed now."""
    counted = {
        outcome: REGISTRY.get_sample_value("billing_webhook_attempts_total", {"outcome": outcome})
        or 0.0
        for outcome in OUTCOMES
    }
    counted["timed"] = REGISTRY.get_sample_value("billing_webhook_attempt_seconds_count") or 0.0
    return counted


def counted_since(before: dict[str, float]) -> dict[str, float]:
    after = attempts_counted()
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    listening = Receiver(fail_first=2)
    await listening.start()
    yield listening
    await listening.stop()


@pytest.fixture
async def billing_with_webhooks(dbs: ServiceDatabases, prefix: str) -> AsyncIterator[Stack]:
    async with start_billing(
        dbs,
        prefix,
        webhook_allowed_hosts="127.0.0.1",
        webhook_first_retry_seconds=0.2,
        webhook_poll_seconds=0.05,
    ) as running:
        yield running


async def deliveries(stack: Stack, company: UUID, **params: Any) -> dict[str, Any]:
    page: dict[str, Any] = await stack.billing_json(
        company, "/api/billing/webhooks/deliveries", **params
    )
    return page


async def test_thresholds_reach_the_receiver_signed_once_each_after_retries(
    billing_with_webhooks: Stack, company: UUID, receiver: Receiver
) -> None:
    stack = billing_with_webhooks
    response = await stack.billing.put(
        "/api/billing/budget",
        json={"monthlyLimit": "1.0000", "thresholds": [50, 100], "webhookUrl": receiver.url},
        headers=bearer(company, roles=["billing:admin"]),
    )
    assert response.status_code == 200, response.text
    secret = response.json()["webhookSecret"]
    period = period_of(datetime.now(UTC))
    counted_before = attempts_counted()

    await record(stack, *(generated(company) for _ in range(5)))  # 0.5000: 50%
    await record(stack, *(generated(company) for _ in range(4)))  # 0.9000: nothing new
    await record(stack, *(generated(company) for _ in range(3)))  # 1.0000 to 1.2000: 100%

    def delivered(got: list[Any]) -> bool:
        return len({r.json["eventId"] for r in got[receiver.fail_first :]}) == 2

    await eventually(lambda: _received(receiver), until=delivered, timeout=30)
    by_threshold = {r.json["threshold"]: r.json for r in receiver.received}
    assert set(by_threshold) == {50, 100}
    for threshold, body in by_threshold.items():
        assert body["eventId"] == str(threshold_event_id(company, period, threshold))
        assert body["type"] == "budget.threshold_reached"
        assert (body["companyId"], body["period"]) == (str(company), period)
        assert body["monthlyLimit"] == "1.0000"
    assert by_threshold[50]["spent"] == "0.5000"
    # The batch that reached 100% (one to three of the last events) says what was spent then.
    assert by_threshold[100]["spent"] in ("1.0000", "1.1000", "1.2000")
    for request in receiver.received:
        assert verify(secret, request.headers["billing-signature"], request.body)
        assert request.headers["content-type"] == "application/json"
    # Retries carry the same eventId and the same bytes: the receiver saw each body once.
    assert len({r.body for r in receiver.received}) == 2

    page = await deliveries(stack, company)
    attempts = page["deliveries"]
    assert len(attempts) == len(receiver.received)
    assert [a["outcome"] for a in attempts].count("delivered") == 2
    assert [a["outcome"] for a in attempts].count("failed") == receiver.fail_first
    assert all(a["statusCode"] in (200, 500) for a in attempts)
    retried = [a for a in attempts if a["attempt"] > 1]
    assert retried, "the failed deliveries were retried"
    assert {a["eventId"] for a in attempts} == {b["eventId"] for b in by_threshold.values()}
    # The operator sees the same: each failed attempt, each final delivery, each request timed
    # (counted just after the attempt is written, hence a moment's wait).
    expected = {"failed": receiver.fail_first, "delivered": 2, "timed": len(attempts)}

    async def counted() -> dict[str, float]:
        return counted_since(counted_before)

    await eventually(counted, until=lambda got: got == expected, timeout=5)

    # Every page exactly full, the last one too: its nextCursor is null, every attempt once.
    for limit in (1, len(attempts)):

        async def read(params: dict[str, Any], limit: int = limit) -> dict[str, Any]:
            return await deliveries(stack, company, limit=limit, **params)

        pages = await every_page(read, "deliveries")
        assert [len(page) for page in pages] == [limit] * (len(attempts) // limit)
        assert [attempt for page in pages for attempt in page] == attempts

    # A page at a time, and another company sees none of it.
    first = await deliveries(stack, company, limit=1)
    second = await deliveries(stack, company, limit=1, cursor=first["nextCursor"])
    assert first["deliveries"][0] == attempts[0]
    assert second["deliveries"][0] == attempts[1]
    assert (await deliveries(stack, uuid.uuid4()))["deliveries"] == []
    foreign = await stack.billing.get(
        "/api/billing/webhooks/deliveries",
        params={"cursor": first["nextCursor"]},
        headers=bearer(uuid.uuid4()),
    )
    assert foreign.status_code == 422
    assert foreign.json()["errors"][0]["field"] == "cursor"


async def _received(receiver: Receiver) -> list[Any]:
    return list(receiver.received)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def cross_thresholds(pool: asyncpg.Pool, company: UUID, url: str, now: datetime) -> None:
    """A budget with a webhook, then a batch in the ledger that reaches its threshold."""
    async with pool.acquire() as conn, conn.transaction():
        await budgets.set_budget(conn, company, Decimal("1.0000"), [100], url, now=now)
    reaching = generated(company, questions=100, at=now)  # 1.0000 at the default price
    async with pool.acquire() as conn, conn.transaction():
        await record_events(conn, [reaching], default=Pricing())


async def attempts_of(pool: asyncpg.Pool, company: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT a.attempt, a.attempted_at, a.outcome, d.status, d.give_up_at"
        " FROM webhook_attempts a"
        " JOIN webhook_deliveries d ON d.id = a.delivery_id"
        " WHERE a.company_id = $1 ORDER BY a.id",
        company,
    )


async def test_a_receiver_down_for_hours_loses_nothing(pool: asyncpg.Pool, company: UUID) -> None:
    receiver = Receiver()
    await receiver.start()
    await receiver.stop()  # its port is known, and nothing listens on it
    clock = Clock()
    await cross_thresholds(pool, company, receiver.url, clock())
    worker = WebhookDeliverer(
        pool, allowed_hosts=LOOPBACK, policy=DeliveryPolicy(timeout_seconds=2), clock=clock
    )
    try:
        # Five hours down: attempts fail, each recorded, each rescheduled with backoff.
        down_until = clock() + timedelta(hours=5)
        while clock() < down_until:
            await worker.deliver_due()
            clock.advance(minutes=1)
        failed = await attempts_of(pool, company)
        assert 8 <= len(failed) <= 16  # backoff: minutes apart at first, then an hour
        assert {row["outcome"] for row in failed} == {"failed"}
        assert {row["status"] for row in failed} == {"pending"}
        gaps = [b["attempted_at"] - a["attempted_at"] for a, b in itertools.pairwise(failed)]
        assert gaps[-1] > gaps[0]

        await receiver.start()
        for _ in range(120):  # up to two more hours: the next retry finds it up
            await worker.deliver_due()
            clock.advance(minutes=1)
        assert len(receiver.received) == 1
        assert receiver.received[0].json["eventId"] == str(
            threshold_event_id(company, period_of(clock()), 100)
        )
        final = await attempts_of(pool, company)
        assert final[-1]["outcome"] == "delivered"
        assert final[-1]["status"] == "delivered"
        assert len(final) == len(failed) + 1
        clock.advance(hours=30)
        assert await worker.deliver_due() == 0  # delivered is done: never sent again
    finally:
        await worker.stop()
        await receiver.stop()


async def test_a_receiver_down_for_24_hours_ends_the_retries(
    pool: asyncpg.Pool, company: UUID
) -> None:
    receiver = Receiver()
    await receiver.start()
    await receiver.stop()
    clock = Clock()
    started = clock()
    await cross_thresholds(pool, company, receiver.url, started)
    worker = WebhookDeliverer(
        pool, allowed_hosts=LOOPBACK, policy=DeliveryPolicy(timeout_seconds=2), clock=clock
    )
    counted_before = attempts_counted()
    try:
        while clock() <= started + timedelta(hours=25):
            await worker.deliver_due()
            clock.advance(minutes=5)
    finally:
        await worker.stop()
    attempts = await attempts_of(pool, company)
    give_up_at = attempts[-1]["give_up_at"]  # 24 hours after the delivery was enqueued
    assert give_up_at >= started + timedelta(hours=24)
    assert attempts[-1]["status"] == "failed"
    assert attempts[-1]["attempted_at"] >= give_up_at
    assert attempts[-2]["attempted_at"] < give_up_at
    # The last attempt, past the deadline, is counted as the delivery given up.
    assert counted_since(counted_before) == {
        "failed": len(attempts) - 1,
        "gave_up": 1,
        "timed": len(attempts),
    }


async def test_an_address_that_turns_internal_is_not_called(
    pool: asyncpg.Pool, company: UUID
) -> None:
    """DNS rebinding: the name was public when set, resolves to loopback when delivered."""
    receiver = Receiver()
    await receiver.start()
    clock = Clock()
    resolved: dict[str, list[str]] = {"hooks.example": ["93.184.216.34"]}

    async def resolver(host: str, port: int) -> list[str]:
        return resolved.get(host, [])

    url = f"http://hooks.example:{receiver.port}/hooks"
    async with pool.acquire() as conn, conn.transaction():
        await budgets.check_webhook_url(url, frozenset(), resolver)  # public now: accepted
    await cross_thresholds(pool, company, url, clock())
    resolved["hooks.example"] = ["127.0.0.1"]  # ... and loopback at delivery time
    worker = WebhookDeliverer(pool, allowed_hosts=frozenset(), clock=clock, resolver=resolver)
    clock.advance(seconds=1)  # the delivery was enqueued at the ledger's own "now"
    counted_before = attempts_counted()
    try:
        assert await worker.deliver_due() == 1
    finally:
        await worker.stop()
        await receiver.stop()
    [attempt] = await attempts_of(pool, company)
    assert attempt["outcome"] == "refused"
    assert attempt["status"] == "pending"
    assert receiver.received == []
    assert counted_since(counted_before) == {"refused": 1}  # no request, nothing timed


async def test_a_late_attempt_never_overwrites_another_workers_delivery(
    pool: asyncpg.Pool, company: UUID
) -> None:
    """A worker whose lease ran out records nothing: the delivery another made stands."""
    receiver = Receiver(fail_first=1, hold_first=1)  # the first request: slow, then 500
    await receiver.start()
    clock = Clock()
    await cross_thresholds(pool, company, receiver.url, clock())
    clock.advance(seconds=1)
    policy = DeliveryPolicy(timeout_seconds=5)
    slow = WebhookDeliverer(pool, allowed_hosts=LOOPBACK, policy=policy, clock=clock)
    other = WebhookDeliverer(pool, allowed_hosts=LOOPBACK, policy=policy, clock=clock)
    try:
        late = asyncio.create_task(slow.deliver_due())
        await eventually(lambda: _received(receiver), until=lambda got: len(got) == 1)
        clock.advance(seconds=policy.lease_seconds + 1)  # the slow worker's lease runs out
        assert await other.deliver_due() == 1  # claimed again, and delivered
        receiver.release.set()  # ... and now the slow worker hears its 500
        assert await late == 1
        clock.advance(hours=2)
        assert await other.deliver_due() == 0  # delivered: never due again
        assert await slow.deliver_due() == 0
    finally:
        await slow.stop()
        await other.stop()
        await receiver.stop()
    attempts = await attempts_of(pool, company)
    assert [(row["attempt"], row["outcome"], row["status"]) for row in attempts] == [
        (1, "delivered", "delivered")
    ]
    assert len(receiver.received) == 2  # the slow request and the delivery: no third


async def test_a_host_that_never_resolves_costs_an_attempt_its_timeout_and_no_more(
    pool: asyncpg.Pool, company: UUID
) -> None:
    """The timeout bounds the whole attempt: the URL's check (DNS) as well as the request."""
    clock = Clock()

    async def resolver(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()  # a resolver that never answers
        return []

    await cross_thresholds(pool, company, "http://hooks.example/hooks", clock())
    clock.advance(seconds=1)
    worker = WebhookDeliverer(
        pool,
        allowed_hosts=frozenset(),
        policy=DeliveryPolicy(timeout_seconds=0.5),
        clock=clock,
        resolver=resolver,
    )
    try:
        tried = await asyncio.wait_for(worker.deliver_due(), timeout=10)
    finally:
        await worker.stop()
    assert tried == 1
    [attempt] = await attempts_of(pool, company)
    assert (attempt["outcome"], attempt["status"]) == ("failed", "pending")  # tried again later
    error = await pool.fetchval("SELECT error FROM webhook_attempts WHERE company_id = $1", company)
    assert "0.5" in error, error
