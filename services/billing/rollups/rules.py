"""Pure rules of the rollups: what a batch adds to each sum, and in which order to write it.

A batch changes the ledger in two ways: it inserts usage rows (as drafts or on
jobs) and it moves whole drafts onto their jobs. Each rollup gains one delta
per key the batch touched, summed here so that each key is written once, and
the keys are sorted so that every writer takes the rollups' row locks in the
same order (two batches can then never deadlock on them).

Days are UTC days of `created_at`; periods are the rows' billing periods.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

# A rollup's key: a tuple of UUIDs, dates and strings, each position of one type.
K = TypeVar("K", bound=tuple[Any, ...])
V = TypeVar("V")

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class Amounts:
    """What a rollup adds up over usage rows."""

    generations: int = 0
    question_count: int = 0
    cost: Decimal = ZERO
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.generations + other.generations,
            self.question_count + other.question_count,
            self.cost + other.cost,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )

    def __neg__(self) -> Amounts:
        return Amounts(
            -self.generations,
            -self.question_count,
            -self.cost,
            -self.prompt_tokens,
            -self.completion_tokens,
            -self.total_tokens,
        )


NONE = Amounts()


@dataclass(frozen=True, slots=True)
class Line:
    """A usage row as the rollups see it: where it is held, when, and what it amounts to."""

    company_id: UUID
    job_id: UUID | None
    draft_job_id: str | None
    created_at: datetime
    period: str
    late: bool
    amounts: Amounts

    @property
    def day(self) -> date:
        return day_of(self.created_at)


def day_of(instant: datetime) -> date:
    return instant.astimezone(UTC).date()


@dataclass(slots=True)
class Span:
    """Amounts with the first and last use they cover."""

    amounts: Amounts
    first: datetime
    last: datetime

    def add(self, amounts: Amounts, at: datetime) -> None:
        self.amounts += amounts
        self.first = min(self.first, at)
        self.last = max(self.last, at)


@dataclass(slots=True)
class Split:
    """Amounts of a day or a period: all of them, the part held as drafts, the part late."""

    total: Amounts = NONE
    draft: Amounts = NONE
    late: Amounts = NONE


@dataclass
class Deltas:
    """What one batch adds to each rollup, by key."""

    days: dict[tuple[UUID, date], Split] = field(default_factory=dict)
    periods: dict[tuple[UUID, str], Split] = field(default_factory=dict)
    jobs: dict[tuple[UUID, UUID], Span] = field(default_factory=dict)
    job_days: dict[tuple[UUID, UUID, date], Span] = field(default_factory=dict)
    job_periods: dict[tuple[UUID, str, UUID], Amounts] = field(default_factory=dict)
    drafts: dict[tuple[UUID, str], Span] = field(default_factory=dict)
    # Drafts whose rows all moved to their job: their rollup rows go.
    reconciled: set[tuple[UUID, str]] = field(default_factory=set)

    def is_empty(self) -> bool:
        return not (self.days or self.periods or self.jobs or self.drafts or self.reconciled)

    def add_inserted(self, line: Line) -> None:
        split = self.days.setdefault((line.company_id, line.day), Split())
        period = self.periods.setdefault((line.company_id, line.period), Split())
        split.total += line.amounts
        period.total += line.amounts
        if line.late:
            period.late += line.amounts
        if line.job_id is not None:
            self._add_to_job(line.company_id, line.job_id, line)
        else:
            assert line.draft_job_id is not None  # a row is on a job or held as a draft
            split.draft += line.amounts
            period.draft += line.amounts
            _span(self.drafts, (line.company_id, line.draft_job_id), line)

    def add_moved(self, line: Line) -> None:
        """A draft row now on its job (`line.job_id`): no longer a draft, now the job's."""
        assert line.job_id is not None
        split = self.days.setdefault((line.company_id, line.day), Split())
        period = self.periods.setdefault((line.company_id, line.period), Split())
        split.draft += -line.amounts
        period.draft += -line.amounts
        self._add_to_job(line.company_id, line.job_id, line)

    def _add_to_job(self, company_id: UUID, job_id: UUID, line: Line) -> None:
        _span(self.jobs, (company_id, job_id), line)
        _span(self.job_days, (company_id, job_id, line.day), line)
        key = (company_id, line.period, job_id)
        self.job_periods[key] = self.job_periods.get(key, NONE) + line.amounts


def _span(spans: dict[K, Span], key: K, line: Line) -> None:
    span = spans.get(key)
    if span is None:
        spans[key] = Span(line.amounts, line.created_at, line.created_at)
    else:
        span.add(line.amounts, line.created_at)


def deltas(
    inserted: Iterable[Line],
    moved: Iterable[Line],
    reconciled: Iterable[tuple[UUID, str]],
) -> Deltas:
    """The batch's deltas: rows inserted, draft rows moved to jobs, drafts reconciled.

    A row inserted as a draft and moved in the same batch is in both `inserted`
    and `moved`; its draft is reconciled, so its draft line is not written.
    """
    result = Deltas(reconciled=set(reconciled))
    for line in inserted:
        result.add_inserted(line)
    for line in moved:
        result.add_moved(line)
    for key in result.reconciled:
        result.drafts.pop(key, None)
    return result


def sorted_items(rows: dict[K, V]) -> list[tuple[K, V]]:
    """By key: the order every writer locks a rollup's rows in."""
    return sorted(rows.items(), key=lambda item: item[0])
