"""Pure rules of the reads: how a range splits into whole days and edges.

A range `[since, until)` of `created_at` is answered from the daily rollups for
the whole UTC days it covers, and from the usage rows themselves (by index) for
the parts of days at its edges, so every figure is exact whatever the range.

(Cursors are sealed by `servicekit.pagination.CursorSeal`, bound to the list, the
company and every parameter that changes the list.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_DAYS = 400


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
