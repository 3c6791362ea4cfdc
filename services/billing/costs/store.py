"""The cost of goods' SQL: the model price book, the calls, re-pricing, the margin rollups.

Functions take a connection and never commit: the caller owns the transaction.

One advisory lock guards the model price book. A batch that prices calls takes it
shared; adding a version and each round of re-pricing take it exclusive. So a
version committed after a batch priced its calls is re-priced over them, a batch
that comes after prices with it, and re-pricing never interleaves with a batch
pricing calls (rows and rollups change by exactly the difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.billing.costs.margins import SUMS, MarginAmounts, MarginDeltas, sorted_rows
from services.billing.costs.rules import SNAPSHOT_SUFFIX, Call, ModelPrice, Rates, Tokens
from services.servicekit.db import Connection

# Advisory-lock class of the model price book (apart from the ledger's and the prices').
BOOK_LOCK_CLASS = 0x0B11_0006
LOCK_BOOK = "SELECT pg_advisory_xact_lock($1::int, 0)"
SHARE_BOOK = "SELECT pg_advisory_xact_lock_shared($1::int, 0)"

# ---------------------------------------------------------------- the price book

ADD_VERSION = """
INSERT INTO model_prices (
    model_price_id, model, input_per_1m, cached_input_per_1m, output_per_1m, effective_from,
    created_by, source, read_on
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, created_at
"""

# The versions that may price calls of these names.
VERSIONS_OF = """
SELECT id, model_price_id, model, input_per_1m, cached_input_per_1m, output_per_1m, effective_from
FROM model_prices WHERE model = ANY($1::text[])
"""

# The book as operators read it, a page at a time: by model, then latest effectiveFrom first.
LIST_VERSIONS = """
SELECT p.id, p.model_price_id, p.model, p.input_per_1m, p.cached_input_per_1m, p.output_per_1m,
    p.effective_from, p.created_at, p.created_by, p.source, p.read_on,
    r.scanned, r.repriced, r.finished_at
FROM model_prices p LEFT JOIN model_repricings r USING (model_price_id)
WHERE ($1::text IS NULL OR p.model = $1)
  AND ($2::text IS NULL OR (p.model, p.effective_from, p.id) > ($2, $3, $4))
ORDER BY p.model, p.effective_from, p.id
LIMIT $5
"""

SEED_LOADED = "SELECT EXISTS (SELECT 1 FROM model_price_seeds WHERE name = $1)"
MARK_SEED_LOADED = "INSERT INTO model_price_seeds (name, source, read_on) VALUES ($1, $2, $3)"

# ---------------------------------------------------------------- calls

# One row per LlmCallFinished; a redelivered one inserts nothing. Returns the rows made now.
INSERT_CALLS = """
INSERT INTO llm_calls (
    event_id, company_id, model, model_stem, outcome, generation_id, prompt_tokens,
    cached_prompt_tokens, completion_tokens, reasoning_tokens, usage_source, occurred_at,
    provider_cost, model_price_id
)
SELECT * FROM unnest(
    $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::int[],
    $8::int[], $9::int[], $10::int[], $11::text[], $12::timestamptz[], $13::numeric[],
    $14::uuid[]
)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

CALL_COLUMNS = """event_id, company_id, model, outcome, generation_id, prompt_tokens,
    cached_prompt_tokens, completion_tokens, reasoning_tokens, usage_source, occurred_at,
    provider_cost, model_price_id"""

# ---------------------------------------------------------------- re-pricing

# A version's re-pricing, enqueued in the transaction that adds it.
ENQUEUE_REPRICING = """
INSERT INTO model_repricings (model_price_id, model_stem, since) VALUES ($1, $2, $3)
"""

# The oldest re-pricing not finished (the book's lock is held: one round at a time).
NEXT_REPRICING = """
SELECT id, model_price_id, model_stem, since, after_at, after_event
FROM model_repricings WHERE finished_at IS NULL ORDER BY id LIMIT 1
"""

# The next calls of the round: the model's, from the version's start, after the last round.
CALLS_TO_REPRICE = f"""
SELECT {CALL_COLUMNS} FROM llm_calls
WHERE model_stem = $1 AND occurred_at >= $2
  AND (occurred_at, event_id) > (COALESCE($3, '-infinity'::timestamptz),
                                 COALESCE($4, '00000000-0000-0000-0000-000000000000'::uuid))
ORDER BY occurred_at, event_id
LIMIT $5
"""

# Calls at their new price.
REPRICE_CALLS = """
UPDATE llm_calls AS c SET provider_cost = n.cost, model_price_id = n.price
FROM unnest($1::uuid[], $2::numeric[], $3::uuid[]) AS n(event_id, cost, price)
WHERE c.event_id = n.event_id
"""

ADVANCE_REPRICING = """
UPDATE model_repricings
SET after_at = $2, after_event = $3, scanned = scanned + $4, repriced = repriced + $5,
    finished_at = CASE WHEN $6 THEN clock_timestamp() END
WHERE id = $1
RETURNING scanned, repriced
"""


# ---------------------------------------------------------------- margin rollups

SUM_TYPES = dict(
    zip(
        SUMS,
        ("bigint", "numeric", "bigint", "bigint", "numeric", "bigint", "numeric") + ("bigint",) * 4,
        strict=True,
    )
)


def _add_margins(table: str, keys: Sequence[tuple[str, str]]) -> str:
    columns = [name for name, _ in keys] + list(SUMS)
    types = [kind for _, kind in keys] + [SUM_TYPES[name] for name in SUMS]
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=1))
    added = ",\n    ".join(f"{name} = t.{name} + EXCLUDED.{name}" for name in SUMS)
    return f"""
INSERT INTO {table} AS t ({", ".join(columns)})
SELECT * FROM unnest({arrays})
ON CONFLICT ({", ".join(name for name, _ in keys)}) DO UPDATE SET
    {added}
"""


ADD_MARGIN_DAYS = _add_margins(
    "margin_days", (("company_id", "uuid"), ("day", "date"), ("model", "text"))
)
ADD_MARGIN_PERIODS = _add_margins(
    "margin_periods", (("company_id", "uuid"), ("period", "text"), ("model", "text"))
)
ADD_MARGIN_MODEL_DAYS = _add_margins("margin_model_days", (("day", "date"), ("model", "text")))

# ---------------------------------------------------------------- reading the margin

SUMMED = ", ".join(f"sum({name}) AS {name}" for name in SUMS)
PLAIN = ", ".join(SUMS)

# By company, from company $1 on (the one after the cursor), a page of $2: the range's
# whole months ($3) and the days around them (two inclusive runs, numbered after the
# months). Both rollups lead with the company, so each part streams its first $2
# companies from its key and stops: a company among the first $2 of the whole is among
# the first $2 of each part it is in, so the page needs no more, and the first page
# reads the first companies' rows only, however many companies there are. One
# statement per shape of range, so that each plan (a generic one too) holds only the
# parts the range has.
COMPANY_MONTHS = f"""
    SELECT company_id, {SUMMED} FROM margin_periods
    WHERE company_id >= $1 AND period = ANY($3::text[])
    GROUP BY company_id ORDER BY company_id LIMIT $2"""


def _company_days(first: int) -> str:
    """The days part, its four parameters numbered from `first`."""
    a, b, c, d = (f"${n}" for n in range(first, first + 4))
    return f"""
    SELECT company_id, {SUMMED} FROM margin_days
    WHERE company_id >= $1 AND (day BETWEEN {a}::date AND {b} OR day BETWEEN {c}::date AND {d})
    GROUP BY company_id ORDER BY company_id LIMIT $2"""


def _by_company(*parts: str) -> str:
    named = ", ".join(f"part{n} AS ({part}\n)" for n, part in enumerate(parts))
    union = " UNION ALL ".join(f"SELECT * FROM part{n}" for n in range(len(parts)))
    return f"""
WITH {named}
SELECT company_id AS key, {SUMMED} FROM ({union}) AS parts
GROUP BY company_id ORDER BY company_id LIMIT $2
"""


MARGIN_BY_COMPANY_MONTHS = _by_company(COMPANY_MONTHS)
MARGIN_BY_COMPANY_DAYS = _by_company(_company_days(3))
MARGIN_BY_COMPANY = _by_company(COMPANY_MONTHS, _company_days(4))

# By model or by day: every company together, from the days of the range.
MARGIN_BY_MODEL = f"""
SELECT model AS key, {SUMMED} FROM margin_model_days
WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR model > $3)
GROUP BY model ORDER BY model LIMIT $4
"""
MARGIN_BY_DAY = f"""
SELECT day AS key, {SUMMED} FROM margin_model_days
WHERE day BETWEEN $1 AND $2 AND ($3::date IS NULL OR day > $3)
GROUP BY day ORDER BY day LIMIT $4
"""

# ---------------------------------------------------------------- the check

STEM = f"COALESCE(NULLIF(regexp_replace(COALESCE(model_used, ''), '{SNAPSHOT_SUFFIX}', ''), ''), COALESCE(model_used, ''))"  # noqa: E501
UTC_DAY = "(created_at AT TIME ZONE 'UTC')::date"
CALL_DAY = "(occurred_at AT TIME ZONE 'UTC')::date"
UNBILLED = "outcome <> 'billed'"

# Every usage row and every call as margin amounts, read once (the rollups read it thrice).
STAGE_MARGINS = f"""
CREATE TEMP TABLE margin_parts ON COMMIT DROP AS
SELECT company_id, {UTC_DAY} AS day, {STEM} AS model, 1 AS generations, cost AS revenue,
    0 AS calls, 0 AS unpriced_calls, 0::numeric AS provider_cost, 0 AS unbilled_calls,
    0::numeric AS unbilled_provider_cost, 0 AS prompt_tokens, 0 AS cached_prompt_tokens,
    0 AS completion_tokens, 0 AS reasoning_tokens
FROM question_generation_usage
UNION ALL
SELECT company_id, {CALL_DAY}, model_stem, 0, 0, 1, (provider_cost IS NULL)::int,
    COALESCE(provider_cost, 0), ({UNBILLED})::int,
    CASE WHEN {UNBILLED} THEN COALESCE(provider_cost, 0) ELSE 0 END,
    prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens
FROM llm_calls
"""


@dataclass(frozen=True)
class MarginRollup:
    """A margin rollup, and what the staged usage rows and calls add up to for it."""

    table: str
    expected: str


MARGIN_ROLLUPS = (
    MarginRollup(
        "margin_days",
        f"SELECT company_id, day, model, {SUMMED} FROM margin_parts GROUP BY 1, 2, 3",
    ),
    MarginRollup(
        "margin_periods",
        f"SELECT company_id, to_char(day, 'YYYY-MM'), model, {SUMMED} FROM margin_parts "
        "GROUP BY 1, 2, 3",
    ),
    MarginRollup(
        "margin_model_days",
        f"SELECT day, model, {SUMMED} FROM margin_parts GROUP BY 1, 2",
    ),
)
LOCK_MARGINS = f"LOCK TABLE {', '.join(r.table for r in MARGIN_ROLLUPS)} IN EXCLUSIVE MODE"


# ---------------------------------------------------------------- functions


async def lock_book(conn: Connection) -> None:
    """Exclusive: adding a version, or a round of re-pricing."""
    await conn.execute(LOCK_BOOK, BOOK_LOCK_CLASS)


async def share_book(conn: Connection) -> None:
    """Shared: a batch pricing its calls."""
    await conn.execute(SHARE_BOOK, BOOK_LOCK_CLASS)


@dataclass(frozen=True)
class StoredPrice:
    """A version as the book lists it, with its re-pricing's progress."""

    price: ModelPrice
    created_at: datetime
    created_by: str | None
    source: str | None
    read_on: date | None
    scanned: int
    repriced: int
    repricing_finished_at: datetime | None


def _price(row: asyncpg.Record) -> ModelPrice:
    return ModelPrice(
        model_price_id=row["model_price_id"],
        model=row["model"],
        rates=Rates(row["input_per_1m"], row["cached_input_per_1m"], row["output_per_1m"]),
        effective_from=row["effective_from"],
        sequence=row["id"],
    )


async def add_version(
    conn: Connection,
    price: ModelPrice,
    *,
    created_by: str | None,
    source: str | None = None,
    read_on: date | None = None,
) -> tuple[int, datetime]:
    row = await conn.fetchrow(
        ADD_VERSION,
        price.model_price_id,
        price.model,
        price.rates.input_per_1m,
        price.rates.cached_input_per_1m,
        price.rates.output_per_1m,
        price.effective_from,
        created_by,
        source,
        read_on,
    )
    assert row is not None
    return row["id"], row["created_at"]


async def versions_of(conn: Connection, names: Sequence[str]) -> list[ModelPrice]:
    if not names:
        return []
    return [_price(row) for row in await conn.fetch(VERSIONS_OF, sorted(set(names)))]


async def list_versions(
    conn: Connection,
    model: str | None,
    after: tuple[str, datetime, int] | None,
    limit: int,
) -> list[StoredPrice]:
    after_model, after_from, after_id = after if after is not None else (None, None, None)
    rows = await conn.fetch(LIST_VERSIONS, model, after_model, after_from, after_id, limit)
    return [
        StoredPrice(
            price=_price(row),
            created_at=row["created_at"],
            created_by=row["created_by"],
            source=row["source"],
            read_on=row["read_on"],
            scanned=row["scanned"] or 0,
            repriced=row["repriced"] or 0,
            repricing_finished_at=row["finished_at"],
        )
        for row in rows
    ]


async def seed_loaded(conn: Connection, name: str) -> bool:
    loaded: bool = await conn.fetchval(SEED_LOADED, name)
    return loaded


async def mark_seed_loaded(conn: Connection, name: str, source: str, read_on: date) -> None:
    await conn.execute(MARK_SEED_LOADED, name, source, read_on)


async def insert_calls(conn: Connection, calls: Sequence[Call]) -> set[UUID]:
    """The calls made now (a redelivered one is not among them)."""
    if not calls:
        return set()
    rows = await conn.fetch(
        INSERT_CALLS,
        [c.event_id for c in calls],
        [c.company_id for c in calls],
        [c.model for c in calls],
        [c.model_stem for c in calls],
        [c.outcome for c in calls],
        [c.generation_id for c in calls],
        [c.tokens.prompt for c in calls],
        [c.tokens.cached_prompt for c in calls],
        [c.tokens.completion for c in calls],
        [c.tokens.reasoning for c in calls],
        [c.usage_source for c in calls],
        [c.occurred_at for c in calls],
        [c.provider_cost for c in calls],
        [c.model_price_id for c in calls],
    )
    return {row["event_id"] for row in rows}


def _call(row: asyncpg.Record) -> Call:
    return Call(
        event_id=row["event_id"],
        company_id=row["company_id"],
        model=row["model"],
        outcome=row["outcome"],
        generation_id=row["generation_id"],
        tokens=Tokens(
            row["prompt_tokens"],
            row["cached_prompt_tokens"],
            row["completion_tokens"],
            row["reasoning_tokens"],
        ),
        usage_source=row["usage_source"],
        occurred_at=row["occurred_at"],
        provider_cost=row["provider_cost"],
        model_price_id=row["model_price_id"],
    )


async def enqueue_repricing(conn: Connection, price: ModelPrice, stem: str) -> None:
    await conn.execute(ENQUEUE_REPRICING, price.model_price_id, stem, price.effective_from)


@dataclass(frozen=True)
class Repricing:
    """A version's re-pricing in progress: its model, its start, where its last round stopped."""

    id: int
    model_price_id: UUID
    model_stem: str
    since: datetime
    after_at: datetime | None
    after_event: UUID | None


async def next_repricing(conn: Connection) -> Repricing | None:
    row = await conn.fetchrow(NEXT_REPRICING)
    return None if row is None else Repricing(**dict(row))


async def calls_to_reprice(conn: Connection, job: Repricing, limit: int) -> list[Call]:
    rows = await conn.fetch(
        CALLS_TO_REPRICE, job.model_stem, job.since, job.after_at, job.after_event, limit
    )
    return [_call(row) for row in rows]


async def reprice_calls(conn: Connection, calls: Sequence[Call]) -> None:
    if calls:
        await conn.execute(
            REPRICE_CALLS,
            [c.event_id for c in calls],
            [c.provider_cost for c in calls],
            [c.model_price_id for c in calls],
        )


async def advance_repricing(
    conn: Connection, job: Repricing, last: Call | None, scanned: int, repriced: int, done: bool
) -> tuple[int, int]:
    """Move the re-pricing on past `last`; its calls scanned and re-priced so far."""
    row = await conn.fetchrow(
        ADVANCE_REPRICING,
        job.id,
        last.occurred_at if last is not None else job.after_at,
        last.event_id if last is not None else job.after_event,
        scanned,
        repriced,
        done,
    )
    assert row is not None
    return row["scanned"], row["repriced"]


def _columns(amounts: Sequence[MarginAmounts]) -> list[list[Any]]:
    rows = [a.as_row() for a in amounts]
    return [[row[i] for row in rows] for i in range(len(SUMS))]


def _keys(keys: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [[key[i] for key in keys] for i in range(len(keys[0]))] if keys else []


async def add_margins(conn: Connection, deltas: MarginDeltas) -> None:
    """Write the deltas: one statement per rollup, rollups and keys in a fixed order."""
    for statement, rows in (
        (ADD_MARGIN_DAYS, sorted_rows(deltas.days)),
        (ADD_MARGIN_PERIODS, sorted_rows(deltas.periods)),
        (ADD_MARGIN_MODEL_DAYS, sorted_rows(deltas.model_days)),
    ):
        if rows:
            await conn.execute(
                statement,
                *_keys([key for key, _ in rows]),
                *_columns([amounts for _, amounts in rows]),
            )


def _amounts(row: asyncpg.Record) -> MarginAmounts:
    return MarginAmounts(*(row[i + 1] for i in range(len(SUMS))))


@dataclass(frozen=True)
class MarginGroup:
    key: Any  # a company id, a model, or a day
    amounts: MarginAmounts


async def margin_by_company(
    conn: Connection,
    months: Sequence[str],
    days: Sequence[tuple[date, date]],
    after: UUID | None,
    limit: int,
) -> list[MarginGroup]:
    # From the company after the cursor's on (`>=`, so that the key bounds the scan).
    start = UUID(int=0) if after is None else UUID(int=after.int + 1)
    runs = [*days, *([(days[-1] if days else (None, None))] * (2 - len(days)))]
    day_args = (runs[0][0], runs[0][1], runs[1][0], runs[1][1])
    if months and days:
        rows = await conn.fetch(MARGIN_BY_COMPANY, start, limit, list(months), *day_args)
    elif months:
        rows = await conn.fetch(MARGIN_BY_COMPANY_MONTHS, start, limit, list(months))
    else:
        rows = await conn.fetch(MARGIN_BY_COMPANY_DAYS, start, limit, *day_args)
    return [MarginGroup(row["key"], _amounts(row)) for row in rows]


async def margin_by_model(
    conn: Connection, first: date, last: date, after: str | None, limit: int
) -> list[MarginGroup]:
    rows = await conn.fetch(MARGIN_BY_MODEL, first, last, after, limit)
    return [MarginGroup(row["key"], _amounts(row)) for row in rows]


async def margin_by_day(
    conn: Connection, first: date, last: date, after: date | None, limit: int
) -> list[MarginGroup]:
    rows = await conn.fetch(MARGIN_BY_DAY, first, last, after, limit)
    return [MarginGroup(row["key"], _amounts(row)) for row in rows]


@dataclass(frozen=True)
class Difference:
    """A margin rollup's rows that did not match the usage rows and calls (before a fix)."""

    table: str
    missing: int  # expected rows absent or different in the rollup
    unexpected: int  # rollup rows absent or different in what the rows add up to
    examples: list[dict[str, Any]]


async def check_margins(conn: Connection, *, fix: bool) -> list[Difference]:
    """Recompute every margin rollup from the usage rows and calls; report (and fix) what differs.

    Takes the rollups' EXCLUSIVE lock first (inside the caller's transaction), so the
    rows read and the rollups agree: writers wait, readers do not.
    """
    await conn.execute(LOCK_MARGINS)
    await conn.execute(STAGE_MARGINS)
    differences = []
    for rollup in MARGIN_ROLLUPS:
        await conn.execute(
            f"CREATE TEMP TABLE expected ON COMMIT DROP AS SELECT * FROM {rollup.table} LIMIT 0"
        )
        await conn.execute(f"INSERT INTO expected {rollup.expected}")
        actual = f"SELECT * FROM {rollup.table}"
        missing = await conn.fetch(f"SELECT * FROM expected EXCEPT {actual}")
        unexpected = await conn.fetch(f"{actual} EXCEPT SELECT * FROM expected")
        if missing or unexpected:
            differences.append(
                Difference(
                    rollup.table,
                    len(missing),
                    len(unexpected),
                    [{"expected": dict(row)} for row in missing[:3]]
                    + [{"found": dict(row)} for row in unexpected[:3]],
                )
            )
            if fix:
                await conn.execute(f"DELETE FROM {rollup.table}")
                await conn.execute(f"INSERT INTO {rollup.table} SELECT * FROM expected")
        await conn.execute("DROP TABLE expected")
    await conn.execute("DROP TABLE margin_parts")
    return differences


async def margin_page(
    conn: Connection,
    group_by: str,
    first: date,
    last: date,
    months: Sequence[str],
    days: Sequence[tuple[date, date]],
    after: Any,
    limit: int,
) -> list[MarginGroup]:
    """One page of groups (`limit` of them), in key order after `after`."""
    if group_by == "company":
        return await margin_by_company(conn, months, days, after, limit)
    if group_by == "model":
        return await margin_by_model(conn, first, last, after, limit)
    return await margin_by_day(conn, first, last, after, limit)
