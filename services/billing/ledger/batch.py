"""A batch as the ledger has just written it: what every effect of recording it is given.

`record.py` writes a batch's usage rows, moves its drafts onto their jobs and
keeps its LLM calls (`costs/calls.py`); then each feature's effect (`effects.py`)
follows from the same `RecordedBatch`, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.events import JobCreated
from services.billing.costs.rules import Call
from services.billing.ledger.store import Attached, UsageRow
from services.servicekit.db import Connection


@dataclass(frozen=True)
class RecordedBatch:
    """What one batch changed in the ledger, before its transaction commits."""

    now: datetime
    # Usage rows this batch made (a redelivered generation makes none), as stored.
    inserted: Sequence[UsageRow]
    # Draft rows this batch moved onto their jobs.
    moved: Sequence[Attached]
    # The jobs this batch learned (a redelivered JobCreated included: its draft is empty).
    jobs: Sequence[JobCreated]
    # LLM calls this batch recorded (a redelivered one is not among them), priced.
    calls: Sequence[Call] = ()


# One feature's effect of a batch: it writes with the batch's connection and never commits.
BatchEffect = Callable[[Connection, RecordedBatch], Awaitable[None]]
