"""The operator's routes of the cost of goods: the model price book and the margin.

Every route needs `platform:admin`. Nothing here is reachable with a company's
token, and no company-facing answer (its API, CSV, console) carries a provider
cost or a margin.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from services.billing.config import Settings
from services.billing.costs import book, store
from services.billing.costs.margins import InvalidRange, cut_into_months, figures
from services.billing.costs.repricing import Repricer
from services.billing.costs.rules import Rates
from services.billing.costs.schemas import (
    GroupBy,
    Margin,
    MarginGroup,
    ModelName,
    ModelPrice,
    ModelPriceIn,
    ModelPriceList,
    Repricing,
)
from services.billing.reads.api import get_settings
from services.billing.reads.rules import DEFAULT_PAGE, MAX_PAGE
from services.billing.reads.schemas import CamelModel
from services.servicekit.auth import Principal, require_role
from services.servicekit.db import Connection
from services.servicekit.http import Cursors, Pool
from services.servicekit.idempotency import Idempotent
from services.servicekit.pagination import page_of, refuse, rows_for
from services.servicekit.problems import documented, invalid

router = APIRouter(prefix="/api/billing/admin", tags=["cost of goods"])

OPERATOR = "platform:admin"
Operator = Annotated[Principal, Depends(require_role(OPERATOR))]
BillingSettings = Annotated[Settings, Depends(get_settings)]
# The admin lists are the operator's, not a company's: their cursors are bound to this.
ADMIN_ANSWERS = {401: "no valid token", 403: f"the token lacks {OPERATOR}"}

T = TypeVar("T")


def get_repricer(request: Request) -> Repricer:
    repricer: Repricer = request.app.state.runtime.repricer
    return repricer


class ModelPriceFingerprint(CamelModel):
    """What an Idempotency-Key stands for: this model's price, this body."""

    model: str
    request: ModelPriceIn


@router.put(
    "/models/{model}/price",
    status_code=201,
    response_model=ModelPrice,
    responses=documented({}, {**ADMIN_ANSWERS, 422: "invalid price"}),
)
async def set_model_price(
    operator: Operator,
    model: Annotated[ModelName, Path(description="As the provider names it, e.g. gpt-4o.")],
    body: ModelPriceIn,
    pool: Pool,
    repricer: Annotated[Repricer, Depends(get_repricer)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> ModelPrice:
    """Add a version of a model's price; one for the past re-prices the calls it covers."""
    rates = Rates(body.input_per_1m, body.cached_input_per_1m, body.output_per_1m)

    async def write(conn: Connection) -> ModelPrice:
        async with conn.transaction():
            added = await book.add_price(
                conn, model, rates, body.effective_from, created_by=operator.user
            )
        return ModelPrice(
            model_price_id=added.model_price_id,
            model=added.model,
            input_per_1m=rates.input_per_1m,
            cached_input_per_1m=rates.cached_input_per_1m,
            output_per_1m=rates.output_per_1m,
            effective_from=added.effective_from,
            created_by=operator.user,
            repricing=Repricing(done=False, calls_scanned=0, calls_repriced=0),
        )

    answer = await Idempotent(pool, ModelPrice, status_code=201).run(
        operator.company_id,
        idempotency_key,
        ModelPriceFingerprint(model=model, request=body),
        write,
    )
    repricer.wake()
    return answer


@router.get(
    "/models/prices", response_model=ModelPriceList, responses=documented({}, ADMIN_ANSWERS)
)
async def list_model_prices(
    _: Operator,
    pool: Pool,
    cursors: Cursors,
    model: Annotated[ModelName | None, Query(description="Only this model's versions.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ModelPriceList:
    """The versions of the price book, with the progress of each one's re-pricing."""
    scope = {"model": model}
    after = None
    if cursor is not None:
        name, since, sequence = cursors.open(cursor, "model-prices", scope, 3)
        after = (name, _parsed(datetime.fromisoformat, since), _parsed(int, sequence))
    async with pool.acquire() as conn:
        rows = await store.list_versions(conn, model, after, rows_for(limit))
    page = page_of(rows, limit)
    return ModelPriceList(
        prices=[_version(stored) for stored in page.items],
        next_cursor=page.cursor(
            lambda last: cursors.seal(
                "model-prices",
                scope,
                [
                    last.price.model,
                    last.price.effective_from.isoformat(),
                    str(last.price.sequence),
                ],
            )
        ),
    )


def _version(stored: store.StoredPrice) -> ModelPrice:
    price = stored.price
    return ModelPrice(
        model_price_id=price.model_price_id,
        model=price.model,
        input_per_1m=price.rates.input_per_1m,
        cached_input_per_1m=price.rates.cached_input_per_1m,
        output_per_1m=price.rates.output_per_1m,
        effective_from=price.effective_from,
        created_at=stored.created_at,
        created_by=stored.created_by,
        source=stored.source,
        read_on=stored.read_on,
        repricing=Repricing(
            done=stored.repricing_finished_at is not None,
            calls_scanned=stored.scanned,
            calls_repriced=stored.repriced,
        ),
    )


# How each grouping's key is written in a cursor and read back.
KEYS: dict[str, Callable[[str], Any]] = {
    "company": UUID,
    "model": str,
    "day": date.fromisoformat,
}


@router.get(
    "/margin",
    response_model=Margin,
    responses=documented({}, {**ADMIN_ANSWERS, 422: "invalid query; `errors` names the field"}),
)
async def get_margin(
    _: Operator,
    pool: Pool,
    cursors: Cursors,
    settings: BillingSettings,
    from_: Annotated[date, Query(alias="from", description="First UTC day, YYYY-MM-DD.")],
    to: Annotated[date, Query(description="Last UTC day, YYYY-MM-DD, included.")],
    group_by: Annotated[GroupBy, Query(alias="groupBy")] = "company",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Margin:
    """Revenue, provider cost and margin per company, model or day, from the rollups."""
    try:
        cut = cut_into_months(from_, to)
    except InvalidRange as exc:
        raise invalid(exc.field, str(exc)) from exc
    scope = {"groupBy": group_by, "from": from_.isoformat(), "to": to.isoformat()}
    after = None
    if cursor is not None:
        (key,) = cursors.open(cursor, "margin", scope, 1)
        after = _parsed(KEYS[group_by], key)
    async with pool.acquire() as conn:
        rows = await store.margin_page(
            conn, group_by, from_, to, cut.months, cut.days, after, rows_for(limit)
        )
    page = page_of(rows, limit)
    return Margin(
        group_by=group_by,
        from_=from_,
        to=to,
        currency=settings.billing_currency,
        groups=[_group(row) for row in page.items],
        next_cursor=page.cursor(lambda last: cursors.seal("margin", scope, [_key(last.key)])),
    )


def _key(key: Any) -> str:
    return key.isoformat() if isinstance(key, date) else str(key)


def _group(row: store.MarginGroup) -> MarginGroup:
    figured = figures(row.amounts)
    return MarginGroup(
        group=_key(row.key),
        revenue=figured.revenue,
        provider_cost=figured.provider_cost,
        unbilled_provider_cost=figured.unbilled_provider_cost,
        margin=figured.margin,
        margin_percent=figured.margin_percent,
        calls=figured.calls,
        unpriced_calls=figured.unpriced_calls,
    )


def _parsed(parse: Callable[[str], T], value: str) -> T:
    try:
        return parse(value)
    except ValueError as exc:
        raise refuse() from exc
