"""Pure rules of reconciliation: how a day and model of our ledger compares with the provider's.

Four figures are compared, ours against theirs (the provider's usage API):

- requests: our calls that carry tokens against `num_model_requests` (a call the
  provider refused with an error status carries none: it neither counts nor charges it);
- input tokens (cached ones included) against `input_tokens`;
- cached input tokens against `input_cached_tokens`;
- output tokens (reasoning ones included) against `output_tokens`.

Days are UTC days. Models are compared by their stem (`costs.rules.model_stem`): the
provider reports the dated snapshot that answered (`gpt-4o-2024-08-06`) where a call
that timed out is recorded under the model we asked for (`gpt-4o`); both are one model
here, as in the margin.

A day and model is, in this order:

- `provisional` within the last 3 days of the run (today and the two days before, UTC):
  the provider's figures for them may still move, so nothing is concluded yet;
- `missing-ours` when the provider reports usage and we have no call;
- `missing-theirs` when we have calls and the provider reports nothing;
- `drift` when any figure differs by more than the tolerance, a percent of ours
  (compared exactly: |theirs - ours| * 100 > tolerance * ours);
- `matched` otherwise.

A day and model neither side counted anything for is no row at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from services.billing.costs.margins import InvalidRange, check_range
from services.billing.costs.rules import model_stem

Status = Literal["matched", "drift", "provisional", "missing-ours", "missing-theirs"]
STATUSES: tuple[Status, ...] = ("matched", "drift", "provisional", "missing-ours", "missing-theirs")
# The statuses that say the two sides disagree about a settled day.
DISAGREEING: tuple[Status, ...] = ("drift", "missing-ours", "missing-theirs")

PROVISIONAL_DAYS = 3
# What the daily run covers when it ran the day before: 4 settled days and 3 provisional.
DAILY_DAYS = 7
# The most days a daily run goes back to cover the days since the last one that succeeded.
CATCH_UP_DAYS = 31
TWO_PLACES = Decimal("0.01")
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Figures:
    """What one side counted for a day and model."""

    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def __sub__(self, other: Figures) -> Figures:
        return Figures(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.requests, self.input_tokens, self.cached_input_tokens, self.output_tokens)

    @property
    def empty(self) -> bool:
        return not any(self.as_tuple())


NOTHING = Figures()
FIGURES = tuple(f.name for f in fields(Figures))


def percent_difference(ours: int, theirs: int) -> Decimal | None:
    """(theirs - ours) / ours, in percent to 2 places; None when only theirs is counted."""
    if ours == theirs:
        return Decimal(0).quantize(TWO_PLACES)
    if ours == 0:
        return None
    return (Decimal(theirs - ours) * HUNDRED / ours).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def beyond_tolerance(ours: int, theirs: int, tolerance: Decimal) -> bool:
    """The two figures differ by more than `tolerance` percent of ours (any, when ours is 0)."""
    if ours == theirs:
        return False
    return ours == 0 or abs(theirs - ours) * HUNDRED > tolerance * ours


def is_provisional(day: date, today: date) -> bool:
    """Within the last 3 days: today and the two before it."""
    return day > today - timedelta(days=PROVISIONAL_DAYS)


def status_of(
    day: date, ours: Figures, theirs: Figures, *, today: date, tolerance: Decimal
) -> Status | None:
    """The day and model's status (see the module's docstring); None when neither counted."""
    if ours.empty and theirs.empty:
        return None
    if is_provisional(day, today):
        return "provisional"
    if ours.empty:
        return "missing-ours"
    if theirs.empty:
        return "missing-theirs"
    drifted = any(
        beyond_tolerance(o, t, tolerance)
        for o, t in zip(ours.as_tuple(), theirs.as_tuple(), strict=True)
    )
    return "drift" if drifted else "matched"


@dataclass(frozen=True, slots=True)
class DayModel:
    """One day and model of a run: both sides' figures and what the run concluded."""

    day: date
    model: str
    status: Status
    ours: Figures
    theirs: Figures

    @property
    def difference(self) -> Figures:
        """Theirs less ours."""
        return self.theirs - self.ours

    def percent(self) -> dict[str, Decimal | None]:
        """Each figure's difference in percent of ours (None: only theirs counted it)."""
        pairs = zip(self.ours.as_tuple(), self.theirs.as_tuple(), strict=True)
        return {name: percent_difference(o, t) for name, (o, t) in zip(FIGURES, pairs, strict=True)}

    def unrecorded(self, tolerance: Decimal) -> bool:
        """Settled, and the provider counts more than our ledger, beyond the tolerance:
        usage we pay for and never recorded."""
        return self.status in ("drift", "missing-ours") and any(
            t > o and beyond_tolerance(o, t, tolerance)
            for o, t in zip(self.ours.as_tuple(), self.theirs.as_tuple(), strict=True)
        )


def by_stem(figures: Iterable[tuple[str, Figures]]) -> dict[str, Figures]:
    """The provider's figures by model stem (its snapshots of a model added together)."""
    summed: dict[str, Figures] = {}
    for model, counted in figures:
        stem = model_stem(model)
        summed[stem] = summed.get(stem, NOTHING) + counted
    return summed


def compare_day(
    day: date,
    ours: Mapping[str, Figures],
    theirs: Mapping[str, Figures],
    *,
    today: date,
    tolerance: Decimal,
) -> list[DayModel]:
    """Every model either side counted on `day`, by model."""
    compared = []
    for model in sorted(ours.keys() | theirs.keys()):
        mine, provider = ours.get(model, NOTHING), theirs.get(model, NOTHING)
        status = status_of(day, mine, provider, today=today, tolerance=tolerance)
        if status is not None:
            compared.append(DayModel(day, model, status, mine, provider))
    return compared


@dataclass
class Summary:
    """What a run found: day-models by status, and the largest drift in percent."""

    counts: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    max_drift_percent: Decimal | None = None  # of the drifted day-models' figures (by size)

    def add(self, rows: Iterable[DayModel]) -> None:
        for row in rows:
            self.counts[row.status] += 1
            if row.status != "drift":
                continue
            for percent in row.percent().values():
                if percent is None:
                    continue
                if self.max_drift_percent is None or abs(percent) > self.max_drift_percent:
                    self.max_drift_percent = abs(percent)

    @property
    def disagreeing(self) -> int:
        return sum(self.counts[status] for status in DISAGREEING)


def days_between(first: date, last: date) -> Iterable[date]:
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


def check_run_range(first: date, last: date, today: date) -> None:
    """A range a run can read: `from` <= `to` <= today, at most 400 days."""
    check_range(first, last)
    if last > today:
        raise InvalidRange("to", f"must not be after today ({today.isoformat()}, UTC)")


def default_range(today: date) -> tuple[date, date]:
    """The range of a run asked for with none: the last week, today included."""
    return today - timedelta(days=DAILY_DAYS - 1), today


def scheduled_range(today: date, last_covered: date | None) -> tuple[date, date]:
    """What the daily run reads: the last week, and, after days without a successful daily
    run, every day since the first day that run left provisional (at most 31 days)."""
    first, last = default_range(today)
    if last_covered is not None:
        first = min(first, last_covered - timedelta(days=PROVISIONAL_DAYS - 1))
    return max(first, today - timedelta(days=CATCH_UP_DAYS - 1)), last
