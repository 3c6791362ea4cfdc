"""Reconciliation's pure rules: how a day and model of the ledger compares with the provider's,
what the daily run reads, and what a page of the usage API must look like."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from services.billing.costs.margins import InvalidRange
from services.billing.reconciliation.provider import Malformed, epoch, read_page
from services.billing.reconciliation.rules import (
    DayModel,
    Figures,
    Summary,
    by_stem,
    check_run_range,
    compare_day,
    percent_difference,
    scheduled_range,
    status_of,
)
from services.billing.reconciliation.schedule import daily_due
from services.billing.reconciliation.store import Run

TODAY = date(2026, 3, 10)
SETTLED = TODAY - timedelta(days=3)  # the latest day that is no longer provisional
ONE = Decimal("1")
OURS = Figures(requests=100, input_tokens=10_000, cached_input_tokens=2_000, output_tokens=5_000)


def status(ours: Figures, theirs: Figures, day: date = SETTLED) -> str | None:
    return status_of(day, ours, theirs, today=TODAY, tolerance=ONE)


def test_equal_figures_match() -> None:
    assert status(OURS, OURS) == "matched"


def test_within_the_tolerance_matches_and_past_it_drifts_compared_exactly() -> None:
    # 1% of 10,000 input tokens is 100: 100 more is within, 101 more is past.
    assert status(OURS, OURS + Figures(input_tokens=100)) == "matched"
    assert status(OURS, OURS + Figures(input_tokens=101)) == "drift"
    assert status(OURS, OURS - Figures(input_tokens=101)) == "drift"  # either way
    # One request unrecorded of 100 is 1%: within; two are not.
    assert status(OURS, OURS + Figures(requests=1)) == "matched"
    assert status(OURS, OURS + Figures(requests=2)) == "drift"


def test_a_figure_only_the_provider_counts_is_drift() -> None:
    ours = Figures(requests=10, input_tokens=1_000, output_tokens=100)
    assert status(ours, ours + Figures(cached_input_tokens=1)) == "drift"


def test_missing_on_either_side() -> None:
    assert status(Figures(), OURS) == "missing-ours"
    assert status(OURS, Figures()) == "missing-theirs"
    assert status(Figures(), Figures()) is None


def test_the_last_three_days_are_provisional_whatever_they_say() -> None:
    for offset in range(3):
        day = TODAY - timedelta(days=offset)
        assert status(OURS, OURS + Figures(input_tokens=5_000), day) == "provisional"
        assert status(Figures(), OURS, day) == "provisional"
    assert status(OURS, OURS, TODAY - timedelta(days=3)) == "matched"


def test_differences_are_theirs_less_ours_and_percent_of_ours() -> None:
    theirs = OURS + Figures(input_tokens=1_200)
    [row] = compare_day(SETTLED, {"gpt-4o": OURS}, {"gpt-4o": theirs}, today=TODAY, tolerance=ONE)
    assert row == DayModel(SETTLED, "gpt-4o", "drift", OURS, theirs)
    assert row.difference == Figures(input_tokens=1_200)
    assert row.percent() == {
        "requests": Decimal("0.00"),
        "input_tokens": Decimal("12.00"),
        "cached_input_tokens": Decimal("0.00"),
        "output_tokens": Decimal("0.00"),
    }
    assert percent_difference(0, 5) is None
    assert percent_difference(3, 2) == Decimal("-33.33")


def test_compare_day_lists_every_model_either_side_counted_by_model() -> None:
    rows = compare_day(
        SETTLED,
        {"gpt-4o": OURS, "gpt-4o-mini": OURS},
        {"gpt-4o": OURS, "gpt-4.1-nano": OURS},
        today=TODAY,
        tolerance=ONE,
    )
    assert [(r.model, r.status) for r in rows] == [
        ("gpt-4.1-nano", "missing-ours"),
        ("gpt-4o", "matched"),
        ("gpt-4o-mini", "missing-theirs"),
    ]


def test_the_providers_snapshots_of_a_model_are_one_model() -> None:
    assert by_stem(
        [
            ("gpt-4o-2024-08-06", Figures(1, 10, 0, 5)),
            ("gpt-4o-2024-11-20", Figures(2, 20, 4, 5)),
            ("gpt-4o-mini-2024-07-18", Figures(1, 1, 0, 1)),
        ]
    ) == {"gpt-4o": Figures(3, 30, 4, 10), "gpt-4o-mini": Figures(1, 1, 0, 1)}


def test_usage_we_paid_for_and_never_recorded() -> None:
    more = DayModel(SETTLED, "m", "drift", OURS, OURS + Figures(requests=5))
    fewer = DayModel(SETTLED, "m", "drift", OURS, OURS - Figures(requests=5))
    assert more.unrecorded(ONE)
    assert not fewer.unrecorded(ONE)  # we recorded more than the provider counts
    assert DayModel(SETTLED, "m", "missing-ours", Figures(), OURS).unrecorded(ONE)
    assert not DayModel(TODAY, "m", "provisional", Figures(), OURS).unrecorded(ONE)


def test_a_summary_counts_statuses_and_keeps_the_largest_drift() -> None:
    summary = Summary()
    summary.add(
        [
            DayModel(SETTLED, "a", "drift", OURS, OURS + Figures(input_tokens=1_200)),
            DayModel(SETTLED, "b", "drift", OURS, OURS - Figures(output_tokens=2_500)),
            DayModel(SETTLED, "c", "matched", OURS, OURS),
            DayModel(SETTLED, "d", "missing-ours", Figures(), OURS),
        ]
    )
    assert summary.counts["drift"] == 2
    assert summary.disagreeing == 3
    assert summary.max_drift_percent == Decimal("50.00")


def test_the_daily_run_reads_a_week_and_catches_up_after_days_without_one() -> None:
    assert scheduled_range(TODAY, None) == (TODAY - timedelta(days=6), TODAY)
    assert scheduled_range(TODAY, TODAY - timedelta(days=1)) == (TODAY - timedelta(days=6), TODAY)
    # The last daily run that succeeded was 10 days ago: from its first provisional day.
    ten_ago = TODAY - timedelta(days=10)
    assert scheduled_range(TODAY, ten_ago) == (ten_ago - timedelta(days=2), TODAY)
    assert scheduled_range(TODAY, TODAY - timedelta(days=90)) == (
        TODAY - timedelta(days=30),
        TODAY,
    )


def test_a_run_reads_past_days_only() -> None:
    check_run_range(TODAY - timedelta(days=6), TODAY, TODAY)
    with pytest.raises(InvalidRange) as raised:
        check_run_range(TODAY, TODAY + timedelta(days=1), TODAY)
    assert raised.value.field == "to"
    with pytest.raises(InvalidRange) as raised:
        check_run_range(TODAY, TODAY - timedelta(days=1), TODAY)
    assert raised.value.field == "from"


def _run(status: str, as_of: date, finished: datetime) -> Run:
    return Run(
        run_id=uuid.uuid4(),
        trigger="schedule",
        requested_by=None,
        first_day=as_of - timedelta(days=6),
        last_day=as_of,
        as_of=as_of,
        started_at=finished,
        finished_at=finished,
        status=status,
        reason=None if status == "succeeded" else "the provider refused the admin key (HTTP 401)",
        pages=1,
        summary=Summary(),
    )


def test_the_daily_run_is_due_once_a_day_and_again_an_hour_after_a_failure() -> None:
    now = datetime(2026, 3, 10, 9, tzinfo=UTC)
    hour = timedelta(hours=1)
    yesterday = _run("succeeded", TODAY - timedelta(days=1), now - timedelta(days=1))
    assert daily_due(now, None, None, hour)
    assert daily_due(now, yesterday, yesterday, hour)
    done = _run("succeeded", TODAY, now - timedelta(minutes=5))
    assert not daily_due(now, done, done, hour)
    failed = _run("failed", TODAY, now - timedelta(minutes=5))
    assert not daily_due(now, failed, yesterday, hour)
    assert daily_due(now + hour, failed, yesterday, hour)


# ---------------------------------------------------------------- pages of the usage API

FIRST, LAST = date(2026, 3, 4), date(2026, 3, 10)


def bucket(day: date, *results: dict[str, object]) -> dict[str, object]:
    return {"start_time": epoch(day), "end_time": epoch(day) + 86_400, "results": list(results)}


def result(model: object = "gpt-4o-2024-08-06", **changes: object) -> dict[str, object]:
    return {
        "object": "organization.usage.completions.result",
        "model": model,
        "num_model_requests": 3,
        "input_tokens": 300,
        "input_cached_tokens": None,
        "output_tokens": 90,
        **changes,
    }


def page(*buckets: dict[str, object], more: bool = False) -> dict[str, object]:
    return {
        "object": "page",
        "data": list(buckets),
        "has_more": more,
        "next_page": "p2" if more else None,
    }


def test_a_page_reads_as_days_of_figures_by_the_providers_model_names() -> None:
    days, token = read_page(page(bucket(FIRST, result()), bucket(LAST), more=True), FIRST, LAST)
    assert token == "p2"
    assert [d.day for d in days] == [FIRST, LAST]
    assert days[0].models == (("gpt-4o-2024-08-06", Figures(3, 300, 0, 90)),)
    assert days[1].models == ()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "the page"),
        ({"data": [], "has_more": "no"}, "has_more"),
        (page(bucket(FIRST, result(model=None))), "model"),
        (page(bucket(FIRST, result(num_model_requests=-1))), "num_model_requests"),
        (page(bucket(FIRST, result(input_tokens="300"))), "input_tokens"),
        (page(bucket(FIRST, result(output_tokens=1.5))), "output_tokens"),
        ({"data": [], "has_more": True, "next_page": None}, "has_more without next_page"),
        (page({**bucket(FIRST), "end_time": epoch(FIRST) + 3600}), "is not one UTC day"),
        (page({**bucket(FIRST), "start_time": epoch(FIRST) + 1}), "is not one UTC day"),
        (page(bucket(LAST + timedelta(days=1))), "outside the range"),
    ],
)
def test_a_page_that_is_not_one_is_malformed(body: object, says: str) -> None:
    with pytest.raises(Malformed) as raised:
        read_page(body, FIRST, LAST)
    assert raised.value.reason.startswith("malformed usage page: ")
    assert says in raised.value.reason
