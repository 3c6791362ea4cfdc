"""Keyset cursors over (created_at, id), newest first: opaque to clients, cheap to follow."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.servicekit.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            created_at, id_ = raw.split("|", 1)
            cursor = cls(datetime.fromisoformat(created_at), UUID(id_))
            if cursor.created_at.tzinfo is None:
                raise ValueError("naive timestamp")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(
                422,
                "cursor is not one this API returned",
                errors=[{"field": "cursor", "in": "query", "message": "invalid cursor"}],
            ) from exc
        return cursor


def next_cursor(rows: list[tuple[datetime, UUID]], limit: int) -> str | None:
    """A cursor after the last row, when the page is full."""
    if len(rows) < limit:
        return None
    created_at, id_ = rows[-1]
    return Cursor(created_at, id_).encode()
