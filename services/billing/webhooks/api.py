"""Route of threshold webhooks: a company's delivery attempts, newest first."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import Field

from services.billing.reads.schemas import CamelModel
from services.billing.webhooks import store
from services.billing.webhooks.rules import EVENT_TYPE
from services.servicekit.auth import CurrentPrincipal
from services.servicekit.http import Pool
from services.servicekit.problems import PROBLEM_JSON, invalid

router = APIRouter(prefix="/api/billing", tags=["webhooks"])

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class DeliveryAttempt(CamelModel):
    event_id: UUID = Field(description="The webhook's eventId: the same on every retry.")
    type: str = EVENT_TYPE
    period: str
    threshold: int
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


def encode_cursor(company_id: UUID, attempt_id: int) -> str:
    raw = f"webhook-attempts|{company_id}|{attempt_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str, company_id: UUID) -> int:
    """A cursor of this list and this company, or 422 naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        kind, company, attempt_id = raw.split("|")
        if kind != "webhook-attempts" or UUID(company) != company_id:
            raise ValueError("another list's or company's cursor")
        return int(attempt_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("cursor", "not a cursor this list returned") from exc


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
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    """Every attempt to deliver the company's threshold webhooks, newest first."""
    before = decode_cursor(cursor, principal.company_id) if cursor else None
    async with pool.acquire() as conn:
        page = await store.list_attempts(conn, principal.company_id, before, limit)
    return DeliveryPage(
        deliveries=[DeliveryAttempt.model_validate(dict(row)) for row in page.items],
        next_cursor=page.cursor(lambda last: encode_cursor(principal.company_id, last["id"])),
    )
