"""How a range splits into whole days and edges."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.billing.reads.rules import Edge, cut_into_days


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_range_of_whole_days_has_no_edges() -> None:
    cut = cut_into_days(at("2025-03-10T00:00:00"), at("2025-04-20T00:00:00"))
    assert (cut.first_day, cut.end_day, cut.edges) == (date(2025, 3, 10), date(2025, 4, 20), ())


def test_a_range_cutting_through_days_reads_its_edges_from_the_rows() -> None:
    cut = cut_into_days(at("2025-03-10T05:30:00"), at("2025-04-20T13:00:00"))
    assert (cut.first_day, cut.end_day) == (date(2025, 3, 11), date(2025, 4, 20))
    assert cut.edges == (
        Edge(at("2025-03-10T05:30:00"), at("2025-03-11T00:00:00")),
        Edge(at("2025-04-20T00:00:00"), at("2025-04-20T13:00:00")),
    )


def test_a_range_inside_one_day_or_across_one_midnight_is_all_edge() -> None:
    for since, until in [
        ("2025-03-10T05:00:00", "2025-03-10T06:00:00"),
        ("2025-03-10T05:00:00", "2025-03-11T06:00:00"),
        ("2025-03-10T00:00:00", "2025-03-10T06:00:00"),
    ]:
        cut = cut_into_days(at(since), at(until))
        assert cut.first_day == cut.end_day  # no whole day
        assert cut.edges == (Edge(at(since), at(until)),)


def test_open_ends_stay_open() -> None:
    assert cut_into_days(None, None).edges == ()
    cut = cut_into_days(None, at("2025-04-20T13:00:00"))
    assert (cut.first_day, cut.end_day) == (None, date(2025, 4, 20))
    assert cut.edges == (Edge(at("2025-04-20T00:00:00"), at("2025-04-20T13:00:00")),)


def test_other_timezones_are_cut_at_utc_midnight() -> None:
    cut = cut_into_days(datetime.fromisoformat("2025-03-10T01:00:00+02:00"), None)
    assert cut.first_day == date(2025, 3, 10)  # 2025-03-09T23:00Z: an hour of the 9th first
    assert cut.edges == (Edge(at("2025-03-09T23:00:00"), at("2025-03-10T00:00:00")),)
