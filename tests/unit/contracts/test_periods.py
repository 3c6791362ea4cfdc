from datetime import UTC, datetime, timedelta, timezone

from contracts.periods import period_of


def test_a_period_is_the_utc_calendar_month() -> None:
    assert period_of(datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)) == "2026-01"
    assert period_of(datetime(2026, 2, 1, tzinfo=UTC)) == "2026-02"
    assert period_of(datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == "2026-12"


def test_an_instant_in_another_zone_is_read_in_utc() -> None:
    # 00:30 on 1 February in UTC+1 is still January in UTC; 23:30 on 31 December in
    # UTC-1 is already the next year.
    assert period_of(datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == "2026-01"
    assert period_of(datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))) == (
        "2027-01"
    )
