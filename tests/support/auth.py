"""Tokens for tests."""

from __future__ import annotations

from uuid import UUID

from services.servicekit.auth import issue_token

TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"


def bearer(company_id: UUID, *, user: str | None = "recruiter@example.com") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(TEST_SECRET, company_id, user=user)}"}
