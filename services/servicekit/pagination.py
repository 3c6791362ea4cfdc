"""Keyset pages: one row more than the page is fetched, so the last page says it is the last.

A page of `limit` rows is read with `limit + 1`: the extra row, when there is one, only
tells that another page follows and is never shown. So `nextCursor` is null on the last
page even when that page is exactly full, and following cursors yields every row once.

`Cursor` is the keyset of the lists ordered by (created_at, id), newest first; lists
ordered otherwise encode their own cursor from the page's last item (`Page.cursor`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import asyncpg

from services.servicekit.db import Connection
from services.servicekit.problems import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paged list, and whether another page follows it."""

    items: list[T]
    more: bool

    def cursor(self, encode: Callable[[T], str]) -> str | None:
        """The cursor after the page's last item; None on the last page, full or not."""
        return encode(self.items[-1]) if self.more and self.items else None

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        return Page([convert(item) for item in self.items], self.more)


def rows_for(limit: int) -> int:
    """How many rows to fetch for a page of `limit`: one more, to tell if another follows."""
    return limit + 1


def page_of(rows: Sequence[T], limit: int) -> Page[T]:
    """The page in rows fetched with `rows_for(limit)`; the extra row only says `more`."""
    return Page(list(rows[:limit]), len(rows) > limit)


async def fetch_page(
    conn: Connection, query: str, *args: object, limit: int
) -> Page[asyncpg.Record]:
    """A page of `query`, whose last parameter is its `LIMIT`: `args` are the ones before it."""
    return page_of(await conn.fetch(query, *args, rows_for(limit)), limit)


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
            raise invalid("cursor", "not a cursor this API returned") from exc
        return cursor
