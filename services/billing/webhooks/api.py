"""Route of threshold webhooks: a company's delivery attempts, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import Field

from services.billing.credits.rules import LOW_BALANCE_EVENT_TYPE
from services.billing.reads.schemas import CamelModel
from services.billing.webhooks import store
from services.billing.webhooks.rules import EVENT_TYPE
from services.servicekit.auth import CurrentPrincipal
from services.servicekit.http import Cursors, Pool
from services.servicekit.pagination import MAX_CURSOR, bigint_key
from services.servicekit.problems import PROBLEM_JSON

router = APIRouter(prefix="/api/billing", tags=["webhooks"])

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class DeliveryAttempt(CamelModel):
    event_id: UUID = Field(description="The webhook's eventId: the same on every retry.")
    type: str = Field(
        description=f"The webhook's `type`: {EVENT_TYPE} or {LOW_BALANCE_EVENT_TYPE}."
    )
    period: str | None = Field(description=f"The budget's period ({EVENT_TYPE}); else null.")
    threshold: int | None = Field(
        description=f"The threshold reached, percent of the limit ({EVENT_TYPE}); else null."
    )
    attempt: int = Field(description="1 for the first attempt of this eventId, then 2, ...")
    attempted_at: datetime
    url: str | None
    status_code: int | None = Field(description="The receiver's answer; null: none in time.")
    error: str | None
    duration_ms: int
    outcome: str = Field(description="delivered, failed, or refused (the URL is not allowed).")
    delivery_status: str = Field(
        description="pending (will be retried), delivered, or failed (24 hours passed)."
    )


class DeliveryPage(CamelModel):
    deliveries: list[DeliveryAttempt]
    next_cursor: str | None


@router.get(
    "/webhooks/deliveries",
    response_model=DeliveryPage,
    responses={
        401: {"description": "no valid token", **PROBLEM},
        422: {"description": "invalid query; `errors` names the fields", **PROBLEM},
    },
)
async def list_deliveries(
    principal: CurrentPrincipal,
    pool: Pool,
    cursors: Cursors,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
) -> DeliveryPage:
    """Every attempt to deliver the company's threshold webhooks, newest first."""
    scope = {"company": principal.company_id}
    before = None
    if cursor:
        (attempt_id,) = cursors.open(cursor, "webhooks.attempts", scope, 1)
        before = bigint_key(attempt_id)
    async with pool.acquire() as conn:
        page = await store.list_attempts(conn, principal.company_id, before, limit)
    return DeliveryPage(
        deliveries=[DeliveryAttempt.model_validate(dict(row)) for row in page.items],
        next_cursor=page.cursor(
            lambda last: cursors.seal("webhooks.attempts", scope, [str(last["id"])])
        ),
    )
