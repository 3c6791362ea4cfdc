"""Tokens for tests."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from services.servicekit.auth import issue_token

TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"


def token(
    company_id: UUID,
    *,
    user: str | None = "recruiter@example.com",
    roles: Iterable[str] = (),
    ttl_seconds: int = 3600,
) -> str:
    return issue_token(TEST_SECRET, company_id, user=user, roles=roles, ttl_seconds=ttl_seconds)


def bearer(
    company_id: UUID,
    *,
    user: str | None = "recruiter@example.com",
    roles: Iterable[str] = (),
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(company_id, user=user, roles=roles)}"}
