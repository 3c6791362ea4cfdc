"""Instants a request may name: RFC 3339 with a timezone, inside the calendar in UTC.

`0001-01-01T00:00:00+01:00` and `9999-12-31T23:30:00-01:00` are valid RFC 3339, yet
each leaves Python's calendar (years 1 to 9999) once turned to UTC, where every rule
works (periods, whole days, the database driver): refused at the edge, as a 422 naming
the field, instead of an `OverflowError` deep inside. The last year is kept out too, so
that the month and the day after any accepted instant can still be written.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

# Inclusive, exclusive: an instant's period (`YYYY-MM`, years 1 to 9998) always exists.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)

# The last day whose next day is still in the calendar of accepted instants.
LAST_DAY = date(9998, 12, 31)

# RFC 3339 with a timezone; pydantic alone would also take bare dates and Unix numbers.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class OutOfCalendar(ValueError):
    """An instant that cannot be held in UTC between EARLIEST and END_OF_TIME."""


def in_utc(instant: datetime) -> datetime:
    """The instant in UTC, if it falls in `[EARLIEST, END_OF_TIME)`; else `OutOfCalendar`."""
    if instant.tzinfo is None:
        raise OutOfCalendar("an instant needs a timezone")
    try:
        utc = instant.astimezone(UTC)
    except OverflowError as exc:
        raise OutOfCalendar(_outside()) from exc
    if not EARLIEST <= utc < END_OF_TIME:
        raise OutOfCalendar(_outside())
    return utc


def _outside() -> str:
    return (
        f"must fall, in UTC, from {EARLIEST:%Y-%m-%d} to before {END_OF_TIME:%Y-%m-%d}, "
        "like 2025-01-31T00:00:00Z"
    )


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with a timezone, like 2025-01-31T00:00:00Z")
    return value


def _within_calendar(value: datetime) -> datetime:
    try:
        in_utc(value)
    except OutOfCalendar as exc:
        raise ValueError(str(exc)) from exc
    return value


DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(value: object) -> object:
    # pydantic alone would also take `0001-01-01T00:00:00+01:00` as the day 0001-01-01.
    if isinstance(value, str) and not DAY.match(value):
        raise ValueError("must be a day written YYYY-MM-DD, like 2025-01-31")
    return value


def _within_days(value: date) -> date:
    if value > LAST_DAY:
        raise ValueError(f"must be a day from {EARLIEST:%Y-%m-%d} to {LAST_DAY:%Y-%m-%d}")
    return value


# A query field holding a UTC day.
Day = Annotated[date, BeforeValidator(_day), AfterValidator(_within_days)]

# A query or body field holding an instant (its offset kept as sent).
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_within_calendar)]
