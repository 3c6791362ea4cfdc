"""Keyset pages: one row more than the page is fetched, so the last page says it is the last.

A page of `limit` rows is read with `limit + 1`: the extra row, when there is one, only
tells that another page follows and is never shown. So `nextCursor` is null on the last
page even when that page is exactly full, and following cursors yields every row once.

`Cursor` is the keyset of the lists ordered by (created_at, id), newest first; lists
ordered otherwise encode their own cursor from the page's last item (`Page.cursor`).

A cursor comes back from the client, so it is checked like any input. `CursorSeal`
makes one tamper-evident: the page's sort key, signed (HMAC-SHA256, with a key derived
from the service's secret) together with the list it came from, the company and every
parameter that shapes the list. A cursor altered, forged, or used with another list,
company or range is refused (422 naming `cursor`) before anything in it is read; what
it carries is still parsed strictly (`instant_key`, `decimal_key`, `bigint_key`), so
even a signed key out of range is a 422, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar
from uuid import UUID

import asyncpg

from services.servicekit.db import Connection
from services.servicekit.instants import OutOfCalendar, in_utc
from services.servicekit.problems import Problem, invalid

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


NOT_OURS = "not a cursor this API returned"
# Cursors are bounded by the routes (max_length); a longer text is not one of ours.
MAX_CURSOR = 500
# PostgreSQL's bigint: ids of identity columns.
BIGINT_MAX = 2**63 - 1
# No sort key of ours holds a number longer than this (money is 10 digits and 4 places).
MAX_NUMBER_TEXT = 40


def refuse(message: str = NOT_OURS) -> Problem:
    return invalid("cursor", message)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorSeal:
    """Signs the cursors a service hands out, and opens only those it signed."""

    MAC_BYTES = 16  # 128 bits: forging one is out of reach, and the cursor stays short

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret: str) -> CursorSeal:
        """A key of its own, derived from the service's secret (so that a cursor's
        signature is never also a valid token signature, and no setting is added)."""
        return cls(hmac.new(secret.encode(), b"keyset cursors v1", hashlib.sha256).digest())

    def _mac(self, query: str, scope: Mapping[str, object], body: str) -> bytes:
        bound = json.dumps([query, dict(scope)], sort_keys=True, default=str)
        signed = f"{bound}\n{body}".encode()
        return hmac.new(self._key, signed, hashlib.sha256).digest()[: self.MAC_BYTES]

    def seal(self, query: str, scope: Mapping[str, object], key: Sequence[str]) -> str:
        """The cursor after the item whose sort key is `key`, in the list `query` shaped by
        `scope` (the company and every parameter that changes the list)."""
        body = _b64encode(json.dumps(list(key), separators=(",", ":")).encode())
        return f"{body}.{_b64encode(self._mac(query, scope, body))}"

    def open(self, value: str, query: str, scope: Mapping[str, object], width: int) -> list[str]:
        """The sort key `value` carries, if this service sealed it for this very list.

        The signature is checked first: nothing in a cursor is read before it is known
        to be one this service made for this list."""
        if len(value) > MAX_CURSOR or value.count(".") != 1:
            raise refuse()
        body, mac = value.split(".")
        try:
            sent = _b64decode(mac)
        except ValueError as exc:
            raise refuse() from exc
        if not hmac.compare_digest(sent, self._mac(query, scope, body)):
            raise refuse(
                "not a cursor of this list: it was altered, or handed out for another "
                "company or other parameters; page again from the start"
            )
        try:
            key = json.loads(_b64decode(body))
        except ValueError as exc:
            raise refuse() from exc
        if not (
            isinstance(key, list) and len(key) == width and all(isinstance(k, str) for k in key)
        ):
            raise refuse()
        return key


def instant_key(text: str) -> datetime:
    """A sort key's instant, in UTC, as any instant a request may name."""
    try:
        return in_utc(datetime.fromisoformat(text))
    except (ValueError, OutOfCalendar) as exc:
        raise refuse() from exc


def uuid_key(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError as exc:
        raise refuse() from exc


def decimal_key(text: str) -> Decimal:
    """A sort key's amount: a plain finite decimal (never `1E+300000`, `NaN`)."""
    if len(text) > MAX_NUMBER_TEXT:
        raise refuse()
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise refuse() from exc
    if not amount.is_finite() or abs(amount.adjusted()) > MAX_NUMBER_TEXT:
        raise refuse()
    return amount


def bigint_key(text: str) -> int:
    """A sort key's id: a positive bigint, as the identity columns hold."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_NUMBER_TEXT:
        raise refuse()
    number = int(text)
    if not 0 < number <= BIGINT_MAX:
        raise refuse()
    return number


@dataclass(frozen=True)
class Cursor:
    """The keyset (created_at, id) of the lists ordered newest first."""

    created_at: datetime
    id: UUID

    def key(self) -> list[str]:
        return [self.created_at.isoformat(), str(self.id)]

    @classmethod
    def of_key(cls, key: Sequence[str]) -> Cursor:
        created_at, id_ = key
        return cls(instant_key(created_at), uuid_key(id_))

    def encode(self) -> str:
        """Unsigned: for a list whose cursor only says where to resume (see `decode`)."""
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return _b64encode(raw)

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Fully validated, unsigned: any (instant, id) pair is a place to resume in the
        company's own list, which the query is always scoped to."""
        try:
            raw = _b64decode(value).decode()
            created_at, id_ = raw.split("|", 1)
        except ValueError as exc:
            raise refuse() from exc
        return cls.of_key([created_at, id_])
