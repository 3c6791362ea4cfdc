"""The model price book: versions added by operators, and the shipped prices loaded once.

Versions are only added. Unlike a company's price, a model's price may be added
for the past: it is the operator's figure for what the provider charges and may be
corrected. Each version enqueues its re-pricing (`repricing.py`) in the
transaction that adds it, so the calls it now covers are re-priced however the
process fares afterwards.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from pathlib import Path

import asyncpg
import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.billing.costs import store
from services.billing.costs.rules import ModelPrice, Rates, model_stem
from services.billing.costs.schemas import ModelName, RateAmount
from services.servicekit.db import Connection

log = structlog.get_logger(__name__)

# The OpenAI models in common use, with where and when their prices were read.
SHIPPED_PRICES = Path(__file__).with_name("openai_prices.json")
# Namespace of the shipped versions' ids (uuid5 of the list's name and the model).
SHIPPED_NAMESPACE = uuid.UUID("2b0f7c1e-8d7a-4f55-9f3e-6a1c0de5eed5")


async def add_price(
    conn: Connection,
    model: str,
    rates: Rates,
    effective_from: datetime,
    *,
    created_by: str | None,
    model_price_id: uuid.UUID | None = None,
    source: str | None = None,
    read_on: date | None = None,
) -> ModelPrice:
    """Add a version and enqueue its re-pricing, inside the caller's transaction.

    The book's exclusive lock waits for the batches pricing calls now: each of them
    commits before this version, so the re-pricing that follows sees its calls.
    """
    await store.lock_book(conn)
    price = ModelPrice(model_price_id or uuid.uuid4(), model, rates, effective_from)
    sequence, _ = await store.add_version(
        conn, price, created_by=created_by, source=source, read_on=read_on
    )
    await store.enqueue_repricing(conn, price, model_stem(model))
    return ModelPrice(price.model_price_id, model, rates, effective_from, sequence)


class _Shipped(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")


class ShippedPrice(_Shipped):
    model: ModelName
    input_per_1m: RateAmount = Field(alias="inputPer1M")
    cached_input_per_1m: RateAmount = Field(alias="cachedInputPer1M")
    output_per_1m: RateAmount = Field(alias="outputPer1M")


class ShippedPrices(_Shipped):
    """The file's shape: a named list of prices, its source, the day it was read."""

    name: str = Field(min_length=1)
    provider: str
    source: str = Field(min_length=1)
    read_on: date
    note: str = ""
    effective_from: AwareDatetime
    prices: list[ShippedPrice] = Field(min_length=1)


def read_shipped(path: Path = SHIPPED_PRICES) -> ShippedPrices:
    return ShippedPrices.model_validate(json.loads(path.read_text()))


async def load_shipped(conn: Connection, shipped: ShippedPrices) -> int:
    """The shipped list as the first versions, once per database; how many were added.

    Inside the caller's transaction, under the book's lock: of two processes starting
    at once, the second finds the list loaded. A later start never loads it again, so
    nothing an operator added is ever outranked by a shipped price.
    """
    await store.lock_book(conn)
    if await store.seed_loaded(conn, shipped.name):
        return 0
    for entry in shipped.prices:
        await add_price(
            conn,
            entry.model,
            Rates(entry.input_per_1m, entry.cached_input_per_1m, entry.output_per_1m),
            shipped.effective_from,
            created_by="shipped",
            model_price_id=uuid.uuid5(SHIPPED_NAMESPACE, f"{shipped.name}:{entry.model}"),
            source=shipped.source,
            read_on=shipped.read_on,
        )
    await store.mark_seed_loaded(conn, shipped.name, shipped.source, shipped.read_on)
    return len(shipped.prices)


async def load_shipped_prices(pool: asyncpg.Pool, path: Path = SHIPPED_PRICES) -> None:
    """At start, before the first batch: the shipped prices, if this database has none yet."""
    shipped = read_shipped(path)
    async with pool.acquire() as conn, conn.transaction():
        added = await load_shipped(conn, shipped)
    if added:
        log.info("model prices loaded", list=shipped.name, versions=added, source=shipped.source)
