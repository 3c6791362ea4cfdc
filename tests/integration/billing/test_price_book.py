"""The price book: versions with effective dates, every event priced by its occurredAt."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import aio_pika
import asyncpg
import pytest

from contracts.events import QuestionsGenerated
from services.billing.dlq import replay
from services.billing.ledger.rules import Pricing
from services.billing.prices.rules import DEFAULT_EPOCH, default_price_id
from services.billing.prices.store import lock_for_pricing
from tests.integration.billing.conftest import record
from tests.support.auth import bearer
from tests.support.broker import drain, queue_depth
from tests.support.databases import ServiceDatabases
from tests.support.env import RABBITMQ_URL
from tests.support.events import generated
from tests.support.prices import price, set_price
from tests.support.stack import Stack, billing_settings, start_billing
from tests.support.waiting import eventually

# The environment's price (0.10 per 10 questions, no margin) as the default since the epoch.
DEFAULT_PRICE_ID = default_price_id(Pricing(), DEFAULT_EPOCH)
# The nil UUID names the default price in the operator's path.
DEFAULT_COMPANY = "00000000-0000-0000-0000-000000000000"


async def ledger_rows(stack: Stack, company: UUID) -> dict[UUID, tuple[Decimal, UUID | None]]:
    rows = await stack.fetch(
        stack.dbs.billing,
        "SELECT event_id, cost, price_id FROM question_generation_usage WHERE company_id = $1",
        company,
    )
    return {row["event_id"]: (row["cost"], row["price_id"]) for row in rows}


async def counts(stack: Stack) -> tuple[int, int]:
    """Price versions, and events ever added to the outbox (its sequence only grows)."""
    [row] = await stack.fetch(
        stack.dbs.billing,
        "SELECT (SELECT count(*) FROM price_versions) AS versions,"
        " COALESCE(pg_sequence_last_value('outbox_id_seq'), 0) AS events",
    )
    return row["versions"], row["events"]


async def test_a_price_bills_from_its_moment_on_and_never_reprices_history(
    billing: Stack, company: UUID
) -> None:
    start = datetime.now(UTC)
    earlier = generated(company, at=start - timedelta(minutes=5))
    await record(billing, earlier)
    before_change = await ledger_rows(billing, company)
    assert before_change == {earlier.event_id: (Decimal("0.1000"), DEFAULT_PRICE_ID)}

    effective_from = datetime.now(UTC) + timedelta(seconds=3)
    response = await set_price(billing, company, price(effective_from))
    assert response.status_code == 201, response.text
    version = response.json()
    new_price_id = UUID(version["priceId"])
    assert version["pricePer10Questions"] == "0.1500"
    assert version["profitMarginPercent"] == "20.0000"
    assert datetime.fromisoformat(version["effectiveFrom"]) == effective_from
    assert await ledger_rows(billing, company) == before_change  # no row touched

    # Generated just before and just after the new price's moment.
    just_before = generated(company, at=effective_from - timedelta(milliseconds=1))
    await record(billing, just_before)
    await asyncio.sleep(max(0.0, (effective_from - datetime.now(UTC)).total_seconds()))
    after = generated(company, at=datetime.now(UTC))
    # Replayed later (from the dead-letter queue, say): generated before the change.
    replayed = generated(company, at=effective_from - timedelta(seconds=2))
    await record(billing, after, replayed)
    await record(billing, earlier)  # redelivered: nothing new, nothing re-priced

    rows = await ledger_rows(billing, company)
    old = (Decimal("0.1000"), DEFAULT_PRICE_ID)
    new = (Decimal("0.1800"), new_price_id)  # 10 questions: 0.15 plus 20%
    assert rows == {
        earlier.event_id: old,
        just_before.event_id: old,
        replayed.event_id: old,
        after.event_id: new,
    }

    listed = await billing.billing.get("/api/billing/usage", headers=bearer(company))
    assert listed.status_code == 200, listed.text
    assert {(item["cost"], item["priceId"]) for item in listed.json()["items"]} == {
        ("0.1000", str(DEFAULT_PRICE_ID)),
        ("0.1800", str(new_price_id)),
    }

    answer = await billing.billing.get("/api/billing/price", headers=bearer(company))
    assert answer.status_code == 200, answer.text
    book = answer.json()
    assert book["current"]["priceId"] == str(new_price_id)
    assert [v["priceId"] for v in book["versions"]] == [str(new_price_id), str(DEFAULT_PRICE_ID)]
    assert book["versions"][1]["isDefault"] is True
    assert book["versions"][1]["pricePer10Questions"] == "0.1000"


async def dead_letter(stack: Stack, event: QuestionsGenerated) -> None:
    """As billing's intake does with a message it could not record: into its DLQ."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(stack.topology.billing_dlx_name)
        await exchange.publish(
            aio_pika.Message(
                event.to_json(),
                message_id=str(event.event_id),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event.routing_key,
        )
    dlq = stack.topology.billing_dlq_name
    await eventually(lambda: queue_depth(dlq), until=lambda depth: depth == 1)


async def test_a_generation_replayed_from_the_dlq_after_a_change_pays_its_own_moment(
    billing: Stack, dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    effective_from = datetime.now(UTC) + timedelta(seconds=2)
    stuck = generated(company, at=datetime.now(UTC))  # generated under the old price
    await dead_letter(billing, stuck)
    response = await set_price(billing, company, price(effective_from, "0.5000", "0"))
    assert response.status_code == 201, response.text
    await asyncio.sleep(max(0.0, (effective_from - datetime.now(UTC)).total_seconds()))

    replayed = await replay(billing_settings(dbs, prefix), out=io.StringIO())
    assert replayed.moved == 1

    async def billed() -> dict[UUID, tuple[Decimal, UUID | None]]:
        return await ledger_rows(billing, company)

    rows = await eventually(billed, until=lambda rows: stuck.event_id in rows)
    assert rows[stuck.event_id] == (Decimal("0.1000"), DEFAULT_PRICE_ID)
    later = generated(company)
    await record(billing, later)
    assert (await ledger_rows(billing, company))[later.event_id] == (
        Decimal("0.5000"),
        UUID(response.json()["priceId"]),
    )


async def test_a_price_change_is_published_for_the_question_service(
    billing: Stack, company: UUID
) -> None:
    effective_from = datetime.now(UTC) + timedelta(minutes=1)
    response = await set_price(billing, company, price(effective_from, "0.2000", "0"))
    assert response.status_code == 201, response.text

    async def published() -> list[dict[str, Any]]:
        messages = await drain(billing.topology.question_billing_queue_name)
        return [json.loads(m.body) for m in messages if m.routing_key == "billing.price_changed.v1"]

    seen: list[dict[str, Any]] = []
    for _ in range(100):
        seen += await published()
        if any(event["companyId"] == str(company) for event in seen):
            break
        await asyncio.sleep(0.1)
    [mine] = [event for event in seen if event["companyId"] == str(company)]
    assert mine["priceId"] == response.json()["priceId"]
    assert mine["pricePer10Questions"] == "0.2000"
    assert mine["isDefault"] is False
    assert datetime.fromisoformat(mine["effectiveFrom"]) == effective_from
    # The environment's price, recorded as the default when billing started.
    defaults = [event for event in seen if event["isDefault"]]
    assert [event["priceId"] for event in defaults] == [str(DEFAULT_PRICE_ID)]
    assert defaults[0]["companyId"] == "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pricePer10Questions": "0.12345"}, "pricePer10Questions"),
        ({"pricePer10Questions": "-0.1000"}, "pricePer10Questions"),
        ({"pricePer10Questions": "ten"}, "pricePer10Questions"),
        ({"pricePer10Questions": "NaN"}, "pricePer10Questions"),
        ({"profitMarginPercent": "-1"}, "profitMarginPercent"),
        # 50 questions (the most one generation asks) would cost more than a usage row holds.
        ({"pricePer10Questions": "200000.0000"}, "pricePer10Questions"),
        ({"effectiveFrom": "2020-01-01T00:00:00Z"}, "effectiveFrom"),
        ({"effectiveFrom": "yesterday"}, "effectiveFrom"),
        ({"effectiveFrom": "2030-01-01"}, "effectiveFrom"),
    ],
)
async def test_a_bad_price_is_422_naming_the_field_and_changes_nothing(
    billing: Stack, company: UUID, body: dict[str, Any], field: str
) -> None:
    before = await counts(billing)
    response = await set_price(
        billing, company, {**price(datetime.now(UTC) + timedelta(minutes=1)), **body}
    )
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}
    assert await counts(billing) == before


async def test_a_retroactive_price_by_a_moment_is_refused(billing: Stack, company: UUID) -> None:
    before = await counts(billing)
    response = await set_price(billing, company, price(datetime.now(UTC) - timedelta(seconds=1)))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "effectiveFrom"
    assert "never re-priced" in response.json()["detail"]
    assert await counts(billing) == before


async def test_only_a_platform_admin_sets_prices(billing: Stack, company: UUID) -> None:
    before = await counts(billing)
    body = price(datetime.now(UTC) + timedelta(minutes=1))
    for headers in (bearer(company), bearer(company, roles=["billing:admin"])):
        response = await set_price(billing, company, body, headers)
        assert response.status_code == 403, response.text
        assert "platform:admin" in response.json()["detail"]
    assert (await set_price(billing, company, body, {})).status_code == 401
    for headers in (bearer(company), bearer(company, roles=["billing:admin"])):
        assert (await set_price(billing, DEFAULT_COMPANY, body, headers)).status_code == 403
    assert (await set_price(billing, "acme", body)).status_code == 422
    assert await counts(billing) == before


async def default_versions(stack: Stack) -> list[tuple[UUID, Decimal]]:
    rows = await stack.fetch(
        stack.dbs.billing,
        "SELECT price_id, price_per_10_questions FROM price_versions"
        " WHERE company_id IS NULL ORDER BY id",
    )
    return [(row["price_id"], row["price_per_10_questions"]) for row in rows]


async def test_the_environment_seeds_the_default_once_and_a_restart_never_overwrites_it(
    billing: Stack, dbs: ServiceDatabases, prefix: str, company: UUID
) -> None:
    """A replica restarted with an old PRICE_PER_10_QUESTIONS during a rollout must not put
    the old price back for everyone: the environment only seeds an empty book."""
    seeded = [(DEFAULT_PRICE_ID, Decimal("0.1000"))]
    assert await default_versions(billing) == seeded
    before = await counts(billing)

    for restarted_with in ("0.2000", "0.0500"):  # one replica's stale value, then another's
        async with start_billing(dbs, prefix, price_per_10_questions=Decimal(restarted_with)):
            pass
    assert await default_versions(billing) == seeded
    assert await counts(billing) == before  # no version, no PriceChanged either

    event = generated(company, questions=10)
    await record(billing, event)
    assert (await ledger_rows(billing, company))[event.event_id] == (
        Decimal("0.1000"),
        DEFAULT_PRICE_ID,
    )


async def test_an_operator_sets_the_default_price_under_the_nil_company(
    billing: Stack, company: UUID
) -> None:
    effective_from = datetime.now(UTC) + timedelta(seconds=1)
    response = await set_price(billing, DEFAULT_COMPANY, price(effective_from, "0.3000", "0"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["companyId"], body["isDefault"]) == (None, True)
    assert await default_versions(billing) == [
        (DEFAULT_PRICE_ID, Decimal("0.1000")),
        (UUID(body["priceId"]), Decimal("0.3000")),
    ]
    before, after = (
        generated(company, at=effective_from - timedelta(milliseconds=1)),
        generated(company, at=effective_from),
    )
    await record(billing, before, after)
    rows = await ledger_rows(billing, company)
    assert rows[before.event_id] == (Decimal("0.1000"), DEFAULT_PRICE_ID)
    assert rows[after.event_id] == (Decimal("0.3000"), UUID(body["priceId"]))


async def test_effective_from_is_compared_with_the_requests_own_time_not_after_the_lock(
    billing: Stack, company: UUID
) -> None:
    """A batch pricing the company's events holds its price lock (shared); a change waits
    for it. An effectiveFrom just after the request's own time is valid, however long the
    wait."""
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold_pricing_lock() -> None:
        conn = await asyncpg.connect(billing.dbs.billing)
        try:
            async with conn.transaction():
                await lock_for_pricing(conn, [company])
                held.set()
                await release.wait()
        finally:
            await conn.close()

    holder = asyncio.create_task(hold_pricing_lock())
    await held.wait()
    # The request arrives at `requested_at` (the app's clock, pinned: however slow the
    # machine, the request's own time is that) and asks for a price from just after it.
    requested_at = datetime.now(UTC)
    billing.apps["billing"].state.clock = lambda: requested_at
    effective_from = requested_at + timedelta(milliseconds=1)
    change = asyncio.create_task(set_price(billing, company, price(effective_from, "0.2000")))
    await asyncio.sleep(1.5)  # the lock is held well past effectiveFrom
    assert not change.done()
    release.set()
    await holder
    response = await change
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["effectiveFrom"]) == effective_from


async def test_a_price_never_starts_at_or_before_usage_already_billed(
    billing: Stack, company: UUID
) -> None:
    """History is never re-priced, even when a generation's occurredAt is ahead of the
    request's time (a clock ahead, or usage billed while the change waited for the lock)."""
    ahead = generated(company, at=datetime.now(UTC) + timedelta(minutes=5))
    await record(billing, ahead)
    before = await counts(billing)

    response = await set_price(billing, company, price(ahead.occurred_at))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "effectiveFrom"
    assert "already billed" in response.json()["detail"]
    assert await counts(billing) == before

    later = await set_price(billing, company, price(ahead.occurred_at + timedelta(seconds=1)))
    assert later.status_code == 201, later.text


@pytest.mark.parametrize(
    "effective_from",
    ["9999-12-31T23:30:00-01:00", "0001-01-01T00:00:00+01:00", "9999-06-01T00:00:00Z"],
)
async def test_an_effective_from_off_the_calendar_is_a_422_naming_it(
    billing: Stack, company: UUID, effective_from: str
) -> None:
    before = await counts(billing)
    response = await set_price(
        billing, company, {**price(datetime.now(UTC)), "effectiveFrom": effective_from}
    )
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["effectiveFrom"]
    assert await counts(billing) == before
