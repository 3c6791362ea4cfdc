"""Instants a request may name: inside the calendar once turned to UTC."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from services.servicekit.instants import (
    EARLIEST,
    END_OF_TIME,
    Day,
    OutOfCalendar,
    Timestamp,
    in_utc,
)

TIMESTAMP = TypeAdapter(Timestamp)
DAY = TypeAdapter(Day)


def test_an_instant_is_turned_to_utc_inside_the_calendar() -> None:
    east = datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert in_utc(east) == datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert in_utc(EARLIEST) == EARLIEST
    assert in_utc(END_OF_TIME - timedelta(microseconds=1)) < END_OF_TIME


@pytest.mark.parametrize(
    "instant",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # the year 0 in UTC
        datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),  # 10000
        END_OF_TIME,  # its month's end could not be written
        datetime(2026, 1, 1),  # noqa: DTZ001 - naive on purpose
    ],
    ids=["year-0", "year-10000", "end-of-time", "naive"],
)
def test_an_instant_off_the_calendar_is_refused(instant: datetime) -> None:
    with pytest.raises(OutOfCalendar):
        in_utc(instant)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:30:00-01:00",
        "9999-01-01T00:00:00Z",
        "2026-01-01",
        "1767225600",
        "2026-01-01T00:00:00",
    ],
)
def test_a_timestamp_field_refuses_what_it_cannot_hold(text: str) -> None:
    with pytest.raises(ValidationError):
        TIMESTAMP.validate_python(text)


def test_a_timestamp_field_keeps_the_offset_as_sent() -> None:
    parsed = TIMESTAMP.validate_python("0001-01-01T00:00:00-01:00")
    assert parsed.utcoffset() == timedelta(hours=-1)


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31", "2026-1-1", "yesterday"]
)
def test_a_day_field_is_a_plain_day_of_the_calendar(text: str) -> None:
    with pytest.raises(ValidationError):
        DAY.validate_python(text)
    assert DAY.validate_python("9998-12-31") == date(9998, 12, 31)
    assert DAY.validate_python("0001-01-01") == date(1, 1, 1)
