"""Pure rules of the reads: how a range splits into whole days and edges, and keyset cursors.

A range `[since, until)` of `created_at` is answered from the daily rollups for
the whole UTC days it covers, and from the usage rows themselves (by index) for
the parts of days at its edges, so every figure is exact whatever the range.

A cursor carries the sort key of the last item of a page, and is bound to the
query it came from (the endpoint and every parameter that changes the list)
and to the company: another query's or another company's cursor is refused
(`InvalidQuery` naming `cursor`, a 422 at the API) instead of quietly paging through
something else.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_DAYS = 400


class InvalidQuery(ValueError):
    """A query parameter the reads cannot answer; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Edge:
    """A part of a day at a range's edge: `[start, end)`, read from the usage rows."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class DayCut:
    """A range as whole days `[first_day, end_day)` (None: open) plus at most two edges."""

    first_day: date | None
    end_day: date | None
    edges: tuple[Edge, ...]

    def edge(self, index: int) -> tuple[datetime | None, datetime | None]:
        if index < len(self.edges):
            return self.edges[index].start, self.edges[index].end
        return None, None


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def cut_into_days(since: datetime | None, until: datetime | None) -> DayCut:
    """Split `[since, until)` into the whole UTC days it covers and the edges around them."""
    first_day = None if since is None else _ceil_day(since)
    end_day = None if until is None else until.astimezone(UTC).date()
    if first_day is not None and end_day is not None and first_day >= end_day:
        # Within one day, or across one midnight: no whole day, the rows are read directly.
        assert since is not None
        assert until is not None
        edges = (Edge(since, until),) if since < until else ()
        return DayCut(end_day, end_day, edges)
    found: list[Edge] = []
    if since is not None and first_day is not None and midnight(first_day) > since:
        found.append(Edge(since, midnight(first_day)))
    if until is not None and end_day is not None and midnight(end_day) < until:
        found.append(Edge(midnight(end_day), until))
    return DayCut(first_day, end_day, tuple(found))


def _ceil_day(instant: datetime) -> date:
    utc = instant.astimezone(UTC)
    day = utc.date()
    return day if utc == midnight(day) else day + timedelta(days=1)


def days_between(first: date, last: date) -> int:
    """How many days `[first, last]` holds, both included."""
    return (last - first).days + 1


# ---------------------------------------------------------------- cursors


def _scope(query: str, company_id: UUID, parameters: dict[str, Any]) -> str:
    text = json.dumps([query, str(company_id), parameters], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(query: str, company_id: UUID, parameters: dict[str, Any], key: list[str]) -> str:
    """A cursor after the item whose sort key is `key`, bound to this query and company."""
    raw = json.dumps({"s": _scope(query, company_id, parameters), "k": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    value: str, query: str, company_id: UUID, parameters: dict[str, Any], width: int
) -> list[str]:
    """The sort key a cursor carries, if it came from this query for this company."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw)
        key = data["k"]
        scope = data["s"]
        if not (
            isinstance(key, list) and len(key) == width and all(isinstance(k, str) for k in key)
        ):
            raise ValueError("not a key of this list")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise refuse_cursor("not a cursor this API returned") from exc
    if scope != _scope(query, company_id, parameters):
        raise refuse_cursor("this cursor belongs to another query; page again from the start")
    return key


def refuse_cursor(message: str) -> InvalidQuery:
    """The error for a cursor this query did not hand out."""
    return InvalidQuery("cursor", message)
