"""Pure rules of the ledger: what a generation costs, where its usage belongs, what to lock.

The client's `jobId` is never classified by its shape. It names a saved job
only if billing has seen that job's `JobCreated` (of the same company);
otherwise the usage is held as a draft and attached when a `JobCreated` names
the draft's key as its `jobId` or its `draftJobId`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from contracts.events import FOUR_PLACES, JobCreated, QuestionsGenerated
from contracts.pricing import PriceOutOfRange as PriceOutOfRange
from contracts.pricing import question_cost

# What the ledger records: a generation, or a job its drafts may move onto.
Entry = QuestionsGenerated | JobCreated


class PoisonMessage(ValueError):
    """A message no retry can make usable: dead-lettered at once, never retried."""


class CostOutOfRange(PoisonMessage):
    """A generation whose cost, at the price in force at its occurredAt, the ledger cannot hold."""


@dataclass(frozen=True)
class Pricing:
    price_per_10_questions: Decimal = Decimal("0.10")
    profit_margin_percent: Decimal = Decimal("0")

    def cost(self, question_count: int) -> Decimal:
        """The one pricing rule (`contracts.pricing`): shared with the question service."""
        return question_cost(
            question_count, self.price_per_10_questions, self.profit_margin_percent
        )

    def bill(self, event: QuestionsGenerated) -> Decimal:
        """The generation's cost at this price; `CostOutOfRange` if the ledger cannot hold it."""
        try:
            return self.cost(event.question_count)
        except PriceOutOfRange as exc:
            raise CostOutOfRange(f"event {event.event_id}: {exc}") from exc


def format_money(amount: Decimal) -> str:
    """Money on the wire: a decimal string with 4 places."""
    return str(amount.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class KnownJob:
    job_id: UUID
    company_id: UUID
    draft_job_id: str | None


@dataclass(frozen=True)
class Placement:
    """A usage row's home: a job, or a draft key to wait under."""

    job_id: UUID | None = None
    draft_job_id: str | None = None

    @property
    def is_draft(self) -> bool:
        return self.job_id is None


def draft_key(event: QuestionsGenerated) -> str:
    """The id a draft row is held under: the draft's id if sent, else the client's jobId."""
    if event.draft_job_id is not None:
        return event.draft_job_id
    assert event.job_id is not None  # the contract requires one of the two
    return str(event.job_id)


def references(event: QuestionsGenerated | JobCreated) -> set[str]:
    """Every id by which a generation and a job can meet."""
    refs = {str(event.job_id)} if event.job_id is not None else set()
    if event.draft_job_id is not None:
        refs.add(event.draft_job_id)
    return refs


def place(event: QuestionsGenerated, known: Iterable[KnownJob]) -> Placement:
    """Attach to a known job of the same company, else hold as a draft.

    A job named by the client's jobId comes first, then a job made from a draft
    whose id is the client's jobId, then one made from the client's draftJobId.
    """
    of_company = [job for job in known if job.company_id == event.company_id]
    if event.job_id is not None:
        for job in of_company:
            if job.job_id == event.job_id:
                return Placement(job_id=job.job_id)
        for job in of_company:
            if job.draft_job_id == str(event.job_id):
                return Placement(job_id=job.job_id)
    if event.draft_job_id is not None:
        for job in of_company:
            if job.draft_job_id == event.draft_job_id:
                return Placement(job_id=job.job_id)
    return Placement(draft_job_id=draft_key(event))


def lock_key(company_id: UUID, reference: str) -> int:
    """A signed 64-bit advisory-lock key for one (company, id) meeting point."""
    digest = hashlib.blake2b(f"{company_id}:{reference}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(events: Iterable[QuestionsGenerated | JobCreated]) -> list[int]:
    """Sorted, so that concurrent transactions take their locks in one order (no deadlock)."""
    return sorted(
        {lock_key(event.company_id, ref) for event in events for ref in references(event)}
    )
