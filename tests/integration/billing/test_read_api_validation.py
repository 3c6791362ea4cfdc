"""Bad input to the read API: a 422 problem naming the field, and nothing else happens."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from tests.support.auth import bearer
from tests.support.stack import Stack

BAD_QUERIES = [
    ("/api/billing/usage", {"status": "pending"}, "status"),
    ("/api/billing/usage", {"from": "2025-03-01T00:00:00"}, "from"),  # no timezone
    ("/api/billing/usage", {"from": "2025-03-01"}, "from"),
    ("/api/billing/usage", {"to": "1740787200"}, "to"),
    ("/api/billing/usage", {"from": "yesterday"}, "from"),
    ("/api/billing/usage", {"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from"),
    ("/api/billing/usage", {"from": "2025-03-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from"),
    ("/api/billing/usage", {"cursor": "not-a-cursor"}, "cursor"),
    ("/api/billing/usage", {"jobId": "job-1"}, "jobId"),
    ("/api/billing/usage", {"draftJobId": "x" * 101}, "draftJobId"),
    ("/api/billing/usage", {"limit": "0"}, "limit"),
    ("/api/billing/usage", {"limit": "501"}, "limit"),
    ("/api/billing/summary", {"to": "2025-13-01T00:00:00Z"}, "to"),
    (
        "/api/billing/summary",
        {"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
        "from",
    ),
    ("/api/billing/usage/not-a-uuid", {}, "usage_id"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_QUERIES)
async def test_invalid_query_is_a_problem_naming_the_field(
    billing: Stack, company: UUID, path: str, params: dict[str, Any], field: str
) -> None:

    response = await billing.billing.get(path, params=params, headers=bearer(company))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert [error["field"] for error in body["errors"]] == [field]
    assert field in body["detail"]
    assert "Traceback" not in response.text
