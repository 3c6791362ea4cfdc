"""What a batch adds to each rollup: pure, no database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from services.billing.rollups.rules import Amounts, Line, deltas, sorted_items

COMPANY = uuid.UUID(int=1)
JOB = uuid.UUID(int=2)
AT = datetime(2025, 3, 31, 23, 30, tzinfo=UTC)
TEN = Amounts(1, 10, Decimal("0.1000"), 100, 200, 300)


def line(*, job: uuid.UUID | None = None, draft: str | None = None, at: datetime = AT) -> Line:
    return Line(COMPANY, job, draft, at, "2025-03", False, TEN)


def test_a_draft_row_counts_in_the_day_the_period_and_its_draft() -> None:
    found = deltas([line(draft="d")], [], [])
    assert found.days[(COMPANY, date(2025, 3, 31))].total == TEN
    assert found.days[(COMPANY, date(2025, 3, 31))].draft == TEN
    assert found.periods[(COMPANY, "2025-03")].draft == TEN
    assert found.drafts[(COMPANY, "d")].amounts == TEN
    assert not found.jobs
    assert not found.job_days
    assert not found.job_periods


def test_a_row_on_a_job_counts_for_the_job_all_time_by_day_and_by_period() -> None:
    found = deltas([line(job=JOB), line(job=JOB)], [], [])
    assert found.jobs[(COMPANY, JOB)].amounts == TEN + TEN
    assert found.job_days[(COMPANY, JOB, date(2025, 3, 31))].amounts == TEN + TEN
    assert found.job_periods[(COMPANY, "2025-03", JOB)] == TEN + TEN
    assert found.days[(COMPANY, date(2025, 3, 31))].draft == Amounts()


def test_a_moved_row_leaves_the_drafts_and_joins_its_job_the_total_unchanged() -> None:
    found = deltas([], [line(job=JOB)], [(COMPANY, "d")])
    day = found.days[(COMPANY, date(2025, 3, 31))]
    assert day.total == Amounts()
    assert day.draft == -TEN
    assert found.periods[(COMPANY, "2025-03")].draft == -TEN
    assert found.jobs[(COMPANY, JOB)].amounts == TEN
    assert found.reconciled == {(COMPANY, "d")}


def test_a_draft_inserted_and_reconciled_in_one_batch_writes_no_draft_line() -> None:
    found = deltas([line(draft="d")], [line(job=JOB)], [(COMPANY, "d")])
    assert (COMPANY, "d") not in found.drafts
    assert found.days[(COMPANY, date(2025, 3, 31))].draft == Amounts()
    assert found.days[(COMPANY, date(2025, 3, 31))].total == TEN


def test_days_are_utc_days_and_late_rows_count_in_their_billing_period() -> None:
    paris = datetime.fromisoformat("2025-04-01T00:30:00+02:00")  # 2025-03-31 22:30 UTC
    late = Line(COMPANY, JOB, None, paris, "2025-05", True, TEN)
    found = deltas([late], [], [])
    assert list(found.days) == [(COMPANY, date(2025, 3, 31))]
    assert found.periods[(COMPANY, "2025-05")].late == TEN
    assert found.job_periods[(COMPANY, "2025-05", JOB)] == TEN


def test_first_and_last_use_span_the_rows() -> None:
    early = datetime(2025, 3, 1, tzinfo=UTC)
    found = deltas([line(job=JOB), line(job=JOB, at=early)], [], [])
    span = found.jobs[(COMPANY, JOB)]
    assert (span.first, span.last) == (early, AT)


def test_keys_are_written_in_one_order_whatever_the_batch_order() -> None:
    companies = [uuid.UUID(int=n) for n in (5, 3, 9, 1)]
    rows = {(company, date(2025, 1, 1)): company.int for company in companies}
    assert [key[0].int for key, _ in sorted_items(rows)] == [1, 3, 5, 9]
