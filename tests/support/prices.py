"""Billing's price book as tests set it: `PUT /api/billing/admin/companies/{id}/price`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from tests.support.auth import bearer
from tests.support.stack import Stack

OPERATOR = bearer(uuid.uuid4(), user="operator@example.com", roles=["platform:admin"])


def price(effective_from: datetime, amount: str = "0.1500", margin: str = "20") -> dict[str, Any]:
    """The body of a price version: `amount` per 10 questions, `margin` percent."""
    return {
        "pricePer10Questions": amount,
        "profitMarginPercent": margin,
        "effectiveFrom": effective_from.isoformat(),
    }


async def set_price(
    stack: Stack, company: UUID | str, body: dict[str, Any], headers: dict[str, str] = OPERATOR
) -> httpx.Response:
    return await stack.billing.put(
        f"/api/billing/admin/companies/{company}/price", json=body, headers=headers
    )
