"""The cost of goods in the ledger: calls kept once at their price, re-priced, rollups exact."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from services.billing.costs import book, store
from services.billing.costs.calls import CallRecorded
from services.billing.costs.repricing import Round, reprice_round
from services.billing.costs.rules import (
    SNAPSHOT_SUFFIX,
    ModelBook,
    Rates,
    Tokens,
    model_stem,
    provider_cost,
)
from services.billing.ledger.batch import RecordedBatch
from services.billing.ledger.effects import EFFECTS
from services.billing.ledger.record import record_events
from services.servicekit.db import Connection
from tests.integration.ledger.conftest import PRICING, Ledger, entry
from tests.support.events import call_of, generated, llm_call

GPT_4O = Rates(Decimal("2.5000"), Decimal("1.2500"), Decimal("10.0000"))
CHEAPER = Rates(Decimal("2.0000"), Decimal("0.5000"), Decimal("8.0000"))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


async def add_price(pool: asyncpg.Pool, model: str, rates: Rates, since: datetime = EPOCH) -> UUID:
    async with pool.acquire() as conn, conn.transaction():
        added = await book.add_price(conn, model, rates, since, created_by="test")
    return added.model_price_id


async def reprice_all(pool: asyncpg.Pool, batch_size: int = 1000) -> list[Round]:
    rounds: list[Round] = []
    while True:
        async with pool.acquire() as conn, conn.transaction():
            done = await reprice_round(conn, batch_size)
        if done is None:
            return rounds
        rounds.append(done)


async def calls(pool: asyncpg.Pool, company: UUID) -> dict[UUID, asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM llm_calls WHERE company_id = $1", company)
    return {row["event_id"]: row for row in rows}


async def margin_check(pool: asyncpg.Pool) -> list[store.Difference]:
    async with pool.acquire() as conn, conn.transaction():
        return await store.check_margins(conn, fix=False)


async def margin_day(pool: asyncpg.Pool, company: UUID) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM margin_days WHERE company_id = $1", company)
    assert row is not None
    return row


async def test_each_call_is_kept_once_at_its_price_to_the_eighth_place(
    ledger: Ledger, company: UUID
) -> None:
    await add_price(ledger.pool, "gpt-4o", GPT_4O)
    generation = generated(company, at=T0, model="gpt-4o-2024-08-06")
    billed = call_of(
        generation,
        prompt_tokens=1234,
        cached_prompt_tokens=1000,
        completion_tokens=567,
        reasoning_tokens=300,
    )
    timed_out = llm_call(company, outcome="timeout", at=T0, prompt_tokens=7, completion_tokens=0)
    unknown = llm_call(company, outcome="failed", model="acme-llm-1", at=T0)

    first = await ledger.record(generation, billed, timed_out, unknown)
    again = await ledger.record(billed, timed_out, unknown)  # redelivered

    # 234 * 2.50 + 1000 * 1.25 + 567 * 10.00 = 585 + 1250 + 5670 = 7505 per million.
    assert first[billed.event_id] == CallRecorded(True, "billed", Decimal("0.00750500"))
    # 7 * 2.50 per million = 0.0000175
    assert first[timed_out.event_id] == CallRecorded(True, "timeout", Decimal("0.00001750"))
    assert first[unknown.event_id] == CallRecorded(True, "failed", None)
    assert all(not recorded.new for recorded in again.values())  # type: ignore[union-attr]

    rows = await calls(ledger.pool, company)
    assert len(rows) == 3
    assert rows[billed.event_id]["provider_cost"] == Decimal("0.00750500")
    assert rows[billed.event_id]["generation_id"] == generation.event_id
    assert rows[billed.event_id]["model_stem"] == "gpt-4o"
    assert rows[unknown.event_id]["provider_cost"] is None  # unpriced, never 0
    assert rows[unknown.event_id]["model_price_id"] is None

    async with ledger.pool.acquire() as conn:
        by_model = {
            row["model"]: row
            for row in await conn.fetch("SELECT * FROM margin_days WHERE company_id = $1", company)
        }
    assert by_model["gpt-4o"]["revenue"] == Decimal("0.1000")
    assert by_model["gpt-4o"]["calls"] == 2
    assert by_model["gpt-4o"]["provider_cost"] == Decimal("0.00752250")
    assert by_model["gpt-4o"]["unbilled_provider_cost"] == Decimal("0.00001750")
    assert by_model["acme-llm-1"]["unpriced_calls"] == 1
    assert by_model["acme-llm-1"]["provider_cost"] == 0
    assert await margin_check(ledger.pool) == []


async def test_a_version_for_the_past_reprices_exactly_the_calls_it_now_covers(
    ledger: Ledger, company: UUID
) -> None:
    await add_price(ledger.pool, "gpt-4o", GPT_4O)
    since = T0
    before = llm_call(company, at=since - timedelta(microseconds=1), model="gpt-4o-2024-08-06")
    at_start = llm_call(company, at=since)
    after = llm_call(company, at=since + timedelta(days=3), outcome="cancelled")
    later = llm_call(company, at=since + timedelta(days=20))
    other_model = llm_call(company, at=since + timedelta(days=1), model="gpt-4o-mini")
    await ledger.record(before, at_start, after, later, other_model)
    # A later version already covers `later`: re-pricing from `since` must leave it there.
    await add_price(ledger.pool, "gpt-4o", GPT_4O, since + timedelta(days=10))
    await reprice_all(ledger.pool)
    priced_before = await calls(ledger.pool, company)

    corrected = await add_price(ledger.pool, "gpt-4o", CHEAPER, since)
    rounds = await reprice_all(ledger.pool, batch_size=1)  # bounded: one call a round

    assert [r.model_price_id for r in rounds] == [corrected] * len(rounds)
    assert rounds[-1].done
    assert sum(r.scanned for r in rounds) == 3  # at_start, after, later: never `before`
    assert sum(r.repriced for r in rounds) == 2
    now = await calls(ledger.pool, company)
    changed = {
        key for key in now if now[key]["provider_cost"] != priced_before[key]["provider_cost"]
    }
    assert changed == {at_start.event_id, after.event_id}
    # 100 * 2.00 + 200 * 8.00 = 1800 per million.
    assert now[at_start.event_id]["provider_cost"] == Decimal("0.00180000")
    assert now[at_start.event_id]["model_price_id"] == corrected
    assert now[before.event_id] == priced_before[before.event_id]
    assert now[other_model.event_id]["provider_cost"] is None  # gpt-4o-mini has no price here
    assert await margin_check(ledger.pool) == []

    # Re-pricing twice changes nothing.
    async with ledger.pool.acquire() as conn:
        rollups = await conn.fetch("SELECT * FROM margin_days ORDER BY 1, 2, 3")
        await conn.execute("UPDATE model_repricings SET finished_at = NULL, after_at = NULL")
    rounds = await reprice_all(ledger.pool)
    assert sum(r.repriced for r in rounds) == 0
    assert await calls(ledger.pool, company) == now
    async with ledger.pool.acquire() as conn:
        assert await conn.fetch("SELECT * FROM margin_days ORDER BY 1, 2, 3") == rollups


async def test_calls_of_a_model_unpriced_until_its_price_is_added_for_the_past(
    ledger: Ledger, company: UUID
) -> None:
    first = llm_call(company, model="acme-llm-1", at=T0)
    await ledger.record(first, generated(company, model="acme-llm-1", at=T0))
    assert (await margin_day(ledger.pool, company))["unpriced_calls"] == 1

    await add_price(ledger.pool, "acme-llm-1", GPT_4O, T0 - timedelta(days=1))
    await reprice_all(ledger.pool)

    row = await margin_day(ledger.pool, company)
    assert row["unpriced_calls"] == 0
    assert row["provider_cost"] == Decimal("0.00225000")
    assert await margin_check(ledger.pool) == []


async def test_the_rollups_equal_a_recomputation_after_any_mix_of_redeliveries_and_repricings(
    ledger: Ledger,
) -> None:
    rng = random.Random(20261203)
    companies = [uuid.uuid4() for _ in range(4)]
    models = ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "acme-llm-1"]
    seen: list[Any] = []
    await add_price(ledger.pool, "gpt-4o", GPT_4O)
    for step in range(40):
        action = rng.random()
        if action < 0.6:
            batch: list[Any] = []
            for _ in range(rng.randint(1, 8)):
                company = rng.choice(companies)
                at = T0 + timedelta(hours=rng.randint(-500, 500))
                model = rng.choice(models)
                generation = generated(company, at=at, model=model)
                batch.append(generation)
                batch.append(
                    call_of(generation, cached_prompt_tokens=rng.randint(0, 100))
                    if rng.random() < 0.7
                    else llm_call(
                        company, outcome=rng.choice(["failed", "timeout"]), at=at, model=model
                    )
                )
            batch += rng.sample(seen, min(len(seen), rng.randint(0, 4)))  # redeliveries
            seen += batch
            await ledger.record(*batch)
        elif action < 0.85:
            since = T0 + timedelta(hours=rng.randint(-600, 600))
            rates = Rates(
                Decimal(rng.randint(1, 500)) / 100,
                Decimal(rng.randint(0, 100)) / 100,
                Decimal(rng.randint(1, 2000)) / 100,
            )
            await add_price(ledger.pool, rng.choice(models), rates, since)
        else:
            async with ledger.pool.acquire() as conn, conn.transaction():
                await reprice_round(conn, rng.randint(1, 5))  # part of a re-pricing
        if step % 10 == 9:
            assert await margin_check(ledger.pool) == []
    await reprice_all(ledger.pool, batch_size=3)
    assert await margin_check(ledger.pool) == []

    # Every call ends at the price the book gives its instant, whatever the order was.
    async with ledger.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM llm_calls")
        versions = await store.versions_of(conn, [*models, "gpt-4o-mini"])
    prices = ModelBook(versions)
    for row in rows:
        price = prices.price_for(row["model"], row["occurred_at"])
        tokens = Tokens(row["prompt_tokens"], row["cached_prompt_tokens"], row["completion_tokens"])
        expected = None if price is None else provider_cost(price.rates, tokens)
        assert row["provider_cost"] == expected


async def test_a_version_added_while_a_batch_prices_calls_is_repriced_over_them(
    ledger: Ledger, company: UUID
) -> None:
    """A batch has priced its calls with the book before the version and not committed yet:
    the version waits for it, so its re-pricing sees (and corrects) those calls."""
    await add_price(ledger.pool, "gpt-4o", GPT_4O)
    priced = asyncio.Event()
    release = asyncio.Event()

    async def held(conn: Connection, batch: RecordedBatch) -> None:
        priced.set()  # its calls are priced and inserted, not committed
        await release.wait()

    async def batch() -> None:
        async with ledger.pool.acquire() as conn, conn.transaction():
            await record_events(
                conn,
                [entry(llm_call(company, at=T0)) for _ in range(20)],
                default=PRICING,
                effects=[*EFFECTS, held],
            )

    async def correction() -> None:
        await add_price(ledger.pool, "gpt-4o", CHEAPER, T0 - timedelta(days=1))
        await reprice_all(ledger.pool)

    recording = asyncio.create_task(batch())
    await priced.wait()
    correcting = asyncio.create_task(correction())
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(recording, correcting)

    rows = await calls(ledger.pool, company)
    assert len(rows) == 20
    assert {row["provider_cost"] for row in rows.values()} == {Decimal("0.00180000")}
    assert await margin_check(ledger.pool) == []


async def test_the_shipped_prices_are_loaded_once(ledger: Ledger) -> None:
    shipped = book.read_shipped()
    async with ledger.pool.acquire() as conn, conn.transaction():
        assert await book.load_shipped(conn, shipped) == len(shipped.prices)
    await add_price(ledger.pool, "gpt-4o", CHEAPER, EPOCH)  # an operator's correction
    async with ledger.pool.acquire() as conn, conn.transaction():
        assert await book.load_shipped(conn, shipped) == 0
    async with ledger.pool.acquire() as conn:
        versions = await store.versions_of(conn, ["gpt-4o"])
    assert len(versions) == 2  # the shipped one and the operator's; nothing overwritten


async def test_the_stem_of_a_row_is_the_same_in_sql_and_in_python(ledger: Ledger) -> None:
    names = ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4-0613", "my-model-12345", "2024-08-06", ""]
    async with ledger.pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT name, COALESCE(NULLIF(regexp_replace(name, $2, ''), ''), name) AS stem "
            "FROM unnest($1::text[]) AS name",
            names,
            SNAPSHOT_SUFFIX,
        )
    assert {row["name"]: row["stem"] for row in found} == {name: model_stem(name) for name in names}
